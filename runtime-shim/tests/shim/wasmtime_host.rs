//! The shim on wasmtime, with small WAT programs that call the WASIX stack
//! functions the way our setjmp.h does (the jmp_buf's `user` field receives
//! the value), instrumented by our transform with default options.
//!
//! Each test knows its answer by construction: a checkpoint returns 0, a
//! restore makes it return the value passed, a forged or stale jmp_buf traps
//! with the matching error, and the store stays within its limits.

use crate::guest::{self, shim_error, Guest, Host, PRELUDE};
use wasm_rewind_shim::{check_module, HashKey, ShimConfig, ShimError, StoreLimits};
use wasmtime::{Engine, Module, Store};

fn instrument(body: &str) -> Vec<u8> {
    guest::instrument("", body)
}

/// Runs `run` and returns its i32 result (or the error), with the store.
fn run_with(body: &str, config: ShimConfig) -> (wasmtime::Result<i32>, Store<Host>) {
    run_module(&instrument(body), config)
}

/// Runs `run` of an instrumented module, which must have what the shim
/// needs.
fn run_module(wasm: &[u8], config: ShimConfig) -> (wasmtime::Result<i32>, Store<Host>) {
    let guest = Guest::from_wasm(wasm);
    check_module(guest.module()).expect("module has what the shim needs");
    guest.run("run", config)
}

fn run(body: &str) -> wasmtime::Result<i32> {
    run_with(body, ShimConfig::default()).0
}

#[test]
fn longjmp_from_deep_recursion_returns_its_value_from_setjmp() {
    let body = r#"
      (func $dive (param $env i32) (param $n i32)
        (local $frame i32)
        (local.set $frame (call $push (i32.const 32)))
        (if (local.get $n)
          (then (call $dive (local.get $env) (i32.sub (local.get $n) (i32.const 1))))
          (else (call $longjmp (local.get $env) (i32.const 42))))
        (call $pop (i32.const 32)))
      (func (export "run") (result i32)
        (local $env i32) (local $r i32) (local $count i32)
        (local.set $env (call $push (i32.const 32)))
        (local.set $r (call $setjmp (local.get $env)))
        ;; memory is not restored: this counter keeps counting
        (i32.store (i32.const 1032) (i32.add (i32.load (i32.const 1032)) (i32.const 1)))
        (if (i32.eqz (local.get $r))
          (then (call $dive (local.get $env) (i32.const 100))))
        (i32.add (i32.mul (local.get $r) (i32.const 1000)) (i32.load (i32.const 1032))))"#;
    // setjmp returns 0, the dive longjmps with 42; the counter was seen twice
    // (its initial bytes are "byte" little-endian, so count from them).
    let initial = u32::from_le_bytes(*b"byte") as i32;
    assert_eq!(run(body).unwrap(), 42 * 1000 + initial + 2);
}

#[test]
fn longjmp_with_zero_makes_setjmp_return_one() {
    let body = r#"
      (func (export "run") (result i32)
        (local $env i32) (local $r i32)
        (local.set $env (call $push (i32.const 32)))
        (local.set $r (call $setjmp (local.get $env)))
        (if (i32.eqz (local.get $r)) (then (call $longjmp (local.get $env) (i32.const 0))))
        (local.get $r))"#;
    assert_eq!(run(body).unwrap(), 1);
}

#[test]
fn a_forged_jmp_buf_is_refused_with_its_hash() {
    let body = r#"
      (func (export "run") (result i32)
        (local $env i32)
        (local.set $env (call $push (i32.const 32)))
        (drop (call $setjmp (local.get $env)))
        (i64.store offset=8 (local.get $env) (i64.const 0x0123456789abcdef))
        (call $longjmp (local.get $env) (i32.const 5))
        (i32.const -1))"#;
    let err = run(body).unwrap_err();
    assert!(
        matches!(shim_error(&err), Some(ShimError::UnknownSnapshot { .. })),
        "{err:?}"
    );
}

#[test]
fn a_stale_jmp_buf_is_refused_not_replayed() {
    // setjmp inside a frame that then returns; longjmp from the caller, whose
    // stack pointer lies above the snapshot's.
    let body = r#"
      (func $inner (param $env i32)
        (drop (call $push (i32.const 64)))
        (drop (call $setjmp (local.get $env)))
        (call $pop (i32.const 64)))
      (func (export "run") (result i32)
        (local $env i32)
        (local.set $env (call $push (i32.const 32)))
        (call $inner (local.get $env))
        (call $longjmp (local.get $env) (i32.const 7))
        (i32.const -1))"#;
    let err = run(body).unwrap_err();
    assert!(
        matches!(shim_error(&err), Some(ShimError::StaleSnapshot { .. })),
        "{err:?}"
    );
}

