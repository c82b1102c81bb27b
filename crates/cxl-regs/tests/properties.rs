//! Property tests of the register model.
//!
//! The central property: no sequence of register writes yields a committed
//! HDM decoder whose HPA range lies outside the window it was given (plus
//! the other rules `cxl_regs_scenario::check_hdm` states). The fuzz target in
//! `fuzz/` drives the same sessions with coverage guidance.

use cxl_regs::dvsec::{self, Capability, CxlDeviceDvsec, DvsecConfig, RangeInfo};
use cxl_regs_scenario::{run_hdm, Stats};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_write_sequence_breaks_the_decoder_rules(data in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Err(v) = run_hdm(&data) {
            prop_assert!(false, "step {}: {}", v.step, v.rule);
        }
    }

    #[test]
    fn dvsec_read_only_and_locked_fields_hold(
        writes in prop::collection::vec((0u16..0x48, 1u8..=4, any::<u32>()), 0..64),
        lock_at in 0usize..64,
    ) {
        let capability = Capability::default()
            .with(Capability::MEM_CAPABLE, 1)
            .with(Capability::HDM_COUNT, 1)
            .with(Capability::CXL_RESET_CAPABLE, 1);
        let range = RangeInfo { size: 1 << 30, active: true, media_type: 0, memory_class: 0 };
        let mut d = CxlDeviceDvsec::new(DvsecConfig { capability, ranges: [Some(range), None], ..Default::default() });
        let read_only = |d: &CxlDeviceDvsec| {
            [dvsec::CAPABILITY, dvsec::CAPABILITY2, dvsec::CAPABILITY3, dvsec::range_size_high(0), dvsec::range_size_low(0), dvsec::range_size_high(1), dvsec::range_size_low(1)]
                .map(|o| d.read(o, 4))
        };
        let lockable = |d: &CxlDeviceDvsec| (d.read(dvsec::CONTROL, 2), d.range_base(0), d.range_base(1));
        let fixed = read_only(&d);
        let mut frozen = None;
        for (i, (offset, size, value)) in writes.into_iter().enumerate() {
            if i == lock_at {
                d.write(dvsec::LOCK, 2, 1);
                frozen = Some(lockable(&d));
            }
            d.write(offset, size, value);
            prop_assert_eq!(read_only(&d)[0] & 0xffff, fixed[0] & 0xffff);
            prop_assert_eq!(&read_only(&d)[1..], &fixed[1..]);
            prop_assert!(d.control().is_set(dvsec::Control::IO_ENABLE));
            if let Some(f) = frozen {
                prop_assert!(d.config_locked());
                prop_assert_eq!(lockable(&d), f);
            }
        }
    }
}

/// The property above only means something if its sessions reach commits,
/// refusals for the window, decommits and resets. Check that they do.
#[test]
fn sessions_explore_commits_and_refusals() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut total = Stats::default();
    for _ in 0..500 {
        let data: Vec<u8> = (0..300).map(|_| next_byte(&mut state)).collect();
        let s = run_hdm(&data).expect("no violation");
        total.writes += s.writes;
        total.commits += s.commits;
        total.failed_commits += s.failed_commits;
        total.outside_window += s.outside_window;
        total.decommits += s.decommits;
        total.resets += s.resets;
    }
    eprintln!("{total:?}");
    assert!(total.commits > 500, "{total:?}");
    assert!(total.outside_window > 100, "{total:?}");
    assert!(total.decommits > 100, "{total:?}");
    assert!(total.resets > 100, "{total:?}");
}

/// xorshift64: a fixed, dependency-free byte stream.
fn next_byte(state: &mut u64) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 32) as u8
}
