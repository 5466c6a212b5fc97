//! Behaviour of instrumented modules at the Asyncify ABI.
//!
//! Every test instruments one small module twice, with `wasm-opt --asyncify` and
//! with our pass (both told that only `env.sleep` may unwind), and drives both
//! through the same host code in `common/`: the host unwinds at every `env.sleep`,
//! the driver stops the unwind, rewinds and calls the export again. Both must give
//! the same results, the same number of resumes and the same import log. The
//! expected numbers are computed by hand in the comments and also checked against
//! the uninstrumented module run with a host that never unwinds, so they never
//! come from the code under test.
//!
//! What this proves: a host written for Binaryen's output drives ours unchanged,
//! for locals and params of every value type, recursion, loops, `if`, `br_table`,
//! `call_indirect`, values left on the operand stack across an unwinding call,
//! multi-value, host -> wasm -> host re-entry, interleaved coroutines, multi-shot
//! rewinds and the in-module `asyncify.*` runtime; that a rewind re-enters the
//! import with the arguments of the call that unwound (checked by the host on
//! every rewind); and that ours, unlike Binaryen, never writes past `end`: at
//! every buffer size an unwind either fits or traps in
//! `__wasm_rewind_buffer_overflow` with memory outside `[ptr, end)` untouched.
//!
//! `block_parameters_ours_only` is the one test Binaryen cannot take part in
//! (Binaryen 108 cannot read block parameters).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::common::*;

/// `env.sleep(x)` answers `x + 1000` in every test unless said otherwise.
fn sleep_answer() -> Answer {
    answer(|call| match call.args[..] {
        [Value::I32(x)] => Value::I32(x.wrapping_add(1000)),
        ref other => panic!("env.sleep called with {other:?}"),
    })
}

/// Checks `export(args)` of `wat`: the original gives `expected`; both
/// instrumented modules give `expected` with nothing unwinding, and give it again
/// with an unwind at every `env.sleep`, resuming `unwinds` times with the
/// original's import log.
fn check(wat: &str, export: &str, args: &[Value], expected: &[Value], unwinds: usize) {
    let (_, results, log) = run_original(to_wasm(wat), sleep_answer(), export, args).unwrap();
    assert_eq!(results, expected, "original module, {export}{args:?}");
    with_both(wat, &["env.sleep"], |tool, wasm| {
        let mut quiet = Guest::new(wasm, Host::new(sleep_answer(), never())).unwrap();
        assert_eq!(
            quiet.call(export, args).unwrap(),
            expected,
            "{tool:?}, nothing unwinds, {export}{args:?}"
        );
        assert_eq!(quiet.state().unwrap(), 0);

        let mut guest =
            Guest::new(wasm, Host::new(sleep_answer(), at_imports(&["env.sleep"]))).unwrap();
        let run = guest
            .drive(export, args)
            .unwrap_or_else(|e| panic!("{tool:?}, {export}{args:?}: {e:?}"));
        assert_eq!(
            run.results, expected,
            "{tool:?}, unwinding, {export}{args:?}"
        );
        assert_eq!(
            run.unwinds, unwinds,
            "{tool:?}, resumes of {export}{args:?}"
        );
        assert_eq!(run.log, log, "{tool:?}, import log of {export}{args:?}");
        assert_eq!(guest.host().rewinds_completed, unwinds, "{tool:?}");
    });
}

#[test]
fn locals_and_params_survive() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $a i32) (param $b i32) (result i32)
        (local $x i32) (local $y i32)
        (local.set $x (i32.mul (local.get $a) (i32.const 3)))
        (local.set $y (i32.add (local.get $b) (i32.const 7)))
        (local.set $x (i32.add (local.get $x) (call $sleep (local.get $a))))
        (local.set $y (i32.mul (local.get $y) (call $sleep (local.get $b))))
        (i32.add (i32.add (local.get $x) (local.get $y))
                 (i32.sub (local.get $a) (local.get $b)))))"#;
    // x = 15 + 1005 = 1020; y = 16 * 1009 = 16144; a - b = -4.
    check(wat, "run", &i32s(&[5, 9]), &i32s(&[17160]), 2);
}

