//! WASIX contexts and `<ucontext.h>`, end to end (issue 16), on the host
//! shim (`wasm-rewind run`) and on Wasmer, which serves the same calls
//! itself.
//!
//! - `corpus/contexts/*.c` build natively with gcc against glibc's
//!   `<ucontext.h>` and for wasm with our `runtime-shim/include`; the wasm
//!   run must print the same stdout and stderr and exit with the same code.
//!   They cover generators, a producer/consumer pair, a round-robin
//!   scheduler with 1,000 contexts, a million switches, setjmp/longjmp inside
//!   contexts, functions that return, and getcontext.
//! - `corpus/contexts/wasix/*.c` use `<wasix/context.h>` or the raw imports
//!   (no native equivalent) and must give their `.expected` stdout and exit
//!   status, which is what Wasmer 7.4.2 gives: destroying the running and the
//!   main context, switching to a destroyed one, separate stacks, an
//!   entrypoint that returns (status 129), and the errnos of bad calls.
//! - Misuse: a longjmp across contexts is refused with an error naming both.
//!
//! Every program is built with clang-19 and clang-22 (stack-first layout),
//! instrumented with default flags and, for clang-19, with `--preset wasix`
//! (where only the WASIX calls unwind: `context_switch` must be among them)
//! and with `--embed-runtime` (no WASIX imports left: `run` is then plain
//! wasmtime, and Wasmer plain WASI). tests/contexts_embedded.rs tests
//! `--embed-runtime` on node and wasmtime in more depth.
//!
//! Needs gcc, clang-19, clang-22, wasi-libc and Wasmer (`.ci/setup` installs
//! them). A missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

mod process;
use process::{root, wasm_rewind, Outcome};

/// A build or run that takes longer than this fails the test.
const TIMEOUT: Duration = Duration::from_mins(3);

/// Programs at once (each is single-threaded; the machine may have 2 cores).
const PARALLEL: usize = 2;

const INSTALL: &str = "gcc clang-19 lld-19 libclang-rt-19-dev-wasm32 clang-22 lld-22 \
                       libclang-rt-22-dev-wasm32 wasi-libc";

/// Where Wasmer 7.4.2 gives another result than native when it serves the
/// context calls itself, and why: its `stack_checkpoint` refuses a stack
/// pointer outside the main C stack ("failed to save stack: stack pointer
/// overflow", exit 79), and our header gives every context a stack of its
/// own (docs/contexts.md). The `--embed-runtime` build, which Wasmer runs as
/// plain WASI, gives the native output there too.
const WASMER_FAILS: &[&str] = &["setjmp_in_context"];

/// The name of the `--embed-runtime` builds among a program's modules.
const EMBEDDED: &str = "embedded";

fn require_tools() {
    for (tool, flag) in [
        ("gcc", "--version"),
        ("clang-19", "--version"),
        ("clang-22", "--version"),
    ] {
        process::require(tool, flag, INSTALL);
    }
}

fn run(cmd: &mut Command) -> Result<Outcome, String> {
    process::run(cmd, TIMEOUT)
}

fn step(cmd: &mut Command) -> Result<String, String> {
    process::step(cmd, TIMEOUT)
}

/// What a program must do.
enum Reference {
    /// What the native build did.
    Native(Outcome),
    /// The `.expected` file: stdout, then `exit STATUS`.
    Expected(String),
}

impl Reference {
    /// `Err` describing the difference when `got` does not match.
    fn check(&self, what: &str, got: &Outcome) -> Result<(), String> {
        match self {
            Reference::Native(native) => {
                process::all_same(what, &[("native", native), ("wasm", got)])
            }
            Reference::Expected(expected) => {
                let actual = format!("{}exit {}\n", got.stdout, got.code.unwrap_or(-1));
                if actual == *expected {
                    Ok(())
                } else {
                    Err(format!(
                        "{what}: expected\n{expected}--- got\n{actual}--- stderr\n{}",
                        got.stderr
                    ))
                }
            }
        }
    }
}

/// One program, built and instrumented every way.
struct Program {
    name: String,
    reference: Reference,
    /// (how it was built and instrumented, the module).
    modules: Vec<(String, PathBuf)>,
}

