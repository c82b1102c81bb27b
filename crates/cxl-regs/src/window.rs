// SPDX-License-Identifier: GPL-2.0-or-later
//! Address math: HPA ranges, CXL Fixed Memory Window placement, interleave
//! encodings and HPA<->DPA translation for non-interleaved decoders.

/// Granularity of HDM decoder bases and sizes and of CFMW bases and sizes:
/// 256 MiB (CXL r3.1 §8.2.4.20.5-8 and §9.18.1.3).
pub const HDM_ALIGN: u64 = 256 << 20;

/// Pre-committed device memory starts at this alignment (1 GiB, a PUD
/// page) when the window has room.
pub const PRECOMMIT_ALIGN: u64 = 1 << 30;

/// A half-open range of host physical addresses `[base, base + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HpaRange {
    pub base: u64,
    pub size: u64,
}

impl HpaRange {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last address, or `None` if the range wraps.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether `other` lies entirely inside `self` (an empty range never does).
    pub fn contains_range(&self, other: &HpaRange) -> bool {
        match (self.end(), other.end()) {
            (Some(end), Some(other_end)) => {
                other.size > 0 && other.base >= self.base && other_end <= end
            }
            _ => false,
        }
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && self.end().is_some_and(|end| addr < end)
    }

    /// The lowest `align`-aligned range of `size` bytes inside `self`, if
    /// any (`align` a power of two). Firmware places device memory this
    /// way so that a VMM can map it with the largest pages.
    pub fn first_fit(&self, size: u64, align: u64) -> Option<HpaRange> {
        debug_assert!(align.is_power_of_two());
        let base = self.base.checked_next_multiple_of(align)?;
        let range = HpaRange::new(base, size);
        self.contains_range(&range).then_some(range)
    }

    /// Where firmware commits `size` bytes of device memory in this
    /// window: like firmware that wants the largest pages, at the first
    /// [`PRECOMMIT_ALIGN`]-aligned place, else at the window's start.
    pub fn precommit_range(&self, size: u64) -> HpaRange {
        self.first_fit(size, PRECOMMIT_ALIGN)
            .unwrap_or(HpaRange::new(self.base, size))
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &HpaRange) -> bool {
        match (self.end(), other.end()) {
            (Some(a), Some(b)) => self.base < b && other.base < a,
            _ => true,
        }
    }
}

/// Interleave ways from the encoded IW field (CXL r3.1 §8.2.4.20.7).
pub fn eiw_to_ways(eiw: u8) -> Option<u32> {
    match eiw {
        0..=4 => Some(1 << eiw),
        8..=10 => Some(3 << (eiw - 8)),
        _ => None,
    }
}

/// Encoded IW field for `ways`.
pub fn ways_to_eiw(ways: u32) -> Option<u8> {
    (0..=10u8).find(|&eiw| eiw_to_ways(eiw) == Some(ways))
}

/// Largest encoded interleave granularity of an HDM decoder: 16 KiB.
pub const MAX_EIG: u8 = 6;

/// Interleave granularity in bytes from the encoded IG field (§8.2.4.20.7).
pub fn eig_to_granularity(eig: u8) -> Option<u64> {
    (eig <= MAX_EIG).then(|| 256 << eig)
}

/// Encoded IG field for a granularity in bytes.
pub fn granularity_to_eig(bytes: u64) -> Option<u8> {
    (0..=MAX_EIG).find(|&eig| eig_to_granularity(eig) == Some(bytes))
}

/// Rounds `size` up to the window granularity; `None` on overflow or zero.
pub fn window_size_for(size: u64) -> Option<u64> {
    if size == 0 {
        return None;
    }
    size.checked_next_multiple_of(HDM_ALIGN)
}

/// Why windows could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// A requested size is zero.
    Empty { index: usize },
    /// The windows do not fit below `limit`.
    NoSpace { index: usize },
}

/// Places fixed memory windows one after another from `start`: each window
/// is `align`-aligned (a power of two, at least [`HDM_ALIGN`]) and its size
/// rounded up to [`HDM_ALIGN`]. All must end at or below `limit`.
///
/// A large alignment (1 GiB) lets a VMM map device memory into a window
/// with the largest page mappings.
pub fn place_windows(
    start: u64,
    limit: u64,
    sizes: &[u64],
    align: u64,
) -> Result<Vec<HpaRange>, PlaceError> {
    assert!(
        align.is_power_of_two() && align >= HDM_ALIGN,
        "window alignment must be a power of two >= 256 MiB"
    );
    let mut next = start;
    let mut placed = Vec::with_capacity(sizes.len());
    for (index, &size) in sizes.iter().enumerate() {
        let size = window_size_for(size).ok_or(PlaceError::Empty { index })?;
        let range = next
            .checked_next_multiple_of(align)
            .map(|base| HpaRange::new(base, size))
            .filter(|r| r.end().is_some_and(|end| end <= limit))
            .ok_or(PlaceError::NoSpace { index })?;
        next = range.base + range.size;
        placed.push(range);
    }
    Ok(placed)
}

/// The mapping a committed non-interleaved endpoint decoder establishes
/// between host physical and device physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectTranslation {
    pub hpa: HpaRange,
    /// DPA of the first byte of `hpa`.
    pub dpa_base: u64,
}