#[test]
fn recursion_sleeps_at_every_depth() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $rec (export "rec") (param $n i32) (result i32)
        (local $here i32)
        (local.set $here (i32.mul (local.get $n) (i32.const 100)))
        (if (result i32) (i32.eqz (local.get $n))
          (then (call $sleep (i32.const 0)))
          (else
            (i32.add (local.get $here)
              (i32.add (call $rec (i32.sub (local.get $n) (i32.const 1)))
                       (call $sleep (local.get $n))))))))"#;
    // rec(0) = 1000; rec(n) = 100n + rec(n-1) + (n + 1000)
    // rec(10) = 101 * 55 + 10 * 1000 + 1000 = 16555, with 11 sleeps, the first
    // one 11 frames deep.
    check(wat, "rec", &i32s(&[10]), &i32s(&[16555]), 11);
    check(wat, "rec", &i32s(&[0]), &i32s(&[1000]), 1);
}

#[test]
fn sleep_inside_a_loop_accumulates() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc
            (i32.add (i32.mul (local.get $acc) (i32.const 3))
                     (call $sleep (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#;
    // acc = 3 acc + (i + 1000): 1000, 4001, 13005, 40018, 121058, 364179.
    check(wat, "run", &i32s(&[6]), &i32s(&[364179]), 6);
}

#[test]
fn if_else_arms() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $x i32) (result i32)
        (local $r i32)
        (if (i32.and (local.get $x) (i32.const 1))
          (then (local.set $r (i32.add (call $sleep (i32.const 1)) (i32.const 10))))
          (else (local.set $r (i32.mul (call $sleep (i32.const 2)) (i32.const 2)))))
        (if (result i32) (i32.gt_s (local.get $r) (i32.const 1500))
          (then (i32.sub (local.get $r) (call $sleep (local.get $x))))
          (else (i32.add (local.get $r) (local.get $x))))))"#;
    // odd 3: r = 1011, not > 1500, 1011 + 3 = 1014 (one sleep).
    check(wat, "run", &i32s(&[3]), &i32s(&[1014]), 1);
    // even 4: r = 2004, > 1500, 2004 - 1004 = 1000 (two sleeps).
    check(wat, "run", &i32s(&[4]), &i32s(&[1000]), 2);
}

#[test]
fn br_table_cases() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $k i32) (result i32)
        (local $r i32)
        (block $done
          (block $c2
            (block $c1
              (block $c0
                (br_table $c0 $c1 $c2 $done (local.get $k)))
              (local.set $r (call $sleep (i32.const 10)))
              (br $done))
            (local.set $r (call $sleep (i32.const 20))))
          (local.set $r (i32.add (local.get $r) (call $sleep (i32.const 30)))))
        (i32.add (local.get $r) (local.get $k))))"#;
    // 0: 1010; 1: 1020 + 1030 + 1 (falls into case 2); 2: 1030 + 2; 3: 3.
    check(wat, "run", &i32s(&[0]), &i32s(&[1010]), 1);
    check(wat, "run", &i32s(&[1]), &i32s(&[2051]), 2);
    check(wat, "run", &i32s(&[2]), &i32s(&[1032]), 1);
    check(wat, "run", &i32s(&[3]), &i32s(&[3]), 0);
    check(wat, "run", &i32s(&[99]), &i32s(&[99]), 0);
}

#[test]
fn call_indirect_to_sleeping_and_plain_functions() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (type $t (func (param i32) (result i32)))
      (table 3 funcref)
      (elem (i32.const 0) $double $sleepy $plus_sleep)
      (func $double (type $t) (i32.mul (local.get 0) (i32.const 2)))
      (func $sleepy (type $t) (call $sleep (local.get 0)))
      (func $plus_sleep (type $t) (local $l i32)
        (local.set $l (i32.add (local.get 0) (i32.const 5)))
        (i32.add (local.get $l) (call $sleep (local.get $l))))
      (func (export "run") (param $sel i32) (param $x i32) (result i32)
        (i32.add (i32.const 7)
          (call_indirect (type $t) (local.get $x) (local.get $sel))))
      (func (export "chain") (param $x i32) (result i32)
        (call_indirect (type $t)
          (call_indirect (type $t) (local.get $x) (i32.const 2))
          (i32.const 1))))"#;
    // double: 7 + 42; sleepy: 7 + 1021; plus_sleep: 26 + 1026 + 7.
    check(wat, "run", &i32s(&[0, 21]), &i32s(&[49]), 0);
    check(wat, "run", &i32s(&[1, 21]), &i32s(&[1028]), 1);
    check(wat, "run", &i32s(&[2, 21]), &i32s(&[1059]), 1);
    // chain(1): plus_sleep(1) = 6 + 1006 = 1012, then sleepy(1012) = 2012.
    check(wat, "chain", &i32s(&[1]), &i32s(&[2012]), 2);
}

