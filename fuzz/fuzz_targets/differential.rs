//! The differential oracle of `transform/tests/asyncify/differential.rs`, driven by libFuzzer:
//! the input bytes choose the module (wasm-smith), the options and the
//! unwinding modes; any divergence, invalid output or panic of the pass is a
//! crash. Run with `cargo +nightly fuzz run differential` from the repository
//! root.

#![no_main]

#[path = "../../transform/tests/asyncify/common/mod.rs"]
mod common;
#[path = "../../transform/tests/asyncify/differential/generate.rs"]
mod generate;
// The test reads the tallies and the saved module; the fuzzer only the verdict.
#[allow(dead_code)]
#[path = "../../transform/tests/asyncify/differential/oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(case) = generate::generate(&mut u) else {
        return; // bytes wasm-smith cannot turn into a module
    };
    if let oracle::Verdict::Failed { message, .. } = oracle::check(&case) {
        panic!("options: {}\n{message}", case.describe());
    }
});
