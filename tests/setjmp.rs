//! setjmp/longjmp in C, end to end: every `corpus/c/*.c` program is built
//! natively with gcc (glibc's setjmp) and for wasm32-wasi with clang and our
//! `runtime-shim/include/setjmp.h` (`corpus/build-c.sh`), instrumented with
//! `wasm-rewind instrument` (default flags) and run with `wasm-rewind run`.
//! The wasm run must print the same stdout and stderr and exit with the same
//! code as the native one; nothing expected is written down here.
//!
//! Needs gcc, clang-19, wasm-ld-19 and Debian's wasi-libc (`.ci/setup`
//! installs them). A missing tool fails the test, saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod process;
use process::{root, wasm_rewind, Outcome};

/// A program that takes longer than this (build or run) fails the test.
const TIMEOUT: Duration = Duration::from_mins(2);

/// The lines of clang's assembly that pin the two imports for `target`: the
/// WASIX module, names and signatures (pointers are i64 on wasm64).
fn abi_lines(target: &str) -> Vec<String> {
    let (ptr, module) = match target {
        "wasm32-wasi" => ("i32", "wasix_32v1"),
        "wasm64-wasi" => ("i64", "wasix_64v1"),
        _ => unreachable!(),
    };
    let (ck, rs) = (
        "__wasm_rewind_stack_checkpoint",
        "__wasm_rewind_stack_restore",
    );
    vec![
        format!(".functype\t{ck} ({ptr}, {ptr}) -> (i32)"),
        format!(".import_module\t{ck}, {module}"),
        format!(".import_name\t{ck}, stack_checkpoint"),
        format!(".functype\t{rs} ({ptr}, i64) -> ()"),
        format!(".import_module\t{rs}, {module}"),
        format!(".import_name\t{rs}, stack_restore"),
    ]
}

fn include_dir() -> PathBuf {
    root().join("runtime-shim/include")
}

/// Fails (never skips) when `tool` cannot be started.
fn require(tool: &str, install: &str) {
    process::require(tool, "--version", install);
}

/// Runs `cmd` to completion, killing it after [`TIMEOUT`].
fn run(cmd: &mut Command) -> Result<Outcome, String> {
    process::run(cmd, TIMEOUT)
}

/// Runs a build step: it must exit with 0.
fn step(cmd: &mut Command) -> Result<(), String> {
    process::step(cmd, TIMEOUT).map(drop)
}

/// The reference: `src` built with gcc and glibc's own setjmp.h.
fn native_outcome(src: &Path, name: &str, dir: &Path) -> Result<Outcome, String> {
    process::native_outcome(src, name, dir, TIMEOUT)
}

/// Native reference, wasm build, instrument, run, compare. `Err` says what
/// went wrong for this program.
fn check_program(src: &Path, dir: &Path) -> Result<(), String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let wasm = dir.join(format!("{name}.wasm"));
    let rewound = dir.join(format!("{name}.rw.wasm"));
    let expected = native_outcome(src, &name, dir)?;

    step(
        Command::new("bash")
            .arg(root().join("corpus/build-c.sh"))
            .arg(src)
            .arg(&wasm),
    )?;
    let imported = process::imports(&wasm)?;
    if !imported.iter().any(|i| i == "wasix_32v1.stack_checkpoint") {
        return Err(format!(
            "{name}.wasm does not import wasix_32v1.stack_checkpoint (imports: {imported:?})"
        ));
    }

    step(wasm_rewind().arg("instrument").arg(&wasm).arg(&rewound))?;
    let actual = run(wasm_rewind().arg("run").arg(&rewound))?;
    process::all_same(
        &name,
        &[("native", &expected), ("wasm-rewind run", &actual)],
    )
}

#[test]
fn c_programs_match_native() {
    require("gcc", "gcc");
    require("clang-19", "clang-19 lld-19 libclang-rt-19-dev-wasm32");
    require("wasm-ld-19", "lld-19");
    assert!(
        Path::new("/usr/lib/wasm32-wasi/libc.a").exists()
            || std::env::var_os("WASI_SYSROOT").is_some(),
        "wasi-libc not found in /usr/lib/wasm32-wasi (Debian: apt-get install wasi-libc), \
         and WASI_SYSROOT is not set"
    );

    let sources = process::corpus_files("corpus/c", "c", 10);
    let dir = tempfile::tempdir().expect("temporary directory");
    let failures = process::check_in_parallel(&sources, sources.len(), |src| {
        check_program(src, dir.path())
    });
    process::assert_none_failed("C programs (against native)", failures, sources.len());
}