#[test]
fn operand_stack_values_survive_an_unwinding_call() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $work (param $x i32) (result i32)
        (i32.mul (call $sleep (local.get $x)) (i32.const 2)))
      (func $sum3 (param i32 i32 i32) (result i32)
        (i32.add (i32.add (local.get 0) (local.get 1)) (local.get 2)))
      (func (export "simple") (param $a i32) (result i32)
        local.get $a
        local.get $a
        call $work
        i32.add)
      (func (export "mixed") (param $a i32) (result i64)
        local.get $a
        i64.extend_i32_u
        i64.const 0x500000007
        f64.const 2.5
        local.get $a
        call $work
        f64.convert_i32_s
        f64.mul
        i64.trunc_f64_s
        i64.add
        i64.add)
      (func (export "args") (param $a i32) (result i32)
        (call $sum3
          (i32.mul (local.get $a) (i32.const 1000000))
          (call $work (local.get $a))
          (call $work (i32.add (local.get $a) (i32.const 1))))))"#;
    // simple(4): 4 + 2 * 1004 = 2012.
    check(wat, "simple", &i32s(&[4]), &i32s(&[2012]), 1);
    // mixed(4): 4 + 0x5_0000_0007 + trunc(2.5 * 2008) = 0x5_0000_0000 + 5031.
    check(
        wat,
        "mixed",
        &i32s(&[4]),
        &[Value::I64(0x5_0000_0000 + 5031)],
        1,
    );
    // args(4): 4000000 + 2008 + 2010.
    check(wat, "args", &i32s(&[4]), &i32s(&[4_004_018]), 2);
}

#[test]
fn i64_f32_f64_v128_locals() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $p i64) (result i64)
        (local $a i64) (local $b f32) (local $c f64) (local $v v128)
        (local.set $a (i64.mul (local.get $p) (i64.const 0x100000001)))
        (local.set $b (f32.const 1.5))
        (local.set $c (f64.const -2.25))
        (local.set $v (v128.const i32x4 1 2 3 0x7fffffff))
        (drop (call $sleep (i32.const 1)))
        (local.set $b (f32.mul (local.get $b)
                               (f32.convert_i32_s (call $sleep (i32.const 2)))))
        (drop (call $sleep (i32.const 3)))
        (i64.add
          (i64.add (local.get $a) (i64.trunc_f32_s (local.get $b)))
          (i64.add
            (i64.trunc_f64_s (f64.mul (local.get $c) (f64.const 4)))
            (i64.extend_i32_s
              (i32.add (i32x4.extract_lane 3 (local.get $v))
                       (i32x4.extract_lane 1 (local.get $v))))))))"#;
    // a = 3 * 0x1_0000_0001 = 12884901891; b = 1.5 * 1002 = 1503; c * 4 = -9;
    // 0x7fffffff + 2 wraps to -2147483647.
    let expected = 12_884_901_891i64 + 1503 - 9 - 2_147_483_647;
    check(wat, "run", &[Value::I64(3)], &[Value::I64(expected)], 3);

    let floats = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $x f64) (param $y f32) (result f64)
        (local $v v128)
        (local.set $v (f64x2.splat (local.get $x)))
        (local.set $x (f64.add (local.get $x)
                               (f64.convert_i32_s (call $sleep (i32.const 0)))))
        (f64.add
          (f64.add (local.get $x) (f64.promote_f32 (local.get $y)))
          (f64x2.extract_lane 1 (local.get $v)))))"#;
    // x = 0.125 + 1000; + 0.5 + 0.125.
    check(
        floats,
        "run",
        &[Value::f64(0.125), Value::f32(0.5)],
        &[Value::f64(1000.75)],
        1,
    );
}

