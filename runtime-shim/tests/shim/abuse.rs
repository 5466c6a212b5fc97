//! A guest abusing the WASIX stack calls: garbage, stale and foreign
//! jmp_bufs, millions of setjmps, a buffer too small for its stack, and
//! garbage frames met while rewinding. Each time the host gets an error it
//! can match on, its memory stays bounded, and a fresh instance of the same
//! module (same engine and linker) then runs a normal program correctly.
//!
//! The guests are WAT programs calling the WASIX functions the way our
//! setjmp.h does, instrumented by the transform with default options.

use crate::guest::{self, shim_error, trap};
use std::time::Instant;
use wasm_rewind_shim::{ShimConfig, ShimError, StoreLimits};
use wasmtime::Trap;

/// After the shared prelude: `$dive`, which recurses `n` levels with a C
/// frame each and then longjmps, and `normal`: a setjmp/longjmp round trip
/// through a 20-deep recursion that returns 42, the program every fresh
/// instance must still run.
const NORMAL: &str = r#"
  (func $dive (param $env i32) (param $n i32) (param $val i32)
    (local $pad i64) (local $pad2 i64) (local $pad3 i64)
    (drop (call $push (i32.const 32)))
    (if (local.get $n)
      (then (call $dive (local.get $env) (i32.sub (local.get $n) (i32.const 1)) (local.get $val)))
      (else (call $longjmp (local.get $env) (local.get $val))))
    (call $pop (i32.const 32)))
  (func (export "normal") (result i32)
    (local $env i32) (local $r i32)
    (local.set $env (call $push (i32.const 32)))
    (local.set $r (call $setjmp (local.get $env)))
    (if (i32.eqz (local.get $r)) (then (call $dive (local.get $env) (i32.const 20) (i32.const 42))))
    (call $pop (i32.const 32))
    (local.get $r))
"#;

/// A guest of `body` after the prelude and [`NORMAL`].
struct Guest(guest::Guest);

impl Guest {
    fn new(body: &str) -> Guest {
        Guest::with_imports("", body)
    }

    /// `imports` go before the prelude's functions.
    fn with_imports(imports: &str, body: &str) -> Guest {
        let wasm = guest::instrument(imports, &format!("{NORMAL} {body}"));
        Guest(guest::Guest::from_wasm(&wasm))
    }

    /// The next call into a fresh instance works.
    fn fresh_instance_works(&self) {
        assert_eq!(self.0.run("normal", ShimConfig::default()).0.unwrap(), 42);
    }
}

impl std::ops::Deref for Guest {
    type Target = guest::Guest;

    fn deref(&self) -> &guest::Guest {
        &self.0
    }
}

#[test]
fn a_jmp_buf_full_of_garbage_is_an_unknown_snapshot() {
    // Never filled by setjmp: 24 bytes of garbage, then longjmp.
    let guest = Guest::new(
        r#"(func (export "run") (result i32)
             (i64.store (i32.const 1040) (i64.const 0x7fffffffdeadbeef))
             (i64.store (i32.const 1048) (i64.const -1))
             (i64.store (i32.const 1056) (i64.const 0x0102030405060708))
             (call $longjmp (i32.const 1040) (i32.const 9))
             (i32.const -1))"#,
    );
    let err = guest.fails("run", ShimConfig::default());
    assert!(
        matches!(shim_error(&err), Some(ShimError::UnknownSnapshot { hash }) if hash[..8] == [0xff; 8]),
        "{err:?}"
    );
    guest.fresh_instance_works();
}

#[test]
fn a_jmp_buf_pointing_outside_memory_is_a_guest_error() {
    let guest = Guest::new(
        r#"(func (export "run") (result i32)
             (call $longjmp (i32.const -8) (i32.const 1))
             (i32.const -1))"#,
    );
    let err = guest.fails("run", ShimConfig::default());
    assert!(
        matches!(shim_error(&err), Some(ShimError::Guest { message }) if message.contains("outside linear memory")),
        "{err:?}"
    );
    guest.fresh_instance_works();
}

#[test]
fn a_stale_jmp_buf_replayed_after_a_good_jump_is_refused() {
    // The first longjmp is legal; the frame then returns and the same
    // jmp_buf is replayed from the caller.
    let guest = Guest::new(
        r#"(func $inner
             (local $r i32)
             (drop (call $push (i32.const 64)))
             (local.set $r (call $setjmp (i32.const 1040)))
             (if (i32.eqz (local.get $r)) (then (call $longjmp (i32.const 1040) (i32.const 1))))
             (call $pop (i32.const 64)))
           (func (export "run") (result i32)
             (call $inner)
             (call $longjmp (i32.const 1040) (i32.const 7))
             (i32.const -1))"#,
    );
    let err = guest.fails("run", ShimConfig::default());
    assert!(
        matches!(shim_error(&err), Some(ShimError::StaleSnapshot { snapshot_sp, current_sp })
            if snapshot_sp < current_sp),
        "{err:?}"
    );
    guest.fresh_instance_works();
}

