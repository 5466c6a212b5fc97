//! Running external programs from the tests that compare a wasm build with
//! a native one: a check that a tool is installed (failing, never skipping)
//! and a bounded run that captures everything.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Binaryen's `wasm-opt`, the reference every comparison runs: `$WASM_OPT`
/// when set, else the one on `PATH`.
#[allow(dead_code)] // not every test crate runs Binaryen
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
#[allow(dead_code)] // not every test crate has build steps
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