#[test]
fn setjmp_in_a_loop_keeps_the_store_bounded() {
    // 100k iterations, each a setjmp (on a stack whose bytes change, so each
    // snapshot differs) and a longjmp back to it.
    let body = r#"
      (func (export "run") (result i32)
        (local $env i32) (local $i i32) (local $sum i32) (local $r i32)
        (local.set $env (call $push (i32.const 32)))
        (loop $again
          (i32.store offset=24 (local.get $env) (local.get $i))
          (local.set $r (call $setjmp (local.get $env)))
          (if (i32.eqz (local.get $r))
            (then (call $longjmp (local.get $env) (i32.const 3))))
          (local.set $sum (i32.add (local.get $sum) (local.get $r)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const 100000))))
        (local.get $sum))"#;
    let limits = StoreLimits {
        max_snapshots: 64,
        max_bytes: 1 << 20,
        ..StoreLimits::default()
    };
    let (result, store) = run_with(
        body,
        ShimConfig {
            limits,
            ..ShimConfig::default()
        },
    );
    assert_eq!(result.unwrap(), 300_000);
    let snapshots = store.data().shim.snapshots();
    assert!(snapshots.len() <= 64, "{} snapshots", snapshots.len());
    assert!(snapshots.bytes() <= 1 << 20);
}

#[test]
fn identical_checkpoints_are_stored_once() {
    // The jmp_buf and the counter live in data, outside the captured stack,
    // and no local is live across the checkpoint: every iteration takes the
    // same snapshot.
    let body = r#"
      (func (export "run") (result i32)
        (loop $again
          (drop (call $setjmp (i32.const 1040)))
          (i32.store (i32.const 1064) (i32.add (i32.load (i32.const 1064)) (i32.const 1)))
          (br_if $again (i32.lt_u (i32.load (i32.const 1064)) (i32.const 10))))
        (i32.load (i32.const 1064)))"#;
    let (result, store) = run_with(body, ShimConfig::default());
    assert_eq!(result.unwrap(), 10);
    assert_eq!(store.data().shim.snapshots().len(), 1);
}

#[test]
fn a_fixed_key_gives_reproducible_jmp_bufs() {
    let body = r#"
      (func (export "run") (result i32)
        (drop (call $setjmp (i32.const 1040)))
        (i32.load (i32.const 1048)))"#;
    let with_key = |k: u8| {
        let config = ShimConfig {
            key: HashKey::fixed([k; 32]),
            ..ShimConfig::default()
        };
        run_with(body, config).0.unwrap()
    };
    assert_eq!(with_key(7), with_key(7));
    assert_ne!(with_key(7), with_key(8));
}

#[test]
fn modules_without_what_the_shim_needs_are_refused_before_running() {
    let engine = Engine::default();
    let plain = wat::parse_str(format!("(module {PRELUDE} (func (export \"run\")))")).unwrap();
    let err = check_module(&Module::new(&engine, plain).unwrap()).unwrap_err();
    assert!(matches!(err, ShimError::NotInstrumented { .. }), "{err}");
    assert!(err.to_string().contains("wasm-rewind instrument"), "{err}");
}

