//! Compiles `c/countdown.c` to wasm32-wasi with clang, against wasi-libc and
//! wasm-rewind's `setjmp.h`, and instruments it with the library
//! (`wasm_rewind_transform::Instrument`), leaving `countdown.rw.wasm` in
//! `OUT_DIR` for `main.rs` to embed.
//!
//! Environment: `CLANG` (default `clang-19`, then `clang`), `WASI_SYSROOT`
//! (a real sysroot such as wasi-sdk's `share/wasi-sysroot`; by default one is
//! made in `OUT_DIR` from Debian's wasi-libc, `/usr/include/wasm32-wasi` and
//! `/usr/lib/wasm32-wasi`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if let Err(message) = build() {
        // A build script reports through stderr and a failing status; one
        // clear paragraph beats a panic backtrace.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let source = here.join("c/countdown.c");
    let include = here.join("../../runtime-shim/include");
    println!("cargo:rerun-if-changed={}", source.display());
    println!(
        "cargo:rerun-if-changed={}",
        include.join("setjmp.h").display()
    );
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=WASI_SYSROOT");

    let clang = find_clang()?;
    let sysroot = sysroot(&out)?;
    let object = out.join("countdown.o");
    let wasm = out.join("countdown.wasm");
    let common = [
        "--target=wasm32-wasi".to_string(),
        format!("--sysroot={}", sysroot.display()),
    ];
    // Compile with -O2, link without -O: with -O, clang runs any wasm-opt it
    // finds on the PATH, which would make the output depend on the machine.
    run(Command::new(&clang)
        .args(&common)
        .arg("-I")
        .arg(&include)
        .args(["-O2", "-Wall", "-Wextra", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&object))?;
    // --export=__stack_low: where the C stack begins, which a WASIX host
    // (Wasmer) needs and the pass cannot derive when the data comes first.
    run(Command::new(&clang)
        .args(&common)
        .arg(&object)
        .arg("-Wl,--export=__stack_low")
        .arg("-o")
        .arg(&wasm))?;

    // The post-link step, as a library call. Default options: every import
    // may unwind; the module calls the WASIX stack functions, so it gets its
    // own buffer memory and `__stack_pointer` exported for the shim.
    let done = wasm_rewind_transform::Instrument::new()
        .run_file(&wasm, out.join("countdown.rw.wasm"))
        .map_err(|e| format!("{e}"))?;
    for warning in &done.stats.warnings {
        println!("cargo:warning=wasm-rewind: {warning}");
    }
    Ok(())
}

/// `$CLANG`, else `clang-19`, else `clang`: the first that runs.
fn find_clang() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-19".into(), "clang".into()],
    };
    for c in &candidates {
        if Command::new(c).arg("--version").output().is_ok() {
            return Ok(c.clone());
        }
    }
    Err(format!(
        "no C compiler for wasm found (tried {}). Install clang with the wasm32 \
         target and wasi-libc (Debian 12: apt-get install clang-19 lld-19 \
         libclang-rt-19-dev-wasm32 wasi-libc), or set CLANG to a clang that has them",
        candidates.join(", ")
    ))
}

/// `$WASI_SYSROOT`, or a sysroot in `out` made of two symlinks to Debian's
/// multiarch wasi-libc (clang wants `SYSROOT/include/wasm32-wasi` and
/// `SYSROOT/lib/wasm32-wasi`).
fn sysroot(out: &Path) -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("WASI_SYSROOT") {
        return Ok(PathBuf::from(dir));
    }
    let root = out.join("sysroot");
    for (kind, system) in [
        ("include", "/usr/include/wasm32-wasi"),
        ("lib", "/usr/lib/wasm32-wasi"),
    ] {
        if !Path::new(system).is_dir() {
            return Err(format!(
                "{system} is missing: install wasi-libc (Debian 12: apt-get install \
                 wasi-libc) or set WASI_SYSROOT to a wasi sysroot (wasi-sdk's \
                 share/wasi-sysroot)"
            ));
        }
        let dir = root.join(kind);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let link = dir.join("wasm32-wasi");
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(system), &link)?;
        }
    }
    Ok(root)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("{}: {e}", link.display()))
}

#[cfg(not(unix))]
fn symlink(_: &Path, _: &Path) -> Result<(), String> {
    Err("set WASI_SYSROOT: the default sysroot is made of Unix symlinks".into())
}

/// Runs one compiler command; a failure shows the command and its output.
fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