#[test]
fn multi_value_functions_and_blocks() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $pair (param $x i32) (result i32 i64)
        (call $sleep (local.get $x))
        (i64.extend_i32_u (call $sleep (i32.add (local.get $x) (i32.const 1)))))
      (func (export "run") (param $x i32) (result i32 i64)
        (local $a i32) (local $b i64)
        (call $pair (local.get $x))
        (local.set $b)
        (local.set $a)
        (block (result i32 i64)
          (i32.mul (local.get $a) (i32.const 2))
          (i64.add (local.get $b) (i64.const 0x100000000))))
      (func (export "block") (param $x i32) (result i32)
        (block (result i32 i32)
          (call $sleep (local.get $x))
          (call $sleep (i32.const 7)))
        (i32.sub)
        (local.get $x)
        (i32.add))
      )"#;
    // pair(5) = (1005, 1006).
    check(
        wat,
        "run",
        &i32s(&[5]),
        &[Value::I32(2010), Value::I64(0x1_0000_0000 + 1006)],
        2,
    );
    // block(50): (1050 - 1007) + 50.
    check(wat, "block", &i32s(&[50]), &i32s(&[93]), 2);
}

/// A block that takes parameters, with an unwinding call inside it that consumes
/// the parameter. Binaryen 108 cannot even read this input ("Block requires more
/// values than are available": its IR has no block parameters), so only our
/// pass is checked, against the original.
#[test]
fn block_parameters_ours_only() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $x i32) (result i32)
        (local.get $x)
        (i32.const 3)
        (block (param i32 i32) (result i32 i32)
          (call $sleep)
          (call $sleep (i32.const 7))
          (i32.add))
        (i32.sub)
        (local.get $x)
        (i32.add)))"#;
    // stack x, 3 -> block: x, sleep(3) + sleep(7) = 2010 -> x - 2010 + x.
    let (_, results, log) =
        run_original(to_wasm(wat), sleep_answer(), "run", &i32s(&[50])).unwrap();
    assert_eq!(results, i32s(&[-1910]));
    if binaryen_only() {
        return;
    }
    let wasm = instrument_ours(wat, &ours_with_imports(&["env.sleep"]));
    let mut guest =
        Guest::new(&wasm, Host::new(sleep_answer(), at_imports(&["env.sleep"]))).unwrap();
    let run = guest.drive("run", &i32s(&[50])).unwrap();
    assert_eq!(run.results, results);
    assert_eq!(run.unwinds, 2);
    assert_eq!(run.log, log);
}

#[test]
fn host_calls_back_into_a_non_unwinding_export() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (import "env" "callback" (func $callback (param i32) (result i32)))
      (memory (export "memory") 1)
      (global $g (mut i32) (i32.const 0))
      ;; Instrumented (it can sleep), but does not on the path the callback takes.
      (func $maybe_sleep (param $x i32) (param $flag i32) (result i32)
        (if (result i32) (local.get $flag)
          (then (call $sleep (local.get $x)))
          (else (i32.add (local.get $x) (i32.const 1)))))
      (func (export "helper") (param $x i32) (result i32)
        (global.set $g (i32.add (global.get $g) (i32.const 1)))
        (i32.add (i32.mul (call $maybe_sleep (local.get $x) (i32.const 0)) (i32.const 3))
                 (global.get $g)))
      (func (export "run") (param $x i32) (result i32)
        (local $a i32)
        (local.set $a (call $sleep (local.get $x)))
        (local.set $a (i32.add (local.get $a) (call $callback (local.get $a))))
        (i32.add (local.get $a) (call $maybe_sleep (local.get $a) (i32.const 1)))))"#;
    // run(2): a = 1002; callback(1002) = helper(1002) = 1003 * 3 + 1 = 3010;
    // a = 4012; + sleep(4012) = 5012 -> 9024.
    let expected = i32s(&[9024]);
    let make_host =
        |policy| Host::new(sleep_answer(), policy).with_callback("env.callback", "helper");
    let mut original = Guest::new(to_wasm(wat), make_host(never())).unwrap();
    assert_eq!(original.call("run", &i32s(&[2])).unwrap(), expected);
    let log = std::mem::take(&mut original.host().log);
    assert_eq!(log.len(), 3);
    with_both(wat, &["env.sleep"], |tool, wasm| {
        let mut guest = Guest::new(wasm, make_host(at_imports(&["env.sleep"]))).unwrap();
        let run = guest.drive("run", &i32s(&[2])).unwrap();
        assert_eq!(run.results, expected, "{tool:?}");
        assert_eq!(run.unwinds, 2, "{tool:?}");
        assert_eq!(run.log, log, "{tool:?}");
        // The global was bumped once, by the one callback.
        assert_eq!(
            guest.call("helper", &i32s(&[0])).unwrap(),
            i32s(&[5]),
            "{tool:?}"
        );
    });
}