/// Every program of the corpus, built once for all the tests of this file.
fn programs() -> &'static Vec<Program> {
    static BUILT: OnceLock<(tempfile::TempDir, Vec<Program>)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            require_tools();
            let dir = tempfile::tempdir().unwrap();
            let mut sources = process::corpus_files("corpus/contexts", "c", 7);
            sources.extend(process::corpus_files("corpus/contexts/wasix", "c", 5));
            let built = process::map_in_parallel(&sources, PARALLEL, |src| build(src, dir.path()));
            let mut programs = Vec::new();
            let mut failures = Vec::new();
            for result in built {
                match result {
                    Ok(p) => programs.push(p),
                    Err(e) => failures.push(e),
                }
            }
            process::assert_none_failed("builds of context programs", failures, sources.len());
            (dir, programs)
        })
        .1
}

/// Builds `src` with clang-19 and clang-22 and instruments the modules; the
/// reference is its native run or its `.expected` file.
fn build(src: &Path, dir: &Path) -> Result<Program, String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let expected = src.with_extension("expected");
    let reference = if expected.exists() {
        Reference::Expected(std::fs::read_to_string(&expected).map_err(|e| e.to_string())?)
    } else {
        Reference::Native(process::native_outcome(src, &name, dir, TIMEOUT)?)
    };
    let mut modules = Vec::new();
    for clang in ["clang-19", "clang-22"] {
        let wasm = dir.join(format!("{name}.{clang}.wasm"));
        process::build_c_with_table(src, &wasm, clang, TIMEOUT)?;
        let imports = process::imports(&wasm)?;
        if !imports.iter().any(|i| i == "wasix_32v1.context_switch") {
            return Err(format!("{name} ({clang}) does not import context_switch"));
        }
        let presets: &[(&str, &[&str])] = if clang == "clang-19" {
            &[
                ("default", &[]),
                ("preset-wasix", &["--preset", "wasix"]),
                (EMBEDDED, &["--embed-runtime"]),
            ]
        } else {
            &[("default", &[])]
        };
        for (flags_name, flags) in presets {
            let out = dir.join(format!("{name}.{clang}.{flags_name}.rw.wasm"));
            step(
                wasm_rewind()
                    .arg("instrument")
                    .arg(&wasm)
                    .arg(&out)
                    .arg("-q")
                    .args(*flags),
            )?;
            modules.push((format!("{clang}, {flags_name}"), out));
        }
    }
    Ok(Program {
        name,
        reference,
        modules,
    })
}

/// Runs every module of every program with `runner` and checks it.
/// `skip` names programs whose non-embedded builds the runner is known to
/// fail.
fn check_all(runner: &str, command: impl Fn(&Path) -> Command + Sync, skip: &[&str]) {
    let jobs: Vec<(&Program, &String, &PathBuf)> = programs()
        .iter()
        .flat_map(|p| p.modules.iter().map(move |(how, m)| (p, how, m)))
        .filter(|(p, how, _)| how.ends_with(EMBEDDED) || !skip.contains(&p.name.as_str()))
        .collect();
    let failures = process::check_in_parallel(&jobs, PARALLEL, |(program, how, module)| {
        let got = run(&mut command(module))?;
        program
            .reference
            .check(&format!("{} ({how}) under {runner}", program.name), &got)
    });
    process::assert_none_failed(
        &format!("context programs under {runner}"),
        failures,
        jobs.len(),
    );
}

fn shim_run(module: &Path) -> Command {
    let mut cmd = wasm_rewind();
    cmd.arg("run").arg(module);
    cmd
}

fn wasmer_run(module: &Path) -> Command {
    let mut cmd = Command::new("wasmer");
    cmd.arg("run").arg(module);
    cmd
}

#[test]
fn context_programs_match_native_under_run() {
    check_all("wasm-rewind run", shim_run, &[]);
}

#[test]
fn context_programs_match_native_under_wasmer() {
    process::require(
        "wasmer",
        "--version",
        "cargo install wasmer-cli (.ci/setup)",
    );
    check_all("Wasmer", wasmer_run, WASMER_FAILS);
}

/// The programs Wasmer is known to fail still fail there the same way; if
/// Wasmer learns to run them, the list above must shrink.
#[test]
fn wasmer_still_refuses_checkpoints_on_a_context_stack() {
    process::require(
        "wasmer",
        "--version",
        "cargo install wasmer-cli (.ci/setup)",
    );
    for name in WASMER_FAILS {
        let program = programs().iter().find(|p| p.name == *name).unwrap();
        for (how, module) in program
            .modules
            .iter()
            .filter(|(how, _)| !how.ends_with(EMBEDDED))
        {
            let got = run(&mut wasmer_run(module)).unwrap();
            assert_eq!(got.code, Some(79), "{name} ({how}) under Wasmer: {got:?}");
        }
    }
}

