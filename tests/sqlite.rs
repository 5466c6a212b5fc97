//! SQLite end to end, a larger real module: `corpus/sqlite/build.sh` builds
//! the amalgamation of the crate libsqlite3-sys (fetched by cargo) with
//! `corpus/sqlite/driver.c`, a small SQL shell, three ways: plain wasm
//! (imports WASI only), wasm whose driver adds SQL functions using setjmp and
//! longjmp through our setjmp.h (`--setjmp`), and native with gcc
//! (`--native`, the same functions on glibc). Both wasm builds are
//! instrumented with `wasm-rewind instrument` (default flags: every import
//! may unwind) and the results validated; then every `corpus/sqlite/*.sql`
//! workload runs under `wasm-rewind run` and natively, and stdout, stderr and
//! exit code must agree. Nothing expected is written down here.
//!
//! Workloads named `setjmp*.sql` call the driver's setjmp functions: they
//! run on the `--setjmp` build only. The others also run on the plain build,
//! before and after instrumenting.
//!
//! Needs gcc, clang-19, wasm-ld-19, wasi-libc and cargo (`.ci/setup` installs
//! them). A missing tool fails the test, saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod process;
use process::Outcome;

/// A build that takes longer than this fails the test: compiling the
/// amalgamation (a 9 MB C file) takes half a minute on a quiet machine.
const BUILD_TIMEOUT: Duration = Duration::from_mins(10);

/// A workload run that takes longer than this fails the test.
const RUN_TIMEOUT: Duration = Duration::from_mins(2);

const INSTALL: &str = "clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc gcc";

/// The workload that also runs against a database file.
const FILE_WORKLOAD: &str = "queries.sql";

fn sqlite_dir() -> PathBuf {
    process::root().join("corpus/sqlite")
}

fn require_tools() {
    process::require("gcc", "--version", INSTALL);
    process::require("clang-19", "--version", INSTALL);
    process::require("wasm-ld-19", "--version", INSTALL);
}

/// Runs a build step: it must exit with 0. Returns its stdout.
fn step(cmd: &mut Command) -> Result<String, String> {
    process::step(cmd, BUILD_TIMEOUT)
}

/// Runs `build.sh FLAGS`: the path it prints on its last line.
fn build(flags: &[&str]) -> Result<PathBuf, String> {
    let stdout = step(
        Command::new("bash")
            .arg(sqlite_dir().join("build.sh"))
            .args(flags),
    )?;
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("build.sh {flags:?} printed {path:?}, not a file"))
    }
}

/// Instruments `wasm` with default flags beside itself (redone every run:
/// wasm-rewind may have changed) and validates the result.
fn instrument(wasm: &Path) -> Result<PathBuf, String> {
    instrument_with(wasm, "rw.wasm", &[])
}

/// Instruments `wasm` with `flags` into a file beside it with `extension`,
/// and validates the result.
fn instrument_with(wasm: &Path, extension: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let rw = wasm.with_extension(extension);
    step(
        process::wasm_rewind()
            .arg("instrument")
            .arg(wasm)
            .arg(&rw)
            .args(flags),
    )?;
    let bytes = std::fs::read(&rw).map_err(|e| format!("read {}: {e}", rw.display()))?;
    wasmparser::Validator::new()
        .validate_all(&bytes)
        .map_err(|e| format!("{} does not validate: {e}", rw.display()))?;
    Ok(rw)
}

/// The three builds, and the two wasm ones instrumented.
struct Builds {
    plain: PathBuf,
    plain_rw: PathBuf,
    setjmp_rw: PathBuf,
    /// The setjmp build with setjmp/longjmp lowered to wasm exceptions.
    setjmp_exceptions: PathBuf,
    native: PathBuf,
}