const COROUTINES: &str = r#"(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  ;; run(id, n): n sleeps; acc = acc * 31 + sleep(id * 100 + i); each step also
  ;; stored at 64 * id + 4 * i, so memory shows the steps of every coroutine.
  (func (export "run") (param $id i32) (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (local.set $acc (local.get $id))
    (block $out
      (loop $l
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc
          (i32.add (i32.mul (local.get $acc) (i32.const 31))
                   (call $sleep (i32.add (i32.mul (local.get $id) (i32.const 100))
                                         (local.get $i)))))
        (i32.store
          (i32.add (i32.mul (local.get $id) (i32.const 64))
                   (i32.mul (local.get $i) (i32.const 4)))
          (local.get $acc))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $acc)))"#;

#[test]
fn coroutines_with_separate_buffers_interleave() {
    // (id, n) and each one's own structure and buffer in the reserved region.
    let specs = [(1, 3), (2, 5), (3, 1), (4, 0)];
    let coroutines: Vec<Coroutine> = specs
        .iter()
        .enumerate()
        .map(|(k, &(id, n))| {
            Coroutine::new(
                "run",
                &i32s(&[id, n]),
                Buffer::at(RESERVED_START + 0x400 * k as u64, 0x400 - 8),
            )
        })
        .collect();
    // By hand: run(1, 3): 1 -> 31 + 1100 = 1131 -> 35061 + 1101 = 36162
    //   -> 1121022 + 1102 = 1122124.
    let mut expected = vec![i32s(&[1_122_124])];
    // The others from the original, one after the other.
    let mut original = Guest::new(to_wasm(COROUTINES), Host::new(sleep_answer(), never())).unwrap();
    let mut logs = Vec::new();
    for (k, &(id, n)) in specs.iter().enumerate() {
        let results = original.call("run", &i32s(&[id, n])).unwrap();
        if k == 0 {
            assert_eq!(results, expected[0]);
        } else {
            expected.push(results);
        }
        logs.push(std::mem::take(&mut original.host().log));
    }
    assert_eq!(expected[3], i32s(&[4]));
    let memory = original.memory_bytes("memory");

    with_both(COROUTINES, &["env.sleep"], |tool, wasm| {
        let mut guest =
            Guest::new(wasm, Host::new(sleep_answer(), at_imports(&["env.sleep"]))).unwrap();
        let done = run_coroutines(&mut guest, &coroutines).unwrap();
        for (k, finished) in done.iter().enumerate() {
            assert_eq!(finished.results, expected[k], "{tool:?}, coroutine {k}");
            assert_eq!(
                finished.unwinds, specs[k].1 as usize,
                "{tool:?}, coroutine {k}"
            );
            assert_eq!(finished.log, logs[k], "{tool:?}, coroutine {k}");
        }
        let after = guest.memory_bytes("memory");
        assert!(
            after[..RESERVED_START as usize] == memory[..RESERVED_START as usize],
            "{tool:?}: memory differs from the sequential run"
        );
    });
}

const MANY_LIVE: &str = r#"(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $inner (param $x i32) (result i32)
    (local $a i64) (local $b i64) (local $c i64) (local $d i64)
    (local.set $a (i64.extend_i32_u (local.get $x)))
    (local.set $b (i64.mul (local.get $a) (i64.const 3)))
    (local.set $c (i64.mul (local.get $a) (i64.const 5)))
    (local.set $d (i64.mul (local.get $a) (i64.const 7)))
    (local.set $x (i32.add (local.get $x) (call $sleep (local.get $x))))
    (i32.add (local.get $x)
      (i32.wrap_i64 (i64.add (i64.add (local.get $a) (local.get $b))
                             (i64.add (local.get $c) (local.get $d))))))
  (func (export "run") (param $x i32) (result i32)
    (local $keep i32)
    (local.set $keep (i32.mul (local.get $x) (i32.const 11)))
    (i32.add (local.get $keep) (call $inner (local.get $x)))))"#;

