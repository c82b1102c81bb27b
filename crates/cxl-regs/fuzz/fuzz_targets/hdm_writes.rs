//! No sequence of HDM decoder register writes may break the rules of
//! `cxl_regs_scenario::check_hdm` (above all: no committed decoder outside
//! its window). See docs/testing.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(v) = cxl_regs_scenario::run_hdm(data) {
        panic!("step {}: {}", v.step, v.rule);
    }
});
