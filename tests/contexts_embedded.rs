//! WASIX contexts served by the embedded runtime (`--embed-runtime`), end to
//! end: no host serves `context_create` / `context_switch` /
//! `context_destroy`; the instrumented module does, and runs under node's own
//! WASI and under plain wasmtime WASI (`wasm-rewind run`, which adds no shim
//! to a module without WASIX imports).
//!
//! - every `corpus/contexts/*.c` (ucontext over our `wasix/context.h`), built
//!   by clang 19 and clang 22, prints what its native gcc build (glibc's
//!   ucontext) prints, on both engines: generators, 1,000 contexts round
//!   robin, 1,000,000 switches, setjmp inside contexts, getcontext;
//! - every `corpus/contexts/wasix/*.c` prints its `.expected` (switching to a
//!   destroyed context, destroying the running or the main context: EINVAL);
//! - misuse and the runtime's own rules, with programs written here: a
//!   longjmp to another context's snapshot traps in
//!   `__wasm_rewind_longjmp_across_contexts`, a destroyed context's
//!   snapshots are gone, live snapshots of one context survive the store
//!   making room in another, a raw entrypoint that returns ends the program
//!   with status 129 (or traps in a named function without WASI), and the
//!   errnos of the raw calls.
//!
//! Needs gcc, clang-19, clang-22 (with their wasm-ld), wasi-libc and node;
//! `.ci/setup` installs them. A missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod process;
use process::{node, wasm_rewind, Outcome};

/// A build or run that takes longer fails the test.
const TIMEOUT: Duration = Duration::from_mins(3);

/// The compilers every wasm build is made with: clang 19 puts the C stack
/// after the data, clang 22 before it, which moves the heap (and so every
/// context's stack) relative to the main stack.
const CLANGS: [&str; 2] = ["clang-19", "clang-22"];

fn require_tools() {
    process::require("gcc", "--version", "gcc");
    process::require(
        "clang-19",
        "--version",
        "clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc",
    );
    process::require(
        "clang-22",
        "--version",
        "clang-22 lld-22 libclang-rt-22-dev-wasm32",
    );
    process::require("node", "--version", "nodejs");
}

fn run(cmd: &mut Command) -> Result<Outcome, String> {
    process::run(cmd, TIMEOUT)
}

fn step(cmd: &mut Command) -> Result<String, String> {
    process::step(cmd, TIMEOUT)
}

/// `src` built for wasm by `clang` with the table exported (Wasmer's
/// requirement; ours finds table 0 either way) and instrumented with
/// `--embed-runtime` (and `flags`). Checks that no WASIX import is left.
fn build_embedded(src: &Path, clang: &str, dir: &Path, flags: &[&str]) -> Result<PathBuf, String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let wasm = dir.join(format!("{name}.{clang}.wasm"));
    let embedded = dir.join(format!("{name}.{clang}.embedded.wasm"));
    process::build_c_with_table(src, &wasm, clang, TIMEOUT)?;
    if !process::imports(&wasm)?
        .iter()
        .any(|i| i == "wasix_32v1.context_switch")
    {
        return Err(format!(
            "{name} ({clang}) does not import wasix_32v1.context_switch"
        ));
    }
    step(
        wasm_rewind()
            .arg("instrument")
            .arg(&wasm)
            .arg(&embedded)
            .args(["-q", "--embed-runtime"])
            .args(flags),
    )?;
    let wasix: Vec<String> = process::imports(&embedded)?
        .into_iter()
        .filter(|i| i.starts_with("wasix_"))
        .collect();
    if !wasix.is_empty() {
        return Err(format!(
            "{name} ({clang}): the embedded build still imports {wasix:?}"
        ));
    }
    Ok(embedded)
}

/// The module under node's WASI and under plain wasmtime (`wasm-rewind run`,
/// which lets a program exit with any status up to 255, as native code can:
/// 129 is what an entrypoint that returns ends with).
fn run_both(wasm: &Path) -> Result<(Outcome, Outcome), String> {
    let on_node = run(&mut node(wasm, None, &[]))?;
    let on_wasmtime = run(wasm_rewind().arg("run").arg(wasm))?;
    Ok((on_node, on_wasmtime))
}

fn check_ucontext_program(src: &Path, dir: &Path) -> Result<(), String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let expected = process::native_outcome(src, &name, dir, TIMEOUT)?;
    for clang in CLANGS {
        let embedded = build_embedded(src, clang, dir, &[])?;
        let (on_node, on_wasmtime) = run_both(&embedded)?;
        process::all_same(
            &format!("{name} ({clang})"),
            &[
                ("native", &expected),
                ("embedded, node", &on_node),
                ("embedded, plain wasmtime", &on_wasmtime),
            ],
        )?;
    }
    Ok(())
}

