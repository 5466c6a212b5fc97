//! Turning WAT or wasm into instrumented modules, with our pass and with
//! `wasm-opt --asyncify`.

use std::process::Command;

use super::wasm_opt;

/// WAT or wasm bytes to wasm bytes.
pub fn to_wasm(wat_or_wasm: impl AsRef<[u8]>) -> Vec<u8> {
    wat::parse_bytes(wat_or_wasm.as_ref())
        .unwrap_or_else(|e| panic!("test input does not parse: {e}"))
        .into_owned()
}

/// Instruments with our pass.
pub fn instrument_ours(
    wat_or_wasm: impl AsRef<[u8]>,
    options: &wasm_rewind_transform::Options,
) -> Vec<u8> {
    let wasm = to_wasm(wat_or_wasm);
    let out = wasm_rewind_transform::instrument(&wasm, options)
        .unwrap_or_else(|e| panic!("wasm-rewind failed to instrument: {e}"));
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&out.wasm)
        .unwrap_or_else(|e| panic!("wasm-rewind produced an invalid module: {e}"));
    out.wasm
}

/// Our options equivalent to `--pass-arg=asyncify-imports@<imports>`.
pub fn ours_with_imports(imports: &[&str]) -> wasm_rewind_transform::Options {
    wasm_rewind_transform::Options {
        imports: Some(imports.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// The features every input may use; Binaryen needs them spelled out.
const BINARYEN_FEATURES: &[&str] = &[
    "--enable-mutable-globals",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-bulk-memory",
    "--enable-multivalue",
    "--enable-simd",
];

/// Runs `wasm-opt in.wasm --asyncify <extra args> -o out.wasm` (with the feature
/// flags the corpus needs) and returns the output. Panics, with wasm-opt's stderr,
/// when the tool is missing or fails: a missing tool is a failed test, not a skip.
pub fn instrument_binaryen(wat_or_wasm: impl AsRef<[u8]>, extra_args: &[&str]) -> Vec<u8> {
    let wasm = to_wasm(wat_or_wasm);
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("in.wasm");
    let output = dir.path().join("out.wasm");
    std::fs::write(&input, &wasm).expect("write wasm-opt input");
    let mut cmd = Command::new(wasm_opt());
    cmd.arg(&input)
        .args(BINARYEN_FEATURES)
        .arg("--asyncify")
        .args(extra_args)
        .arg("-o")
        .arg(&output);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} (install binaryen or set WASM_OPT): {e}",
            wasm_opt()
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&output).expect("read wasm-opt output")
}

/// Which tool instrumented a module (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `wasm-opt --asyncify`.
    Binaryen,
    /// `wasm_rewind_transform::instrument`.
    Ours,
}

/// Instruments `wat` with both tools so that only `imports` may unwind and calls
/// `check` on each result, Binaryen's first (so the harness itself is proven even
/// while our pass is unfinished).
///
/// `WASM_REWIND_TEST_TOOLS=binaryen` runs only Binaryen's half: a debugging aid
/// for the harness itself, never a default (both tools always run otherwise).
pub fn with_both(wat: &str, imports: &[&str], mut check: impl FnMut(Tool, &[u8])) {
    let list = format!("--pass-arg=asyncify-imports@{}", imports.join(","));
    let binaryen = instrument_binaryen(wat, &[&list]);
    check(Tool::Binaryen, &binaryen);
    if binaryen_only() {
        return;
    }
    let ours = instrument_ours(wat, &ours_with_imports(imports));
    check(Tool::Ours, &ours);
}

/// Whether `WASM_REWIND_TEST_TOOLS=binaryen` asks to test only the harness.
pub fn binaryen_only() -> bool {
    std::env::var("WASM_REWIND_TEST_TOOLS").is_ok_and(|v| v == "binaryen")
}
