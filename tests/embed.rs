//! `--embed-runtime`, end to end: programs instrumented with it run under
//! node's own WASI (no asyncify-aware host anywhere) and under plain wasmtime
//! WASI, and must print exactly what the same program prints when
//! instrumented without it and run on the host shim (`wasm-rewind run`),
//! which tests/setjmp.rs and tests/lua.rs compare with native builds.
//!
//! - every `corpus/c/*.c` setjmp/longjmp program;
//! - Lua 5.4 (corpus/lua/build.sh) on every `corpus/lua/*.lua` script;
//! - misuse (`corpus/embed/*.c`): a garbage, a stale, a corrupted jmp_buf and
//!   an overfull store each trap in their own named function;
//! - the runtime's code is a fixed size, whatever the number of call sites;
//! - a jmp_buf armed again with unchanged state keeps its snapshot, and
//!   jmp_bufs written over between setjmps (Lua's `pcall`, 600 in turn)
//!   still displace their previous snapshots, under a 1 MiB store.
//!
//! Needs node (any version with `node:wasi` preview1), clang-19, wasm-ld-19,
//! wasi-libc; `.ci/setup` installs them. A missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

mod process;
use process::{node, root, wasm_rewind, Outcome};

const TIMEOUT: Duration = Duration::from_secs(120);
/// The same as tests/lua.rs gives its scripts.
const LUA_ARGS: [&str; 2] = ["a", "b c"];

fn require_tools() {
    process::require("node", "--version", "nodejs");
    process::require(
        "clang-19",
        "--version",
        "clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc",
    );
}

fn run(cmd: &mut Command) -> Result<Outcome, String> {
    process::run(cmd, TIMEOUT)
}

/// Runs a build step: it must exit with 0. Returns its stdout.
fn step(cmd: &mut Command) -> Result<String, String> {
    process::step(cmd, TIMEOUT)
}

/// `wasm-rewind instrument IN OUT [--embed-runtime]`.
fn instrument(input: &Path, output: &Path, embed: bool) -> Result<(), String> {
    let mut cmd = wasm_rewind();
    cmd.arg("instrument").arg(input).arg(output).arg("-q");
    if embed {
        cmd.arg("--embed-runtime");
    }
    step(&mut cmd).map(drop)
}

/// `wasm-rewind instrument IN OUT --embed-runtime` with a 1 MiB store, so
/// that snapshots nothing drops fill it soon.
fn embed_in_one_mib(input: &Path, output: &Path) -> Result<(), String> {
    step(
        wasm_rewind()
            .arg("instrument")
            .arg(input)
            .arg(output)
            .args(["-q", "--embed-runtime", "--embed-max-memory", "1048576"]),
    )
    .map(drop)
}

/// `wasm-rewind run` of `wasm` with `dir` preopened as `.`.
fn shim(wasm: &Path, dir: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = wasm_rewind();
    cmd.arg("run").arg(wasm);
    if let Some(dir) = dir {
        cmd.arg("--dir").arg(format!("{}::.", dir.display()));
    }
    cmd.arg("--").args(args);
    cmd
}

/// The shim's run and the embedded runs (node, and plain wasmtime WASI
/// through `wasm-rewind run`, which adds no shim to a module without WASIX
/// imports) must agree. `Err` shows all three.
fn compare(
    what: &str,
    with_shim: &mut Command,
    embedded: &Path,
    dir: Option<&Path>,
    args: &[&str],
) -> Result<(), String> {
    let expected = run(with_shim)?;
    let on_node = run(&mut node(embedded, dir, args))?;
    let on_wasmtime = run(&mut shim(embedded, dir, args))?;
    if expected == on_node && expected == on_wasmtime {
        return Ok(());
    }
    Err(format!(
        "{what}: outputs differ\n=== host shim\n{expected:?}\n=== embedded, node\n{on_node:?}\n\
         === embedded, plain wasmtime\n{on_wasmtime:?}"
    ))
}