#[test]
fn ucontext_programs_match_native_with_the_embedded_runtime() {
    require_tools();
    let sources = process::corpus_files("corpus/contexts", "c", 7);
    let dir = tempfile::tempdir().expect("temporary directory");
    let failures =
        process::check_in_parallel(&sources, 2, |src| check_ucontext_program(src, dir.path()));
    process::assert_none_failed(
        "ucontext programs (embedded against native)",
        failures,
        sources.len(),
    );
}

/// stdout followed by `exit STATUS`, the format of the `.expected` files.
fn as_expected(o: &Outcome) -> String {
    match o.code {
        Some(code) => format!("{}exit {code}\n", o.stdout),
        None => format!("{}killed by a signal\n", o.stdout),
    }
}

fn check_wasix_program(src: &Path, dir: &Path) -> Result<(), String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let expected_file = src.with_extension("expected");
    let expected = std::fs::read_to_string(&expected_file)
        .map_err(|e| format!("read {}: {e}", expected_file.display()))?;
    for clang in CLANGS {
        let embedded = build_embedded(src, clang, dir, &[])?;
        let (on_node, on_wasmtime) = run_both(&embedded)?;
        for (engine, o) in [("node", &on_node), ("plain wasmtime", &on_wasmtime)] {
            if as_expected(o) != expected {
                return Err(format!(
                    "{name} ({clang}, embedded, {engine}): expected\n{expected}--- got\n{}\
                     --- stderr\n{}",
                    as_expected(o),
                    o.stderr
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn wasix_programs_print_their_expected_output_with_the_embedded_runtime() {
    require_tools();
    let sources = process::corpus_files("corpus/contexts/wasix", "c", 4);
    let dir = tempfile::tempdir().expect("temporary directory");
    let failures =
        process::check_in_parallel(&sources, 2, |src| check_wasix_program(src, dir.path()));
    process::assert_none_failed(
        "WASIX context programs (embedded against .expected)",
        failures,
        sources.len(),
    );
}

/// Writes `source` as `dir/NAME.c` and builds it embedded with `clang`.
fn build_source(name: &str, source: &str, clang: &str, dir: &Path, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    build_embedded(&src, clang, dir, flags).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Asserts that both engines trap in the runtime function `function` after
/// printing exactly `stdout`.
fn assert_traps_in(wasm: &Path, what: &str, stdout: &str, function: &str) {
    let (on_node, on_wasmtime) = run_both(wasm).unwrap();
    for (engine, o) in [("node", &on_node), ("plain wasmtime", &on_wasmtime)] {
        assert_eq!(o.code, Some(134), "{what} must trap on {engine}: {o:?}");
        assert!(
            o.stderr.contains(function),
            "{what} must trap in {function} on {engine}:\n{}",
            o.stderr
        );
        assert_eq!(o.stdout, stdout, "{what} on {engine}");
    }
}

/// A longjmp must stay in the context that called setjmp: from another
/// context it traps, naming the reason. Once that context is destroyed its
/// snapshots are gone: the same longjmp finds no snapshot.
#[test]
fn longjmp_across_contexts_traps_and_destroy_drops_snapshots() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let program = |destroy: bool| {
        format!(
            r#"#include <setjmp.h>
#include <stdio.h>
#include <wasix/context.h>

static jmp_buf in_worker;
static wasix_context_id_t worker;

static void work(void) {{
    if (setjmp(in_worker) == 0) {{
        printf("worker set its jmp_buf\n");
        wasix_context_switch(wasix_context_main);
    }}
    printf("worker jumped: wrong\n");
    for (;;)
        wasix_context_switch(wasix_context_main);
}}

int main(void) {{
    if (wasix_context_create(&worker, work) != 0)
        return 1;
    wasix_context_switch(worker);
    if ({destroy}) {{
        printf("main destroys the worker: %d\n", wasix_context_destroy(worker));
    }}
    printf("main jumps into the worker's snapshot\n");
    fflush(stdout);
    longjmp(in_worker, 1);
}}
"#,
            destroy = destroy as i32
        )
    };
    for clang in CLANGS {
        let across = build_source("across", &program(false), clang, dir.path(), &[]);
        assert_traps_in(
            &across,
            &format!("longjmp across contexts ({clang})"),
            "worker set its jmp_buf\nmain jumps into the worker's snapshot\n",
            "__wasm_rewind_longjmp_across_contexts",
        );
        let destroyed = build_source("destroyed", &program(true), clang, dir.path(), &[]);
        assert_traps_in(
            &destroyed,
            &format!("longjmp into a destroyed context ({clang})"),
            "worker set its jmp_buf\nmain destroys the worker: 0\n\
             main jumps into the worker's snapshot\n",
            "__wasm_rewind_unknown_snapshot",
        );
    }
}

/// Snapshots are dead when taken below their own context's stack pointer:
/// with separate C stacks (the worker's is on the heap, above or below
/// main's depending on the linker), comparing with the running context's
/// stack pointer would drop live snapshots of the other one. Each context
/// fills the store with dead snapshots (setjmp in a function that returns,
/// each into its own jmp_buf) while the other holds a live one, under a cap
/// small enough that the store must make room; both live ones still jump.
#[test]
fn live_snapshots_of_other_contexts_survive_making_room() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let source = r#"#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <wasix/context.h>

#define DEAD 1000
static jmp_buf *dead;
static jmp_buf main_env, worker_env;
static wasix_context_id_t worker;

/* Sets dead[i] with `depth` * 16 bytes of stack below the caller's, and
 * returns: the snapshot is dead. */
static __attribute__((noinline)) void mark(int i, int depth) {
    volatile char pad[16 * depth + 16];
    pad[0] = 0;
    if (setjmp(dead[i]) != 0)
        abort();
    pad[1] = pad[0];
}

/* Each mark is 16 bytes shallower than the one before, so when the store
 * makes room every earlier one lies below the stack pointer. */
static __attribute__((noinline)) void churn(int from) {
    for (int i = 0; i < DEAD; i++)
        mark(from + i, DEAD - i);
}

static void work(void) {
    volatile int jumps = 0;
    if (setjmp(worker_env) != 0) {
        printf("worker jumped back (%d)\n", jumps);
        wasix_context_switch(wasix_context_main);
        abort();
    }
    jumps++;
    churn(0);
    printf("worker made %d dead snapshots\n", DEAD);
    wasix_context_switch(wasix_context_main);
    longjmp(worker_env, 1);
}

int main(void) {
    dead = calloc(2 * DEAD, sizeof(jmp_buf));
    if (!dead || wasix_context_create(&worker, work) != 0)
        return 1;
    if (setjmp(main_env) != 0) {
        printf("main jumped back\n");
        return 0;
    }
    wasix_context_switch(worker);
    churn(DEAD);
    printf("main made %d dead snapshots\n", DEAD);
    wasix_context_switch(worker);
    longjmp(main_env, 1);
}
"#;
    for clang in CLANGS {
        // 256 KiB: the runtime's buffer, buckets, ring and contexts, and a
        // few hundred snapshots at a time.
        let wasm = build_source(
            "liveness",
            source,
            clang,
            dir.path(),
            &["--embed-max-memory", "262144"],
        );
        let (on_node, on_wasmtime) = run_both(&wasm).unwrap();
        for (engine, o) in [("node", &on_node), ("plain wasmtime", &on_wasmtime)] {
            assert_eq!(
                (o.code, o.stdout.as_str()),
                (
                    Some(0),
                    "worker made 1000 dead snapshots\nmain made 1000 dead snapshots\n\
                     worker jumped back (1)\nmain jumped back\n"
                ),
                "{clang}, {engine}: {o:?}"
            );
        }
    }
}

/// The raw calls, as a program not built with our header makes them: the
/// errnos of create (entry out of the table, null), switch (unknown,
/// destroyed, self) and destroy (main, self, unknown, twice); ids count up
/// from 1 and are never reused; an entrypoint that returns ends the program
/// with status 129 (`proc_exit`), printing nothing after it.
#[test]
fn raw_calls_follow_wasmer() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let source = r#"#include <stdint.h>
#include <stdio.h>

int32_t ctx_create(uint64_t *id, uint32_t entry)
    __attribute__((import_module("wasix_32v1"), import_name("context_create")));
int32_t ctx_switch(uint64_t id)
    __attribute__((import_module("wasix_32v1"), import_name("context_switch")));
int32_t ctx_destroy(uint64_t id)
    __attribute__((import_module("wasix_32v1"), import_name("context_destroy")));

static uint64_t a, b;
static int runs;

static void body(void) {
    for (;;) {
        runs++;
        printf("in a: destroy a -> %d, destroy 0 -> %d\n", (int)ctx_destroy(a),
               (int)ctx_destroy(0));
        ctx_switch(0);
    }
}

static void returns(void) {
    printf("b returns\n");
    fflush(stdout);
}

int main(void) {
    printf("create, entry out of the table -> %d\n", (int)ctx_create(&a, 1u << 30));
    printf("create, null entry -> %d\n", (int)ctx_create(&a, 0));
    printf("create a -> %d, id %d\n", (int)ctx_create(&a, (uint32_t)(uintptr_t)&body), (int)a);
    printf("switch to self -> %d\n", (int)ctx_switch(0));
    printf("switch to unknown -> %d\n", (int)ctx_switch(99));
    int r = ctx_switch(a);
    printf("switch to a -> %d, runs %d\n", r, runs);
    r = ctx_switch(a);
    printf("switch to a -> %d, runs %d\n", r, runs);
    printf("destroy 0 -> %d\n", (int)ctx_destroy(0));
    printf("destroy a -> %d\n", (int)ctx_destroy(a));
    printf("destroy a again -> %d\n", (int)ctx_destroy(a));
    printf("destroy unknown -> %d\n", (int)ctx_destroy(1000));
    r = ctx_switch(a);
    printf("switch to destroyed a -> %d, runs %d\n", r, runs);
    printf("create b -> %d, id %d\n", (int)ctx_create(&b, (uint32_t)(uintptr_t)&returns),
           (int)b);
    fflush(stdout);
    ctx_switch(b);
    printf("main resumed after b returned: wrong\n");
    return 0;
}
"#;
    let expected = "create, entry out of the table -> 28\n\
                    create, null entry -> 28\n\
                    create a -> 0, id 1\n\
                    switch to self -> 0\n\
                    switch to unknown -> 28\n\
                    in a: destroy a -> 28, destroy 0 -> 28\n\
                    switch to a -> 0, runs 1\n\
                    in a: destroy a -> 28, destroy 0 -> 28\n\
                    switch to a -> 0, runs 2\n\
                    destroy 0 -> 28\n\
                    destroy a -> 0\n\
                    destroy a again -> 0\n\
                    destroy unknown -> 0\n\
                    switch to destroyed a -> 28, runs 2\n\
                    create b -> 0, id 2\n\
                    b returns\n";
    for clang in CLANGS {
        let wasm = build_source("raw", source, clang, dir.path(), &[]);
        let (on_node, on_wasmtime) = run_both(&wasm).unwrap();
        for (engine, o) in [("node", &on_node), ("plain wasmtime", &on_wasmtime)] {
            assert_eq!(
                (o.code, o.stdout.as_str()),
                (Some(129), expected),
                "{clang}, {engine}: {o:?}"
            );
        }
    }
}

/// A module with the context calls and no WASI: the entry that returns
/// traps in `__wasm_rewind_context_entrypoint_returned`, after main's
/// switch started it (it recorded that it ran).
#[test]
fn an_entry_returning_without_wasi_traps_in_a_named_function() {
    let wasm = wat::parse_str(
        r#"(module
          (import "wasix_32v1" "context_create" (func $create (param i32 i32) (result i32)))
          (import "wasix_32v1" "context_switch" (func $switch (param i64) (result i32)))
          (memory (export "memory") 1)
          (global $__stack_pointer (mut i32) (i32.const 4096))
          (table (export "__indirect_function_table") 2 funcref)
          (elem (i32.const 1) func $entry)
          (func $entry (i32.store (i32.const 16) (i32.const 7)))
          (func (export "run") (result i32)
            (drop (call $create (i32.const 64) (i32.const 1)))
            (drop (call $switch (i64.load (i32.const 64))))
            (i32.const 1)))"#,
    )
    .unwrap();
    let options = wasm_rewind_transform::Options {
        embed_runtime: true,
        ..Default::default()
    };
    let out = wasm_rewind_transform::instrument(&wasm, &options).unwrap();
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &out.wasm).unwrap();
    assert_eq!(module.imports().count(), 0, "the context imports are gone");
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let run = instance
        .get_typed_func::<(), i32>(&mut store, "run")
        .unwrap();
    let err = run.call(&mut store, ()).unwrap_err();
    let trace = format!("{err:?}");
    assert!(
        trace.contains("__wasm_rewind_context_entrypoint_returned"),
        "{trace}"
    );
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    assert_eq!(memory.data(&store)[16], 7, "the entry ran");
}

/// What `context_create` answers for slots 1 (a `() -> ()` function), 2 (an
/// `(i32) -> i32` one) and 3 (null) of a table, with `extra` added to the
/// module: `[create(1), create(2), create(3)]`.
fn creates(extra: &str) -> [i32; 3] {
    let wasm = wat::parse_str(format!(
        r#"(module
          (import "wasix_32v1" "context_create" (func $create (param i32 i32) (result i32)))
          (import "wasix_32v1" "context_switch" (func $switch (param i64) (result i32)))
          (memory (export "memory") 1)
          (global $__stack_pointer (mut i32) (i32.const 4096))
          (table $t (export "__indirect_function_table") 4 funcref)
          (elem (i32.const 1) func $unit $other)
          (func $unit)
          (func $other (param i32) (result i32) (local.get 0))
          (func (export "run") (param $slot i32) (result i32)
            (call $create (i32.const 64) (local.get $slot)))
          {extra})"#
    ))
    .unwrap();
    let options = wasm_rewind_transform::Options {
        embed_runtime: true,
        ..Default::default()
    };
    let out = wasm_rewind_transform::instrument(&wasm, &options).unwrap();
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &out.wasm).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    [1, 2, 3].map(|slot| run.call(&mut store, slot).unwrap())
}