/// The deep-recursion program, exporting its stack bounds itself, as a
/// module linked with `-Wl,--export=__stack_pointer,--export=__stack_low`.
fn with_stack_exports(body: &str) -> String {
    format!(
        "(module {PRELUDE} {body}
           (export \"__stack_pointer\" (global $__stack_pointer))
           (export \"__stack_low\" (global $__stack_low)))"
    )
}

const DEEP: &str = r#"
  (func $dive (param $env i32) (param $n i32)
    (drop (call $push (i32.const 32)))
    (if (local.get $n)
      (then (call $dive (local.get $env) (i32.sub (local.get $n) (i32.const 1))))
      (else (call $longjmp (local.get $env) (i32.const 42))))
    (call $pop (i32.const 32)))
  (func (export "run") (result i32)
    (local $env i32) (local $r i32)
    (local.set $env (call $push (i32.const 32)))
    (local.set $r (call $setjmp (local.get $env)))
    (if (i32.eqz (local.get $r)) (then (call $dive (local.get $env) (i32.const 50))))
    (local.get $r))"#;

/// Like `DEEP`, 1000 calls deep with 12-byte frames, and with the top page
/// of memory 0 (heap, as far as the shim knows) filled with a pattern the
/// program checks after the jump: `run` returns 42 only if the window the
/// shim borrowed there was given back intact. `dive` could call setjmp
/// (with `n` = -1, which never comes), so its frames are resume points and
/// the longjmp's unwind saves them (a function that can only longjmp saves
/// nothing).
const DEEP_WITH_HEAP: &str = r#"
  (func $dive (param $env i32) (param $n i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const -1))
      (then (drop (call $setjmp (local.get $env)))))
    (drop (call $push (i32.const 32)))
    (if (local.get $n)
      (then (drop (call $dive (local.get $env) (i32.sub (local.get $n) (i32.const 1)))))
      (else (call $longjmp (local.get $env) (i32.const 42))))
    (call $pop (i32.const 32))
    ;; Both locals live across the call: 12 bytes a frame.
    (i32.add (local.get $env) (local.get $n)))
  (func $fill (local $a i32)
    (local.set $a (i32.const 65536))
    (loop $l
      (i32.store (local.get $a) (i32.xor (local.get $a) (i32.const 0x5a5a5a5a)))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (br_if $l (i32.lt_u (local.get $a) (i32.const 131072)))))
  (func $intact (result i32) (local $a i32)
    (local.set $a (i32.const 65536))
    (loop $l
      (if (i32.ne (i32.load (local.get $a)) (i32.xor (local.get $a) (i32.const 0x5a5a5a5a)))
        (then (return (i32.const 0))))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (br_if $l (i32.lt_u (local.get $a) (i32.const 131072))))
    (i32.const 1))
  (func (export "run") (result i32)
    (local $env i32) (local $r i32)
    (call $fill)
    (local.set $env (call $push (i32.const 32)))
    (local.set $r (call $setjmp (local.get $env)))
    (if (i32.eqz (local.get $r))
      (then (drop (call $dive (local.get $env) (i32.const 1000)))))
    (if (i32.eqz (call $intact)) (then (return (i32.const -1))))
    (local.get $r))"#;

#[test]
fn the_buffer_is_borrowed_from_memory_0_and_given_back() {
    // The default output: the buffer in memory 0. The 1000 frames of `dive`
    // need about 12 KB, more than the first window (4 KiB), so the window
    // grows through the hook, and memory with it; what it covered is intact
    // afterwards.
    let wasm = instrument(DEEP_WITH_HEAP);
    let (result, mut store) = run_module(&wasm, ShimConfig::default());
    assert_eq!(result.unwrap(), 42);
    assert!(store.data_mut().shim.snapshots().len() == 1);
}

#[test]
fn an_unwind_past_max_buffer_is_buffer_too_small() {
    let wasm = instrument(DEEP_WITH_HEAP);
    // Above the first window (4 KiB), below the 12 KB the unwind needs: the
    // limit is met in the grow hook.
    let config = ShimConfig {
        max_buffer: 8192,
        ..ShimConfig::default()
    };
    let (result, _) = run_module(&wasm, config);
    let err = result.unwrap_err();
    match err.downcast_ref::<ShimError>() {
        Some(ShimError::BufferTooSmall { needed, available }) => {
            assert_eq!(*available, 8192);
            assert!(*needed > 8192, "{needed}");
        }
        other => panic!("expected BufferTooSmall, got {other:?} from {err:?}"),
    }
}

#[test]
fn a_secondary_memory_holds_the_buffer_when_asked() {
    let wasm = wat::parse_str(with_stack_exports(DEEP)).unwrap();
    let options = wasm_rewind_transform::Options {
        secondary_memory: Some(4),
        ..Default::default()
    };
    let out = wasm_rewind_transform::instrument(&wasm, &options)
        .unwrap()
        .wasm;
    let (result, _) = run_module(&out, ShimConfig::default());
    assert_eq!(result.unwrap(), 42);
}

#[test]
fn the_same_shim_runs_binaryens_output() {
    let wasm = wat::parse_str(with_stack_exports(DEEP)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wasm"), dir.path().join("out.wasm"));
    std::fs::write(&input, &wasm).unwrap();
    let wasm_opt = crate::process::wasm_opt();
    let status = std::process::Command::new(&wasm_opt)
        .arg(&input)
        .arg("--enable-mutable-globals")
        .arg("--asyncify")
        .arg("--pass-arg=asyncify-imports@wasix_32v1.stack_checkpoint,wasix_32v1.stack_restore")
        .arg("-o")
        .arg(&output)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "`{}` must be installed (apt-get install binaryen): {e}",
                wasm_opt.display()
            )
        });
    assert!(status.success());
    let (result, _) = run_module(&std::fs::read(&output).unwrap(), ShimConfig::default());
    assert_eq!(result.unwrap(), 42);
}