fn build_c(src: &Path, out: &Path) -> Result<(), String> {
    step(
        Command::new("bash")
            .arg(root().join("corpus/build-c.sh"))
            .arg(src)
            .arg(out),
    )
    .map(drop)
}

fn check_c_program(src: &Path, tmp: &Path) -> Result<(), String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let wasm = tmp.join(format!("{name}.wasm"));
    let rw = tmp.join(format!("{name}.rw.wasm"));
    let embedded = tmp.join(format!("{name}.embedded.wasm"));
    build_c(src, &wasm)?;
    instrument(&wasm, &rw, false)?;
    instrument(&wasm, &embedded, true)?;
    let wasix: Vec<String> = process::imports(&embedded)?
        .into_iter()
        .filter(|i| i.starts_with("wasix_"))
        .collect();
    if !wasix.is_empty() {
        return Err(format!(
            "{name}: the embedded build still imports {wasix:?}"
        ));
    }
    compare(&name, &mut shim(&rw, None, &[]), &embedded, None, &[])
}

#[test]
fn c_programs_behave_the_same_with_the_embedded_runtime() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let srcs = process::corpus_files("corpus/c", "c", 10);
    let failures =
        process::check_in_parallel(&srcs, srcs.len(), |src| check_c_program(src, tmp.path()));
    process::assert_none_failed(
        "C programs (host shim against embedded)",
        failures,
        srcs.len(),
    );
}

/// Lua built once per test process, instrumented both ways.
fn lua_builds() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let stdout = step(Command::new("bash").arg(root().join("corpus/lua/build.sh")))?;
        let wasm = PathBuf::from(stdout.lines().last().unwrap_or_default());
        let rw = wasm.with_file_name("lua.shim.wasm");
        let embedded = wasm.with_file_name("lua.embedded.wasm");
        instrument(&wasm, &rw, false)?;
        instrument(&wasm, &embedded, true)?;
        Ok((rw, embedded))
    });
    match built {
        Ok(paths) => paths,
        Err(e) => panic!("building Lua failed:\n{e}"),
    }
}

#[test]
fn lua_scripts_behave_the_same_with_the_embedded_runtime() {
    require_tools();
    let (rw, embedded) = lua_builds();
    let dir = root().join("corpus/lua");
    let scripts = process::corpus_names("corpus/lua", "lua", 6);
    let failures = process::check_in_parallel(&scripts, scripts.len(), |name| {
        let mut args = vec![name.as_str()];
        args.extend(LUA_ARGS);
        compare(
            name,
            &mut shim(rw, Some(&dir), &args),
            embedded,
            Some(&dir),
            &args,
        )
    });
    process::assert_none_failed(
        "Lua scripts (host shim against embedded)",
        failures,
        scripts.len(),
    );
}

/// Lua's `pcall` arms a jmp_buf in a stack frame that is reused before the
/// next `pcall` arms it again, so the jmp_buf no longer names its previous
/// snapshot: the runtime finds that one through its table of the last slot
/// stored at each address and displaces it, as the host shim does by
/// address. Before, such snapshots were never dropped, and 20,000 failing
/// `pcall`s filled a 1 MiB store (the default 64 MiB, between 90,000 and
/// 100,000).
#[test]
fn a_jmp_buf_written_over_between_setjmps_does_not_fill_the_store() {
    require_tools();
    let (rw, _) = lua_builds();
    let small = rw.with_file_name("lua.embedded-1mib.wasm");
    embed_in_one_mib(&rw.with_file_name("lua.wasm"), &small).unwrap();
    let dir = root().join("bench/lua");
    let o = run(&mut shim(
        &small,
        Some(&dir),
        &["errors_heavy.lua", "100000"],
    ))
    .unwrap();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (Some(0), "caught\t100000\tof\t100000\tat depth\t12\n"),
        "{}",
        o.stderr
    );
}

