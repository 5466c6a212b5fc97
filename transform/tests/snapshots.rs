//! The exact code the pass generates for small modules, as reviewed WAT.
//!
//! A change in generated code shows up here as a snapshot diff to read, not as
//! an accident. Update deliberately with `INSTA_UPDATE=always cargo test -p
//! wasm-rewind-transform --test snapshots` and review the diff before committing.

use wasm_rewind_transform::{instrument, Options};

fn instrumented_wat(wat: &str, options: &Options) -> String {
    let wasm = wat::parse_str(wat).expect("test module parses");
    let out = instrument(&wasm, options).expect("instrumentation succeeds");
    wasmprinter::print_bytes(&out.wasm).expect("output prints")
}

#[test]
fn sleep_in_loop_saves_only_live_locals() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "env" "sleep" (func $sleep (param i32) (result i32)))
          (memory 1)
          (func $work (export "work") (param $n i32) (result i32)
            (local $acc i32) (local $dead i32)
            (local.set $dead (i32.const 5))
            (loop $l
              (local.set $acc (i32.add (local.get $acc) (call $sleep (local.get $n))))
              (local.set $n (i32.sub (local.get $n) (i32.const 1)))
              (br_if $l (local.get $n)))
            (i32.add (local.get $acc) (call $sleep (i32.const 100)))))"#,
        &Options::default()
    ));
}

#[test]
fn values_below_call_are_popped_only_when_unwinding() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory 1)
          (func $inner (result i64) (call $sleep) (i64.const 5))
          (func (export "run") (param $x i32) (result i64) (local $r i64)
            (i64.extend_i32_u (local.get $x))
            (f64.const 1.5)
            (call $inner)
            (local.set $r)
            (i64.trunc_f64_s)
            (i64.add)
            (i64.add (local.get $r))))"#,
        &Options::default()
    ));
}

#[test]
fn if_arms_and_indirect_call_narrowed_by_table() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory 1)
          (type $t (func (param i32) (result i32)))
          (table 2 funcref)
          (elem (i32.const 0) $sleepy $pure)
          (func $sleepy (type $t) (call $sleep) (local.get 0))
          (func $pure (type $t) (i32.mul (local.get 0) (i32.const 2)))
          (func $never_in_table (param f32) (call $sleep))
          (func (export "run") (param $c i32) (result i32)
            (if (result i32) (local.get $c)
              (then (call_indirect (type $t) (i32.const 1) (local.get $c)))
              (else (call $pure (i32.const 3))))))"#,
        &Options::default()
    ));
}

#[test]
fn tail_call_that_can_unwind_becomes_call_and_return() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "env" "sleep" (func $sleep (result i32)))
          (memory 1)
          (func $pure (result i32) (i32.const 1))
          (func (export "run") (param i32) (result i32)
            (if (local.get 0) (then (return_call $pure)))
            (return_call $sleep)))"#,
        &Options::default()
    ));
}

#[test]
fn in_module_runtime_imports_become_direct_calls() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
          (import "asyncify" "stop_rewind" (func $stop_rewind))
          (import "asyncify" "get_state" (func $get_state (result i32)))
          (memory 1)
          (global $rewinding (mut i32) (i32.const 0))
          (func $sleep
            (if (i32.eq (call $get_state) (i32.const 2))
              (then (call $stop_rewind))
              (else (call $start_unwind (i32.const 16)))))
          (func (export "run") (result i32) (call $sleep) (i32.const 1)))"#,
        &Options::default()
    ));
}

#[test]
fn block_entered_with_values_below_is_prespilled() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory 1)
          (func (export "run") (result i32)
            (i32.const 40)
            (i32.const 1)
            (block (param i32) (result i32)
              (call $sleep)
              (i32.add (i32.const 1)))
            (i32.add)))"#,
        &Options::default()
    ));
}

#[test]
fn memory64_uses_i64_pointers() {
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory i64 1)
          (func (export "run") (param $p i64) (result i64)
            (call $sleep)
            (local.get $p)))"#,
        &Options::default()
    ));
}

#[test]
fn wasix_module_exports_its_stack_and_a_grow_hook() {
    // The stack comes first (the data above the stack pointer's start), so
    // the pass adds `__stack_low = 0`; the buffer stays in memory 0 and a
    // frame that does not fit asks the host for room through the hook.
    insta::assert_snapshot!(instrumented_wat(
        r#"(module
          (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
          (memory (export "memory") 2)
          (global $__stack_pointer (mut i32) (i32.const 65536))
          (func $setjmp (export "setjmp") (param $env i32) (result i32)
            (call $checkpoint (local.get $env) (i32.add (local.get $env) (i32.const 8))))
          (data (i32.const 65536) "data"))"#,
        &Options::wasix()
    ));
}
