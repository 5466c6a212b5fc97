//! `Options::sjlj = Exceptions`: setjmp/longjmp lowered to wasm exceptions,
//! run under plain wasmtime with no host functions at all (the lowering
//! leaves no WASIX stack import behind). Each module calls the WASIX stack
//! functions the way our setjmp.h does: `stack_checkpoint(env, &ret)` returns
//! errno 0 and writes the u64 at `ret`, `stack_restore(env, val)` never
//! returns. The C corpus, Lua and SQLite run the same lowering against native
//! builds (the root crate's tests); these pin the cases compiler output
//! rarely shows.

use wasm_rewind_transform::{instrument, ErrorKind, Options, SjljLowering};
use wasmtime::{Engine, Instance, Module, Store};

/// The imports, memory and stack pointer every module here starts with.
const PRELUDE: &str = r#"
  (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (import "wasix_32v1" "stack_restore" (func $restore (param i32 i64)))
  (memory (export "memory") 1)
  (global $__stack_pointer (mut i32) (i32.const 4096))
"#;

fn options(lowering: SjljLowering) -> Options {
    Options {
        sjlj: lowering,
        ..Options::default()
    }
}

fn lowered(body: &str) -> Vec<u8> {
    let wat = format!("(module {PRELUDE} {body})");
    let wasm = wat::parse_str(&wat).expect("test module parses");
    instrument(&wasm, &options(SjljLowering::Exceptions))
        .unwrap_or_else(|e| panic!("lowering failed: {e}"))
        .wasm
}

/// Instantiates `wasm` with no imports at all.
fn instantiate(wasm: &[u8]) -> (Store<()>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, wasm).expect("the lowered module compiles");
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instantiates with no imports");
    (store, instance)
}

fn call(wasm: &[u8], name: &str, arg: i32) -> wasmtime::Result<i32> {
    let (mut store, instance) = instantiate(wasm);
    let f = instance.get_typed_func::<i32, i32>(&mut store, name)?;
    f.call(&mut store, arg)
}

/// A value the compiler left on the operand stack below the setjmp call
/// is there again when the jump lands; the jump's value arrives at `ret`;
/// the stack pointer is set back to where setjmp found it.
#[test]
fn a_jump_lands_with_the_values_below_the_call_and_the_stack_pointer() {
    let wasm = lowered(
        r#"
      (func $deep (param $n i32)
        ;; a frame of 32 bytes whose epilogue never runs
        (global.set $__stack_pointer (i32.sub (global.get $__stack_pointer) (i32.const 32)))
        (if (local.get $n) (then (call $deep (i32.sub (local.get $n) (i32.const 1)))))
        (call $restore (i32.const 64) (i64.const 5)))
      (func (export "below") (param i32) (result i32)
        (local $v i32)
        (i32.mul (local.get 0) (i32.const 1000))    ;; stays below the call
        (drop (call $checkpoint (i32.const 64) (i32.const 96)))
        (local.tee $v (i32.wrap_i64 (i64.load (i32.const 96))))
        (if (i32.eqz) (then (call $deep (i32.const 10))))
        (i32.add (local.get $v))
        (i32.add (i32.sub (global.get $__stack_pointer) (i32.const 4096))))
    "#,
    );
    assert_eq!(call(&wasm, "below", 7).unwrap(), 7005);
}

/// Two setjmp calls in one function, both armed: a jump to the first after
/// the second ran lands at the first, with its own operands.
#[test]
fn each_setjmp_call_of_a_function_keeps_its_own_operands() {
    let wasm = lowered(
        r#"
      (func (export "two") (param i32) (result i32)
        (local $a i32) (local $b i32)
        (drop (call $checkpoint (i32.const 64) (i32.const 96)))
        (local.set $a (i32.wrap_i64 (i64.load (i32.const 96))))
        (if (local.get $a) (then (return (i32.add (local.get $a) (i32.const 100)))))
        (drop (call $checkpoint (i32.const 128) (i32.const 160)))
        (local.set $b (i32.wrap_i64 (i64.load (i32.const 160))))
        (if (local.get $b) (then (call $restore (i32.const 64) (i64.const 3))))
        (call $restore (select (i32.const 64) (i32.const 128) (local.get 0)) (i64.const 9))
        (i32.const -1))
    "#,
    );
    // To the second, which then jumps to the first with 3.
    assert_eq!(call(&wasm, "two", 0).unwrap(), 103);
    // Straight to the first with 9.
    assert_eq!(call(&wasm, "two", 1).unwrap(), 109);
}

/// A recursive function arms one jmp_buf per level; a jump from the bottom
/// to the level named passes through the levels below it, each of which
/// catches it, finds it was not its own, and throws it on.
#[test]
fn a_jump_lands_in_the_invocation_that_filled_the_jmp_buf() {
    let wasm = lowered(
        r#"
      (func $level (param $depth i32) (param $target i32) (result i32)
        (local $env i32)
        (local.set $env (i32.add (i32.const 256) (i32.mul (local.get $depth) (i32.const 24))))
        (drop (call $checkpoint (local.get $env) (i32.const 96)))
        (if (i64.ne (i64.load (i32.const 96)) (i64.const 0))
          (then (return (i32.add (i32.mul (local.get $depth) (i32.const 1000))
                                 (i32.wrap_i64 (i64.load (i32.const 96)))))))
        (if (i32.eq (local.get $depth) (i32.const 20))
          (then (call $restore
                  (i32.add (i32.const 256) (i32.mul (local.get $target) (i32.const 24)))
                  (i64.const 7))))
        (i32.add (call $level (i32.add (local.get $depth) (i32.const 1)) (local.get $target))
                 (i32.const 1)))
      (func (export "levels") (param i32) (result i32)
        (call $level (i32.const 0) (local.get 0)))
    "#,
    );
    for target in [0, 1, 13, 20] {
        let expected = target * 1000 + 7 + target;
        assert_eq!(
            call(&wasm, "levels", target).unwrap(),
            expected,
            "target {target}"
        );
    }
}

