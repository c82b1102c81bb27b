//! VM test `host-driver-ept-memtype`: the memory type KVM on Intel VT-x
//! would give the guest's CXL window, evaluated from the facts the host
//! kernel itself uses (issue 16). No Intel hardware runs here, so the test
//! does not run VT-x: it reads, inside a guest that binds `cxl-accel` to
//! vfio-cxl-pci, what `__kvm_is_mmio_pfn()` (arch/x86/kvm/mmu/spte.c,
//! 7.3.4 lines 109-128) reads for sampled PFNs of the region, and applies
//! that predicate and `vmx_get_mt_mask()` (arch/x86/kvm/vmx/vmx.c ~7791)
//! here:
//!
//! - `pfn_valid()`, `is_zero_pfn()`, `PageReserved()`, `pat_enabled()`:
//!   test module kvm-memtype-facts (guest-tests/guest-driver);
//! - the host PAT type (`lookup_memtype()`): debugfs
//!   `x86/pat_memtype_list`, and `/proc/iomem`'s System RAM, whose pages
//!   take their type from page flags instead;
//! - E820 RAM (`e820__mapped_raw_any()`, the firmware table):
//!   `/sys/firmware/memmap`.
//!
//! Samples, on a 2 GiB device: the first and last page, every 1 GiB
//! boundary inside, and the middle page. Every one must come out
//! write-back.

use crate::env::RunSpec;
use crate::guestdriver::guest_driver_dir;
use crate::hostdriver::{base_payload, base_spec, common_checks_of, dmesg_sh, with_lib, GUEST_DIR};
use crate::payload::Source;
use crate::runner::RunOutcome;
use crate::sysfs::{self, parse_u64};

pub const NAME: &str = "host-driver-ept-memtype";
const MODULE: &str = "kvm-memtype-facts";
const PAGE_SHIFT: u32 = 12;
const GIB: u64 = 1 << 30;
/// 2 GiB: samples at a 1 GiB boundary, and 1 GiB compound pages (the
/// region is 1 GiB-aligned in the window). Only bound, never opened: no
/// clear, and the memory-backend file stays sparse.
const MIB: u64 = 2048;