/// Builds and instruments one misuse program of `corpus/contexts/misuse`.
fn misuse(name: &str, dir: &Path) -> PathBuf {
    let src = root().join(format!("corpus/contexts/misuse/{name}.c"));
    let wasm = dir.join(format!("{name}.wasm"));
    let out = dir.join(format!("{name}.rw.wasm"));
    process::build_c_with_table(&src, &wasm, "clang-19", TIMEOUT).unwrap();
    step(
        wasm_rewind()
            .arg("instrument")
            .arg(&wasm)
            .arg(&out)
            .arg("-q"),
    )
    .unwrap();
    out
}

#[test]
fn a_longjmp_across_contexts_is_refused_naming_both() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let module = misuse("longjmp_across_contexts", dir.path());
    let got = run(&mut shim_run(&module)).unwrap();
    assert_eq!(got.code, Some(134), "{got:?}");
    assert_eq!(
        got.stdout,
        "main: setjmp armed, switching\ncontext: longjmp to main's jmp_buf\n"
    );
    assert!(
        got.stderr.contains("longjmp across WASIX contexts")
            && got.stderr.contains("setjmp in context 0")
            && got.stderr.contains("called in context 1"),
        "{}",
        got.stderr
    );
}

#[test]
fn an_entrypoint_that_returns_is_named_on_stderr() {
    let program = programs().iter().find(|p| p.name == "raw_calls").unwrap();
    let got = run(&mut shim_run(&program.modules[0].1)).unwrap();
    assert_eq!(got.code, Some(129));
    assert!(
        got.stderr
            .contains("the entrypoint of WASIX context 2 returned"),
        "{}",
        got.stderr
    );
}

#[test]
fn stats_count_contexts_and_switches() {
    let program = programs()
        .iter()
        .find(|p| p.name == "million_switches")
        .unwrap();
    let mut cmd = wasm_rewind();
    cmd.arg("run").arg("--stats").arg(&program.modules[0].1);
    let got = run(&mut cmd).unwrap();
    assert_eq!(got.code, Some(0), "{got:?}");
    let line = got
        .stderr
        .lines()
        .find(|l| l.starts_with("contexts:"))
        .unwrap_or_else(|| panic!("no contexts line: {}", got.stderr));
    let switches: u64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" switches"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no switch count in {line}"));
    // The program switches 1,000,000 times between its two contexts, plus
    // the switches that start them and end.
    assert!((1_000_000..1_000_010).contains(&switches), "{line}");
}

/// `--sjlj exceptions` unwinds nothing, so the context calls stay for a
/// host that switches stacks itself: `instrument` warns, `run` refuses with
/// a message that names the lowering, and Wasmer runs the program, setjmp
/// inside contexts included, as native does.
#[test]
fn contexts_lowered_to_exceptions_run_on_wasmer_and_run_says_why_not_here() {
    require_tools();
    process::require(
        "wasmer",
        "--version",
        "cargo install wasmer-cli (.ci/setup)",
    );
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("corpus/contexts/setjmp_in_context.c");
    let wasm = dir.path().join("setjmp_in_context.wasm");
    let lowered = dir.path().join("setjmp_in_context.exc.wasm");
    process::build_c_with_table(&src, &wasm, "clang-19", TIMEOUT).unwrap();
    let instrumented = run(wasm_rewind()
        .arg("instrument")
        .arg(&wasm)
        .arg(&lowered)
        .args(["--sjlj", "exceptions"]))
    .unwrap();
    assert_eq!(instrumented.code, Some(0), "{instrumented:?}");
    assert!(
        instrumented
            .stderr
            .contains("`wasix_32v1.context_switch` stays an import"),
        "{}",
        instrumented.stderr
    );
    let refused = run(&mut shim_run(&lowered)).unwrap();
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("--sjlj exceptions"),
        "{}",
        refused.stderr
    );
    let program = programs()
        .iter()
        .find(|p| p.name == "setjmp_in_context")
        .unwrap();
    let on_wasmer = run(&mut wasmer_run(&lowered)).unwrap();
    program
        .reference
        .check(
            "setjmp_in_context (--sjlj exceptions) under Wasmer",
            &on_wasmer,
        )
        .unwrap();
}