#[test]
fn a_jmp_buf_from_another_instance_is_an_unknown_snapshot() {
    // Instance A fills a jmp_buf; its 24 bytes are copied into instance B
    // (same module, same engine), which longjmps to it.
    let guest = Guest::new(
        r#"(func (export "fill") (result i32)
             (call $setjmp (i32.const 1040)))
           (func (export "jump") (result i32)
             (call $longjmp (i32.const 1040) (i32.const 3))
             (i32.const -1))"#,
    );
    let (mut a, inst_a) = guest.instance(ShimConfig::default());
    assert_eq!(guest.call(&mut a, &inst_a, "fill").unwrap(), 0);
    let mem_a = inst_a.get_memory(&mut a, "memory").unwrap();
    let jmp_buf = mem_a.data(&a)[1040..1064].to_vec();
    assert_ne!(jmp_buf[8..24], [0; 16], "setjmp wrote a hash");

    let (mut b, inst_b) = guest.instance(ShimConfig::default());
    let mem_b = inst_b.get_memory(&mut b, "memory").unwrap();
    mem_b.data_mut(&mut b)[1040..1064].copy_from_slice(&jmp_buf);
    let err = guest.call(&mut b, &inst_b, "jump").unwrap_err();
    assert!(
        matches!(shim_error(&err), Some(ShimError::UnknownSnapshot { hash }) if hash[..] == jmp_buf[8..24]),
        "{err:?}"
    );
    // A still owns its snapshot and can jump to it.
    assert_eq!(a.data().shim.snapshots().len(), 1);
    guest.fresh_instance_works();
}

/// Setjmp calls of the loop below, each with a different stack so each
/// snapshot is new and the store must evict.
const SETJMPS: i32 = 1_000_000;

#[test]
fn a_million_setjmps_stay_within_the_store_limits_and_memory() {
    let guest = Guest::new(&format!(
        r#"(func (export "run") (result i32)
             (local $env i32) (local $i i32)
             (local.set $env (call $push (i32.const 32)))
             (loop $again
               (i32.store offset=24 (local.get $env) (local.get $i))
               (drop (call $setjmp (local.get $env)))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $again (i32.lt_u (local.get $i) (i32.const {SETJMPS}))))
             ;; the latest jmp_buf is still good
             (if (i32.eqz (call $setjmp (local.get $env)))
               (then (call $longjmp (local.get $env) (i32.const 5))))
             (i32.load offset=24 (local.get $env)))"#
    ));
    let limits = StoreLimits {
        max_snapshots: 256,
        max_bytes: 1 << 20,
        ..StoreLimits::default()
    };
    let (mut store, instance) = guest.instance(ShimConfig {
        limits,
        ..ShimConfig::default()
    });
    let before = peak_rss_kib();
    let start = Instant::now();
    // The counter stored before the last setjmp of the loop.
    assert_eq!(
        guest.call(&mut store, &instance, "run").unwrap(),
        SETJMPS - 1
    );
    let took = start.elapsed();
    let grown = peak_rss_kib() - before;
    let snapshots = store.data().shim.snapshots();
    println!(
        "{SETJMPS} setjmps in {took:?}: {} snapshots, {} bytes stored, peak RSS +{grown} KiB",
        snapshots.len(),
        snapshots.bytes()
    );
    assert!(
        snapshots.len() <= limits.max_snapshots,
        "{}",
        snapshots.len()
    );
    assert!(
        snapshots.bytes() <= limits.max_bytes,
        "{}",
        snapshots.bytes()
    );
    // The store's 1 MiB plus the engine's working set; a leak of one byte
    // per setjmp alone would pass 1 MiB, of one snapshot (~100 bytes) 95 MiB.
    assert!(grown < 32 * 1024, "peak RSS grew by {grown} KiB");
    guest.fresh_instance_works();
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// A setjmp at the bottom of a 200-deep recursion: its frames need far more
/// than 256 bytes of buffer.
const DEEP_SETJMP: &str = r#"
  (func $deep (param $n i32) (result i32)
    (local $a i64) (local $b i64) (local $c i64)
    (if (result i32) (local.get $n)
      (then (i32.add (call $deep (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))
      (else (call $setjmp (i32.const 1040)))))
  (func (export "run") (result i32)
    (call $deep (i32.const 200)))"#;

#[test]
fn a_tiny_buffer_is_a_handled_error_not_a_scribble() {
    too_small_then_runs(&Guest::new(DEEP_SETJMP), 200);
}

/// `run` with a 256-byte buffer fails with `BufferTooSmall`, the next
/// instance works, and with room the same program returns `want`.
fn too_small_then_runs(guest: &Guest, want: i32) {
    let tiny = ShimConfig {
        max_buffer: 256,
        ..ShimConfig::default()
    };
    let err = guest.fails("run", tiny);
    assert!(
        matches!(
            shim_error(&err),
            Some(ShimError::BufferTooSmall { available: 256, .. })
        ),
        "{err:?}"
    );
    guest.fresh_instance_works();
    assert_eq!(guest.run("run", ShimConfig::default()).0.unwrap(), want);
}

#[test]
fn a_longjmp_from_deeper_than_the_buffer_holds_is_a_handled_error() {
    // setjmp is shallow (its snapshot fits), but the longjmp comes from a
    // 200-deep recursion, whose frames the restore must unwind first. They
    // are saved because `$climb` could also call setjmp (with `n` = -1,
    // which never comes), so a rewind could resume them.
    let guest = Guest::new(
        r#"(func $climb (param $env i32) (param $n i32) (param $val i32)
             (if (i32.eq (local.get $n) (i32.const -1))
               (then (drop (call $setjmp (local.get $env)))))
             (if (local.get $n)
               (then (call $climb (local.get $env) (i32.sub (local.get $n) (i32.const 1))
                                  (local.get $val)))
               (else (call $longjmp (local.get $env) (local.get $val)))))
           (func (export "run") (result i32)
             (local $r i32)
             (local.set $r (call $setjmp (i32.const 1040)))
             (if (i32.eqz (local.get $r))
               (then (call $climb (i32.const 1040) (i32.const 200) (i32.const 6))))
             (local.get $r))"#,
    );
    too_small_then_runs(&guest, 6);
}

#[test]
fn a_longjmp_through_frames_that_can_only_longjmp_needs_no_buffer_for_them() {
    // The same 200-deep recursion, but `$dive` reaches nothing that unwinds
    // except the longjmp: its calls are never resumed and save nothing, so
    // the 256 bytes that `$climb`'s frames overflow are enough.
    let guest = Guest::new(
        r#"(func (export "run") (result i32)
             (local $r i32)
             (local.set $r (call $setjmp (i32.const 1040)))
             (if (i32.eqz (local.get $r))
               (then (call $dive (i32.const 1040) (i32.const 200) (i32.const 6))))
             (local.get $r))"#,
    );
    let tiny = ShimConfig {
        max_buffer: 256,
        ..ShimConfig::default()
    };
    assert_eq!(guest.run("run", tiny).0.unwrap(), 6);
}

