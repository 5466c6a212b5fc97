//! The `wasm-rewind` binary as users run it: flags, files, messages, exit codes.
//!
//! Each test writes a small inline WAT module to a fresh temporary directory,
//! runs the built binary there, and checks the effect of one flag through the
//! `--stats` numbers and the shape of the output module (exports, imports,
//! memories, names). What the instrumented code does at run time is the
//! business of the library's tests (`transform/tests/asyncify`).

mod process;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wasmtime::{Config, Engine, ExternType, Module, ValType};

/// The five functions every instrumented module exports.
const ASYNCIFY_EXPORTS: &[&str] = &[
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_stop_rewind",
    "asyncify_get_state",
];

/// `run` -> `helper` -> `env.sleep`, a bystander calling `env.other`, and a
/// leaf that calls nothing.
const CHAIN: &str = r#"
(module
  (import "env" "sleep" (func $sleep))
  (import "env" "other" (func $other))
  (memory (export "memory") 1)
  (func $helper (call $sleep))
  (func $run (export "run") (result i32) (call $helper) (i32.const 7))
  (func $bystander (export "bystander") (call $other))
  (func $leaf (export "leaf") (result i32) (i32.const 1)))
"#;

/// What one run of the binary left behind.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success, stderr:\n{}", self.stderr);
        self
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "wrong exit code, stderr:\n{}", self.stderr);
        self
    }

    fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is not UTF-8")
    }

    /// The value of a `--stats` line, `key: value`.
    fn stat(&self, key: &str) -> String {
        let prefix = format!("{key}: ");
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{key}` line in stderr:\n{}", self.stderr))
            .to_string()
    }

    /// `functions instrumented: N/M` as (N, M).
    fn instrumented(&self) -> (usize, usize) {
        let v = self.stat("functions instrumented");
        let (n, m) = v.split_once('/').expect("N/M");
        (n.parse().unwrap(), m.parse().unwrap())
    }
}

/// A temporary directory to run the binary in.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> &Self {
        std::fs::write(self.path(name), contents).unwrap();
        self
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name))
            .unwrap_or_else(|e| panic!("cannot read output `{name}`: {e}"))
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Names of the files in the directory, sorted, so tests can assert that
    /// a failure left no temporary or partial file behind.
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        run_in(self.0.path(), args, stdin)
    }
}

fn run_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start wasm-rewind");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("killed by a signal"),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `wat` as `in.wat`, runs `instrument in.wat out.wasm --stats ARGS`
/// and returns the run and, on success, the output module.
fn instrument(wat: &str, args: &[&str]) -> (Run, Option<Vec<u8>>) {
    let dir = Dir::new();
    dir.write("in.wat", wat);
    let mut all = vec!["instrument", "in.wat", "out.wasm", "--stats"];
    all.extend_from_slice(args);
    let run = dir.run(&all);
    let out = (run.code == 0).then(|| dir.read("out.wasm"));
    (run, out)
}

/// Like [`instrument`], but the run must succeed.
fn instrument_ok(wat: &str, args: &[&str]) -> (Run, Vec<u8>) {
    let (run, out) = instrument(wat, args);
    run.assert_ok();
    (run, out.unwrap())
}

fn engine() -> Engine {
    let mut config = Config::new();
    config.wasm_memory64(true).wasm_multi_memory(true);
    Engine::new(&config).unwrap()
}

/// The output compiled by wasmtime, which also proves it valid.
fn module(wasm: &[u8]) -> Module {
    Module::new(&engine(), wasm).expect("the output is not a valid module")
}

fn export_names(wasm: &[u8]) -> Vec<String> {
    module(wasm)
        .exports()
        .map(|e| e.name().to_string())
        .collect()
}

fn export_type(wasm: &[u8], name: &str) -> Option<ExternType> {
    module(wasm).get_export(name)
}

/// `module.name` and kind of every import.
fn imports(wasm: &[u8]) -> Vec<(String, ExternType)> {
    module(wasm)
        .imports()
        .map(|i| (format!("{}.{}", i.module(), i.name()), i.ty()))
        .collect()
}

fn wat_text(wasm: &[u8]) -> String {
    wasmprinter::print_bytes(wasm).unwrap()
}

// ---------------------------------------------------------------------------
// Inputs and outputs
// ---------------------------------------------------------------------------

#[test]
fn wat_input_positional_output() {
    let (run, out) = instrument_ok(CHAIN, &[]);
    // Default: every import may unwind: run, helper, bystander.
    assert_eq!(run.instrumented(), (3, 4));
    let exports = export_names(&out);
    for name in ASYNCIFY_EXPORTS {
        assert!(
            exports.iter().any(|e| e == name),
            "{name} missing: {exports:?}"
        );
    }
    // The program's own exports survive.
    assert!(exports.iter().any(|e| e == "run"));
}

#[test]
fn binary_input_and_dash_o_output() {
    let dir = Dir::new();
    dir.write("in.wasm", wat::parse_str(CHAIN).unwrap());
    dir.run(&["instrument", "in.wasm", "-o", "sub.wasm"])
        .assert_ok();
    assert!(export_names(&dir.read("sub.wasm")).contains(&"asyncify_get_state".to_string()));
    // --output is the long form.
    dir.run(&["instrument", "in.wasm", "--output", "long.wasm"])
        .assert_ok();
    assert_eq!(dir.read("sub.wasm"), dir.read("long.wasm"));
}

#[test]
fn positional_output_and_dash_o_conflict() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    dir.run(&["instrument", "in.wat", "a.wasm", "-o", "b.wasm"])
        .assert_code(2);
    assert!(!dir.exists("a.wasm") && !dir.exists("b.wasm"));
}

#[test]
fn stdin_to_stdout() {
    let dir = Dir::new();
    let run = dir.run_with_stdin(&["instrument", "-"], Some(CHAIN.as_bytes()));
    run.assert_ok();
    assert!(run.stdout.starts_with(b"\0asm"), "stdout is not a module");
    assert!(export_names(&run.stdout).contains(&"asyncify_start_unwind".to_string()));
    // `-` as the output is stdout too.
    let run = dir.run_with_stdin(
        &["instrument", "-", "-"],
        Some(&wat::parse_str(CHAIN).unwrap()),
    );
    run.assert_ok();
    assert!(run.stdout.starts_with(b"\0asm"));
}

#[test]
fn output_replaces_an_existing_file() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN).write("out.wasm", b"old");
    dir.run(&["instrument", "in.wat", "out.wasm"]).assert_ok();
    assert!(dir.read("out.wasm").starts_with(b"\0asm"));
    assert_eq!(dir.listing(), ["in.wat", "out.wasm"]);
}

// ---------------------------------------------------------------------------
// What can unwind: --imports, --ignore-imports, --ignore-indirect
// ---------------------------------------------------------------------------

/// `calls_a` calls only `env.a`, `calls_b` only `env.b`.
const TWO_IMPORTS: &str = r#"
(module
  (import "env" "a" (func $a))
  (import "env" "b" (func $b))
  (memory 1)
  (func $calls_a (export "calls_a") (call $a))
  (func $calls_b (export "calls_b") (call $b)))
"#;

#[test]
fn imports_limits_what_unwinds() {
    let (run, _) = instrument_ok(TWO_IMPORTS, &[]);
    assert_eq!(run.instrumented(), (2, 2));
    let (run, _) = instrument_ok(TWO_IMPORTS, &["--imports", "env.a"]);
    assert_eq!(run.instrumented(), (1, 2));
    assert_eq!(run.stat("resumable call sites"), "1");
    // The one instrumented is `calls_a`: --explain says so.
    let (run, _) = instrument_ok(TWO_IMPORTS, &["--imports", "env.a", "--explain", "calls_b"]);
    let text = run.stdout_text();
    assert!(text.contains("`calls_b` is not instrumented"), "{text}");
}

#[test]
fn imports_comma_lists_wildcards_repeats_and_files() {
    let (run, _) = instrument_ok(TWO_IMPORTS, &["--imports", "env.a,env.b"]);
    assert_eq!(run.instrumented(), (2, 2));
    let (run, _) = instrument_ok(TWO_IMPORTS, &["--imports", "env.a", "--imports", "env.b"]);
    assert_eq!(run.instrumented(), (2, 2));
    let (run, _) = instrument_ok(TWO_IMPORTS, &["--imports", "*.b"]);
    assert_eq!(run.instrumented(), (1, 2));

    let dir = Dir::new();
    dir.write("in.wat", TWO_IMPORTS)
        .write("imports.txt", "env.b\n\n");
    let run = dir.run(&[
        "instrument",
        "in.wat",
        "out.wasm",
        "--stats",
        "--imports",
        "@imports.txt",
    ]);
    run.assert_ok();
    assert_eq!(run.instrumented(), (1, 2));
}

#[test]
fn missing_list_file_names_the_file() {
    let dir = Dir::new();
    dir.write("in.wat", TWO_IMPORTS);
    let run = dir.run(&["instrument", "in.wat", "out.wasm", "--imports", "@nope.txt"]);
    run.assert_code(1);
    assert!(run.stderr.contains("nope.txt"), "{}", run.stderr);
    assert!(!dir.exists("out.wasm"));
}

#[test]
fn ignore_imports() {
    let (run, _) = instrument_ok(TWO_IMPORTS, &["--ignore-imports"]);
    assert_eq!(run.instrumented(), (0, 2));
}

#[test]
fn imports_and_ignore_imports_conflict() {
    let (run, _) = instrument(TWO_IMPORTS, &["--ignore-imports", "--imports", "env.a"]);
    run.assert_code(2);
}

/// An indirect call through an exported table: anything can be put there.
const INDIRECT: &str = r#"
(module
  (type $t (func))
  (table (export "table") 1 funcref)
  (memory 1)
  (func $dispatch (export "dispatch") (call_indirect (type $t) (i32.const 0)))
  (func $run (export "run") (call $dispatch))
  (func $leaf (export "leaf")))
"#;

#[test]
fn ignore_indirect() {
    let (run, _) = instrument_ok(INDIRECT, &[]);
    assert_eq!(run.instrumented(), (2, 3));
    let (run, _) = instrument_ok(INDIRECT, &["--ignore-indirect"]);
    assert_eq!(run.instrumented(), (0, 3));
}

// ---------------------------------------------------------------------------
// Function lists: --only, --add, --remove, --propagate-add
// ---------------------------------------------------------------------------

#[test]
fn only_instruments_exactly_the_list() {
    // Without --only, run, helper and bystander; with it, just the two named.
    let (run, _) = instrument_ok(CHAIN, &["--only", "run,helper"]);
    assert_eq!(run.instrumented(), (2, 4));
    let (run, _) = instrument_ok(CHAIN, &["--only", "leaf"]);
    assert_eq!(run.instrumented(), (1, 4));
    let text = {
        let (run, _) = instrument_ok(CHAIN, &["--only", "leaf", "--explain", "bystander"]);
        run.stdout_text()
    };
    assert!(text.contains("--only"), "{text}");
}

#[test]
fn only_with_add_or_remove_is_refused() {
    for other in ["--add", "--remove"] {
        let dir = Dir::new();
        dir.write("in.wat", CHAIN);
        let run = dir.run(&[
            "instrument",
            "in.wat",
            "out.wasm",
            "--only",
            "run",
            other,
            "leaf",
        ]);
        assert_ne!(run.code, 0);
        assert!(run.stderr.contains("--only"), "{}", run.stderr);
        assert!(!dir.exists("out.wasm"));
    }
}

#[test]
fn add_instruments_a_function_that_cannot_unwind() {
    let (run, _) = instrument_ok(CHAIN, &["--add", "leaf"]);
    assert_eq!(run.instrumented(), (4, 4));
    let (run, _) = instrument_ok(CHAIN, &["--add", "leaf", "--explain", "leaf"]);
    assert!(run.stdout_text().contains("--add"), "{}", run.stdout_text());
}

#[test]
fn remove_keeps_a_function_and_its_callers_out() {
    // helper removed: it is assumed not to unwind, so run is not either.
    let (run, _) = instrument_ok(CHAIN, &["--remove", "helper"]);
    assert_eq!(run.instrumented(), (1, 4));
}

#[test]
fn function_lists_keep_commas_inside_brackets() {
    // A demangled C++ name with a comma in its signature.
    let wat = r#"
    (module
      (import "env" "sleep" (func $sleep))
      (memory 1)
      (func $"foo(int, char)" (export "foo") (call $sleep))
      (func $bar (export "bar") (call $sleep)))
    "#;
    let (run, _) = instrument_ok(wat, &["--remove", "foo(int, char),bar"]);
    assert_eq!(run.instrumented(), (0, 2));
    // In a file: one name per line, commas and all.
    let dir = Dir::new();
    dir.write("in.wat", wat)
        .write("remove.txt", "foo(int, char)\n");
    let run = dir.run(&[
        "instrument",
        "in.wat",
        "out.wasm",
        "--stats",
        "--remove",
        "@remove.txt",
    ]);
    run.assert_ok();
    assert_eq!(run.instrumented(), (1, 2));
}

/// `caller` calls `callee`, which calls nothing.
const CALLER_CALLEE: &str = r#"
(module
  (memory 1)
  (func $callee (export "callee"))
  (func $caller (export "caller") (call $callee)))
"#;

#[test]
fn propagate_add_makes_callers_unwind() {
    let (run, _) = instrument_ok(CALLER_CALLEE, &["--add", "callee"]);
    assert_eq!(run.instrumented(), (1, 2));
    let (run, _) = instrument_ok(CALLER_CALLEE, &["--add", "callee", "--propagate-add"]);
    assert_eq!(run.instrumented(), (2, 2));
}

// ---------------------------------------------------------------------------
// Runtime layout: --asserts, --memory, --secondary-memory, globals
// ---------------------------------------------------------------------------

#[test]
fn asserts_add_the_assert_function() {
    let (_, plain) = instrument_ok(CHAIN, &[]);
    assert!(!wat_text(&plain).contains("__wasm_rewind_assert_failed"));
    let (_, checked) = instrument_ok(CHAIN, &["--asserts"]);
    assert!(wat_text(&checked).contains("__wasm_rewind_assert_failed"));
}

/// Memory 0 is 32-bit, memory `$big` (exported as `big`) is 64-bit.
const TWO_MEMORIES: &str = r#"
(module
  (import "env" "sleep" (func $sleep))
  (memory 1)
  (memory $big (export "big") i64 1)
  (func $run (export "run") (call $sleep)))
"#;

fn start_unwind_param(wasm: &[u8]) -> ValType {
    match export_type(wasm, "asyncify_start_unwind") {
        Some(ExternType::Func(f)) => f.params().next().expect("one parameter"),
        other => panic!("asyncify_start_unwind is {other:?}"),
    }
}

#[test]
fn memory_chooses_the_buffer_memory() {
    let (_, out) = instrument_ok(TWO_MEMORIES, &[]);
    assert!(matches!(start_unwind_param(&out), ValType::I32));
    // The 64-bit memory makes the pointer an i64.
    let (_, out) = instrument_ok(TWO_MEMORIES, &["--memory", "big"]);
    assert!(matches!(start_unwind_param(&out), ValType::I64));
    let (_, out) = instrument_ok(TWO_MEMORIES, &["--memory", "1"]);
    assert!(matches!(start_unwind_param(&out), ValType::I64));
}

#[test]
fn unknown_memory_is_an_error() {
    let (run, out) = instrument(TWO_MEMORIES, &["--memory", "nope"]);
    run.assert_code(1);
    assert!(out.is_none());
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
}

fn asyncify_memory_pages(wasm: &[u8]) -> u64 {
    match export_type(wasm, "asyncify_memory") {
        Some(ExternType::Memory(m)) => m.minimum(),
        other => panic!("asyncify_memory is {other:?}"),
    }
}

#[test]
fn secondary_memory_adds_an_exported_memory() {
    let (_, out) = instrument_ok(CHAIN, &[]);
    assert!(export_type(&out, "asyncify_memory").is_none());
    let (_, out) = instrument_ok(CHAIN, &["--secondary-memory"]);
    assert_eq!(asyncify_memory_pages(&out), 1);
    let (_, out) = instrument_ok(CHAIN, &["--secondary-memory=3"]);
    assert_eq!(asyncify_memory_pages(&out), 3);
    // Also works for a module without any memory of its own.
    let no_memory = r#"
    (module
      (import "env" "sleep" (func $sleep))
      (func (export "run") (call $sleep)))
    "#;
    let (_, out) = instrument_ok(no_memory, &["--secondary-memory"]);
    assert_eq!(asyncify_memory_pages(&out), 1);
}

#[test]
fn secondary_memory_and_memory_conflict() {
    let (run, _) = instrument(TWO_MEMORIES, &["--secondary-memory", "--memory", "big"]);
    run.assert_code(2);
}

fn is_global(ty: &ExternType) -> bool {
    matches!(ty, ExternType::Global(_))
}

#[test]
fn import_globals() {
    let (_, out) = instrument_ok(CHAIN, &[]);
    assert!(!imports(&out).iter().any(|(_, ty)| is_global(ty)));
    let (_, out) = instrument_ok(CHAIN, &["--import-globals"]);
    let globals: Vec<String> = imports(&out)
        .into_iter()
        .filter(|(_, ty)| is_global(ty))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(globals, ["env.__asyncify_state", "env.__asyncify_data"]);
}

#[test]
fn export_globals() {
    let (_, out) = instrument_ok(CHAIN, &[]);
    assert!(export_type(&out, "__asyncify_state").is_none());
    let (_, out) = instrument_ok(CHAIN, &["--export-globals"]);
    for name in ["__asyncify_state", "__asyncify_data"] {
        let ty = export_type(&out, name);
        assert!(ty.as_ref().is_some_and(is_global), "{name}: {ty:?}");
    }
}

// ---------------------------------------------------------------------------
// --preset wasix
// ---------------------------------------------------------------------------

/// A C-like module: `__stack_pointer` is named in the name section but not
/// exported; one function calls the WASIX checkpoint, one calls `env.other`.
const WASIX: &str = r#"
(module
  (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (import "env" "other" (func $other))
  (memory (export "memory") 1)
  (global $__stack_pointer (mut i32) (i32.const 4096))
  (global $__stack_low i32 (i32.const 1024))
  (func $setjmp_user (export "setjmp_user") (result i32)
    (call $checkpoint (i32.const 16) (i32.const 32)))
  (func $bystander (export "bystander") (call $other)))
"#;

/// What wasm-ld 19 and `clang -O` (which runs wasm-opt and strips the names)
/// leave: no names, no exported stack globals, the data below the stack. The
/// stack pointer is the global the prologue lowers.
const WASIX_STRIPPED: &str = r#"
(module
  (import "wasix_32v1" "stack_checkpoint" (func (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global (mut i32) (i32.const 70000))
  (func (export "_start") (local i32)
    global.get 0
    i32.const 32
    i32.sub
    local.tee 0
    global.set 0
    (drop (call 0 (local.get 0) (i32.add (local.get 0) (i32.const 24))))
    (global.set 0 (i32.add (local.get 0) (i32.const 32))))
  (data (i32.const 1024) "static data"))
"#;

/// The same with wasm-ld 22's layout: the stack first, the data above it.
fn wasix_stack_first() -> String {
    WASIX_STRIPPED
        .replace("(i32.const 70000)", "(i32.const 65536)")
        .replace("(data (i32.const 1024)", "(data (i32.const 65536)")
}

/// The value a global of `wasm` is initialised to, by export name.
fn exported_global_value(wasm: &[u8], name: &str) -> Option<i64> {
    let mut index = None;
    let mut inits = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.unwrap() {
            wasmparser::Payload::ExportSection(r) => {
                for e in r {
                    let e = e.unwrap();
                    if e.name == name && e.kind == wasmparser::ExternalKind::Global {
                        index = Some(e.index as usize);
                    }
                }
            }
            wasmparser::Payload::GlobalSection(r) => {
                for g in r {
                    let mut ops = g.unwrap().init_expr.get_operators_reader();
                    inits.push(match ops.read().unwrap() {
                        wasmparser::Operator::I32Const { value } => Some(value as i64),
                        wasmparser::Operator::I64Const { value } => Some(value),
                        _ => None,
                    });
                }
            }
            _ => {}
        }
    }
    inits.get(index?).copied().flatten()
}

#[test]
fn preset_wasix() {
    // Without the preset every import may unwind. A module calling the WASIX
    // stack functions gets __stack_pointer exported anyway (the shim needs it).
    let (run, plain) = instrument_ok(WASIX, &[]);
    assert_eq!(run.instrumented(), (2, 2));
    assert!(export_type(&plain, "__stack_pointer").is_some());

    let (run, out) = instrument_ok(WASIX, &["--preset", "wasix"]);
    // Only the WASIX call unwinds.
    assert_eq!(run.instrumented(), (1, 2));
    let sp = export_type(&out, "__stack_pointer");
    assert!(sp.as_ref().is_some_and(is_global), "{sp:?}");

    // --imports extends the preset's list rather than replacing it.
    let (run, out) = instrument_ok(WASIX, &["--preset", "wasix", "--imports", "env.other"]);
    assert_eq!(run.instrumented(), (2, 2));
    assert!(export_type(&out, "__stack_pointer").is_some());

    // For a module that does not call them, only the preset exports the stack.
    let other = WASIX.replace("wasix_32v1", "env");
    let (_, plain) = instrument_ok(&other, &[]);
    assert!(export_type(&plain, "__stack_pointer").is_none());
    let (_, out) = instrument_ok(&other, &["--preset", "wasix", "--imports", "env.*"]);
    assert!(export_type(&out, "__stack_pointer").is_some());
}

#[test]
fn wasix_stack_pointer_is_found_without_names_and_the_unknown_bottom_is_refused() {
    // Classic layout, nothing named: the stack pointer can be found from the
    // prologue, but not where the stack begins. Refused, with the link flag.
    for flags in [&[][..], &["--preset", "wasix"]] {
        let (run, _) = instrument(WASIX_STRIPPED, flags);
        run.assert_code(1);
        assert!(
            run.stderr.contains("-Wl,--export=__stack_low"),
            "{}",
            run.stderr
        );
    }
    // With the bottom exported, as the link flag gives it, the pass finds
    // the stack pointer from the prologue and exports it.
    let linked = WASIX_STRIPPED.replace(
        "(global (mut i32) (i32.const 70000))",
        "(global (mut i32) (i32.const 70000))\n  (global (export \"__stack_low\") i32 (i32.const 4096))",
    );
    let (_, out) = instrument_ok(&linked, &[]);
    assert_eq!(exported_global_value(&out, "__stack_pointer"), Some(70000));
    assert_eq!(exported_global_value(&out, "__stack_low"), Some(4096));
    // A host that does not need the bottom is not refused.
    instrument_ok(WASIX_STRIPPED, &["--embed-runtime"]);
    instrument_ok(WASIX_STRIPPED, &["--secondary-memory=4"]);
}

#[test]
fn wasix_stack_first_layout_gets_a_stack_low_of_zero() {
    let (_, out) = instrument_ok(&wasix_stack_first(), &["--preset", "wasix"]);
    assert_eq!(exported_global_value(&out, "__stack_pointer"), Some(65536));
    assert_eq!(exported_global_value(&out, "__stack_low"), Some(0));
    // The hook a host grows the buffer through, and the buffer in memory 0.
    assert!(export_type(&out, "__wasm_rewind_grow_hook").is_some());
    assert!(export_type(&out, "asyncify_memory").is_none());
}

#[test]
fn unknown_preset_is_a_usage_error() {
    let (run, _) = instrument(WASIX, &["--preset", "emscripten"]);
    run.assert_code(2);
}

// ---------------------------------------------------------------------------
// Reporting: --stats, --explain, --quiet
// ---------------------------------------------------------------------------

#[test]
fn stats_report() {
    let (run, out) = instrument_ok(CHAIN, &[]);
    assert_eq!(run.instrumented(), (3, 4));
    assert_eq!(run.stat("resumable call sites"), "3");
    let layouts: usize = run.stat("frame layouts").parse().unwrap();
    assert!(layouts >= 1);
    let size = run.stat("size");
    let in_size = wat::parse_str(CHAIN).unwrap().len();
    assert!(
        size.starts_with(&format!("{in_size} -> {} bytes (", out.len())) && size.ends_with("x)"),
        "{size}"
    );
    assert_eq!(run.stat("dropped sections"), "none");
    // Without --stats, nothing on stderr for a clean run.
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "out.wasm"]);
    run.assert_ok();
    assert_eq!(run.stderr, "");
    assert!(run.stdout.is_empty());
}

#[test]
fn stats_report_dropped_debug_sections() {
    let wat = r#"
    (module
      (import "env" "sleep" (func $sleep))
      (memory 1)
      (func (export "run") (call $sleep))
      (@custom ".debug_info" "\00\01"))
    "#;
    let (run, _) = instrument_ok(wat, &[]);
    assert!(
        run.stat("dropped sections").contains(".debug_info"),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_names_the_chain() {
    let (run, _) = instrument_ok(CHAIN, &["--explain", "run"]);
    let text = run.stdout_text();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing from:\n{text}"))
    };
    assert!(at("`run`") < at("`helper`"), "{text}");
    assert!(at("`helper`") < at("`env.sleep`"), "{text}");
    assert!(
        text.lines().next().unwrap().contains("is instrumented"),
        "{text}"
    );
}

#[test]
fn explain_is_repeatable_and_covers_functions_left_alone() {
    let (run, _) = instrument_ok(CHAIN, &["--explain", "run", "--explain", "leaf"]);
    let text = run.stdout_text();
    assert!(text.contains("`env.sleep`"), "{text}");
    assert!(text.contains("`leaf` is not instrumented"), "{text}");
}

#[test]
fn explain_unknown_function_is_an_error() {
    let (run, out) = instrument(CHAIN, &["--explain", "nope"]);
    run.assert_code(1);
    assert!(out.is_none(), "no output on error");
    assert!(run.stderr.contains("`nope`"), "{}", run.stderr);
}

#[test]
fn explain_needs_stdout_free_of_the_module() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "--explain", "run"]);
    run.assert_code(1);
    assert!(run.stdout.is_empty());
}

#[test]
fn quiet_silences_warnings() {
    // An add-list entry that matches nothing is worth a warning.
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "out.wasm", "--add", "nothere"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("nothere"),
        "{}",
        run.stderr
    );
    let run = dir.run(&[
        "instrument",
        "in.wat",
        "out.wasm",
        "--add",
        "nothere",
        "--quiet",
    ]);
    run.assert_ok();
    assert_eq!(run.stderr, "");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn missing_input_file() {
    let dir = Dir::new();
    let run = dir.run(&["instrument", "missing.wasm", "out.wasm"]);
    run.assert_code(1);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("missing.wasm"), "{}", run.stderr);
    assert!(run.stderr.contains("Caused by:"), "{}", run.stderr);
    assert!(dir.listing().is_empty(), "left behind: {:?}", dir.listing());
}

#[test]
fn truncated_wasm_reports_an_offset() {
    let dir = Dir::new();
    let wasm = wat::parse_str(CHAIN).unwrap();
    dir.write("in.wasm", &wasm[..wasm.len() / 2]);
    let run = dir.run(&["instrument", "in.wasm", "out.wasm"]);
    run.assert_code(1);
    assert!(run.stderr.contains("0x"), "{}", run.stderr);
    assert_eq!(dir.listing(), ["in.wasm"]);
}

#[test]
fn invalid_text_is_an_error() {
    let (run, out) = instrument("(module (func (i32.add)))x", &[]);
    run.assert_code(1);
    assert!(out.is_none());
    assert!(run.stderr.contains("in.wat"), "{}", run.stderr);
}

#[test]
fn failure_leaves_an_existing_output_untouched() {
    let dir = Dir::new();
    dir.write("bad.wasm", b"\0asm\x01\0\0\0\x01")
        .write("out.wasm", b"previous");
    dir.run(&["instrument", "bad.wasm", "out.wasm"])
        .assert_code(1);
    assert_eq!(dir.read("out.wasm"), b"previous");
    assert_eq!(dir.listing(), ["bad.wasm", "out.wasm"]);
}

#[test]
fn output_into_a_missing_directory_is_an_error() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "no/such/dir/out.wasm"]);
    run.assert_code(1);
    assert!(run.stderr.contains("no/such/dir"), "{}", run.stderr);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "out.wasm", "--no-such-flag"]);
    run.assert_code(2);
    assert!(!dir.exists("out.wasm"));
    dir.run(&["instrument"]).assert_code(2);
    dir.run(&["frobnicate"]).assert_code(2);
}

#[test]
fn already_instrumented_input_is_refused() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    dir.run(&["instrument", "in.wat", "once.wasm"]).assert_ok();
    let run = dir.run(&["instrument", "once.wasm", "twice.wasm"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("already instrumented"),
        "{}",
        run.stderr
    );
    assert!(!dir.exists("twice.wasm"));
}

#[test]
fn help_documents_exit_status_and_examples() {
    let dir = Dir::new();
    let run = dir.run(&["instrument", "--help"]);
    run.assert_ok();
    let help = run.stdout_text();
    for needle in ["Exit status", "--preset wasix", "--explain", "clang"] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
}

#[test]
fn closed_stdout_ends_quietly() {
    // Larger than a pipe's buffer, so the write cannot finish before the
    // reader is gone, whatever the timing.
    let wat = format!(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory 8)
          (func (export "run") (call $sleep))
          (data (i32.const 0) "{}"))"#,
        "ab".repeat(200_000)
    );
    let dir = Dir::new();
    dir.write("in.wat", wat);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
        .args(["instrument", "in.wat"])
        .current_dir(dir.0.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn closed_stderr_keeps_the_exit_status() {
    // A pipe whose reader is gone before the process starts: every write to
    // stderr fails. The status must still say what happened (1 for an
    // error, 0 for a success with warnings), not a panic's 101.
    let dir = Dir::new();
    dir.write(
        "in.wat",
        r#"(module (import "env" "sleep" (func $sleep)) (memory 1)
             (func (export "run") (call $sleep)))"#,
    );
    let status = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
            .args(args)
            .current_dir(dir.0.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(status(&["instrument", "missing.wasm", "out.wasm"]), Some(1));
    // `--imports env.nothing` matches no import: a warning says so.
    let warned = status(&[
        "instrument",
        "in.wat",
        "out.wasm",
        "--imports",
        "env.nothing",
    ]);
    assert_eq!(warned, Some(0));
    assert!(dir.exists("out.wasm"));
}

// ---------------------------------------------------------------------------
// wasm-opt's spelling: --asyncify, --pass-arg, -O
// ---------------------------------------------------------------------------

/// Runs `instrument in.wat out.wasm ARGS` in a fresh directory holding
/// `in.wat` (and `list.txt`, one name per line) and returns the output.
fn output_of(wat: &str, args: &[&str]) -> Vec<u8> {
    let dir = Dir::new();
    dir.write("in.wat", wat).write("list.txt", "env.a\n");
    let mut all = vec!["instrument", "in.wat", "out.wasm"];
    all.extend_from_slice(args);
    dir.run(&all).assert_ok();
    dir.read("out.wasm")
}

#[test]
fn every_asyncify_pass_arg_equals_its_flag() {
    // (module, wasm-opt spelling, our spelling)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            TWO_IMPORTS,
            &["--pass-arg=asyncify-imports@env.a"],
            &["--imports", "env.a"],
        ),
        (
            TWO_IMPORTS,
            &["--pass-arg", "asyncify-imports@env.a,env.b"],
            &["--imports", "env.a,env.b"],
        ),
        (
            TWO_IMPORTS,
            &["--pass-arg=asyncify-imports@@list.txt"],
            &["--imports", "@list.txt"],
        ),
        (
            TWO_IMPORTS,
            &["--pass-arg=asyncify-ignore-imports"],
            &["--ignore-imports"],
        ),
        (
            INDIRECT,
            &["--pass-arg=asyncify-ignore-indirect"],
            &["--ignore-indirect"],
        ),
        (
            CHAIN,
            &["--pass-arg=asyncify-onlylist@run,helper"],
            &["--only", "run,helper"],
        ),
        (
            CHAIN,
            &["--pass-arg=asyncify-addlist@leaf"],
            &["--add", "leaf"],
        ),
        (
            CHAIN,
            &["--pass-arg=asyncify-removelist@helper"],
            &["--remove", "helper"],
        ),
        (
            CALLER_CALLEE,
            &[
                "--pass-arg=asyncify-addlist@callee",
                "--pass-arg=asyncify-propagate-addlist",
            ],
            &["--add", "callee", "--propagate-add"],
        ),
        (CHAIN, &["--pass-arg=asyncify-asserts"], &["--asserts"]),
        (
            TWO_MEMORIES,
            &["--pass-arg=asyncify-memory@big"],
            &["--memory", "big"],
        ),
        (
            CHAIN,
            &["--pass-arg=asyncify-in-secondary-memory"],
            &["--secondary-memory"],
        ),
        (
            CHAIN,
            &[
                "--pass-arg=asyncify-in-secondary-memory",
                "--pass-arg=asyncify-secondary-memory-size@3",
            ],
            &["--secondary-memory=3"],
        ),
        (
            CHAIN,
            &["--pass-arg=asyncify-import-globals"],
            &["--import-globals"],
        ),
        (
            CHAIN,
            &["--pass-arg=asyncify-export-globals"],
            &["--export-globals"],
        ),
    ];
    for (wat, theirs, native) in cases {
        let mut with_asyncify = vec!["--asyncify"];
        with_asyncify.extend_from_slice(theirs);
        let a = output_of(wat, &with_asyncify);
        let b = output_of(wat, native);
        assert!(a == b, "{theirs:?} differs from {native:?}");
    }
    // And the flag changed something: the lists really were passed on.
    assert_ne!(
        output_of(TWO_IMPORTS, &["--pass-arg=asyncify-imports@env.a"]),
        output_of(TWO_IMPORTS, &[])
    );
}

#[test]
fn asyncify_spelling_from_the_brief() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    dir.run(&[
        "instrument",
        "in.wat",
        "--asyncify",
        "--pass-arg=asyncify-imports@env.sleep",
        "-o",
        "theirs.wasm",
    ])
    .assert_ok();
    dir.run(&[
        "instrument",
        "in.wat",
        "--imports",
        "env.sleep",
        "-o",
        "ours.wasm",
    ])
    .assert_ok();
    assert_eq!(dir.read("theirs.wasm"), dir.read("ours.wasm"));
}

#[test]
fn asyncify_verbose_prints_stats() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&[
        "instrument",
        "in.wat",
        "out.wasm",
        "--pass-arg=asyncify-verbose",
    ]);
    run.assert_ok();
    assert_eq!(run.instrumented(), (3, 4));
}

#[test]
fn optimise_levels_are_ignored_with_a_note() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "o2.wasm", "--asyncify", "-O2"]);
    run.assert_ok();
    assert!(run.stderr.contains("note: -O2 ignored"), "{}", run.stderr);
    dir.run(&["instrument", "in.wat", "plain.wasm"]).assert_ok();
    assert_eq!(dir.read("o2.wasm"), dir.read("plain.wasm"));
    let run = dir.run(&["instrument", "in.wat", "q.wasm", "-Oz", "--quiet"]);
    run.assert_ok();
    assert_eq!(run.stderr, "");
}

#[test]
fn unmappable_pass_args_are_usage_errors_naming_the_arg() {
    for arg in [
        "--pass-arg=asyncify-relocatable",
        "--pass-arg=asyncify-nonsense@x",
        "--pass-arg=inline-max-size@20",
    ] {
        let dir = Dir::new();
        dir.write("in.wat", CHAIN);
        let run = dir.run(&["instrument", "in.wat", "out.wasm", arg]);
        run.assert_code(2);
        let key = arg
            .trim_start_matches("--pass-arg=")
            .split('@')
            .next()
            .unwrap();
        assert!(run.stderr.contains(key), "{arg}: {}", run.stderr);
        assert!(!dir.exists("out.wasm"));
    }
}

#[test]
fn top_level_help_has_the_three_uses_and_exit_status() {
    let run = Dir::new().run(&["--help"]);
    run.assert_ok();
    let help = run.stdout_text();
    for needle in [
        "Exit status",
        "wasm-rewind run",
        "--pass-arg=asyncify-imports",
        "build.rs",
        "add_to_linker",
        "inspect",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
    let run = Dir::new().run(&["inspect", "--help"]);
    run.assert_ok();
    assert!(run.stdout_text().contains("Exit status"));
}

/// `docs/wasm-opt-wrapper.sh`, the recipe for builds that call `wasm-opt
/// --asyncify`: with --asyncify the result is ours (the producers marker says
/// so), without it the real wasm-opt's output, byte for byte. Needs bash and
/// Binaryen's wasm-opt (`$WASM_OPT` or the PATH), like the ABI tests.
#[test]
fn wasm_opt_wrapper_recipe() {
    let real = process::wasm_opt();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/wasm-opt-wrapper.sh");
    let dir = Dir::new();
    dir.write("in.wasm", wat::parse_str(CHAIN).unwrap());
    let wrapper = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env("REAL_WASM_OPT", &real)
            .env("WASM_REWIND", env!("CARGO_BIN_EXE_wasm-rewind"))
            .current_dir(dir.0.path())
            .output()
            .expect("cannot run bash");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    wrapper(&[
        "in.wasm",
        "--asyncify",
        "--pass-arg",
        "asyncify-imports@env.sleep",
        "-o",
        "async.wasm",
    ]);
    let out = dir.read("async.wasm");
    assert!(export_names(&out).contains(&"asyncify_get_state".to_string()));
    let producers = wasmparser::Parser::new(0)
        .parse_all(&out)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::CustomSection(c) if c.name() == "producers" => {
                Some(String::from_utf8_lossy(c.data()).into_owned())
            }
            _ => None,
        })
        .collect::<String>();
    assert!(producers.contains("wasm-rewind"), "{producers:?}");
    // The asyncify pass arguments reached wasm-rewind: only env.sleep unwinds.
    let run = dir.run(&["inspect", "async.wasm"]);
    run.assert_ok();
    assert!(
        run.stdout_text()
            .contains("imports that can unwind: env.sleep\n"),
        "{}",
        run.stdout_text()
    );

    wrapper(&["in.wasm", "-O1", "-o", "plain.wasm"]);
    let direct = Command::new(&real)
        .args(["in.wasm", "-O1", "-o", "direct.wasm"])
        .current_dir(dir.0.path())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (install binaryen or set WASM_OPT): {e}",
                real.display()
            )
        });
    assert!(direct.success());
    assert_eq!(dir.read("plain.wasm"), dir.read("direct.wasm"));
}