#[test]
fn buffer_overflow_ours_traps_before_end_binaryen_writes_past_it() {
    // run(2) = 22 + (2 + 1002) + 2 * 16 = 1058 with a buffer that is big enough.
    check(MANY_LIVE, "run", &i32s(&[2]), &i32s(&[1058]), 1);

    // An 8-byte buffer cannot hold `inner`'s frame (call index and four i64s),
    // let alone `run`'s. 64 canary bytes follow `end`.
    let ptr = RESERVED_START;
    let size = 8;
    let end = ptr + 8 + size;
    with_both(MANY_LIVE, &["env.sleep"], |tool, wasm| {
        let mut guest =
            Guest::new(wasm, Host::new(sleep_answer(), at_imports(&["env.sleep"]))).unwrap();
        let buffer = Buffer::at(ptr, size);
        guest.init_buffer(&buffer);
        guest.host().buffer = buffer.clone();
        guest.write_bytes("memory", end, &[0xAA; 64]);
        let before = guest.memory_bytes("memory");
        let unwound = guest.call("run", &i32s(&[2]));
        let changed_past_end = |guest: &mut Guest| {
            let after = guest.memory_bytes("memory");
            before[end as usize..] != after[end as usize..]
        };
        match tool {
            Tool::Ours => {
                // The trap comes during the unwind, from the named function, and
                // nothing outside [ptr, end) was written.
                let err = unwound.expect_err("ours: an unwind into 8 bytes must trap");
                assert!(
                    format!("{err:?}").contains("__wasm_rewind_buffer_overflow"),
                    "ours: trap not in __wasm_rewind_buffer_overflow: {err:?}"
                );
                assert_eq!(
                    trap_code(&err),
                    Some(wasmtime::Trap::UnreachableCodeReached)
                );
                assert!(!changed_past_end(&mut guest), "ours wrote past `end`");
                let after = guest.memory_bytes("memory");
                assert!(
                    before[..ptr as usize] == after[..ptr as usize],
                    "ours wrote below the structure"
                );
            }
            Tool::Binaryen => {
                // Documented Binaryen behaviour: the unwind completes, writing
                // its frames past `end` (over the canary); the trap comes only
                // from the next control call, `asyncify_stop_unwind`, which checks
                // pos <= end.
                unwound.expect("binaryen: the unwind itself does not check `end`");
                assert_eq!(guest.state().unwrap(), 1);
                let (pos, _) = guest.pos_end(&buffer);
                assert!(
                    pos > end,
                    "binaryen: pos {pos:#x} should be past end {end:#x}"
                );
                assert!(
                    changed_past_end(&mut guest),
                    "binaryen: expected a write past `end`"
                );
                let err = guest
                    .stop_unwind()
                    .expect_err("binaryen: stop_unwind checks pos <= end");
                assert_eq!(
                    trap_code(&err),
                    Some(wasmtime::Trap::UnreachableCodeReached),
                    "{err:?}"
                );
            }
        }
    });
}