/// A jump to a jmp_buf no live invocation filled is not caught by anyone:
/// the call traps (C calls this undefined; no other frame is resumed).
#[test]
fn a_jump_nobody_armed_traps() {
    let wasm = lowered(
        r#"
      (func $armed (result i32)
        (drop (call $checkpoint (i32.const 64) (i32.const 96)))
        (i32.wrap_i64 (i64.load (i32.const 96))))
      (func (export "stale") (param i32) (result i32)
        (drop (call $armed))
        ;; $armed has returned: its jmp_buf is stale.
        (call $restore (i32.const 64) (i64.const 1))
        (i32.const 0))
    "#,
    );
    let err = call(&wasm, "stale", 0).expect_err("a jump nobody catches traps");
    assert!(
        format!("{err:?}").contains("exception"),
        "expected an uncaught exception, got {err:?}"
    );
}

/// The lowered module imports nothing and exports nothing new; a module
/// without setjmp gets no tag, function or global.
#[test]
fn the_lowering_adds_only_what_it_uses() {
    let wasm = lowered(
        r#"(func (export "f") (param i32) (result i32)
             (drop (call $checkpoint (i32.const 64) (i32.const 96)))
             (local.get 0))"#,
    );
    let module = Module::new(&Engine::default(), &wasm).unwrap();
    assert_eq!(module.imports().count(), 0);
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    assert_eq!(exports, ["memory", "f"]);

    let plain = wat::parse_str(
        r#"(module (memory 1) (global $g (mut i32) (i32.const 0))
             (func (export "f") (result i32) (global.get $g)))"#,
    )
    .unwrap();
    let out = instrument(&plain, &options(SjljLowering::Exceptions)).unwrap();
    let text = wasmprinter::print_bytes(&out.wasm).unwrap();
    assert!(!text.contains("(tag"), "{text}");
    assert_eq!(text.matches("(global ").count(), 1, "{text}");
    assert_eq!(out.stats.instrumented_functions, 0);
}

/// A setjmp call in code that never runs is not rewritten; what it names
/// is a function that traps, since the import is gone.
#[test]
fn a_setjmp_call_in_dead_code_is_left_pointing_at_a_trap() {
    let wasm = lowered(
        r#"(func (export "f") (param i32) (result i32)
             (if (local.get 0) (then (return (i32.const 1))))
             (return (i32.const 2))
             (call $checkpoint (i32.const 64) (i32.const 96)))"#,
    );
    assert_eq!(call(&wasm, "f", 1).unwrap(), 1);
    assert_eq!(call(&wasm, "f", 0).unwrap(), 2);
}

/// Legacy exceptions validate (wasmtime does not run them; node 20 does, in
/// the root crate's tests).
#[test]
fn legacy_exceptions_validate() {
    let wat = format!(
        "(module {PRELUDE} (func (export \"f\") (result i32) \
           (drop (call $checkpoint (i32.const 64) (i32.const 96))) \
           (call $restore (i32.const 64) (i64.const 1)) (i32.const 0)))"
    );
    let wasm = wat::parse_str(&wat).unwrap();
    let out = instrument(&wasm, &options(SjljLowering::LegacyExceptions)).unwrap();
    let text = wasmprinter::print_bytes(&out.wasm).unwrap();
    assert!(text.contains("try") && text.contains("catch"), "{text}");
    assert!(!text.contains("try_table"), "{text}");
}

/// What the lowering cannot do is refused, naming why.
#[test]
fn refusals_name_the_reason() {
    // The checkpoint called through a table.
    let wat = format!(
        "(module {PRELUDE} (table 1 funcref) (elem (i32.const 0) $checkpoint) \
           (func (export \"f\") (result i32) \
             (call_indirect (param i32 i32) (result i32) (i32.const 64) (i32.const 96) (i32.const 0))))"
    );
    let err = instrument(
        &wat::parse_str(&wat).unwrap(),
        &options(SjljLowering::Exceptions),
    )
    .unwrap_err();
    assert!(err.to_string().contains("taken by address"), "{err}");

    // No stack pointer to set back.
    let wat = r#"(module
      (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
      (memory 1)
      (func (export "f") (result i32) (call $checkpoint (i32.const 64) (i32.const 96))))"#;
    let err = instrument(
        &wat::parse_str(wat).unwrap(),
        &options(SjljLowering::Exceptions),
    )
    .unwrap_err();
    assert!(err.to_string().contains("__stack_pointer"), "{err}");

    // An option of the unwinding pass alongside.
    let with_embed = Options {
        embed_runtime: true,
        ..options(SjljLowering::Exceptions)
    };
    let err = instrument(&wat::parse_str(wat).unwrap(), &with_embed).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOptions);
    assert!(
        err.to_string().contains("`Options::embed_runtime`"),
        "{err}"
    );
}
