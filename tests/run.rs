//! `wasm-rewind run`: what it passes to a WASI program (arguments, `--env`,
//! `--dir`, stdin, stdout, stderr, the exit code) and what it refuses.
//!
//! The program is `corpus/wasi/io.c`, built with `corpus/build-c.sh` (clang-19
//! and Debian's wasi-libc, installed by `.ci/setup`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn wasm_rewind() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasm-rewind"))
}

/// Builds corpus/wasi/io.c to `dir/io.wasm`.
fn build(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("io.wasm");
    let status = Command::new("bash")
        .arg(root().join("corpus/build-c.sh"))
        .arg(root().join("corpus/wasi/io.c"))
        .arg(&out)
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "corpus/build-c.sh failed (clang-19 and wasi-libc installed?)"
    );
    out
}

#[test]
fn run_passes_args_env_dirs_stdin_and_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = build(dir.path());
    let rewound = dir.path().join("io.rw.wasm");
    let status = wasm_rewind()
        .arg("instrument")
        .arg(&wasm)
        .arg(&rewound)
        .status()
        .unwrap();
    assert!(status.success());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from a file\n").unwrap();

    let mut child = wasm_rewind()
        .arg("run")
        .arg("--env")
        .arg("GREETING=hello there")
        .arg("--dir")
        .arg(format!("{}::/data", data.display()))
        .arg(&rewound)
        .arg("first")
        .arg("--second")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "arg1=first\narg2=--second\nGREETING=hello there\nfile=from a file\nstdin=typed in\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "jumped=7\n");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn run_refuses_a_setjmp_program_that_was_not_instrumented() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = build(dir.path());
    let out = wasm_rewind().arg("run").arg(&wasm).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not instrumented") || err.contains("wasm-rewind instrument"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {:?}", out.stdout);
}

#[test]
fn run_reports_a_missing_module() {
    let out = wasm_rewind()
        .arg("run")
        .arg("/nonexistent/app.wasm")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/app.wasm"));
}