/// `--sjlj` takes the lowerings the library lists, and refuses an unknown
/// one and the options of the unwinding pass beside an exceptions lowering,
/// naming the flags, writing nothing.
#[test]
fn sjlj_values_and_conflicts() {
    let dir = Dir::new();
    dir.write("in.wat", CHAIN);
    let run = dir.run(&["instrument", "in.wat", "out.wasm", "--sjlj", "longjmp"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for value in ["asyncify", "exceptions", "legacy-exceptions"] {
        assert!(run.stderr.contains(value), "{}", run.stderr);
    }
    for (flags, named) in [
        (&["--imports", "env.sleep"][..], "--imports"),
        (&["--embed-runtime"][..], "--embed-runtime"),
        (&["--preset", "wasix"][..], "--preset wasix"),
    ] {
        let mut args = vec!["instrument", "in.wat", "out.wasm", "--sjlj", "exceptions"];
        args.extend_from_slice(flags);
        let run = dir.run(&args);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("--sjlj") && run.stderr.contains(named),
            "{}",
            run.stderr
        );
        assert!(!dir.exists("out.wasm"));
    }
    dir.run(&["instrument", "in.wat", "out.wasm", "--sjlj", "exceptions"])
        .assert_ok();
}

/// A module whose setjmp/longjmp were lowered to exceptions is refused as
/// input, as an instrumented one is: its name section marks it.
#[test]
fn a_lowered_module_is_refused_as_input() {
    let dir = Dir::new();
    dir.write(
        "in.wat",
        r#"(module
          (import "wasix_32v1" "stack_checkpoint" (func $c (param i32 i32) (result i32)))
          (memory 1)
          (global $__stack_pointer (mut i32) (i32.const 4096))
          (func (export "f") (result i32) (call $c (i32.const 64) (i32.const 96))))"#,
    );
    dir.run(&[
        "instrument",
        "in.wat",
        "lowered.wasm",
        "--sjlj",
        "exceptions",
    ])
    .assert_ok();
    for extra in [&["--sjlj", "exceptions"][..], &[][..]] {
        let mut args = vec!["instrument", "lowered.wasm", "again.wasm"];
        args.extend_from_slice(extra);
        let run = dir.run(&args);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("already instrumented"),
            "{}",
            run.stderr
        );
        assert!(!dir.exists("again.wasm"));
    }
}
