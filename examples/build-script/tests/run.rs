//! The example end to end: `build.rs` compiled and instrumented the C program
//! (or the build failed), and the binary runs it with the shim.

use std::process::Command;

#[test]
fn countdown_runs_through_longjmp() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-rewind-build-script-example"))
        .output()
        .expect("cannot start the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Written from the C source: three longjmps back into main's setjmp,
    // each returning the value passed, then a normal exit with status 7.
    assert_eq!(
        stdout, "tick 3\ntick 2\ntick 1\ntick 0\ndone after 3 jumps\n",
        "stderr:\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(7), "stderr:\n{stderr}");
}