/// Builds (cached by build.sh under target/) and instruments everything,
/// once per test process.
fn builds() -> &'static Builds {
    static BUILT: OnceLock<Result<Builds, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let start = Instant::now();
        // The native and the wasm amalgamation compile side by side.
        let (native, wasm) = std::thread::scope(|scope| {
            let native = scope.spawn(|| build(&["--native"]));
            let wasm = build(&[]).and_then(|plain| Ok((plain, build(&["--setjmp"])?)));
            (native.join().expect("build thread panicked"), wasm)
        });
        let (native, (plain, setjmp)) = (native?, wasm?);
        let built = start.elapsed();
        // The plain build must run uninstrumented, the other must really
        // have gone through our setjmp.h.
        if process::imports_checkpoint(&plain)? {
            return Err(format!("{} imports the WASIX stack calls", plain.display()));
        }
        if !process::imports_checkpoint(&setjmp)? {
            return Err(format!(
                "{} does not import wasix_32v1.stack_checkpoint: not built with our setjmp.h",
                setjmp.display()
            ));
        }
        let plain_rw = instrument(&plain)?;
        let setjmp_rw = instrument(&setjmp)?;
        let setjmp_exceptions =
            instrument_with(&setjmp, "exceptions.wasm", &["--sjlj", "exceptions"])?;
        if process::imports_checkpoint(&setjmp_exceptions)? {
            return Err(format!(
                "{} still imports the WASIX stack calls",
                setjmp_exceptions.display()
            ));
        }
        eprintln!(
            "sqlite: build.sh {:.2?}, instrument both {:.2?}",
            built,
            start.elapsed() - built
        );
        Ok(Builds {
            plain,
            plain_rw,
            setjmp_rw,
            setjmp_exceptions,
            native,
        })
    });
    match built {
        Ok(b) => b,
        Err(e) => panic!("building SQLite failed:\n{e}"),
    }
}

/// Every `corpus/sqlite/*.sql`, sorted, whose name starts with `setjmp`
/// (`setjmp == true`) or does not.
fn workloads(setjmp: bool) -> Vec<String> {
    process::corpus_names("corpus/sqlite", "sql", 2)
        .into_iter()
        .filter(|n| n.starts_with("setjmp") == setjmp)
        .collect()
}

/// Runs the native build on `args` from `dir`.
fn run_native(native: &Path, dir: &Path, args: &[&str]) -> Result<Outcome, String> {
    let o = process::run(
        Command::new(native).current_dir(dir).args(args),
        RUN_TIMEOUT,
    )?;
    // The reference must have run the workload: an unreadable file or
    // database, or a crash, is a broken test, not an expected result.
    if !matches!(o.code, Some(0 | 1)) || o.stdout.is_empty() {
        return Err(format!(
            "native {native:?} {args:?} did not run (exit {:?})\n--- stderr\n{}",
            o.code, o.stderr
        ));
    }
    Ok(o)
}

/// Runs a wasm module under `wasm-rewind run` with `dirs` preopened (host,
/// guest) and `args`.
fn run_wasm(wasm: &Path, dirs: &[(&Path, &str)], args: &[&str]) -> Result<Outcome, String> {
    let mut cmd = process::wasm_rewind();
    cmd.arg("run").arg(wasm);
    for (host, guest) in dirs {
        cmd.arg("--dir").arg(format!("{}::{guest}", host.display()));
    }
    process::run(cmd.arg("--").args(args), RUN_TIMEOUT)
}

/// Runs `check` on every workload in parallel; panics listing every failure.
fn check_all(names: &[String], check: impl Fn(&str) -> Result<(), String> + Sync) {
    let failures = process::check_in_parallel(names, names.len(), |name| check(name));
    process::assert_none_failed("SQLite workloads", failures, names.len());
}

