//! Lua 5.4 end to end: `corpus/lua/build.sh` builds Lua (sources from the
//! crate lua-src, fetched by cargo) with `corpus/lua/driver.c` for
//! wasm32-wasi against our setjmp.h; it is instrumented once with
//! `wasm-rewind instrument` (default flags), and every `corpus/lua/*.lua`
//! runs both under Debian's `lua5.4` and under `wasm-rewind run`. Stdout,
//! stderr and exit code must be the same; nothing expected is written down.
//!
//! The reference that bench/run section 7 measures us against is checked the
//! same way (it is not our `--sjlj exceptions`, tested further down): Lua built with `LUA_SJLJ=wasm-exceptions` (setjmp/longjmp
//! lowered to wasm exceptions by clang-22 at compile time, against
//! `corpus/wasm-sjlj/`), run uninstrumented, must print what native `lua5.4`
//! prints on every script too.
//!
//! Needs lua5.4, clang-19, wasm-ld-19, clang-22, wasm-ld-22, wasi-libc and
//! cargo (`.ci/setup` installs them). A missing tool fails the test, saying
//! what to install.

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

/// Builds the reference of bench/run section 7, with setjmp/longjmp lowered
/// to wasm exceptions by LLVM at compile time (cached by build.sh under
/// target/), once per test process, and checks it took that path: it defines an exception
/// tag (`__c_longjmp`) and does not call the WASIX stack functions.
fn llvm_reference_wasm() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let start = Instant::now();
        let stdout = step(
            Command::new("bash")
                .arg(lua_dir().join("build.sh"))
                .env("LUA_SJLJ", "wasm-exceptions"),
        )?;
        let wasm = PathBuf::from(stdout.lines().last().unwrap_or_default());
        if process::imports_checkpoint(&wasm)? {
            return Err(format!(
                "{} imports wasix_32v1.stack_checkpoint: built with our setjmp.h, not LLVM's lowering",
                wasm.display()
            ));
        }
        if tags(&wasm)? == 0 {
            return Err(format!(
                "{} defines no exception tag: setjmp/longjmp were not lowered to wasm exceptions",
                wasm.display()
            ));
        }
        eprintln!("lua.wasm (wasm exceptions): build.sh {:.2?}", start.elapsed());
        Ok(wasm)
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("building Lua with wasm exceptions failed:\n{e}"),
    }
}

/// How many exception tags the module at `wasm` defines.
fn tags(wasm: &Path) -> Result<u32, String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("read {}: {e}", wasm.display()))?;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::TagSection(section) =
            payload.map_err(|e| format!("{}: {e}", wasm.display()))?
        {
            return Ok(section.count());
        }
    }
    Ok(0)
}

/// Native lua5.4 on script `name`. It and [`run_wasm`] run from corpus/lua
/// with the script's bare name, so chunk names (and so error positions) are
/// the same: the guest sees the directory preopened as ".".
fn run_native(name: &str) -> Result<Outcome, String> {
    run(Command::new("lua5.4")
        .current_dir(lua_dir())
        .arg(name)
        .args(ARGS))
}

/// `wasm-rewind run` of the Lua module `wasm` on script `name`.
fn run_wasm(name: &str, wasm: &Path) -> Result<Outcome, String> {
    let dir = lua_dir();
    run(process::wasm_rewind()
        .current_dir(&dir)
        .arg("run")
        .arg(wasm)
        .arg("--dir")
        .arg(format!("{}::.", dir.display()))
        .arg("--")
        .arg(name)
        .args(ARGS))
}

/// Native and wasm runs of one script, compared. `Err` shows both.
fn check_script(name: &str, rw: &Path) -> Result<(), String> {
    let t = Instant::now();
    let native = run_native(name)?;
    let t_native = t.elapsed();
    let t = Instant::now();
    let wasm = run_wasm(name, rw)?;
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

/// LLVM's exceptions build (the reference, not our `--sjlj exceptions`,
/// tested below) runs unchanged under `wasm-rewind run` (wasmtime 48 has
/// exception handling on by default) and prints what native Lua prints: the
/// error scripts exercise its setjmp/longjmp, every pcall a try_table, every
/// error a throw.
#[test]
fn llvm_sjlj_reference_matches_native() {
    let install = "clang-22 lld-22 libclang-rt-22-dev-wasm32 wasi-libc lua5.4";
    process::require("lua5.4", "-v", install);
    process::require("clang-22", "--version", install);
    process::require("wasm-ld-22", "--version", install);
    let wasm = llvm_reference_wasm();
    let names = process::corpus_names("corpus/lua", "lua", 6);
    let failures = process::check_in_parallel(&names, names.len(), |name| check_script(name, wasm));
    process::assert_none_failed(
        "Lua scripts on LLVM's exceptions build (against native lua5.4)",
        failures,
        names.len(),
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
        let native = run_native(name)?;
        let wasm = run_wasm(name, exceptions)?;
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