/// An entry of another type is refused at create (EINVAL), as on Wasmer,
/// when the module's own segments say what every slot holds; when its code
/// may change the table, only in-bounds and non-null can be checked.
#[test]
fn create_refuses_entries_of_another_type_when_the_table_is_known() {
    assert_eq!(creates(""), [0, 28, 28]);
    let changes_the_table =
        "(func (export \"poke\") (table.set $t (i32.const 3) (ref.func $other)))
        (elem declare func $other)";
    assert_eq!(creates(changes_the_table), [0, 0, 28]);
}

/// The wasm64 context calls are refused, naming the import; so is a context
/// import of the wrong type.
#[test]
fn refuses_what_it_cannot_serve() {
    let options = wasm_rewind_transform::Options {
        embed_runtime: true,
        ..Default::default()
    };
    for (wat, says) in [
        (
            r#"(module
              (import "wasix_64v1" "context_switch" (func (param i64) (result i32)))
              (memory 1)
              (global $__stack_pointer (mut i32) (i32.const 4096)))"#,
            "`wasix_64v1.context_switch`",
        ),
        (
            r#"(module
              (import "wasix_32v1" "context_switch" (func (param i32) (result i32)))
              (memory 1)
              (global $__stack_pointer (mut i32) (i32.const 4096)))"#,
            "`wasix_32v1.context_switch`",
        ),
    ] {
        let Err(err) = wasm_rewind_transform::instrument(&wat::parse_str(wat).unwrap(), &options)
        else {
            panic!("instrumented a module it cannot serve, expected an error naming {says}");
        };
        let msg = err.to_string();
        assert!(msg.contains(says), "{msg}");
    }
}

