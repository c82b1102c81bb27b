//! Replays the committed fuzz corpus (`fuzz/corpus/hdm_writes`), so every
//! test run checks the inputs the fuzzer found interesting, with or without
//! cargo-fuzz installed.

use cxl_regs_scenario::run_hdm;

#[test]
fn fuzz_corpus_holds_the_decoder_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/hdm_writes");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(v) = run_hdm(&data) {
            panic!("{}: step {}: {}", path.display(), v.step, v.rule);
        }
        replayed += 1;
    }
    assert!(
        replayed >= 100,
        "only {replayed} corpus inputs in {}",
        dir.display()
    );
}
