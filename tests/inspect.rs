//! `wasm-rewind inspect` and `instrument --report`: the facts they give about a
//! module that is not instrumented, about our output and about Binaryen's,
//! checked against what the test modules were written to contain.

#[path = "../transform/tests/asyncify/common/mod.rs"]
mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `run` -> `helper` -> `env.sleep`; `bystander` calls `env.other`; `run`
/// also calls `env.pure`; `leaf` calls nothing.
const CHAIN: &str = r#"
(module
  (import "env" "sleep" (func $sleep))
  (import "env" "other" (func $other (param i32) (result i32)))
  (import "env" "pure" (func $pure (result i32)))
  (memory (export "memory") 1)
  (func $helper (call $sleep))
  (func $run (export "run") (result i32) (call $helper) (drop (call $pure)) (i32.const 7))
  (func $bystander (export "bystander") (result i32) (call $other (i32.const 3)))
  (func $leaf (export "leaf") (result i32) (i32.const 1))
  (data (i32.const 16) "0123456789"))
"#;

/// The imports CHAIN is instrumented with: `env.pure` is not among them.
const CHAIN_IMPORTS: &str = "env.sleep,env.other";

/// A C-like module calling the WASIX checkpoint, `__stack_pointer` named in
/// the name section but not exported.
const WASIX: &str = r#"
(module
  (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $__stack_pointer (mut i32) (i32.const 4096))
  (global $__stack_low i32 (i32.const 1024))
  (func $setjmp_user (export "setjmp_user") (result i32)
    (call $checkpoint (i32.const 16) (i32.const 32)))
  (func $pure (export "pure") (result i32) (i32.const 3)))
"#;

fn wasm_rewind(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot start wasm-rewind")
}

