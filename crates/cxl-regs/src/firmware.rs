// SPDX-License-Identifier: GPL-2.0-or-later
//! What platform firmware decides for a CXL endpoint directly below a
//! root port of a host bridge (CXL r3.1 §9.10: firmware commits the HDM
//! decoders of memory that must work before the OS binds a driver), and
//! the rules an emulator's direct mapping of device memory follows.
//!
//! The emulator reads the machine (its CXL Fixed Memory Windows, the host
//! bridge's HDM decoder registers) and these functions decide:
//!
//! - [`find_window`]: the window firmware commits the device into;
//! - [`window_at`]: the window that holds a committed range (to map it);
//! - [`HbClaims`]: one pre-committing endpoint per host bridge, and
//!   [`hb_decoder0_fits`]: whether a committed host bridge decoder 0
//!   already decodes what firmware would commit;
//! - [`commit_hb_decoder0`]: the host bridge decoder 0 as firmware leaves
//!   it (programmed, committed, locked);
//! - [`hb_routes`], [`passthrough_routes`]: whether the host bridge routes
//!   a range to the endpoint's root port, and [`routes`]: whether the
//!   whole decode path above an endpoint ([`HostBridgePath`]) does;
//! - [`hb_decoders`]: whether firmware uses the host bridge's HDM
//!   decoders;
//! - [`MapClaims`]: no two devices' memory mapped at overlapping addresses.

use core::fmt;

use crate::hdm::{self, DecoderControl, GlobalControl, Low256M};
use crate::window::{HpaRange, HDM_ALIGN};

/// A CXL Fixed Memory Window (CFMW) as an endpoint's firmware sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Position in the machine's window list (`-M cxl-fmw.N` in QEMU).
    pub index: i32,
    pub range: HpaRange,
    /// Number of host bridges the window interleaves across.
    pub ways: u32,
    /// Encoded interleave granularity (CXL r3.1 §8.2.4.20.9).
    pub enc_granularity: u8,
    /// Whether one of its targets is the endpoint's host bridge.
    pub targets_hb: bool,
}

impl AsRef<Window> for Window {
    fn as_ref(&self) -> &Window {
        self
    }
}

/// Why no window fits an endpoint ([`find_window`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// The host bridge has no HDM decoders, so firmware cannot commit one.
    NoHdmDecoders { hb: String },
    /// No window targets only the host bridge with room for `size`.
    NoWindow {
        hb: String,
        size: u64,
        /// Windows interleaving the host bridge with others were skipped.
        interleaved: bool,
        /// Windows targeting only the host bridge were too small.
        too_small: bool,
    },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHdmDecoders { hb } => write!(
                f,
                "host bridge {hb} has no HDM decoders: add hdm_for_passthrough=on to its \
                 -device pxb-cxl"
            ),
            Self::NoWindow {
                hb,
                size,
                interleaved,
                too_small,
            } => write!(
                f,
                "no CXL fixed memory window targets only host bridge {hb} with room for {} \
                 MiB{}{}: add e.g. -M cxl-fmw.0.targets.0={hb},cxl-fmw.0.size=4G",
                size >> 20,
                if *interleaved {
                    " (interleaved windows are not used)"
                } else {
                    ""
                },
                if *too_small {
                    " (windows targeting it are too small)"
                } else {
                    ""
                },
            ),
        }
    }
}

/// The first window (in `windows` order) that targets only the endpoint's
/// host bridge `hb` and holds at least `size` bytes. The host bridge must
/// have HDM decoders (`hdm_decoders`): Linux assembles a region only when
/// a committed host bridge decoder has exactly the endpoint decoder's
/// range.
pub fn find_window<'w, W: AsRef<Window>>(
    hb: &str,
    hdm_decoders: bool,
    windows: &'w [W],
    size: u64,
) -> Result<&'w W, WindowError> {
    if !hdm_decoders {
        return Err(WindowError::NoHdmDecoders { hb: hb.into() });
    }
    let (mut interleaved, mut too_small) = (false, false);
    for entry in windows.iter().filter(|w| w.as_ref().targets_hb) {
        let w = entry.as_ref();
        if w.ways != 1 {
            interleaved = true;
        } else if w.range.size < size || w.range.base == 0 {
            too_small = true;
        } else {
            return Ok(entry);
        }
    }
    Err(WindowError::NoWindow {
        hb: hb.into(),
        size,
        interleaved,
        too_small,
    })
}