/// Every buffer size from 0 up to what the unwind needs: Binaryen's unwind
/// succeeds exactly when the frames fit (`pos` may reach `end`), ours when 4
/// bytes stay free after them, kept for the overflow mark. Below that, ours
/// traps in `__wasm_rewind_buffer_overflow` without writing outside
/// `[ptr, end)`, leaving the mark on top of the frames it saved, and
/// Binaryen traps at `asyncify_stop_unwind`.
///
/// Then what Wasmer does (it rewinds whatever an unwind left, even one that
/// trapped): ours must trap at the first frame of that rewind, in
/// `__wasm_rewind_truncated_buffer`, rather than resume `run` from `inner`'s
/// bytes.
#[test]
fn every_buffer_size_fits_or_fails_cleanly() {
    let ptr = RESERVED_START;
    with_both(MANY_LIVE, &["env.sleep"], |tool, wasm| {
        // How much the unwind of run(2) needs, measured with a big buffer.
        let mut guest =
            Guest::new(wasm, Host::new(sleep_answer(), at_imports(&["env.sleep"]))).unwrap();
        let need = guest.drive("run", &i32s(&[2])).unwrap().max_buffer_used;
        assert!(need >= 8, "{tool:?}: {need} bytes cannot hold two frames");
        let fits = match tool {
            Tool::Ours => need + 4,
            Tool::Binaryen => need,
        };
        for size in 0..=need + 8 {
            let end = ptr + 8 + size;
            let mut guest =
                Guest::new(wasm, Host::new(sleep_answer(), at_imports(&["env.sleep"]))).unwrap();
            let buffer = Buffer::at(ptr, size);
            guest.init_buffer(&buffer);
            guest.write_bytes("memory", end, &[0xAA; 64]);
            let before = guest.memory_bytes("memory");
            let result = run_coroutines(
                &mut guest,
                &[Coroutine::new("run", &i32s(&[2]), buffer.clone())],
            );
            let after = guest.memory_bytes("memory");
            let outside_untouched = before[..ptr as usize] == after[..ptr as usize]
                && before[end as usize..] == after[end as usize..];
            match result {
                Ok(done) => {
                    assert!(
                        size >= fits,
                        "{tool:?}: {size} bytes should not have been enough"
                    );
                    assert_eq!(done[0].results, i32s(&[1058]), "{tool:?}, buffer of {size}");
                    assert!(
                        outside_untouched,
                        "{tool:?}: wrote outside the buffer of {size}"
                    );
                }
                Err(err) => {
                    assert!(
                        size < fits,
                        "{tool:?}: {size} bytes are enough, yet: {err:?}"
                    );
                    assert_eq!(
                        trap_code(&err),
                        Some(wasmtime::Trap::UnreachableCodeReached)
                    );
                    if tool == Tool::Ours {
                        assert!(
                            format!("{err:?}").contains("__wasm_rewind_buffer_overflow"),
                            "ours, buffer of {size}: {err:?}"
                        );
                        assert!(outside_untouched, "ours wrote outside a buffer of {size}");
                        rewind_what_an_overflow_left(&mut guest, &buffer, size);
                    }
                }
            }
        }
    });
}

/// After an unwind of ours that overflowed a buffer of `size` bytes: the
/// overflow mark (`u32::MAX`) tops what it saved, and a rewind of it, as
/// Wasmer starts one, traps in `__wasm_rewind_truncated_buffer`. A buffer of
/// under 4 bytes has no room for the mark and held no frame.
fn rewind_what_an_overflow_left(guest: &mut Guest, buffer: &Buffer, size: u64) {
    let (pos, end) = guest.pos_end(buffer);
    assert!(
        pos <= end,
        "buffer of {size}: pos {pos:#x} past end {end:#x}"
    );
    if size < 4 {
        assert_eq!(
            pos,
            buffer.start(),
            "buffer of {size}: something was pushed"
        );
        return;
    }
    let memory = guest.memory_bytes("memory");
    let top = u32::from_le_bytes(memory[pos as usize - 4..pos as usize].try_into().unwrap());
    assert_eq!(top, u32::MAX, "buffer of {size}: no overflow mark on top");
    guest.stop_unwind().unwrap();
    guest.start_rewind(buffer).unwrap();
    let err = guest
        .call("run", &i32s(&[2]))
        .expect_err("a rewind of a truncated buffer must trap");
    assert!(
        format!("{err:?}").contains("__wasm_rewind_truncated_buffer"),
        "buffer of {size}: {err:?}"
    );
}