/// Writes `wasm` to a temporary file and returns `inspect --json` on it.
fn inspect_json(wasm: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.wasm"), wasm).unwrap();
    let out = wasm_rewind(dir.path(), &["inspect", "m.wasm", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

/// Our instrumentation of `wat` through the CLI.
fn ours(wat: &str, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.wat"), wat).unwrap();
    let mut all = vec!["instrument", "in.wat", "out.wasm"];
    all.extend_from_slice(args);
    let out = wasm_rewind(dir.path(), &all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.path().join("out.wasm")).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn uninstrumented_corpus_module_gets_the_analysis() {
    let wasm = wat::parse_file("corpus/wat/call_indirect.wat").unwrap();
    let f = inspect_json(&wasm);
    assert_eq!(f["instrumented_by"], Value::Null);
    assert_eq!(f["basis"], "analysis");
    assert_eq!(f["functions"]["imported"], 2);
    assert_eq!(f["functions"]["defined"], 8);
    // From the source: these four reach env.f or env.g, directly or through
    // the table; `run` calls through the table; the other three are pure.
    let mut got = strings(&f["functions"]["instrumented"]);
    got.sort();
    assert_eq!(got, ["ask", "ask_twice", "run", "via_table", "wide_ask"]);
    assert_eq!(strings(&f["unwinding_imports"]), ["env.f", "env.g"]);
    assert_eq!(f["shim"]["wasix_imports"], serde_json::json!([]));
    assert_eq!(f["shim"]["ready"], true);
    assert_eq!(f["sizes"]["total"], wasm.len());
    assert_eq!(f["sizes"]["data"], 0);
}

#[test]
fn our_output_is_recognised_and_read_from_code() {
    let out = ours(CHAIN, &["--imports", CHAIN_IMPORTS]);
    let f = inspect_json(&out);
    assert_eq!(f["instrumented_by"], "wasm-rewind");
    assert_eq!(f["wasm_rewind_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(f["basis"], "code");
    assert_eq!(
        strings(&f["functions"]["instrumented"]),
        ["helper", "run", "bystander"]
    );
    // env.pure is called by an instrumented function but cannot unwind.
    assert_eq!(strings(&f["unwinding_imports"]), ["env.sleep", "env.other"]);
    assert_eq!(f["sizes"]["total"], out.len());
    // One data segment of 10 bytes: the section holds them plus its header.
    let data = f["sizes"]["data"].as_u64().unwrap();
    assert!((10..30).contains(&data), "data section {data} bytes");
    let custom: Vec<String> = f["sizes"]["custom_sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap().to_string())
        .collect();
    assert!(custom.contains(&"producers".to_string()), "{custom:?}");
}

#[test]
fn binaryen_output_is_recognised() {
    let wasm = common::to_wasm(CHAIN);
    let imports = format!("--pass-arg=asyncify-imports@{CHAIN_IMPORTS}");
    // With -g the names stay, so the functions can be checked by name.
    let named = common::instrument_binaryen(&wasm, &[&imports, "-g"]);
    let f = inspect_json(&named);
    assert_eq!(f["instrumented_by"], "binaryen");
    assert_eq!(f["wasm_rewind_version"], Value::Null);
    assert_eq!(
        strings(&f["functions"]["instrumented"]),
        ["helper", "run", "bystander"]
    );
    assert_eq!(strings(&f["unwinding_imports"]), ["env.sleep", "env.other"]);

    // Without names: found by the state global `asyncify_get_state` returns;
    // functions are shown by index (imports 0..3, so helper is $3).
    let bare = common::instrument_binaryen(&wasm, &[&imports]);
    let f = inspect_json(&bare);
    assert_eq!(f["instrumented_by"], "binaryen");
    assert_eq!(strings(&f["functions"]["instrumented"]), ["$3", "$4", "$5"]);
    assert_eq!(strings(&f["unwinding_imports"]), ["env.sleep", "env.other"]);
}

#[test]
fn shim_needs_for_a_wasix_module() {
    let plain = inspect_json(&common::to_wasm(WASIX));
    assert_eq!(
        strings(&plain["shim"]["wasix_imports"]),
        ["wasix_32v1.stack_checkpoint"]
    );
    assert_eq!(plain["shim"]["stack_pointer"], "name-section");
    assert_eq!(plain["shim"]["ready"], false);
    let problems = strings(&plain["shim"]["problems"]).join("\n");
    assert!(problems.contains("wasm-rewind instrument"), "{problems}");

    // Ours: __stack_pointer and the stack's bottom exported, the buffer in
    // memory 0, where Wasmer puts it too.
    let f = inspect_json(&ours(WASIX, &[]));
    assert_eq!(f["shim"]["stack_pointer"], "exported");
    assert_eq!(f["shim"]["buffer"], "memory0");
    assert_eq!(f["shim"]["stack_bottom"], "__stack_low");
    // From __stack_low (1024) up to the stack pointer's start (4096).
    assert_eq!(f["shim"]["c_stack_bytes"], 3072);
    assert_eq!(f["shim"]["memory_exported"], true);
    assert_eq!(f["shim"]["ready"], true, "{}", f["shim"]);
    assert_eq!(f["shim"]["wasmer_ready"], true, "{}", f["shim"]);
    assert_eq!(strings(&f["functions"]["instrumented"]), ["setjmp_user"]);

    // Ours in a memory of its own: fine for `run`, not for Wasmer.
    let f = inspect_json(&ours(WASIX, &["--secondary-memory=4"]));
    assert_eq!(f["shim"]["buffer"], "asyncify_memory");
    assert_eq!(f["shim"]["ready"], true, "{}", f["shim"]);
    assert_eq!(f["shim"]["wasmer_ready"], false);
    let problems = strings(&f["shim"]["problems"]).join("\n");
    assert!(problems.contains("Wasmer: the unwind buffer"), "{problems}");

    // Binaryen's: nothing exported for the shim.
    let bin = common::instrument_binaryen(WASIX, &["-g"]);
    let f = inspect_json(&bin);
    assert_eq!(f["shim"]["stack_pointer"], "name-section");
    assert_eq!(f["shim"]["stack_bottom"], "missing");
    assert!(f["shim"]["c_stack_bytes"].is_null(), "{}", f["shim"]);
    assert_eq!(f["shim"]["ready"], false);
    assert_eq!(f["shim"]["wasmer_ready"], false);
    let problems = strings(&f["shim"]["problems"]).join("\n");
    assert!(problems.contains("__stack_pointer"), "{problems}");
    assert!(problems.contains("Wasmer: it cannot tell"), "{problems}");
}

#[test]
fn human_output_has_one_line_per_fact() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.wat"), CHAIN).unwrap();
    let out = wasm_rewind(dir.path(), &["inspect", "in.wat"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "instrumented: no\n",
        "functions: 4 defined, 3 imported\n",
        "functions would be instrumented (default options): 3 (helper, run, bystander)\n",
        "imports that can unwind (default options): env.sleep, env.other, env.pure\n",
        "shim: not needed (no WASIX stack or context imports)\n",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
}

#[test]
fn inspect_of_a_bad_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"\0asm\x01\0\0\0\x01").unwrap();
    let out = wasm_rewind(dir.path(), &["inspect", "bad.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    let out = wasm_rewind(dir.path(), &["inspect", "missing.wasm"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn report_has_decisions_stats_and_facts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.wat"), CHAIN).unwrap();
    let out = wasm_rewind(
        dir.path(),
        &[
            "instrument",
            "in.wat",
            "out.wasm",
            "--imports",
            CHAIN_IMPORTS,
            "--report",
            "r.json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("r.json")).unwrap();
    let r: Value = serde_json::from_str(&text).expect("the report is JSON");
    let out_len = std::fs::metadata(dir.path().join("out.wasm"))
        .unwrap()
        .len();

    let m = &r["module"];
    assert_eq!(m["instrumented_by"], "wasm-rewind");
    assert_eq!(m["basis"], "pass");
    assert_eq!(strings(&m["unwinding_imports"]), ["env.sleep", "env.other"]);
    assert_eq!(m["sizes"]["total"], out_len);

    // One decision per defined function of the input, in index order
    // (imports take indices 0..3).
    let decisions = r["decisions"].as_array().unwrap();
    let summary: Vec<(u64, &str, bool)> = decisions
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().unwrap(),
                d["name"].as_str().unwrap(),
                d["instrumented"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (3, "helper", true),
            (4, "run", true),
            (5, "bystander", true),
            (6, "leaf", false)
        ]
    );
    let helper_reason = decisions[0]["reason"].as_str().unwrap();
    assert!(helper_reason.contains("env.sleep"), "{helper_reason}");

    let s = &r["stats"];
    assert_eq!(s["functions"], 4);
    assert_eq!(s["instrumented_functions"], 3);
    assert_eq!(s["resumable_call_sites"], 3);
    assert_eq!(s["output_size"], out_len);
    assert_eq!(s["input_size"], common::to_wasm(CHAIN).len());
}

#[test]
fn report_is_not_written_when_the_pass_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.wat"), CHAIN).unwrap();
    let out = wasm_rewind(
        dir.path(),
        &[
            "instrument",
            "in.wat",
            "out.wasm",
            "--memory",
            "nope",
            "--report",
            "r.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("r.json").exists());
    assert!(!dir.path().join("out.wasm").exists());
}

/// A module lowered with `--sjlj exceptions` says so (`sjlj`), needs no
/// shim, and is recognised as ours; an Asyncify output has no `sjlj`.
#[test]
fn a_module_lowered_to_exceptions_says_so() {
    let wat = r#"(module
      (import "wasix_32v1" "stack_checkpoint" (func $c (param i32 i32) (result i32)))
      (import "wasix_32v1" "stack_restore" (func $r (param i32 i64)))
      (memory (export "memory") 1)
      (global $__stack_pointer (mut i32) (i32.const 4096))
      (global $__stack_low i32 (i32.const 1024))
      (func (export "f") (result i32)
        (drop (call $c (i32.const 64) (i32.const 96)))
        (call $r (i32.const 64) (i64.const 1))
        (i32.const 0)))"#;
    let lowered = inspect_json(&ours(wat, &["--sjlj", "exceptions"]));
    assert_eq!(lowered["sjlj"], "exceptions");
    assert_eq!(lowered["instrumented_by"], "wasm-rewind");
    assert_eq!(lowered["shim"]["wasix_imports"], serde_json::json!([]));
    let unwinding = inspect_json(&ours(wat, &[]));
    assert_eq!(unwinding["sjlj"], Value::Null);
}