/// The first window that holds all of `range` (a window at 0 is never
/// placed, so it holds nothing).
pub fn window_at<W: AsRef<Window>>(windows: &[W], range: HpaRange) -> Option<&W> {
    windows.iter().find(|w| {
        let w = w.as_ref();
        w.range.base != 0 && w.range.contains_range(&range)
    })
}

/// A host bridge without HDM decoders (a passthrough host bridge with one
/// root port) routes every window that targets only it to that port.
pub fn passthrough_routes<W: AsRef<Window>>(windows: &[W], range: HpaRange) -> bool {
    windows
        .iter()
        .map(AsRef::as_ref)
        .any(|w: &Window| w.ways == 1 && w.targets_hb && w.range.contains_range(&range))
}

/// Dword access to a host bridge's HDM Decoder Capability Structure, at
/// the offsets of [`crate::hdm`] (the emulator's registers, not a model:
/// firmware pokes them as the platform does).
pub trait HdmRegisters {
    /// Number of decoders the structure has.
    fn decoder_count(&self) -> u32;
    fn read(&self, offset: u32) -> u32;
    fn write(&mut self, offset: u32, value: u32);
}

/// One host bridge decoder as its registers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortDecoder {
    range: HpaRange,
    control: DecoderControl,
    /// Target List entry 0 (the port an unstriped decoder routes to).
    target0: u8,
}

fn port_decoder(regs: &impl HdmRegisters, n: u32) -> PortDecoder {
    let low = |off| u64::from(regs.read(off)) & Low256M::BITS_31_28.mask();
    let high = |off| u64::from(regs.read(off)) << 32;
    PortDecoder {
        range: HpaRange::new(
            high(hdm::base_high(n)) | low(hdm::base_low(n)),
            high(hdm::size_high(n)) | low(hdm::size_low(n)),
        ),
        control: DecoderControl(regs.read(hdm::control(n))),
        target0: regs.read(hdm::target_or_skip_low(n)) as u8,
    }
}

/// Host bridge decoder 0 already decodes another range, or to another
/// port, than firmware would commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbDecoderBusy {
    pub hb: String,
    pub decodes: HpaRange,
    pub target: u8,
    pub want: HpaRange,
    pub port: u8,
}

impl fmt::Display for HbDecoderBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HDM decoder 0 of host bridge {} already decodes {:#x}+{:#x} for root port {}, not \
             {:#x}+{:#x} for root port {} (committed by the guest, or for another device)",
            self.hb,
            self.decodes.base,
            self.decodes.size,
            self.target,
            self.want.base,
            self.want.size,
            self.port
        )
    }
}

/// Whether host bridge `hb`'s decoder 0 is free, or already decodes
/// exactly `want` to root port `port`: firmware left it committed and
/// locked for a device that was since unplugged, and the same device
/// plugged into the same root port gets the same range again.
pub fn hb_decoder0_fits(
    regs: &impl HdmRegisters,
    hb: &str,
    want: HpaRange,
    port: u8,
) -> Result<(), HbDecoderBusy> {
    let d = port_decoder(regs, 0);
    if !d.control.is_set(DecoderControl::COMMITTED) || (d.range == want && d.target0 == port) {
        return Ok(());
    }
    Err(HbDecoderBusy {
        hb: hb.into(),
        decodes: d.range,
        target: d.target0,
        want,
        port,
    })
}

/// Why firmware could not commit host bridge decoder 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HbCommitError {
    /// The host bridge has no HDM decoders.
    NoHdmDecoders {
        hb: String,
    },
    /// The range is empty or not 256 MiB aligned.
    Unaligned(HpaRange),
    Busy(HbDecoderBusy),
}

impl fmt::Display for HbCommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHdmDecoders { hb } => write!(
                f,
                "host bridge {hb} has no HDM decoders (pxb-cxl,hdm_for_passthrough=on)"
            ),
            Self::Unaligned(r) => write!(
                f,
                "HDM range {:#x}+{:#x} is not 256 MiB aligned",
                r.base, r.size
            ),
            Self::Busy(busy) => busy.fmt(f),
        }
    }
}