/// With setjmp/longjmp lowered to wasm exceptions (`--sjlj exceptions`
/// under `wasm-rewind run`, `--sjlj legacy-exceptions` under node 20's
/// own WASI), every program prints what its native build prints, built by
/// clang 19 and by clang 22 (whose wasm-ld puts the stack first). The
/// lowered modules import no WASIX stack call: nothing serves them there.
#[test]
fn c_programs_match_native_with_exceptions() {
    require("gcc", "gcc");
    require("clang-19", "clang-19 lld-19 libclang-rt-19-dev-wasm32");
    require("clang-22", "clang-22 lld-22 libclang-rt-22-dev-wasm32");
    require("node", "nodejs");

    let sources = process::corpus_files("corpus/c", "c", 10);
    let dir = tempfile::tempdir().expect("temporary directory");
    let failures = process::check_in_parallel(&sources, sources.len(), |src| {
        check_program_with_exceptions(src, dir.path())
    });
    process::assert_none_failed(
        "C programs with exceptions (against native)",
        failures,
        sources.len(),
    );
}

fn check_program_with_exceptions(src: &Path, dir: &Path) -> Result<(), String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let expected = native_outcome(src, &format!("{name}.exceptions"), dir)?;
    for clang in ["clang-19", "clang-22"] {
        let wasm = dir.join(format!("{name}.{clang}.wasm"));
        step(
            Command::new("bash")
                .arg(root().join("corpus/build-c.sh"))
                .arg(src)
                .arg(&wasm)
                .env("CLANG", clang),
        )?;
        for (lowering, host) in [("exceptions", "run"), ("legacy-exceptions", "node")] {
            let lowered = dir.join(format!("{name}.{clang}.{lowering}.wasm"));
            step(
                wasm_rewind()
                    .arg("instrument")
                    .arg(&wasm)
                    .arg(&lowered)
                    .args(["--sjlj", lowering]),
            )?;
            if process::imports_checkpoint(&lowered)? {
                return Err(format!(
                    "{name} ({clang}, {lowering}) still imports the WASIX calls"
                ));
            }
            let actual = match host {
                "run" => run(wasm_rewind().arg("run").arg(&lowered))?,
                _ => run(&mut process::node(&lowered, None, &[]))?,
            };
            let label = format!("{clang}, --sjlj {lowering}, {host}");
            process::all_same(&name, &[("native", &expected), (&label, &actual)])?;
        }
    }
    Ok(())
}

/// `jmp_buf` is WASIX's: 24 bytes, aligned to 8, `u64 user` at 0 and the
/// 16-byte hash at 8, on wasm32 and wasm64, in C and C++.
#[test]
fn jmp_buf_layout_is_wasix() {
    require("clang-19", "clang-19");
    let dir = tempfile::tempdir().expect("temporary directory");
    let src = dir.path().join("layout.c");
    std::fs::write(
        &src,
        r#"#include <setjmp.h>
#include <stddef.h>
_Static_assert(sizeof(jmp_buf) == 24, "size");
_Static_assert(_Alignof(jmp_buf) == 8, "align");
_Static_assert(sizeof(sigjmp_buf) == 24, "sigjmp_buf size");
_Static_assert(offsetof(struct __jmp_buf_tag, __user) == 0, "user");
_Static_assert(sizeof(((struct __jmp_buf_tag *)0)->__user) == 8, "user size");
_Static_assert(offsetof(struct __jmp_buf_tag, __hash) == 8, "hash");
_Static_assert(sizeof(((struct __jmp_buf_tag *)0)->__hash) == 16, "hash size");
int f(jmp_buf env) { return setjmp(env); }
"#,
    )
    .unwrap();
    for target in ["wasm32-wasi", "wasm64-wasi"] {
        for lang in ["c", "c++"] {
            // stddef.h is clang's own: no sysroot needed.
            step(
                Command::new("clang-19")
                    .arg(format!("--target={target}"))
                    .args(["-fsyntax-only", "-Werror", "-Wall", "-Wextra", "-x", lang])
                    .arg("-I")
                    .arg(include_dir())
                    .arg(&src),
            )
            .unwrap_or_else(|e| panic!("jmp_buf layout, {target} {lang}:\n{e}"));
        }
    }
}

/// The header imports exactly the WASIX signatures the shim implements.
#[test]
fn header_imports_wasix_signatures() {
    require("clang-19", "clang-19");
    let dir = tempfile::tempdir().expect("temporary directory");
    let src = dir.path().join("abi.c");
    std::fs::write(
        &src,
        "#include <setjmp.h>\n\
         jmp_buf env;\n\
         int f(int v) { int r = setjmp(env); if (!r) longjmp(env, v); return r; }\n",
    )
    .unwrap();
    for target in ["wasm32-wasi", "wasm64-wasi"] {
        let asm = dir.path().join(format!("{target}.s"));
        step(
            Command::new("clang-19")
                .arg(format!("--target={target}"))
                .args(["-O2", "-S", "-I"])
                .arg(include_dir())
                .arg(&src)
                .arg("-o")
                .arg(&asm),
        )
        .unwrap();
        let text = std::fs::read_to_string(&asm).unwrap();
        for line in abi_lines(target) {
            assert!(
                text.lines().any(|l| l.trim() == line),
                "{target}: expected `{line}` in clang's output:\n{text}"
            );
        }
    }
}