#[test]
fn rewinding_the_same_buffer_twice() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $mid (param $x i32) (result i32)
        (local $m i32)
        (local.set $m (i32.add (local.get $x) (i32.const 100)))
        (i32.add (local.get $m) (i32.mul (call $sleep (local.get $x)) (i32.const 2))))
      (func (export "run") (param $x i32) (result i32)
        (local $a i32)
        (local.set $a (i32.mul (local.get $x) (i32.const 7)))
        (i32.add (local.get $a) (call $mid (local.get $x)))))"#;
    // run(3) with sleep answering v: 21 + 103 + 2 v.
    let expect = |v: i32| i32s(&[124 + 2 * v]);
    let reply = Arc::new(AtomicI32::new(0));
    // Only the first call of sleep unwinds.
    let first_sleep: UnwindPolicy = Arc::new(|call, at| call.name == "env.sleep" && at.nth == 0);
    let make_host = |policy: UnwindPolicy| {
        let reply = reply.clone();
        Host::new(
            answer(move |_| Value::I32(reply.load(Ordering::SeqCst))),
            policy,
        )
    };
    // The original, with the replies the continuations will get.
    for v in [10, 20] {
        reply.store(v, Ordering::SeqCst);
        let mut original = Guest::new(to_wasm(wat), make_host(never())).unwrap();
        assert_eq!(original.call("run", &i32s(&[3])).unwrap(), expect(v));
    }

    let ptr = RESERVED_START;
    with_both(wat, &["env.sleep"], |tool, wasm| {
        let mut guest = Guest::new(wasm, make_host(first_sleep.clone())).unwrap();
        let buffer = Buffer::at(ptr, 0x100);
        guest.init_buffer(&buffer);
        guest.host().buffer = buffer.clone();
        guest.call("run", &i32s(&[3])).unwrap();
        assert_eq!(guest.state().unwrap(), 1, "{tool:?}: sleep did not unwind");
        guest.stop_unwind().unwrap();
        let (saved_pos, _) = guest.pos_end(&buffer);
        assert!(saved_pos > ptr + 8, "{tool:?}: the unwind saved nothing");
        let pending = guest.host().pending.take().unwrap();
        for v in [10, 20, 10] {
            reply.store(v, Ordering::SeqCst);
            guest.set_pos(&buffer, saved_pos);
            guest.host().pending = Some(pending.clone());
            guest.start_rewind(&buffer).unwrap();
            let results = guest.call("run", &i32s(&[3])).unwrap();
            assert_eq!(results, expect(v), "{tool:?}, continuation with {v}");
            assert_eq!(guest.state().unwrap(), 0, "{tool:?}");
            assert_eq!(
                guest.pos_end(&buffer).0,
                ptr + 8,
                "{tool:?}: rewinding pops the whole buffer"
            );
        }
        assert_eq!(guest.host().log.len(), 1, "{tool:?}: sleep was called once");
    });
}

/// The in-module runtime: a module that imports `asyncify.start_unwind` and
/// `asyncify.stop_rewind` and suspends itself (as ruby.wasm and TinyGo do). Both
/// tools turn those imports into calls of the exported control functions, so no
/// `asyncify.*` import is left, and the host only runs the loop: stop the unwind,
/// start the rewind, call `run` again.
#[test]
fn in_module_runtime_imports_become_calls() {
    let wat = r#"(module
      (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
      (import "asyncify" "stop_rewind" (func $stop_rewind))
      (memory (export "memory") 1)
      (global $rewinding (mut i32) (i32.const 0))
      (global $yields (mut i32) (i32.const 0))
      ;; Unwind to the host; the next call of the export comes back here.
      (func $yield
        (if (global.get $rewinding)
          (then
            (global.set $rewinding (i32.const 0))
            (call $stop_rewind))
          (else
            (global.set $yields (i32.add (global.get $yields) (i32.const 1)))
            (global.set $rewinding (i32.const 1))
            (call $start_unwind (i32.const 0xF000)))))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 7)) (local.get $i)))
          (call $yield)
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (local.get $acc) (i32.mul (global.get $yields) (i32.const 1000)))))"#;
    // run(4): acc = 0, 1, 9, 66; four yields -> 66 + 4000.
    let ptr = RESERVED_START;
    let check = |tool: Tool, wasm: &[u8]| {
        let imports: Vec<String> = wasmtime::Module::new(&engine(), wasm)
            .unwrap()
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect();
        assert!(imports.is_empty(), "{tool:?}: imports left: {imports:?}");
        let mut guest = Guest::new(wasm, Host::new(sleep_answer(), never())).unwrap();
        let buffer = Buffer::at(ptr, 0x400);
        guest.init_buffer(&buffer);
        let mut unwinds = 0;
        let results = loop {
            let results = guest.call("run", &i32s(&[4])).unwrap();
            match guest.state().unwrap() {
                0 => break results,
                1 => {
                    guest.stop_unwind().unwrap();
                    unwinds += 1;
                    guest.start_rewind(&buffer).unwrap();
                }
                s => panic!("{tool:?}: state {s} after run returned"),
            }
        };
        assert_eq!(results, i32s(&[4066]), "{tool:?}");
        assert_eq!(unwinds, 4, "{tool:?}");
    };
    check(Tool::Binaryen, &instrument_binaryen(wat, &[]));
    if !binaryen_only() {
        check(
            Tool::Ours,
            &instrument_ours(wat, &wasm_rewind_transform::Options::default()),
        );
    }
}