/// Commits decoder 0 of host bridge `hb` the way firmware leaves it for
/// the OS: base and size `range`, a one-way target list naming root port
/// `port`, granularity `eig`, Lock On Commit and Committed, and HDM
/// decoding enabled. `regs` is `None` when the host bridge has no HDM
/// decoders. Refused when the decoder already decodes something else
/// ([`hb_decoder0_fits`]).
pub fn commit_hb_decoder0<R: HdmRegisters>(
    regs: Option<&mut R>,
    hb: &str,
    range: HpaRange,
    port: u8,
    eig: u8,
) -> Result<(), HbCommitError> {
    let Some(regs) = regs else {
        return Err(HbCommitError::NoHdmDecoders { hb: hb.into() });
    };
    if range.size == 0 || (range.base | range.size) & (HDM_ALIGN - 1) != 0 {
        return Err(HbCommitError::Unaligned(range));
    }
    hb_decoder0_fits(regs, hb, range, port).map_err(HbCommitError::Busy)?;
    let control = DecoderControl::default()
        .with(DecoderControl::IG, eig.into())
        .with(DecoderControl::IW, 0)
        .with(DecoderControl::LOCK_ON_COMMIT, 1)
        .with(DecoderControl::COMMIT, 1)
        .with(DecoderControl::COMMITTED, 1);
    regs.write(hdm::base_low(0), range.base as u32);
    regs.write(hdm::base_high(0), (range.base >> 32) as u32);
    regs.write(hdm::size_low(0), range.size as u32);
    regs.write(hdm::size_high(0), (range.size >> 32) as u32);
    regs.write(hdm::target_or_skip_low(0), port.into());
    regs.write(hdm::target_or_skip_high(0), 0);
    regs.write(hdm::control(0), control.0);
    let global = GlobalControl(regs.read(hdm::GLOBAL_CONTROL));
    regs.write(
        hdm::GLOBAL_CONTROL,
        global.with(GlobalControl::HDM_DECODER_ENABLE, 1).0,
    );
    Ok(())
}

/// Whether a committed decoder of the host bridge (HDM decoding enabled)
/// decodes all of `range` to root port `port` alone. An interleaving
/// decoder does not count: the endpoint's memory is mapped contiguously.
pub fn hb_routes(regs: &impl HdmRegisters, port: u8, range: HpaRange) -> bool {
    if !GlobalControl(regs.read(hdm::GLOBAL_CONTROL)).is_set(GlobalControl::HDM_DECODER_ENABLE) {
        return false;
    }
    (0..regs.decoder_count()).any(|n| {
        let d = port_decoder(regs, n);
        d.control.is_set(DecoderControl::COMMITTED)
            && d.control.get(DecoderControl::IW) == 0
            && d.target0 == port
            && d.range.contains_range(&range)
    })
}

/// The host bridge and root port above an endpoint, as the emulator
/// reads them from its machine ([`routes`], [`hb_decoders`]).
pub trait HostBridgePath {
    /// The host bridge's HDM Decoder Capability Structure.
    type Regs: HdmRegisters;
    /// A window as the emulator keeps it.
    type Window: AsRef<Window>;
    /// The host bridge was asked for HDM decoders even with one root port
    /// (QEMU: `pxb-cxl,hdm_for_passthrough=on`).
    fn hdm_for_passthrough(&self) -> bool;
    /// One root port and no HDM decoders: the host bridge routes every
    /// window that targets only it to that port.
    fn passthrough(&self) -> bool;
    /// The port number of the endpoint's root port.
    fn port(&self) -> u8;
    /// The host bridge's decoder registers.
    fn regs(&self) -> &Self::Regs;
    /// The same, to write them.
    fn regs_mut(&mut self) -> &mut Self::Regs;
    /// The machine's windows, `targets_hb` for this host bridge.
    fn windows(&self) -> Vec<Self::Window>;
}

/// The host bridge's HDM decoders, when firmware uses them: with
/// `hdm_for_passthrough` on and not a passthrough host bridge.
pub fn hb_decoders<P: HostBridgePath>(path: &mut P) -> Option<&mut P::Regs> {
    (path.hdm_for_passthrough() && !path.passthrough()).then(|| path.regs_mut())
}

