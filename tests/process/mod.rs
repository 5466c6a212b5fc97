//! Running external programs from the tests that compare a wasm build with
//! a native one: a check that a tool is installed (failing, never skipping),
//! a bounded run that captures everything, the corpus's files, the imports of
//! a built module, and the comparison of outcomes, run in parallel.
//!
//! Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Binaryen's `wasm-opt`, the reference every comparison runs: `$WASM_OPT`
/// when set, else the one on `PATH`.
pub fn wasm_opt() -> PathBuf {
    std::env::var_os("WASM_OPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("wasm-opt"))
}

/// Fails (never skips) when `tool` cannot be started with `version_flag`,
/// naming the Debian packages that provide it.
pub fn require(tool: &str, version_flag: &str, install: &str) {
    let found = Command::new(tool)
        .arg(version_flag)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` not found: this test needs it (Debian: apt-get install {install})"
    );
}

/// What a finished process left behind.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Runs `cmd` to completion (stdin closed), killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Outcome, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} still running after {timeout:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    Ok(Outcome {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

/// Runs a build step to completion: it must exit with 0. Returns its stdout;
/// otherwise an error with the command, its exit code and both streams.
pub fn step(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let o = run(cmd, timeout)?;
    if o.code == Some(0) {
        Ok(o.stdout)
    } else {
        Err(format!(
            "{what} failed (exit {:?})\n--- stdout\n{}--- stderr\n{}",
            o.code, o.stdout, o.stderr
        ))
    }
}

/// The repository's root (the tests that run programs belong to the root
/// package).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `wasm-rewind` binary under test. (Tests of the library, which
/// include this module for its tool lookups, have no binary to run.)
pub fn wasm_rewind() -> Command {
    match option_env!("CARGO_BIN_EXE_wasm-rewind") {
        Some(binary) => Command::new(binary),
        None => panic!("only the wasm-rewind package's tests can run its binary"),
    }
}

/// The files in `dir` (relative to the root) whose names end in `.ext`,
/// sorted. Fails when there are fewer than `at_least`: an empty corpus
/// would make every comparison pass.
pub fn corpus_files(dir: &str, ext: &str, at_least: usize) -> Vec<PathBuf> {
    let dir = root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(
        files.len() >= at_least,
        "{} has {} .{ext} files, expected at least {at_least}",
        dir.display(),
        files.len()
    );
    files
}

/// The file names of [`corpus_files`], for programs that run from `dir`.
pub fn corpus_names(dir: &str, ext: &str, at_least: usize) -> Vec<String> {
    corpus_files(dir, ext, at_least)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The imports of the module at `wasm`, as `module.name`.
pub fn imports(wasm: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("read {}: {e}", wasm.display()))?;
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ImportSection(section) =
            payload.map_err(|e| format!("{}: {e}", wasm.display()))?
        {
            for import in section.into_imports() {
                let import = import.map_err(|e| format!("{}: {e}", wasm.display()))?;
                names.push(format!("{}.{}", import.module, import.name));
            }
        }
    }
    Ok(names)
}

/// Whether the module at `wasm` calls `stack_checkpoint`: its setjmp really
/// went through our setjmp.h.
pub fn imports_checkpoint(wasm: &Path) -> Result<bool, String> {
    Ok(imports(wasm)?
        .iter()
        .any(|i| i == "wasix_32v1.stack_checkpoint"))
}

/// `Err` showing every outcome when they are not all equal to the first,
/// each under its name.
pub fn all_same(what: &str, outcomes: &[(&str, &Outcome)]) -> Result<(), String> {
    let (_, first) = outcomes[0];
    if outcomes.iter().all(|(_, o)| *o == first) {
        return Ok(());
    }
    let mut msg = format!("{what}: outputs differ");
    for (who, o) in outcomes {
        msg += &format!(
            "\n=== {who} (exit {:?})\n--- stdout\n{}--- stderr\n{}",
            o.code, o.stdout, o.stderr
        );
    }
    Err(msg)
}

/// Runs `check` on every job, on `threads` threads; the errors of those
/// that failed.
pub fn check_in_parallel<T: Sync>(
    jobs: &[T],
    threads: usize,
    check: impl Fn(&T) -> Result<(), String> + Sync,
) -> Vec<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if let Err(e) = check(job) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// The native reference: `src` built with gcc -O2 against glibc's own
/// headers (none of ours) as `dir/NAME.native`, and what it does. A crash
/// is an error.
pub fn native_outcome(
    src: &Path,
    name: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<Outcome, String> {
    let native = dir.join(format!("{name}.native"));
    step(
        Command::new("gcc")
            .arg("-O2")
            .arg(src)
            .arg("-o")
            .arg(&native),
        timeout,
    )?;
    let outcome = run(&mut Command::new(&native), timeout)?;
    if outcome.code.is_none() {
        return Err(format!("native {name} was killed by a signal: {outcome:?}"));
    }
    Ok(outcome)
}

/// `src` built for wasm with `corpus/build-c.sh` by `clang`, with the
/// function table exported (context entrypoints are looked up there), into
/// `out`.
pub fn build_c_with_table(
    src: &Path,
    out: &Path,
    clang: &str,
    timeout: Duration,
) -> Result<(), String> {
    step(
        Command::new("bash")
            .arg(root().join("corpus/build-c.sh"))
            .arg(src)
            .arg(out)
            .env("CLANG", clang)
            .env("EXTRA_LDFLAGS", "-Wl,--export-table"),
        timeout,
    )
    .map(drop)
}

/// `f` of every job, on `threads` threads, in the jobs' order.
pub fn map_in_parallel<T: Sync, R: Send>(
    jobs: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                *results[i].lock().unwrap() = Some(f(job));
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap().expect("every job ran"))
        .collect()
}

/// Panics listing `failures`, if any, out of `total` checks of `what`.
pub fn assert_none_failed(what: &str, failures: Vec<String>, total: usize) {
    assert!(total > 0, "no {what} to check");
    assert!(
        failures.is_empty(),
        "{} of {total} {what} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// node running `wasm` under its WASI with `dir` preopened as `.`.
pub fn node(wasm: &Path, dir: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new("node");
    // The first flag is needed by node 18 (Debian 12's) and ignored by later
    // ones. Without the last, node 20.20's V8 crashes (SIGSEGV in its own
    // property lookup, not a wasm trap) once Lua's errors_depth.lua has
    // printed everything: it fails 3 runs in 3 with concurrent marking and
    // 0 in 3 with `--single-threaded-gc` or `--no-concurrent-marking`, and
    // plain wasmtime runs the same module cleanly. A garbage collector's
    // threading cannot change what a wasm program computes, so the test
    // loses nothing by avoiding the crash.
    cmd.args([
        "--experimental-wasi-unstable-preview1",
        "--no-warnings",
        "--single-threaded-gc",
    ])
    .arg(root().join("tests/node/run-wasi.mjs"));
    if let Some(dir) = dir {
        cmd.arg("--dir").arg(format!("{}::.", dir.display()));
    }
    cmd.arg(wasm).args(args);
    cmd
}
