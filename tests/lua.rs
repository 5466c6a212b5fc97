//! Lua 5.4 end to end: `corpus/lua/build.sh` builds Lua (sources from the
//! crate lua-src, fetched by cargo) with `corpus/lua/driver.c` for
//! wasm32-wasi against our setjmp.h; it is instrumented once with
//! `wasm-rewind instrument` (default flags), and every `corpus/lua/*.lua`
//! runs both under Debian's `lua5.4` and under `wasm-rewind run`. Stdout,
//! stderr and exit code must be the same; nothing expected is written down.
//!
//! Needs lua5.4, clang-19, wasm-ld-19, wasi-libc and cargo (`.ci/run`
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

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn lua_dir() -> PathBuf {
    root().join("corpus/lua")
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

/// Whether the module imports `wasix_32v1.stack_checkpoint`, i.e. Lua's
/// setjmp really went through our header.
fn imports_checkpoint(wasm: &Path) -> Result<bool, String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("read {}: {e}", wasm.display()))?;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ImportSection(section) =
            payload.map_err(|e| format!("{}: {e}", wasm.display()))?
        {
            for import in section.into_imports() {
                let import = import.map_err(|e| format!("{}: {e}", wasm.display()))?;
                if import.module == "wasix_32v1" && import.name == "stack_checkpoint" {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Builds lua.wasm (cached by build.sh under target/) and instruments it,
/// once per test process: the path of the instrumented module.
fn lua_rw_wasm() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let start = Instant::now();
        let stdout = step(Command::new("bash").arg(lua_dir().join("build.sh")))?;
        let wasm = PathBuf::from(stdout.lines().last().unwrap_or_default());
        if !imports_checkpoint(&wasm)? {
            return Err(format!(
                "{} does not import wasix_32v1.stack_checkpoint: not built with our setjmp.h",
                wasm.display()
            ));
        }
        let built = start.elapsed();
        // Beside the cached build; instrument writes it atomically, and it
        // is redone every run as wasm-rewind itself may have changed.
        let rw = wasm.with_file_name("lua.rw.wasm");
        step(
            Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
                .arg("instrument")
                .arg(&wasm)
                .arg(&rw),
        )?;
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

/// Every `corpus/lua/*.lua`, sorted.
fn scripts() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lua_dir())
        .expect("read corpus/lua")
        .map(|e| e.expect("read corpus/lua").file_name())
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.ends_with(".lua"))
        .collect();
    names.sort();
    names
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
    let wasm = run(Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
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
    if native == wasm {
        Ok(())
    } else {
        Err(format!(
            "{name}: outputs differ\n=== native lua5.4 (exit {:?})\n--- stdout\n{}--- stderr\n{}\
             === wasm (exit {:?})\n--- stdout\n{}--- stderr\n{}",
            native.code, native.stdout, native.stderr, wasm.code, wasm.stdout, wasm.stderr
        ))
    }
}

#[test]
fn lua_scripts_match_native() {
    require("lua5.4", "-v");
    require("clang-19", "--version");
    require("wasm-ld-19", "--version");
    let rw = lua_rw_wasm();
    let names = scripts();
    assert!(!names.is_empty(), "no corpus/lua/*.lua scripts");
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(move || check_script(name, rw)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("check thread panicked").err())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} Lua scripts differ from native lua5.4:\n\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
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