/// Whether the decode path above an endpoint routes `range` to it: the
/// range is not empty, the endpoint decodes memory (`decodes_memory`:
/// Memory Space on, in D0), it sits below a CXL host bridge (`path`,
/// asked only then; `None` when it does not), and the host bridge routes
/// the range to its root port ([`passthrough_routes`] for a passthrough
/// host bridge, else [`hb_routes`]). The endpoint's own links (HDM
/// Decoder Enable, DVSEC Mem_Enable) are the caller's.
pub fn routes<P: HostBridgePath>(
    range: HpaRange,
    decodes_memory: bool,
    path: impl FnOnce() -> Option<P>,
) -> bool {
    if range.size == 0 || !decodes_memory {
        return false;
    }
    let Some(path) = path() else {
        return false;
    };
    if path.passthrough() {
        passthrough_routes(path.windows().as_slice(), range)
    } else {
        hb_routes(path.regs(), path.port(), range)
    }
}

/// A second endpoint wants a host bridge decoder 0 that another one
/// holds, or one that decodes something else ([`HbClaims::claim`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HbClaimError {
    Held { hb: String, holder: String },
    Busy(HbDecoderBusy),
}

impl fmt::Display for HbClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Held { hb, holder } => write!(
                f,
                "HDM decoder 0 of host bridge {hb} is already pre-committed for {holder} (one \
                 pre-committed device per host bridge): put this device below another pxb-cxl \
                 with its own window, or set precommit=off"
            ),
            Self::Busy(busy) => busy.fmt(f),
        }
    }
}

/// Which endpoint's pre-commit owns each host bridge's decoder 0: firmware
/// commits one device per host bridge (decoder 0 names one root port).
/// Claiming at realize makes a second device fail there, with an error,
/// instead of at reset, where a failure cannot be reported (and at
/// hot-plug would end the running VM). `H` and `E` identify host bridges
/// and endpoints.
#[derive(Clone, Debug, Default)]
pub struct HbClaims<H, E> {
    /// (host bridge, endpoint, the endpoint's name for messages)
    claims: Vec<(H, E, String)>,
}

impl<H: PartialEq + Copy, E: PartialEq + Copy> HbClaims<H, E> {
    pub const fn new() -> Self {
        Self { claims: Vec::new() }
    }

    /// Reserves decoder 0 of `hb` (its registers `regs`, named `hb_name`)
    /// for `ep` (named `ep_name`), which will commit `want` to root port
    /// `port`. A decoder left committed (the guest's, or firmware's for a
    /// device since unplugged) is accepted only if it already decodes
    /// exactly `want` to `port`, as reset will require. Claiming twice for
    /// `ep` is fine.
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &mut self,
        hb: H,
        hb_name: &str,
        regs: &impl HdmRegisters,
        ep: E,
        ep_name: &str,
        want: HpaRange,
        port: u8,
    ) -> Result<(), HbClaimError> {
        match self.claims.iter().find(|c| c.0 == hb) {
            Some((_, holder, _)) if *holder == ep => Ok(()),
            Some((_, _, holder)) => Err(HbClaimError::Held {
                hb: hb_name.into(),
                holder: holder.clone(),
            }),
            None => {
                hb_decoder0_fits(regs, hb_name, want, port).map_err(HbClaimError::Busy)?;
                self.claims.push((hb, ep, ep_name.into()));
                Ok(())
            }
        }
    }

    /// Drops `ep`'s claim (unrealize); a no-op without one.
    pub fn release(&mut self, ep: E) {
        self.claims.retain(|c| c.1 != ep);
    }
}

/// Two devices' memory mapped at overlapping addresses ([`MapClaims`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapOverlap {
    pub want: HpaRange,
    pub owner: String,
    pub theirs: HpaRange,
}

impl fmt::Display for MapOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}+{:#x} overlaps the memory of {} at {:#x}+{:#x}",
            self.want.base, self.want.size, self.owner, self.theirs.base, self.theirs.size
        )
    }
}

/// The ranges devices map their memory at, keyed by `K` (one range per
/// key). Two devices committed at overlapping addresses must not both be
/// mapped (which one the guest reached would depend on the VMM's memory
/// map): the second commit is refused.
#[derive(Clone, Debug, Default)]
pub struct MapClaims<K> {
    /// (key, range, the owner's name for messages)
    maps: Vec<(K, HpaRange, String)>,
}

impl<K: PartialEq + Copy> MapClaims<K> {
    pub const fn new() -> Self {
        Self { maps: Vec::new() }
    }