/// The context code is linked in only for a module that imports a context
/// call, and is a fixed, small amount of code.
#[test]
fn the_context_code_is_linked_only_when_imported() {
    let module = |contexts: bool| {
        let import = if contexts {
            r#"(import "wasix_32v1" "context_switch" (func $switch (param i64) (result i32)))"#
        } else {
            ""
        };
        wat::parse_str(format!(
            r#"(module
              (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
              {import}
              (memory 1)
              (global $__stack_pointer (mut i32) (i32.const 4096))
              (func (export "run") (drop (call $checkpoint (i32.const 64) (i32.const 96)))))"#
        ))
        .unwrap()
    };
    let options = wasm_rewind_transform::Options {
        embed_runtime: true,
        ..Default::default()
    };
    let plain = wasm_rewind_transform::instrument(&module(false), &options).unwrap();
    let with = wasm_rewind_transform::instrument(&module(true), &options).unwrap();
    let has = |wasm: &[u8], name: &str| wasm.windows(name.len()).any(|w| w == name.as_bytes());
    for name in [
        "__wasm_rewind_context_run",
        "__wasm_rewind_longjmp_across_contexts",
        "__wasm_rewind_context_entrypoint_returned",
    ] {
        assert!(!has(&plain.wasm, name), "{name} linked without contexts");
        assert!(has(&with.wasm, name), "{name} missing with contexts");
    }
    let (a, b) = (
        plain.stats.embedded_runtime_size,
        with.stats.embedded_runtime_size,
    );
    // Measured: 813 bytes more on corpus/contexts/generator.c.
    assert!(
        b > a && b - a < 1536,
        "the context code is {} bytes ({a} -> {b})",
        b.saturating_sub(a)
    );
}
