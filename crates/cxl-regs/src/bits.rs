// SPDX-License-Identifier: GPL-2.0-or-later
//! Typed registers: a register is a newtype over its raw integer, and each
//! field is a constant of type `Field<ThatRegister>`, so a field can only be
//! applied to the register it belongs to.

use core::fmt;
use core::marker::PhantomData;

/// A register value of a fixed width.
pub trait Register: Copy {
    /// Width of the register in bytes.
    const BYTES: usize;
    /// The raw value, zero-extended.
    fn bits(self) -> u64;
    /// A register from a raw value; bits beyond the width are dropped.
    fn from_bits(bits: u64) -> Self;
}

/// A contiguous bit field of register `R`.
pub struct Field<R> {
    shift: u32,
    width: u32,
    register: PhantomData<R>,
}

// Manual impls: deriving would require `R: Clone` etc.
impl<R> Clone for Field<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Field<R> {}

impl<R> fmt::Debug for Field<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Field[{}:{}]", self.shift + self.width - 1, self.shift)
    }
}

impl<R: Register> Field<R> {
    /// The field of `width` bits starting at bit `shift`.
    pub const fn new(shift: u32, width: u32) -> Self {
        assert!(width > 0 && shift + width <= 64);
        Self {
            shift,
            width,
            register: PhantomData,
        }
    }

    /// The field's bits in place, as a raw register mask.
    pub const fn mask(self) -> u64 {
        (u64::MAX >> (64 - self.width)) << self.shift
    }

    /// The largest value the field holds.
    pub const fn max(self) -> u64 {
        u64::MAX >> (64 - self.width)
    }

    /// Reads the field from `reg`.
    pub fn get(self, reg: R) -> u64 {
        (reg.bits() & self.mask()) >> self.shift
    }

    /// `reg` with the field set to `value` (truncated to the field width).
    pub fn set(self, reg: R, value: u64) -> R {
        R::from_bits((reg.bits() & !self.mask()) | ((value << self.shift) & self.mask()))
    }
}

/// Defines a register newtype and its fields.
///
/// ```
/// cxl_regs::register! {
///     /// Example.
///     pub Example: u16 {
///         /// Bit 0.
///         LOW = 0, 1;
///         /// Bits 15:4.
///         HIGH = 4, 12;
///     }
/// }
/// let r = Example::default().with(Example::HIGH, 0xabc);
/// assert_eq!(r.0, 0xabc0);
/// assert_eq!(r.get(Example::HIGH), 0xabc);
/// ```
#[macro_export]
macro_rules! register {
    ($(#[$meta:meta])* $vis:vis $name:ident: $raw:ty {
        $($(#[$fmeta:meta])* $field:ident = $shift:literal, $width:literal;)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #[repr(transparent)]
        $vis struct $name(pub $raw);

        #[allow(dead_code)]
        impl $name {
            $($(#[$fmeta])* pub const $field: $crate::bits::Field<$name> =
                $crate::bits::Field::new($shift, $width);)*

            /// Reads a field.
            pub fn get(self, field: $crate::bits::Field<$name>) -> u64 {
                field.get(self)
            }

            /// Whether a one-bit field (or any bit of a wider one) is set.
            pub fn is_set(self, field: $crate::bits::Field<$name>) -> bool {
                field.get(self) != 0
            }

            /// This register with `field` set to `value`.
            #[must_use]
            pub fn with(self, field: $crate::bits::Field<$name>, value: u64) -> Self {
                field.set(self, value)
            }
        }

        impl $crate::bits::Register for $name {
            const BYTES: usize = core::mem::size_of::<$raw>();
            fn bits(self) -> u64 {
                self.0.into()
            }
            fn from_bits(bits: u64) -> Self {
                // Truncation to the register width is the documented behaviour.
                Self(bits as $raw)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::register! {
        Probe: u32 {
            A = 0, 4;
            B = 28, 4;
        }
    }

    #[test]
    fn fields_are_isolated() {
        let r = Probe(0xffff_ffff).with(Probe::A, 0);
        assert_eq!(r.0, 0xffff_fff0);
        assert_eq!(
            r.with(Probe::B, 0x1f).get(Probe::B),
            0xf,
            "values are truncated to the field"
        );
        assert_eq!(Probe::B.mask(), 0xf000_0000);
        assert!(!Probe(0x10).is_set(Probe::A));
    }
}