#[test]
fn a_guest_that_starts_a_rewind_from_garbage_traps_mid_rewind() {
    // The guest starts a rewind itself (through the in-module runtime
    // import) with a `{pos, end}` that points at nothing valid in the
    // buffer's memory, then calls an instrumented function: the rewind pops
    // its call index from below the buffer and traps there, before any
    // frame is restored. The shim had nothing pending, so the host gets the
    // engine's trap as is.
    let guest = Guest::with_imports(
        r#"(import "asyncify" "start_rewind" (func $start_rewind (param i32)))"#,
        r#"(func $victim (result i32)
             (local $x i64)
             (drop (call $setjmp (i32.const 1072)))
             (i32.const 11))
           (func (export "run") (result i32)
             (memory.fill (i32.const 2048) (i32.const 0xff) (i32.const 64))
             (call $start_rewind (i32.const 2032))
             (call $victim))"#,
    );
    let err = guest.fails("run", ShimConfig::default());
    assert_eq!(trap(&err), Some(Trap::MemoryOutOfBounds), "{err:?}");
    assert!(
        format!("{err:?}").contains("__wasm_rewind_pop_index"),
        "{err:?}"
    );
    guest.fresh_instance_works();
}

#[test]
fn a_longjmp_through_call_ref_and_return_call_ref_lands() {
    // Both typed-reference calls can reach only the longjmp: they unwind
    // and are never resumed, so their function references need not be
    // kept (a `call_ref` that is resumed is refused instead).
    let guest = Guest::new(
        r#"(type $jump (func (param i32 i32)))
           (elem declare func $longjmp $via_tail)
           (func $via_tail (param $env i32) (param $val i32)
             (return_call_ref $jump (local.get $env) (local.get $val) (ref.func $longjmp)))
           (func (export "run") (result i32)
             (local $r i32)
             (local.set $r (call $setjmp (i32.const 1040)))
             (if (i32.eqz (local.get $r))
               (then (call_ref $jump (i32.const 1040) (i32.const 9) (ref.func $via_tail))))
             (local.get $r))"#,
    );
    assert_eq!(guest.run("run", ShimConfig::default()).0.unwrap(), 9);
}