/// Plain SQLite prints the same before and after instrumenting, and the
/// same as native, on every workload that does not need the setjmp build.
#[test]
fn instrumented_sqlite_matches_uninstrumented_and_native() {
    require_tools();
    let b = builds();
    let dir = sqlite_dir();
    let names = workloads(false);
    check_all(&names, |name| {
        let t = Instant::now();
        let native = run_native(&b.native, &dir, &[name])?;
        let original = run_wasm(&b.plain, &[(&dir, ".")], &[name])?;
        let t_original = t.elapsed();
        let instrumented = run_wasm(&b.plain_rw, &[(&dir, ".")], &[name])?;
        eprintln!(
            "{name}: original {t_original:.2?}, instrumented {:.2?}",
            t.elapsed() - t_original
        );
        process::all_same(
            name,
            &[
                ("wasm, not instrumented", &original),
                ("wasm, instrumented", &instrumented),
                ("native", &native),
            ],
        )
    });
}

/// With the driver's setjmp functions, whose every setjmp and longjmp
/// unwinds and rewinds through SQLite's frames, every `setjmp*.sql`
/// workload prints what the native build prints. (The others run on this
/// build too, in [`sqlite_file_database_matches_native`].)
#[test]
fn sqlite_setjmp_functions_match_native() {
    require_tools();
    check_setjmp_workloads("wasm, setjmp build, instrumented", &builds().setjmp_rw);
}

/// The same, with setjmp/longjmp lowered to wasm exceptions (`--sjlj
/// exceptions`): every longjmp is thrown through SQLite's frames, which the
/// lowering leaves as they were, and caught where setjmp was called.
#[test]
fn sqlite_setjmp_functions_match_native_with_exceptions() {
    require_tools();
    check_setjmp_workloads(
        "wasm, setjmp build, --sjlj exceptions",
        &builds().setjmp_exceptions,
    );
}

/// Every `setjmp*.sql` workload on `wasm` (labelled `label`) against native.
fn check_setjmp_workloads(label: &str, wasm: &Path) {
    let b = builds();
    let dir = sqlite_dir();
    let names = workloads(true);
    check_all(&names, |name| {
        let native = run_native(&b.native, &dir, &[name])?;
        let t = Instant::now();
        let out = run_wasm(wasm, &[(&dir, ".")], &[name])?;
        eprintln!("{name}: {label} {:.2?}", t.elapsed());
        process::all_same(name, &[(label, &out), ("native", &native)])
    });
}

/// Against a database file (WASI file I/O: the file, its rollback journal,
/// locking), the instrumented `--setjmp` build prints what native prints and
/// leaves a byte-identical database behind.
#[test]
fn sqlite_file_database_matches_native() {
    require_tools();
    let b = builds();
    let sql = sqlite_dir().join(FILE_WORKLOAD);
    let native_dir = tempfile::tempdir().expect("temp dir");
    let wasm_dir = tempfile::tempdir().expect("temp dir");
    let sql_arg = sql.to_str().expect("UTF-8 path");
    let native = run_native(&b.native, native_dir.path(), &[sql_arg, "shop.db"])
        .unwrap_or_else(|e| panic!("{e}"));
    let guest_sql = format!("sql/{FILE_WORKLOAD}");
    let wasm = run_wasm(
        &b.setjmp_rw,
        &[(&sqlite_dir(), "sql"), (wasm_dir.path(), ".")],
        &[&guest_sql, "shop.db"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    process::all_same(
        FILE_WORKLOAD,
        &[
            ("wasm, instrumented, file database", &wasm),
            ("native", &native),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let read = |d: &Path| std::fs::read(d.join("shop.db")).expect("read shop.db");
    let (native_db, wasm_db) = (read(native_dir.path()), read(wasm_dir.path()));
    assert!(!native_db.is_empty(), "native left an empty shop.db");
    assert!(
        native_db == wasm_db,
        "shop.db differs: native {} bytes, wasm {} bytes",
        native_db.len(),
        wasm_db.len()
    );
}

/// A second build.sh run finds the cache and prints the same path.
#[test]
fn sqlite_build_is_cached() {
    require_tools();
    let first = &builds().plain;
    let start = Instant::now();
    let again = build(&[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&again, first);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "a cached build.sh run took {:?}",
        start.elapsed()
    );
}