    /// Reserves `range` for `key` (named `owner`); claiming again moves it.
    pub fn claim(&mut self, key: K, owner: &str, range: HpaRange) -> Result<(), MapOverlap> {
        if let Some((_, theirs, name)) = self
            .maps
            .iter()
            .find(|(k, r, _)| *k != key && r.overlaps(&range))
        {
            return Err(MapOverlap {
                want: range,
                owner: name.clone(),
                theirs: *theirs,
            });
        }
        self.release(key);
        self.maps.push((key, range, owner.into()));
        Ok(())
    }

    /// Drops `key`'s range; a no-op without one.
    pub fn release(&mut self, key: K) {
        self.maps.retain(|m| m.0 != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;
    const M256: u64 = 256 << 20;

    fn win(index: i32, base: u64, size: u64, ways: u32, targets_hb: bool) -> Window {
        Window {
            index,
            range: HpaRange::new(base, size),
            ways,
            enc_granularity: 2,
            targets_hb,
        }
    }

    /// A host bridge's decoder registers, as QEMU keeps them.
    struct Regs {
        words: Vec<u32>,
    }

    impl Regs {
        fn new(count: u32) -> Self {
            Self {
                words: vec![0; (hdm::block_len(count) / 4) as usize],
            }
        }

        fn decoder(mut self, n: u32, range: HpaRange, target: u8, control: DecoderControl) -> Self {
            self.write(hdm::base_low(n), range.base as u32);
            self.write(hdm::base_high(n), (range.base >> 32) as u32);
            self.write(hdm::size_low(n), range.size as u32);
            self.write(hdm::size_high(n), (range.size >> 32) as u32);
            self.write(hdm::target_or_skip_low(n), target.into());
            self.write(hdm::control(n), control.0);
            self
        }

        fn enabled(mut self) -> Self {
            self.write(hdm::GLOBAL_CONTROL, 2);
            self
        }
    }

    impl HdmRegisters for Regs {
        fn decoder_count(&self) -> u32 {
            (self.words.len() as u32 * 4 - hdm::block_len(0)) / 0x20
        }
        fn read(&self, offset: u32) -> u32 {
            self.words[(offset / 4) as usize]
        }
        fn write(&mut self, offset: u32, value: u32) {
            self.words[(offset / 4) as usize] = value;
        }
    }

    fn committed() -> DecoderControl {
        DecoderControl::default()
            .with(DecoderControl::COMMIT, 1)
            .with(DecoderControl::COMMITTED, 1)
    }

    #[test]
    fn find_window_takes_the_first_window_of_only_this_host_bridge() {
        let windows = [
            win(0, 4 * G, 4 * G, 1, false),
            win(1, 8 * G, 4 * G, 2, true),
            win(2, 12 * G, M256, 1, true),
            win(3, 16 * G, 4 * G, 1, true),
            win(4, 20 * G, 4 * G, 1, true),
        ];
        assert_eq!(find_window("cxl.1", true, &windows, G), Ok(&windows[3]));
        assert_eq!(find_window("cxl.1", true, &windows, M256), Ok(&windows[2]));
    }

    #[test]
    fn find_window_errors_say_what_to_add() {
        let e = find_window("cxl.1", false, &[win(0, 4 * G, 4 * G, 1, true)], M256).cloned();
        assert_eq!(
            e.unwrap_err().to_string(),
            "host bridge cxl.1 has no HDM decoders: add hdm_for_passthrough=on to its -device \
             pxb-cxl"
        );
        let e = find_window("cxl.1", true, &[win(0, 4 * G, 4 * G, 1, false)], M256).cloned();
        assert_eq!(
            e.unwrap_err().to_string(),
            "no CXL fixed memory window targets only host bridge cxl.1 with room for 256 MiB: \
             add e.g. -M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G"
        );
        let windows = [win(0, 4 * G, 4 * G, 2, true), win(1, 8 * G, M256, 1, true)];
        let e = find_window("cxl.1", true, &windows, G).unwrap_err();
        assert_eq!(
            e,
            WindowError::NoWindow {
                hb: "cxl.1".into(),
                size: G,
                interleaved: true,
                too_small: true
            }
        );
        assert!(e.to_string().contains(
            "1024 MiB (interleaved windows are not used) (windows targeting it are too small)"
        ));
        // A window at 0 was never placed.
        let e = find_window("cxl.1", true, &[win(0, 0, 4 * G, 1, true)], M256).cloned();
        assert!(matches!(
            e,
            Err(WindowError::NoWindow {
                too_small: true,
                ..
            })
        ));
    }

    #[test]
    fn window_at_holds_the_whole_range() {
        let windows = [win(0, 0, 8 * G, 1, true), win(1, 4 * G, 4 * G, 2, false)];
        assert_eq!(
            window_at(&windows, HpaRange::new(4 * G, M256)).map(|w| w.index),
            Some(1)
        );
        assert_eq!(
            window_at(&windows, HpaRange::new(8 * G - M256, M256)).map(|w| w.index),
            Some(1)
        );
        assert!(window_at(&windows, HpaRange::new(8 * G - M256, 2 * M256)).is_none());
        assert!(window_at(&windows, HpaRange::new(G, M256)).is_none());
        assert!(window_at(&windows, HpaRange::new(u64::MAX - M256, 2 * M256)).is_none());
    }

    #[test]
    fn passthrough_routes_windows_of_only_this_host_bridge() {
        let windows = [win(0, 4 * G, 4 * G, 1, true), win(1, 8 * G, 4 * G, 2, true)];
        assert!(passthrough_routes(&windows, HpaRange::new(4 * G, M256)));
        assert!(!passthrough_routes(&windows, HpaRange::new(8 * G, M256)));
        assert!(!passthrough_routes(&windows, HpaRange::new(7 * G, 2 * G)));
        let other = [win(0, 4 * G, 4 * G, 1, false)];
        assert!(!passthrough_routes(&other, HpaRange::new(4 * G, M256)));
    }

    #[test]
    fn commit_hb_decoder0_leaves_it_committed_locked_and_enabled() {
        let mut regs = Regs::new(4);
        let range = HpaRange::new(0x3_c000_0000, M256);
        commit_hb_decoder0(Some(&mut regs), "cxl.1", range, 3, 2).unwrap();
        assert_eq!(regs.read(hdm::base_low(0)), 0xc000_0000);
        assert_eq!(regs.read(hdm::base_high(0)), 3);
        assert_eq!(regs.read(hdm::size_low(0)), M256 as u32);
        assert_eq!(regs.read(hdm::size_high(0)), 0);
        assert_eq!(regs.read(hdm::target_or_skip_low(0)), 3);
        // IG 2, Lock On Commit, Commit, Committed.
        assert_eq!(regs.read(hdm::control(0)), 0x702);
        assert_eq!(regs.read(hdm::GLOBAL_CONTROL), 2);
        assert!(hb_routes(&regs, 3, range));
        // Again for the same range and port (reset): fine.
        commit_hb_decoder0(Some(&mut regs), "cxl.1", range, 3, 2).unwrap();
    }

    #[test]
    fn commit_hb_decoder0_refusals() {
        let range = HpaRange::new(4 * G, M256);
        let none: Option<&mut Regs> = None;
        assert_eq!(
            commit_hb_decoder0(none, "cxl.1", range, 0, 0)
                .unwrap_err()
                .to_string(),
            "host bridge cxl.1 has no HDM decoders (pxb-cxl,hdm_for_passthrough=on)"
        );
        let mut regs = Regs::new(1);
        for bad in [
            HpaRange::new(4 * G + 0x1000, M256),
            HpaRange::new(4 * G, 0),
            HpaRange::new(4 * G, M256 + 1),
        ] {
            assert_eq!(
                commit_hb_decoder0(Some(&mut regs), "cxl.1", bad, 0, 0),
                Err(HbCommitError::Unaligned(bad))
            );
        }
        assert_eq!(regs.read(hdm::control(0)), 0, "nothing written");
        let mut regs = Regs::new(1).decoder(0, HpaRange::new(5 * G, M256), 0, committed());
        let e = commit_hb_decoder0(Some(&mut regs), "cxl.1", range, 0, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HDM decoder 0 of host bridge cxl.1 already decodes 0x140000000+0x10000000 for \
             root port 0, not 0x100000000+0x10000000 for root port 0 (committed by the guest, \
             or for another device)"
        );
        assert_eq!(regs.read(hdm::base_high(0)), 1, "nothing written");
    }

    #[test]
    fn hb_decoder0_fits_a_free_or_identical_decoder() {
        let range = HpaRange::new(4 * G, M256);
        assert!(hb_decoder0_fits(&Regs::new(1), "hb", range, 1).is_ok());
        // Programmed but not committed: free.
        let regs = Regs::new(1).decoder(0, HpaRange::new(5 * G, M256), 2, DecoderControl(0));
        assert!(hb_decoder0_fits(&regs, "hb", range, 1).is_ok());
        let regs = Regs::new(1).decoder(0, range, 1, committed());
        assert!(hb_decoder0_fits(&regs, "hb", range, 1).is_ok());
        let busy = hb_decoder0_fits(&regs, "hb", range, 2).unwrap_err();
        assert_eq!((busy.target, busy.port), (1, 2));
        let bigger = HpaRange::new(4 * G, 2 * M256);
        assert!(hb_decoder0_fits(&regs, "hb", bigger, 1).is_err());
    }

    #[test]
    fn hb_routes_needs_every_link() {
        let range = HpaRange::new(4 * G + M256, M256);
        let whole = HpaRange::new(4 * G, G);
        let ok = || Regs::new(4).decoder(2, whole, 5, committed()).enabled();
        assert!(hb_routes(&ok(), 5, range));
        assert!(hb_routes(&ok(), 5, whole));
        // HDM decoding off.
        let mut regs = ok();
        regs.write(hdm::GLOBAL_CONTROL, 0);
        assert!(!hb_routes(&regs, 5, range));
        // Another port, not committed, interleaved, not covering.
        assert!(!hb_routes(&ok(), 4, range));
        let regs = Regs::new(4)
            .decoder(
                2,
                whole,
                5,
                DecoderControl(0).with(DecoderControl::COMMIT, 1),
            )
            .enabled();
        assert!(!hb_routes(&regs, 5, range));
        let regs = Regs::new(4)
            .decoder(2, whole, 5, committed().with(DecoderControl::IW, 1))
            .enabled();
        assert!(!hb_routes(&regs, 5, range));
        assert!(!hb_routes(&ok(), 5, HpaRange::new(5 * G - M256, 2 * M256)));
        assert!(!hb_routes(&ok(), 5, HpaRange::new(4 * G, 0)));
        // Low address bits [27:0] are reserved: ignored.
        let mut regs = ok();
        regs.write(hdm::base_low(2), 0x0fff_ffff);
        assert!(hb_routes(&regs, 5, range));
    }

    /// A host bridge path as an emulator reads it.
    struct FakePath {
        hdm_for_passthrough: bool,
        passthrough: bool,
        port: u8,
        regs: Regs,
        windows: Vec<Window>,
    }

    impl HostBridgePath for FakePath {
        type Regs = Regs;
        type Window = Window;
        fn hdm_for_passthrough(&self) -> bool {
            self.hdm_for_passthrough
        }
        fn passthrough(&self) -> bool {
            self.passthrough
        }
        fn port(&self) -> u8 {
            self.port
        }
        fn regs(&self) -> &Regs {
            &self.regs
        }
        fn regs_mut(&mut self) -> &mut Regs {
            &mut self.regs
        }
        fn windows(&self) -> Vec<Window> {
            self.windows.clone()
        }
    }

    /// A host bridge with decoders whose decoder 1 routes 4G..5G to port
    /// 5, and (were it passthrough) a window 8G..12G of only it.
    fn path() -> FakePath {
        FakePath {
            hdm_for_passthrough: true,
            passthrough: false,
            port: 5,
            regs: Regs::new(2)
                .decoder(1, HpaRange::new(4 * G, G), 5, committed())
                .enabled(),
            windows: vec![win(0, 8 * G, 4 * G, 1, true)],
        }
    }

    #[test]
    fn routes_asks_the_host_bridge_of_a_decoding_endpoint() {
        let range = HpaRange::new(4 * G, M256);
        assert!(routes(range, true, || Some(path())));
        // Memory Space off or not in D0; an empty range; no host bridge.
        assert!(!routes(range, false, || Some(path())));
        assert!(!routes(HpaRange::new(4 * G, 0), true, || Some(path())));
        assert!(!routes(range, true, || None::<FakePath>));
        // The host bridge's decoders say no.
        assert!(!routes(HpaRange::new(8 * G, M256), true, || Some(path())));
        let other_port = || Some(FakePath { port: 4, ..path() });
        assert!(!routes(range, true, other_port));
    }

    #[test]
    fn routes_of_a_passthrough_host_bridge_are_its_windows() {
        let passthrough = || {
            Some(FakePath {
                hdm_for_passthrough: false,
                passthrough: true,
                ..path()
            })
        };
        // Its registers are not asked (they would route 4G).
        assert!(!routes(HpaRange::new(4 * G, M256), true, passthrough));
        assert!(routes(HpaRange::new(8 * G, M256), true, passthrough));
        assert!(!routes(HpaRange::new(8 * G, 0), true, passthrough));
        assert!(!routes(HpaRange::new(8 * G, M256), false, passthrough));
    }

    #[test]
    fn routes_does_not_read_the_path_when_the_endpoint_decides() {
        let range = HpaRange::new(4 * G, M256);
        let unread = || -> Option<FakePath> { panic!("path read") };
        assert!(!routes(range, false, unread));
        assert!(!routes(HpaRange::new(4 * G, 0), true, unread));
    }

    #[test]
    fn hb_decoders_only_with_hdm_for_passthrough_and_not_passthrough() {
        assert!(hb_decoders(&mut path()).is_some());
        let mut p = FakePath {
            hdm_for_passthrough: false,
            ..path()
        };
        assert!(hb_decoders(&mut p).is_none());
        let mut p = FakePath {
            passthrough: true,
            ..path()
        };
        assert!(hb_decoders(&mut p).is_none());
        // What commit_hb_decoder0 writes goes to the path's registers.
        let mut p = path();
        let range = HpaRange::new(8 * G, M256);
        commit_hb_decoder0(hb_decoders(&mut p), "hb", range, 5, 0).unwrap();
        assert_eq!(p.regs.read(hdm::control(0)) & 0x400, 0x400);
    }

    #[test]
    fn hb_claims_one_endpoint_per_host_bridge() {
        let mut claims = HbClaims::<u8, u8>::new();
        let regs = Regs::new(1);
        let range = HpaRange::new(4 * G, M256);
        claims
            .claim(1, "cxl.1", &regs, 10, "vuc0", range, 0)
            .unwrap();
        claims
            .claim(1, "cxl.1", &regs, 10, "vuc0", range, 0)
            .unwrap();
        claims
            .claim(2, "cxl.2", &regs, 11, "vuc1", range, 0)
            .unwrap();
        let e = claims
            .claim(1, "cxl.1", &regs, 12, "vuc-samehb", range, 1)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HDM decoder 0 of host bridge cxl.1 is already pre-committed for vuc0 (one \
             pre-committed device per host bridge): put this device below another pxb-cxl with \
             its own window, or set precommit=off"
        );
        claims.release(10);
        claims.release(10);
        claims
            .claim(1, "cxl.1", &regs, 12, "vuc-samehb", range, 1)
            .unwrap();
    }

    #[test]
    fn hb_claims_a_committed_decoder_only_for_its_range_and_port() {
        let mut claims = HbClaims::<u8, u8>::new();
        let range = HpaRange::new(4 * G, M256);
        let regs = Regs::new(1).decoder(0, range, 0, committed());
        let bigger = HpaRange::new(4 * G, 2 * M256);
        assert!(matches!(
            claims.claim(1, "cxl.1", &regs, 10, "big", bigger, 0),
            Err(HbClaimError::Busy(_))
        ));
        claims
            .claim(1, "cxl.1", &regs, 11, "same", range, 0)
            .unwrap();
    }

    #[test]
    fn map_claims_refuse_overlaps_of_other_keys() {
        let mut maps = MapClaims::<u8>::new();
        let a = HpaRange::new(4 * G, M256);
        maps.claim(1, "accel0", a).unwrap();
        let e = maps
            .claim(2, "accel1", HpaRange::new(4 * G + 0x1000, M256))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "0x100001000+0x10000000 overlaps the memory of accel0 at 0x100000000+0x10000000"
        );
        maps.claim(2, "accel1", HpaRange::new(4 * G + M256, M256))
            .unwrap();
        // Moving one's own range is fine; the old place is free again.
        maps.claim(1, "accel0", HpaRange::new(5 * G, M256)).unwrap();
        // Over its own range, too (a device's mapping never conflicts with
        // itself).
        maps.claim(1, "accel0", HpaRange::new(5 * G, 2 * M256))
            .unwrap();
        maps.claim(3, "accel2", a).unwrap();
        maps.release(3);
        maps.release(3);
        maps.claim(4, "accel3", a).unwrap();
    }
}