/// As above with 600 jmp_bufs, armed in turn and written over after each
/// jump (corpus/c/jmpbufs_written_over.c): their previous snapshots are
/// found through the table too, which a table of one entry per hash of the
/// address (256 of them) could not do for this many.
#[test]
fn many_jmp_bufs_written_over_do_not_fill_the_store() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let wasm = tmp.path().join("written_over.wasm");
    let small = tmp.path().join("written_over.embedded-1mib.wasm");
    build_c(&root().join("corpus/c/jmpbufs_written_over.c"), &wasm).unwrap();
    embed_in_one_mib(&wasm, &small).unwrap();
    // setjmp returns i % 13 + 1 for i in 0..60000.
    let sum: u64 = (0..60_000u64).map(|i| i % 13 + 1).sum();
    let expected = format!("60000 arms, sum {sum}\n");
    for (host, o) in [
        ("node", run(&mut node(&small, None, &[])).unwrap()),
        ("wasmtime", run(&mut shim(&small, None, &[])).unwrap()),
    ] {
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (Some(0), expected.as_str()),
            "{host}: {}",
            o.stderr
        );
    }
}

/// One misuse program of `corpus/embed`.
struct Misuse {
    name: &'static str,
    /// Added to `instrument --embed-runtime`.
    embed_flags: &'static [&'static str],
    /// The runtime function it must trap in.
    trap: &'static str,
    /// How the host shim refuses it too: `wasm-rewind run` flags and what
    /// its error says; `None` where the host has nothing to refuse (no store
    /// in guest memory for a program to scribble on).
    host: Option<(&'static [&'static str], &'static str)>,
}

const MISUSE: &[Misuse] = &[
    Misuse {
        name: "corrupt_snapshot",
        embed_flags: &[],
        trap: "__wasm_rewind_corrupt_snapshot",
        host: None,
    },
    Misuse {
        name: "garbage_jmpbuf",
        embed_flags: &[],
        trap: "__wasm_rewind_unknown_snapshot",
        host: Some((&[], "no snapshot")),
    },
    Misuse {
        name: "stale_jmpbuf",
        embed_flags: &[],
        trap: "__wasm_rewind_stale_snapshot",
        host: Some((&[], "has already returned")),
    },
    // 1,500 live jmp_bufs: more than 256 KiB of runtime memory holds, and
    // more than the host's store is told to keep; each fails at the
    // checkpoint that does not fit, naming the limit.
    Misuse {
        name: "store_full",
        embed_flags: &["--embed-max-memory", "262144"],
        trap: "__wasm_rewind_snapshot_store_full",
        host: Some((&["--max-snapshots", "1000"], "--max-snapshots")),
    },
];

#[test]
fn misuse_traps_in_a_function_named_for_the_reason() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let srcs = process::corpus_files("corpus/embed", "c", 1);
    let names: Vec<String> = srcs
        .iter()
        .map(|s| s.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: Vec<&str> = MISUSE.iter().map(|m| m.name).collect();
    assert_eq!(
        names, listed,
        "corpus/embed and MISUSE must list the same programs"
    );
    for (src, m) in srcs.iter().zip(MISUSE) {
        let name = m.name;
        let wasm = tmp.path().join(format!("{name}.wasm"));
        let embedded = tmp.path().join(format!("{name}.embedded.wasm"));
        build_c(src, &wasm).unwrap();
        step(
            wasm_rewind()
                .arg("instrument")
                .arg(&wasm)
                .arg(&embedded)
                .args(["-q", "--embed-runtime"])
                .args(m.embed_flags),
        )
        .unwrap();
        let o = run(&mut node(&embedded, None, &[])).unwrap();
        assert_eq!(o.code, Some(134), "{name} must trap under node: {o:?}");
        assert!(
            o.stderr.contains("RuntimeError: unreachable") && o.stderr.contains(m.trap),
            "{name} must trap in {}:\n{}",
            m.trap,
            o.stderr
        );
        assert!(
            !o.stdout.contains("rewound"),
            "{name} rewound: {}",
            o.stdout
        );
        if let Some((flags, says)) = m.host {
            let rw = tmp.path().join(format!("{name}.rw.wasm"));
            instrument(&wasm, &rw, false).unwrap();
            let o = run(wasm_rewind().arg("run").args(flags).arg(&rw)).unwrap();
            assert_eq!(
                o.code,
                Some(134),
                "the host shim must refuse {name} too: {o:?}"
            );
            assert!(o.stderr.contains(says), "{name}: {}", o.stderr);
            assert!(
                !o.stdout.contains("rewound"),
                "{name} rewound: {}",
                o.stdout
            );
        }
    }
}