/// Samples the driver's range, reports the facts (see the module doc).
const FACTS_SH: &str = r#"range=$(vfio_cxl_range) || { echo "no vfio-cxl range in /proc/iomem"; exit 1; }
vfiocxl_fact memtype.range "$range"
start=$((0x${range%-*})); end=$((0x${range#*-}))
pfns=$(printf '0x%x' $((start >> 12)))
off=$((1 << 30))
while [ $off -le $((end - start)) ]; do
	pfns="$pfns,$(printf '0x%x' $(((start + off) >> 12)))"; off=$((off + (1 << 30)))
done
pfns="$pfns,$(printf '0x%x' $(((start + (end - start + 1) / 2) >> 12))),$(printf '0x%x' $((end >> 12)))"
insmod $VC/@MODULE@.ko pfns=$pfns || exit 1
dmesg_facts "kvm_memtype_facts: " memtype.kernel
rmmod @MODULE@ || exit 1
mount_debugfs || exit 1
while IFS= read -r l; do vfiocxl_fact memtype.pat "$l"; done </sys/kernel/debug/x86/pat_memtype_list
for d in /sys/firmware/memmap/*; do
	read -r s <$d/start; read -r e <$d/end; read -r t <$d/type
	vfiocxl_fact memtype.e820 "$s $e $t"
done
# Top-level /proc/iomem lines (not indented) are the RAM.
while IFS= read -r l; do
	case "$l" in [0-9a-f]*" : System RAM") vfiocxl_fact memtype.sysram "${l%% *}" ;; esac
done </proc/iomem
"#;

pub fn spec() -> RunSpec {
    let payload = base_payload(NAME)
        .file(
            &format!("{GUEST_DIR}/{MODULE}.ko"),
            0o644,
            Source::Path {
                src: guest_driver_dir().join(format!("{MODULE}.ko")),
            },
        )
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step(
            "memtype-facts",
            &with_lib(&FACTS_SH.replace("@MODULE@", MODULE)),
        )
        .step("report-dmesg", &dmesg_sh());
    base_spec(payload, MIB, 4096)
}

/// x86 page cache modes, as `pat_memtype_list` names them (`cattr_name()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    WriteBack,
    WriteCombining,
    UncachedMinus,
    Uncached,
    WriteThrough,
    WriteProtected,
}

impl CacheMode {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "write-back" => Self::WriteBack,
            "write-combining" => Self::WriteCombining,
            "uncached-minus" => Self::UncachedMinus,
            "uncached" => Self::Uncached,
            "write-through" => Self::WriteThrough,
            "write-protected" => Self::WriteProtected,
            _ => return None,
        })
    }

    /// `pat_pfn_immune_to_uc_mtrr()`: UC, UC- and WC.
    fn immune_to_uc_mtrr(self) -> bool {
        matches!(
            self,
            Self::Uncached | Self::UncachedMinus | Self::WriteCombining
        )
    }
}

/// What kvm-memtype-facts reports of one PFN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfnFacts {
    pub pfn: u64,
    pub valid: bool,
    pub zero: bool,
    pub reserved: bool,
}

/// A half-open physical range `[start, end)`.
type Span = (u64, u64);

/// Everything the predicate reads, as the guest reported it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    pub pat_enabled: bool,
    pub pfns: Vec<PfnFacts>,
    /// The PAT memtype tree, in `pat_memtype_list` order.
    pub memtypes: Vec<(Span, CacheMode)>,
    pub e820_ram: Vec<Span>,
    pub system_ram: Vec<Span>,
}

fn flag(words: &[&str], name: &str) -> Option<bool> {
    let i = words.iter().position(|w| *w == name)?;
    match *words.get(i + 1)? {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// `a-b` (hex, inclusive, as /proc/iomem writes it) as `[a, b + 1)`.
fn iomem_span(s: &str) -> Option<Span> {
    let (a, b) = s.split_once('-')?;
    let a = u64::from_str_radix(a, 16).ok()?;
    let b = u64::from_str_radix(b, 16).ok()?;
    Some((a, b.checked_add(1)?))
}

impl Facts {
    /// Parses the `memtype.*` facts; a line that does not parse is an error.
    pub fn parse(
        kernel: &[&str],
        pat: &[&str],
        e820: &[&str],
        sysram: &[&str],
    ) -> Result<Self, String> {
        let mut f = Facts::default();
        let mut saw_pat = false;
        for l in kernel {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.first() {
                Some(&"pat_enabled") => {
                    f.pat_enabled = flag(&w, "pat_enabled").ok_or(format!("bad line {l:?}"))?;
                    saw_pat = true;
                }
                Some(&"pfn") => {
                    let bad = || format!("bad line {l:?}");
                    f.pfns.push(PfnFacts {
                        pfn: w.get(1).and_then(|s| parse_u64(s)).ok_or_else(bad)?,
                        valid: flag(&w, "valid").ok_or_else(bad)?,
                        zero: flag(&w, "zero").ok_or_else(bad)?,
                        reserved: flag(&w, "reserved").ok_or_else(bad)?,
                    });
                }
                _ => return Err(format!("unexpected kvm-memtype-facts line {l:?}")),
            }
        }
        if !saw_pat {
            return Err("kvm-memtype-facts did not report pat_enabled".into());
        }
        for l in pat.iter().filter(|l| **l != "PAT memtype list:") {
            // PAT: [mem 0x%016Lx-0x%016Lx] name (end exclusive)
            let parsed = l
                .strip_prefix("PAT: [mem ")
                .and_then(|r| r.split_once("] "))
                .and_then(|(range, name)| {
                    let (a, b) = range.split_once('-')?;
                    Some((
                        (parse_u64(a)?, parse_u64(b)?),
                        CacheMode::parse(name.trim())?,
                    ))
                });
            f.memtypes
                .push(parsed.ok_or(format!("bad pat_memtype_list line {l:?}"))?);
        }
        for l in e820 {
            // start end type (inclusive end), from /sys/firmware/memmap/N
            let mut w = l.splitn(3, ' ');
            let (Some(a), Some(b), Some(t)) = (w.next(), w.next(), w.next()) else {
                return Err(format!("bad memmap line {l:?}"));
            };
            let (Some(a), Some(b)) = (parse_u64(a), parse_u64(b)) else {
                return Err(format!("bad memmap line {l:?}"));
            };
            if t == "System RAM" {
                f.e820_ram.push((a, b + 1));
            }
        }
        for l in sysram {
            f.system_ram
                .push(iomem_span(l).ok_or(format!("bad System RAM line {l:?}"))?);
        }
        Ok(f)
    }

    fn overlaps(spans: &[Span], at: Span) -> bool {
        spans.iter().any(|&(a, b)| a < at.1 && at.0 < b)
    }

    /// `lookup_memtype()` (arch/x86/mm/pat/memtype.c ~655): the ISA hole
    /// is untracked (WB); System RAM takes its type from the page (not
    /// modelled: None); else the first memtype entry over the page; else
    /// UC-.
    pub fn lookup_memtype(&self, paddr: u64) -> Option<CacheMode> {
        let page = (paddr, paddr + (1 << PAGE_SHIFT));
        if (0xa_0000..0x10_0000).contains(&paddr) {
            return Some(CacheMode::WriteBack);
        }
        if Self::overlaps(&self.system_ram, page) {
            return None;
        }
        Some(
            self.memtypes
                .iter()
                .find(|(span, _)| Self::overlaps(&[*span], page))
                .map_or(CacheMode::UncachedMinus, |(_, m)| *m),
        )
    }

    /// `__kvm_is_mmio_pfn()`. None when it depends on what is not modelled.
    pub fn kvm_is_mmio_pfn(&self, p: &PfnFacts) -> Option<bool> {
        let paddr = p.pfn << PAGE_SHIFT;
        if p.valid {
            if p.zero || !p.reserved {
                return Some(false);
            }
            if !self.pat_enabled {
                return Some(true);
            }
            return self.lookup_memtype(paddr).map(CacheMode::immune_to_uc_mtrr);
        }
        Some(!Self::overlaps(
            &self.e820_ram,
            (paddr, paddr + (1 << PAGE_SHIFT) - 1),
        ))
    }
}

/// The EPT memory type `vmx_get_mt_mask()` gives a PFN: UC for host MMIO,
/// WB otherwise (with IPAT unless the VM has non-coherent DMA, when the
/// guest's PAT then applies on top of WB).
pub fn ept_memtype(is_mmio: bool) -> &'static str {
    if is_mmio {
        "UC"
    } else {
        "WB"
    }
}

/// The PFNs the guest was to sample in `[start, end]`: first, every 1 GiB
/// boundary inside, middle, last.
pub fn samples(start: u64, end: u64) -> Vec<u64> {
    let len = end - start + 1;
    let mut v = vec![start >> PAGE_SHIFT];
    v.extend(
        (1..)
            .map(|g| g * GIB)
            .take_while(|&o| o <= end - start)
            .map(|o| (start + o) >> PAGE_SHIFT),
    );
    v.push((start + len / 2) >> PAGE_SHIFT);
    v.push(end >> PAGE_SHIFT);
    v
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    common_checks_of(outcome, 1..=1, MIB, &[], &mut p);
    let r = &outcome.report;
    let Some((start, end)) = r.fact("memtype.range").and_then(iomem_span) else {
        p.push(format!("no vfio-cxl range: {:?}", r.fact("memtype.range")));
        return p;
    };
    let facts = match Facts::parse(
        &r.facts("memtype.kernel"),
        &r.facts("memtype.pat"),
        &r.facts("memtype.e820"),
        &r.facts("memtype.sysram"),
    ) {
        Ok(f) => f,
        Err(e) => {
            p.push(e);
            return p;
        }
    };
    println!(
        "  {NAME}: region {start:#x}-{:#x}, pat_enabled {}",
        end - 1,
        facts.pat_enabled
    );
    for pfn in samples(start, end - 1) {
        let Some(f) = facts.pfns.iter().find(|f| f.pfn == pfn) else {
            p.push(format!("no facts for sampled pfn {pfn:#x}"));
            continue;
        };
        let memtype = facts.lookup_memtype(pfn << PAGE_SHIFT);
        let verdict = facts.kvm_is_mmio_pfn(f);
        println!(
            "  {NAME}: pfn {pfn:#x} valid {} reserved {} PAT {memtype:?} -> host MMIO {verdict:?} -> EPT {}",
            f.valid,
            f.reserved,
            verdict.map_or("?", ept_memtype)
        );
        match verdict {
            Some(false) => {}
            Some(true) => p.push(format!(
                "pfn {pfn:#x}: KVM would take it for host MMIO, EPT memory type UC (valid {}, reserved {}, PAT {memtype:?})",
                f.valid, f.reserved
            )),
            None => p.push(format!("pfn {pfn:#x}: in System RAM, not device memory")),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 0x4_9000_0000;

    fn facts(valid: bool, reserved: bool, pat: &[&str]) -> Facts {
        let pfn = format!(
            "pfn {:#x} valid {} zero 0 reserved {}",
            START >> 12,
            valid as u8,
            reserved as u8
        );
        let pat: Vec<&str> = ["PAT memtype list:"].iter().chain(pat).copied().collect();
        Facts::parse(
            &["pat_enabled 1", &pfn],
            &pat,
            &["0x0 0x9fbff System RAM", "0x100000 0x7ffdffff System RAM"],
            &["00100000-7ffdffff"],
        )
        .unwrap()
    }

    fn verdict(f: &Facts) -> Option<bool> {
        f.kvm_is_mmio_pfn(&f.pfns[0])
    }

    const WB: &str = "PAT: [mem 0x0000000490000000-0x00000004a0000000] write-back";

    #[test]
    fn a_pfn_without_struct_page_outside_e820_ram_is_mmio_whatever_pat_says() {
        // The driver before issue 16: memremap() WB, no struct pages.
        assert_eq!(verdict(&facts(false, false, &[WB])), Some(true));
        assert_eq!(ept_memtype(true), "UC");
    }

    #[test]
    fn a_reserved_page_with_write_back_pat_is_not_mmio() {
        assert_eq!(verdict(&facts(true, true, &[WB])), Some(false));
        assert_eq!(ept_memtype(false), "WB");
    }

    #[test]
    fn a_reserved_page_without_a_memtype_entry_is_uc_minus_so_mmio() {
        let f = facts(true, true, &[]);
        assert_eq!(f.lookup_memtype(START), Some(CacheMode::UncachedMinus));
        assert_eq!(verdict(&f), Some(true));
        let uc = "PAT: [mem 0x0000000490000000-0x00000004a0000000] uncached";
        assert_eq!(verdict(&facts(true, true, &[uc])), Some(true));
    }

    #[test]
    fn a_page_that_is_not_reserved_is_not_mmio() {
        assert_eq!(verdict(&facts(true, false, &[])), Some(false));
    }

    #[test]
    fn without_pat_every_reserved_page_is_mmio() {
        let mut f = facts(true, true, &[WB]);
        f.pat_enabled = false;
        assert_eq!(verdict(&f), Some(true));
    }

    #[test]
    fn a_pfn_without_struct_page_in_e820_ram_is_not_mmio() {
        let f = Facts::parse(
            &["pat_enabled 1", "pfn 0x200 valid 0 zero 0 reserved 0"],
            &[],
            &["0x100000 0x7ffdffff System RAM"],
            &[],
        )
        .unwrap();
        assert_eq!(verdict(&f), Some(false));
    }

    #[test]
    fn system_ram_memtypes_are_not_modelled() {
        let f = facts(true, true, &[]);
        assert_eq!(f.lookup_memtype(0x20_0000), None);
    }

    #[test]
    fn samples_cover_first_last_every_gib_and_the_middle() {
        let s = samples(START, START + (3 << 30) - 1);
        assert_eq!(
            s,
            vec![
                START >> 12,
                (START + GIB) >> 12,
                (START + 2 * GIB) >> 12,
                (START + (3 << 29)) >> 12,
                (START + (3 << 30) - 1) >> 12
            ]
        );
        assert_eq!(samples(START, START + (256 << 20) - 1).len(), 3);
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(Facts::parse(
            &["pfn 0x1 valid 2 zero 0 reserved 0", "pat_enabled 1"],
            &[],
            &[],
            &[]
        )
        .is_err());
        assert!(Facts::parse(&["pfn 0x1 valid 1 zero 0 reserved 0"], &[], &[], &[]).is_err());
        assert!(Facts::parse(
            &["pat_enabled 1"],
            &["PAT: [mem 0x0-0x1000] purple"],
            &[],
            &[]
        )
        .is_err());
    }
}
