//! Lua 5.4 end to end: `corpus/lua/build.sh` builds Lua (sources from the
//! crate lua-src, fetched by cargo) with `corpus/lua/driver.c` for
//! wasm32-wasi against our setjmp.h; it is instrumented once with
//! `wasm-rewind instrument` (default flags), and every `corpus/lua/*.lua`
//! runs both under Debian's `lua5.4` and under `wasm-rewind run`. Stdout,
//! stderr and exit code must be the same; nothing expected is written down.
//!
//! Needs lua5.4, clang-19, wasm-ld-19, wasi-libc and cargo (`.ci/setup`
//! installs them). A missing tool fails the test, saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod process;
use process::Outcome;

/// A build or run that takes longer than this fails the test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments given to every script, after its name.
const ARGS: [&str; 2] = ["a", "b c"];

const INSTALL: &str = "clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc lua5.4";

fn lua_dir() -> PathBuf {
    process::root().join("corpus/lua")
}

/// Fails (never skips) when `tool` cannot be started.
fn require(tool: &str, version_flag: &str) {
    process::require(tool, version_flag, INSTALL);
}

/// Runs `cmd` to completion, killing it after [`TIMEOUT`].
fn run(cmd: &mut Command) -> Result<Outcome, String> {
    process::run(cmd, TIMEOUT)
}

/// Runs a build step: it must exit with 0. Returns its stdout.
fn step(cmd: &mut Command) -> Result<String, String> {
    process::step(cmd, TIMEOUT)
}

/// Builds lua.wasm (cached by build.sh under target/) and instruments it,
/// once per test process: the path of the instrumented module.
fn lua_rw_wasm() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let start = Instant::now();
        let stdout = step(Command::new("bash").arg(lua_dir().join("build.sh")))?;
        let wasm = PathBuf::from(stdout.lines().last().unwrap_or_default());
        if !process::imports_checkpoint(&wasm)? {
            return Err(format!(
                "{} does not import wasix_32v1.stack_checkpoint: not built with our setjmp.h",
                wasm.display()
            ));
        }
        let built = start.elapsed();
        // Beside the cached build; instrument writes it atomically, and it
        // is redone every run as wasm-rewind itself may have changed.
        let rw = wasm.with_file_name("lua.rw.wasm");
        step(process::wasm_rewind().arg("instrument").arg(&wasm).arg(&rw))?;
        eprintln!(
            "lua.wasm: build.sh {:.2?}, instrument {:.2?}",
            built,
            start.elapsed() - built
        );
        Ok(rw)
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("building Lua for wasm failed:\n{e}"),
    }
}

/// Native and wasm runs of one script, compared. `Err` shows both.
fn check_script(name: &str, rw: &Path) -> Result<(), String> {
    let dir = lua_dir();
    // Both run from corpus/lua with the script's bare name, so chunk names
    // (and so error positions) are the same: the guest sees the directory
    // preopened as ".".
    let t = Instant::now();
    let native = run(Command::new("lua5.4")
        .current_dir(&dir)
        .arg(name)
        .args(ARGS))?;
    let t_native = t.elapsed();
    let t = Instant::now();
    let wasm = run(process::wasm_rewind()
        .current_dir(&dir)
        .arg("run")
        .arg(rw)
        .arg("--dir")
        .arg(format!("{}::.", dir.display()))
        .arg("--")
        .arg(name)
        .args(ARGS))?;
    let t_wasm = t.elapsed();
    eprintln!("{name}: native {t_native:.2?}, wasm {t_wasm:.2?}");
    process::all_same(name, &[("native lua5.4", &native), ("wasm", &wasm)])
}

#[test]
fn lua_scripts_match_native() {
    require("lua5.4", "-v");
    require("clang-19", "--version");
    require("wasm-ld-19", "--version");
    let rw = lua_rw_wasm();
    let names = process::corpus_names("corpus/lua", "lua", 6);
    let failures = process::check_in_parallel(&names, names.len(), |name| check_script(name, rw));
    process::assert_none_failed("Lua scripts (against native lua5.4)", failures, names.len());
}

/// A second build.sh run finds the cache and prints the same path.
#[test]
fn lua_build_is_cached() {
    require("clang-19", "--version");
    let first = lua_rw_wasm().with_file_name("lua.wasm");
    let start = Instant::now();
    let again = step(Command::new("bash").arg(lua_dir().join("build.sh")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Path::new(again.lines().last().unwrap_or_default()), first);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "a cached build.sh run took {:?}",
        start.elapsed()
    );
}

/// lua.wasm with setjmp/longjmp lowered to wasm exceptions, beside the
/// cached build: `--sjlj exceptions` (for wasmtime) and
/// `--sjlj legacy-exceptions` (for node 20), in that order.
fn lua_exceptions_wasm() -> &'static [PathBuf; 2] {
    static BUILT: OnceLock<Result<[PathBuf; 2], String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let wasm = lua_rw_wasm().with_file_name("lua.wasm");
        let lower = |lowering: &str| -> Result<PathBuf, String> {
            let out = wasm.with_file_name(format!("lua.{lowering}.wasm"));
            step(
                process::wasm_rewind()
                    .arg("instrument")
                    .arg(&wasm)
                    .arg(&out)
                    .args(["--sjlj", lowering]),
            )?;
            if process::imports_checkpoint(&out)? {
                return Err(format!("{} still imports the WASIX calls", out.display()));
            }
            Ok(out)
        };
        Ok([lower("exceptions")?, lower("legacy-exceptions")?])
    });
    match built {
        Ok(paths) => paths,
        Err(e) => panic!("lowering lua.wasm to exceptions failed:\n{e}"),
    }
}

/// Every script prints what native Lua prints with setjmp/longjmp lowered
/// to wasm exceptions: under `wasm-rewind run` (wasmtime) and under node
/// 20's own WASI (legacy exceptions), no WASIX host in either. Among them
/// the deep-nesting scripts of issue 13, where no snapshot is kept at all.
#[test]
fn lua_scripts_match_native_with_exceptions() {
    require("lua5.4", "-v");
    require("clang-19", "--version");
    require("node", "--version");
    let [exceptions, legacy] = lua_exceptions_wasm();
    let dir = lua_dir();
    let names = process::corpus_names("corpus/lua", "lua", 6);
    let failures = process::check_in_parallel(&names, names.len(), |name| {
        let native = run(Command::new("lua5.4")
            .current_dir(&dir)
            .arg(name)
            .args(ARGS))?;
        let wasm = run(process::wasm_rewind()
            .current_dir(&dir)
            .arg("run")
            .arg(exceptions)
            .arg("--dir")
            .arg(format!("{}::.", dir.display()))
            .arg("--")
            .arg(name)
            .args(ARGS))?;
        let mut args = vec![name.as_str()];
        args.extend(ARGS);
        let on_node = run(process::node(legacy, Some(&dir), &args).current_dir(&dir))?;
        process::all_same(
            name,
            &[
                ("native lua5.4", &native),
                ("--sjlj exceptions, run", &wasm),
                ("--sjlj legacy-exceptions, node", &on_node),
            ],
        )
    });
    process::assert_none_failed(
        "Lua scripts with exceptions (against native lua5.4)",
        failures,
        names.len(),
    );
}