/// A module with `sites` setjmp call sites in one exported function.
fn setjmp_sites(sites: usize) -> Vec<u8> {
    let calls = "(drop (call $checkpoint (i32.const 64) (i32.const 96)))\n".repeat(sites);
    wat::parse_str(format!(
        r#"(module
          (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
          (import "wasix_32v1" "stack_restore" (func $restore (param i32 i64)))
          (memory 1)
          (global $__stack_pointer (mut i32) (i32.const 4096))
          (func (export "run") {calls})
          (func (export "jump") (call $restore (i32.const 64) (i64.const 1))))"#
    ))
    .unwrap()
}

#[test]
fn the_embedded_runtime_is_a_fixed_amount_of_code() {
    let options = wasm_rewind_transform::Options {
        embed_runtime: true,
        ..Default::default()
    };
    let sizes: Vec<usize> = [1, 10, 200]
        .iter()
        .map(|&n| {
            let out = wasm_rewind_transform::instrument(&setjmp_sites(n), &options).unwrap();
            out.stats.embedded_runtime_size
        })
        .collect();
    assert!(sizes[0] > 0);
    // Only the hash key differs (it is derived from the input), and its
    // LEB128 encoding takes 1 to 10 bytes.
    let spread = sizes.iter().max().unwrap() - sizes.iter().min().unwrap();
    assert!(
        spread <= 10,
        "the runtime's size depends on the call sites: {sizes:?}"
    );
    // Measured 2,492 bytes with shared frames and growth (1,274 before);
    // the bound leaves room, not a blank cheque.
    assert!(
        sizes[0] < 4096,
        "the embedded runtime is {} bytes",
        sizes[0]
    );
}

#[test]
fn embedding_refuses_flags_for_a_host_driven_buffer() {
    for flags in [
        &["--memory", "0"][..],
        &["--secondary-memory=2"][..],
        &["--import-globals"][..],
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in.wasm");
        let output = tmp.path().join("out.wasm");
        std::fs::write(&input, setjmp_sites(1)).unwrap();
        let o = run(wasm_rewind()
            .arg("instrument")
            .arg(&input)
            .arg(&output)
            .arg("--embed-runtime")
            .args(flags))
        .unwrap();
        assert_eq!(o.code, Some(1), "{flags:?}: {o:?}");
        assert!(
            o.stderr.contains("--embed-runtime"),
            "{flags:?}: {}",
            o.stderr
        );
        assert!(!output.exists(), "{flags:?} left an output file");
    }
}

/// A reactor (no `_start`): every export that can unwind is wrapped, keeps
/// its arguments across the rewinds it takes, and can be called again.
#[test]
fn reactor_exports_are_wrapped_and_reentrant() {
    // count(n): setjmp, then longjmp(env, v + 1) until setjmp returns n;
    // pair(n): the same through count, returning two values.
    let wasm = wat::parse_str(
        r#"(module
          (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
          (import "wasix_32v1" "stack_restore" (func $restore (param i32 i64)))
          (memory (export "memory") 1)
          (global $__stack_pointer (mut i32) (i32.const 4096))
          (func $count (export "count") (param $n i32) (result i32)
            (local $v i64)
            (drop (call $checkpoint (i32.const 64) (i32.const 96)))
            (local.set $v (i64.load (i32.const 96)))
            (if (i64.lt_u (local.get $v) (i64.extend_i32_u (local.get $n)))
              (then (call $restore (i32.const 64) (i64.add (local.get $v) (i64.const 1)))))
            (i32.wrap_i64 (local.get $v)))
          (func (export "pair") (param $n i32) (result i32 i64)
            (call $count (local.get $n))
            (i64.extend_i32_u (i32.mul (local.get $n) (i32.const 1000)))))"#,
    )
    .unwrap();
    let options = wasm_rewind_transform::Options {
        embed_runtime: true,
        ..Default::default()
    };
    let out = wasm_rewind_transform::instrument(&wasm, &options).unwrap();
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &out.wasm).unwrap();
    assert_eq!(module.imports().count(), 0, "the WASIX imports are gone");
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let count = instance
        .get_typed_func::<i32, i32>(&mut store, "count")
        .unwrap();
    assert_eq!(count.call(&mut store, 5).unwrap(), 5);
    assert_eq!(count.call(&mut store, 0).unwrap(), 0);
    assert_eq!(count.call(&mut store, 300).unwrap(), 300);
    let pair = instance
        .get_typed_func::<i32, (i32, i64)>(&mut store, "pair")
        .unwrap();
    assert_eq!(pair.call(&mut store, 7).unwrap(), (7, 7000));
    let state = instance
        .get_typed_func::<(), i32>(&mut store, "asyncify_get_state")
        .unwrap();
    assert_eq!(state.call(&mut store, ()).unwrap(), 0);
}