impl DirectTranslation {
    /// DPA for `hpa`, if the decoder maps it.
    pub fn hpa_to_dpa(&self, hpa: u64) -> Option<u64> {
        self.hpa
            .contains(hpa)
            .then(|| self.dpa_base + (hpa - self.hpa.base))
    }

    /// HPA for `dpa`, if the decoder maps it.
    pub fn dpa_to_hpa(&self, dpa: u64) -> Option<u64> {
        let offset = dpa.checked_sub(self.dpa_base)?;
        (offset < self.hpa.size).then(|| self.hpa.base + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn interleave_encodings_match_the_spec_table() {
        let table = [
            (0, 1),
            (1, 2),
            (2, 4),
            (3, 8),
            (4, 16),
            (8, 3),
            (9, 6),
            (10, 12),
        ];
        for (eiw, ways) in table {
            assert_eq!(eiw_to_ways(eiw), Some(ways));
            assert_eq!(ways_to_eiw(ways), Some(eiw));
        }
        for eiw in [5, 6, 7, 11, 15] {
            assert_eq!(eiw_to_ways(eiw), None);
        }
        assert_eq!(ways_to_eiw(5), None);
        assert_eq!(eig_to_granularity(0), Some(256));
        assert_eq!(eig_to_granularity(6), Some(16384));
        assert_eq!(eig_to_granularity(7), None);
        assert_eq!(granularity_to_eig(4096), Some(4));
        assert_eq!(granularity_to_eig(1000), None);
    }

    #[test]
    fn windows_are_aligned_rounded_and_bounded() {
        let w = place_windows(0x3_9000_0000, 1 << 40, &[100 << 20, 1 << 30], 1 << 30).unwrap();
        assert_eq!(w[0], HpaRange::new(0x3_c000_0000, HDM_ALIGN));
        assert_eq!(w[1], HpaRange::new(0x4_0000_0000, 1 << 30));
        assert_eq!(
            place_windows(0, 1 << 30, &[0], HDM_ALIGN),
            Err(PlaceError::Empty { index: 0 })
        );
        assert_eq!(
            place_windows(0, 1 << 30, &[1 << 30, 1], HDM_ALIGN),
            Err(PlaceError::NoSpace { index: 1 })
        );
        assert_eq!(
            place_windows(u64::MAX - 5, u64::MAX, &[1], HDM_ALIGN),
            Err(PlaceError::NoSpace { index: 0 })
        );
    }

    #[test]
    fn precommit_prefers_a_1_gib_aligned_place() {
        let w = HpaRange::new(0x3_9000_0000, 4 << 30);
        assert_eq!(
            w.precommit_range(256 << 20),
            HpaRange::new(0x3_c000_0000, 256 << 20)
        );
        assert_eq!(w.precommit_range(4 << 30), HpaRange::new(w.base, 4 << 30));
    }

    #[test]
    fn first_fit_aligns_inside_the_window() {
        let w = HpaRange::new(0x3_9000_0000, 4 << 30);
        assert_eq!(
            w.first_fit(256 << 20, 1 << 30),
            Some(HpaRange::new(0x3_c000_0000, 256 << 20))
        );
        assert_eq!(
            w.first_fit(4 << 30, 1 << 30),
            None,
            "no room after aligning"
        );
        assert_eq!(
            w.first_fit(4 << 30, HDM_ALIGN),
            Some(HpaRange::new(w.base, 4 << 30))
        );
        assert_eq!(w.first_fit(0, HDM_ALIGN), None);
        assert_eq!(HpaRange::new(u64::MAX - 5, 4).first_fit(1, 1 << 30), None);
    }

    #[test]
    fn ranges_handle_wrapping() {
        let huge = HpaRange::new(u64::MAX - 1, 4);
        assert_eq!(huge.end(), None);
        assert!(!HpaRange::new(0, u64::MAX).contains_range(&huge));
        assert!(!HpaRange::new(0, 16).contains_range(&HpaRange::new(4, 0)));
    }

    proptest! {
        #[test]
        fn translation_round_trips(base in 0u64..1 << 50, size in 1u64..1 << 40, dpa_base in 0u64..1 << 40, off in 0u64..1 << 40) {
            let t = DirectTranslation { hpa: HpaRange::new(base, size), dpa_base };
            let hpa = base + off;
            match t.hpa_to_dpa(hpa) {
                Some(dpa) => prop_assert_eq!(t.dpa_to_hpa(dpa), Some(hpa)),
                None => prop_assert!(off >= size),
            }
        }

        #[test]
        fn placed_windows_never_overlap(sizes in prop::collection::vec(1u64..1 << 36, 1..6), shift in 28u32..34) {
            let align = 1u64 << shift;
            if let Ok(w) = place_windows(1 << 32, 1 << 48, &sizes, align) {
                for (i, a) in w.iter().enumerate() {
                    prop_assert_eq!(a.base % align, 0);
                    prop_assert!(a.size >= sizes[i] && a.size % HDM_ALIGN == 0);
                    for b in &w[i + 1..] {
                        prop_assert!(!a.overlaps(b));
                    }
                }
            }
        }
    }
}