/// A jmp_buf armed again where the snapshot it holds already has the same
/// frames, globals and stack pointer keeps that snapshot (nothing hashed or
/// stored again), which the jmp_buf shows: its bytes do not change. Armed
/// with other frames, it gets a new snapshot. Both jump correctly.
const REARM: &str = r#"
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static jmp_buf b, first;
static int landed;

__attribute__((noinline)) static void jump(int v) { longjmp(b, v); }

/* Arms b n times at one place and jumps back each time; with `vary`, a
 * value live across setjmp differs each time. 1 if b is still as the first
 * arming left it. */
__attribute__((noinline)) static int rearm(int n, int vary) {
    for (volatile int i = 0; i < n; i++) {
        int tag = vary ? i * 7 + 1 : 1;
        int r = setjmp(b);
        if (r == 0) {
            if (i == 0)
                memcpy(first, b, sizeof b);
            jump(tag);
        }
        landed += r == tag;
    }
    return memcmp(first, b, sizeof b) == 0;
}

__attribute__((noinline)) static int elsewhere(void) {
    int r = setjmp(b);
    if (r == 0)
        jump(5);
    return r;
}

/* Arms b, arms it elsewhere (the first snapshot displaced), puts the first
 * arming back and arms b at the first place again, the same way. */
__attribute__((noinline)) static int put_back(void) {
    for (volatile int step = 0; step < 2; step++) {
        int r = setjmp(b);
        if (r == 0) {
            if (step == 0) {
                memcpy(first, b, sizeof b);
                landed += elsewhere() == 5;
                memcpy(b, first, sizeof b);
            }
            jump(1);
        }
        landed += r == 1;
    }
    return memcmp(first, b, sizeof b) == 0;
}

int main(void) {
    const char *what[] = {"new", "kept"};
    printf("same state: %s\n", what[rearm(100, 0)]);
    printf("other state: %s\n", what[rearm(100, 1)]);
    printf("put back: %s\n", what[put_back()]);
    printf("landed: %d\n", landed);
    return 0;
}
"#;

#[test]
fn rearming_with_the_same_state_keeps_the_snapshot() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("rearm.c");
    let wasm = tmp.path().join("rearm.wasm");
    let embedded = tmp.path().join("rearm.embedded.wasm");
    std::fs::write(&src, REARM).unwrap();
    build_c(&src, &wasm).unwrap();
    instrument(&wasm, &embedded, true).unwrap();
    // 100 + 100 jumps in rearm, one in elsewhere and two in put_back.
    let expected = "same state: kept\nother state: new\nput back: kept\nlanded: 203\n";
    for (host, o) in [
        ("node", run(&mut node(&embedded, None, &[])).unwrap()),
        ("wasmtime", run(&mut shim(&embedded, None, &[])).unwrap()),
    ] {
        assert_eq!(o.code, Some(0), "{host}: {o:?}");
        assert_eq!(o.stdout, expected, "{host}: {}", o.stderr);
    }
}
