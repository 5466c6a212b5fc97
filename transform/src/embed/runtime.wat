;; The embedded runtime of `--embed-runtime`: the WASIX calls
;; `stack_checkpoint` and `stack_restore` (setjmp/longjmp) implemented inside
;; the module, with the semantics of the host shim (runtime-shim/src/driver.rs).
;;
;; This is a template, not a module of its own: `embed/mod.rs` fills in the
;; `@NAME@` constants, parses it, and links it into the instrumented module.
;; Its imports are resolved against that module ("rt" "start_unwind" is our
;; `asyncify_start_unwind`, "rt" "stack_pointer" the program's
;; `__stack_pointer`, "rt" "save_globals"/"restore_globals" are generated per
;; module); every function it defines is exported under the name it gets in
;; the output's name section, which is also how the linker finds the three
;; entry points (`__wasm_rewind_stack_checkpoint`, `__wasm_rewind_stack_restore`,
;; `__wasm_rewind_after_unwind`). The export section itself is not copied.
;;
;; How it runs. Every exported function that can unwind is wrapped (in Rust,
;; `embed/mod.rs`): the wrapper calls it, and when it returns because the stack
;; unwound it calls `after_unwind` and calls it again, which rewinds. So:
;;
;; - checkpoint(env, ret), state 0: place the buffer, note the request, start
;;   unwinding. `after_unwind` copies the unwound frames and the saved globals
;;   into a slot of the store, writes the slot's identity into the jmp_buf and
;;   rewinds the same frames; the checkpoint is re-entered in state 2 and
;;   returns 0 through `ret`.
;; - restore(env, val): check the jmp_buf against the store (unknown, stale,
;;   corrupt: each traps in its own named function), then unwind the current
;;   stack. `after_unwind` puts the slot's frames in the buffer, restores the
;;   globals (the stack pointer above all; linear memory is never restored) and
;;   rewinds; the checkpoint returns `val` through `ret`.
;;
;; Memory: one region of @PAGES@ pages taken with `memory.grow` on the first
;; checkpoint, so it never overlaps program data (the program's allocator gets
;; the pages after it) and a program that never calls setjmp pays nothing.
;;
;;   region + 0                {pos, end} of the asyncify buffer
;;   region + 16               the asyncify buffer, @BUFFER@ bytes
;;   region + @TABLE@          @SLOTS@ slots of 32 bytes:
;;                               +0 env  +4 generation (0: free)  +8 sp
;;                               +12 frame bytes  +16 data address
;;                               +20 data capacity  +24 hash (i64)
;;   region + @ARENA@          slot data: frames, then the saved globals
;;   region + @REGION@         end
;;
;; A jmp_buf (24 bytes: u64 user, 16-byte hash) holds, in its hash field,
;; the slot index + 1 (i32), the slot's generation (i32) and the slot's hash
;; (i64). The hash is keyed with a constant derived from the input module and
;; covers the slot's data, index, generation, stack pointer and length: it
;; catches a jmp_buf that was never set, was overwritten or copied from
;; another run, and a slot whose bytes the program scribbled over. It is not
;; a defence against a program that wants to forge one: the key is in the
;; module. A forged jump could only hurt the program itself, inside its own
;; sandbox.
(module
  (import "rt" "start_unwind" (func $start_unwind (param i32)))
  (import "rt" "stop_unwind" (func $stop_unwind))
  (import "rt" "start_rewind" (func $start_rewind (param i32)))
  (import "rt" "stop_rewind" (func $stop_rewind))
  (import "rt" "get_state" (func $get_state (result i32)))
  (import "rt" "save_globals" (func $save_globals (param i32)))
  (import "rt" "restore_globals" (func $restore_globals (param i32)))
  (import "rt" "memory" (memory 0))
  (import "rt" "stack_pointer" (global $sp (mut i32)))

  ;; Base of the region; meaningful once $top is not 0.
  (global $region (mut i32) (i32.const 0))
  ;; Next free byte of the slot data arena; 0 until the region exists.
  (global $top (mut i32) (i32.const 0))
  ;; The request being completed: 0 none, 1 checkpoint, 2 restore.
  (global $pending (mut i32) (i32.const 0))
  ;; The checkpoint's jmp_buf, or the restore's slot.
  (global $target (mut i32) (i32.const 0))
  ;; What the rewound checkpoint returns through `ret`.
  (global $resume (mut i64) (i64.const 0))
  ;; The last generation handed out.
  (global $generation (mut i32) (i32.const 0))

  ;; Traps, one per reason: the name in the backtrace is the diagnostic.
  (func $unknown (export "__wasm_rewind_unknown_snapshot") unreachable)
  (func $stale (export "__wasm_rewind_stale_snapshot") unreachable)
  (func $corrupt (export "__wasm_rewind_corrupt_snapshot") unreachable)
  (func $full (export "__wasm_rewind_snapshot_store_full") unreachable)
  (func $out_of_memory (export "__wasm_rewind_out_of_memory") unreachable)
  (func $bad_state (export "__wasm_rewind_bad_state") unreachable)

  ;; stack_checkpoint(env, ret) -> errno
  (func (export "__wasm_rewind_stack_checkpoint") (param $env i32) (param $ret i32) (result i32)
    (local $state i32)
    (local.set $state (call $get_state))
    (if (i32.eq (local.get $state) (i32.const 2))
      (then
        ;; The rewind has reached us: the jump (or the checkpoint) is done.
        (call $stop_rewind)
        (i64.store (local.get $ret) (global.get $resume))
        (return (i32.const 0))))
    (if (i32.or (local.get $state) (global.get $pending))
      (then (call $bad_state)))
    (call $ensure_region)
    (global.set $pending (i32.const 1))
    (global.set $target (local.get $env))
    (call $reset_buffer)
    (call $start_unwind (global.get $region))
    (i32.const 0))

  ;; stack_restore(env, val): never returns to its caller, which unwinds.
  (func (export "__wasm_rewind_stack_restore") (param $env i32) (param $val i64)
    (if (i32.or (call $get_state) (global.get $pending))
      (then (call $bad_state)))
    (global.set $target (call $find (local.get $env)))
    (global.set $pending (i32.const 2))
    (global.set $resume (local.get $val))
    (call $reset_buffer)
    (call $start_unwind (global.get $region)))

  ;; Called by an entry wrapper when its function returned with the state at
  ;; 1: completes the request and starts the rewind.
  (func (export "__wasm_rewind_after_unwind")
    (local $request i32) (local $slot i32) (local $len i32)
    (call $stop_unwind)
    (local.set $request (global.get $pending))
    (global.set $pending (i32.const 0))
    (if (i32.eq (local.get $request) (i32.const 1))
      (then
        ;; The frames stay in the buffer: the rewind replays them.
        (call $store
          (global.get $target)
          (i32.sub (i32.load (global.get $region))
                   (i32.add (global.get $region) (i32.const 16))))
        (global.set $resume (i64.const 0))
        (call $start_rewind (global.get $region))
        (return)))
    (if (i32.eq (local.get $request) (i32.const 2))
      (then
        ;; The current frames are discarded; the slot's take their place.
        (local.set $slot (global.get $target))
        (local.set $len (i32.load offset=12 (local.get $slot)))
        (memory.copy
          (i32.add (global.get $region) (i32.const 16))
          (i32.load offset=16 (local.get $slot))
          (local.get $len))
        (i32.store (global.get $region)
          (i32.add (global.get $region) (i32.add (i32.const 16) (local.get $len))))
        (call $restore_globals
          (i32.add (i32.load offset=16 (local.get $slot)) (local.get $len)))
        (call $start_rewind (global.get $region))
        (return)))
    ;; Something other than a checkpoint or a restore unwound the stack.
    (call $bad_state))

  ;; Takes the region on first use.
  (func $ensure_region (export "__wasm_rewind_ensure_region")
    (local $page i32)
    (br_if 0 (global.get $top))
    (local.set $page (memory.grow (i32.const @PAGES@)))
    (if (i32.eq (local.get $page) (i32.const -1))
      (then (call $out_of_memory)))
    (global.set $region (i32.shl (local.get $page) (i32.const 16)))
    (global.set $top (i32.add (global.get $region) (i32.const @ARENA@))))

  ;; An empty buffer: pos at its start, end at its end.
  (func $reset_buffer (export "__wasm_rewind_reset_buffer")
    (i32.store (global.get $region) (i32.add (global.get $region) (i32.const 16)))
    (i32.store offset=4 (global.get $region)
      (i32.add (global.get $region) (i32.const @TABLE@))))

  ;; Address of slot `idx`.
  (func $slot (export "__wasm_rewind_slot") (param $idx i32) (result i32)
    (i32.add (global.get $region)
      (i32.add (i32.const @TABLE@) (i32.shl (local.get $idx) (i32.const 5)))))

  ;; The slot a jmp_buf names, verified; traps when there is none.
  (func $find (export "__wasm_rewind_find") (param $env i32) (result i32)
    (local $idx i32) (local $slot i32)
    (if (i32.eqz (global.get $top)) (then (call $unknown)))
    (local.set $idx (i32.sub (i32.load offset=8 (local.get $env)) (i32.const 1)))
    (if (i32.ge_u (local.get $idx) (i32.const @SLOTS@)) (then (call $unknown)))
    (local.set $slot (call $slot (local.get $idx)))
    (if (i32.or
          (i32.eqz (i32.load offset=4 (local.get $slot)))
          (i32.or
            (i32.ne (i32.load offset=4 (local.get $slot)) (i32.load offset=12 (local.get $env)))
            (i64.ne (i64.load offset=24 (local.get $slot)) (i64.load offset=16 (local.get $env)))))
      (then (call $unknown)))
    ;; The function that called setjmp has returned: its frames are gone.
    (if (i32.lt_u (i32.load offset=8 (local.get $slot)) (global.get $sp))
      (then (call $stale)))
    (if (i64.ne (call $slot_hash (local.get $slot) (local.get $idx))
                (i64.load offset=24 (local.get $slot)))
      (then (call $corrupt)))
    (local.get $slot))

  ;; Stores the `len` bytes of frames in the buffer as the snapshot of `env`
  ;; and writes its identity into the jmp_buf.
  (func $store (export "__wasm_rewind_store") (param $env i32) (param $len i32)
    (local $need i32) (local $slot i32) (local $idx i32) (local $gen i32) (local $data i32)
    ;; Room for the frames and the globals, rounded up to 8 and never 0.
    (local.set $need
      (i32.and (i32.add (local.get $len) (i32.const @GLOBALS_PLUS_8@)) (i32.const -8)))
    ;; The jmp_buf's previous snapshot can no longer be named: reuse its slot.
    (local.set $slot (call $slot_of (local.get $env)))
    (if (local.get $slot)
      (then
        (if (i32.lt_u (i32.load offset=20 (local.get $slot)) (local.get $need))
          (then
            (i32.store offset=4 (local.get $slot) (i32.const 0))
            (local.set $slot (i32.const 0))))))
    (if (i32.eqz (local.get $slot))
      (then
        (local.set $slot (call $free_slot))
        (if (i32.eqz (local.get $slot))
          (then
            (call $evict_dead)
            (local.set $slot (call $free_slot))
            (if (i32.eqz (local.get $slot)) (then (call $full)))))
        (if (i32.gt_u (i32.add (global.get $top) (local.get $need))
                      (i32.add (global.get $region) (i32.const @REGION@)))
          (then
            (call $evict_dead)
            (call $compact)
            (if (i32.gt_u (i32.add (global.get $top) (local.get $need))
                          (i32.add (global.get $region) (i32.const @REGION@)))
              (then (call $full)))))
        (i32.store offset=16 (local.get $slot) (global.get $top))
        (i32.store offset=20 (local.get $slot) (local.get $need))
        (global.set $top (i32.add (global.get $top) (local.get $need)))))
    (local.set $gen (i32.add (global.get $generation) (i32.const 1)))
    (if (i32.eqz (local.get $gen)) (then (local.set $gen (i32.const 1))))
    (global.set $generation (local.get $gen))
    (local.set $data (i32.load offset=16 (local.get $slot)))
    (memory.copy (local.get $data)
      (i32.add (global.get $region) (i32.const 16)) (local.get $len))
    (call $save_globals (i32.add (local.get $data) (local.get $len)))
    (i32.store (local.get $slot) (local.get $env))
    (i32.store offset=4 (local.get $slot) (local.get $gen))
    (i32.store offset=8 (local.get $slot) (global.get $sp))
    (i32.store offset=12 (local.get $slot) (local.get $len))
    (local.set $idx
      (i32.shr_u
        (i32.sub (local.get $slot) (call $slot (i32.const 0)))
        (i32.const 5)))
    (i64.store offset=24 (local.get $slot) (call $slot_hash (local.get $slot) (local.get $idx)))
    (i32.store offset=8 (local.get $env) (i32.add (local.get $idx) (i32.const 1)))
    (i32.store offset=12 (local.get $env) (local.get $gen))
    (i64.store offset=16 (local.get $env) (i64.load offset=24 (local.get $slot))))

  ;; The live slot the jmp_buf at `env` names and that was taken for `env`,
  ;; or 0. No search: a live snapshot of `env` is always the one `env` names,
  ;; unless the program overwrote the jmp_buf.
  (func $slot_of (export "__wasm_rewind_slot_of") (param $env i32) (result i32)
    (local $idx i32) (local $slot i32)
    (local.set $idx (i32.sub (i32.load offset=8 (local.get $env)) (i32.const 1)))
    (if (i32.ge_u (local.get $idx) (i32.const @SLOTS@)) (then (return (i32.const 0))))
    (local.set $slot (call $slot (local.get $idx)))
    (if (result i32)
      (i32.and
        (i32.ne (i32.load offset=4 (local.get $slot)) (i32.const 0))
        (i32.and
          (i32.eq (i32.load offset=4 (local.get $slot)) (i32.load offset=12 (local.get $env)))
          (i32.eq (i32.load (local.get $slot)) (local.get $env))))
      (then (local.get $slot))
      (else (i32.const 0))))

  ;; A free slot, or 0.
  (func $free_slot (export "__wasm_rewind_free_slot") (result i32)
    (local $slot i32) (local $end i32)
    (local.set $slot (call $slot (i32.const 0)))
    (local.set $end (call $slot (i32.const @SLOTS@)))
    (block $none
      (loop $next
        (br_if $none (i32.ge_u (local.get $slot) (local.get $end)))
        (if (i32.eqz (i32.load offset=4 (local.get $slot)))
          (then (return (local.get $slot))))
        (local.set $slot (i32.add (local.get $slot) (i32.const 32)))
        (br $next)))
    (i32.const 0))

  ;; Frees the slots of functions that have returned (saved below the
  ;; current stack pointer): no restore can name them without trapping.
  (func $evict_dead (export "__wasm_rewind_evict_dead")
    (local $slot i32) (local $end i32)
    (local.set $slot (call $slot (i32.const 0)))
    (local.set $end (call $slot (i32.const @SLOTS@)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $slot) (local.get $end)))
        (if (i32.lt_u (i32.load offset=8 (local.get $slot)) (global.get $sp))
          (then (i32.store offset=4 (local.get $slot) (i32.const 0))))
        (local.set $slot (i32.add (local.get $slot) (i32.const 32)))
        (br $next))))

  ;; Moves the data of live slots down to the start of the arena, in address
  ;; order, so the free space is one stretch at the top.
  (func $compact (export "__wasm_rewind_compact")
    (local $cursor i32) (local $best i32) (local $slot i32) (local $end i32) (local $at i32)
    (local.set $cursor (i32.add (global.get $region) (i32.const @ARENA@)))
    (local.set $end (call $slot (i32.const @SLOTS@)))
    (loop $move
      ;; The live slot with the lowest data address at or above the cursor.
      (local.set $best (i32.const 0))
      (local.set $slot (call $slot (i32.const 0)))
      (block $scanned
        (loop $scan
          (br_if $scanned (i32.ge_u (local.get $slot) (local.get $end)))
          (if (i32.load offset=4 (local.get $slot))
            (then
              (local.set $at (i32.load offset=16 (local.get $slot)))
              (if (i32.and
                    (i32.ge_u (local.get $at) (local.get $cursor))
                    (i32.or
                      (i32.eqz (local.get $best))
                      (i32.lt_u (local.get $at) (i32.load offset=16 (local.get $best)))))
                (then (local.set $best (local.get $slot))))))
          (local.set $slot (i32.add (local.get $slot) (i32.const 32)))
          (br $scan)))
      (if (local.get $best)
        (then
          (memory.copy (local.get $cursor)
            (i32.load offset=16 (local.get $best))
            (i32.load offset=20 (local.get $best)))
          (i32.store offset=16 (local.get $best) (local.get $cursor))
          (local.set $cursor
            (i32.add (local.get $cursor) (i32.load offset=20 (local.get $best))))
          (br $move))))
    (global.set $top (local.get $cursor)))

  ;; The keyed hash of a slot: its data, and its index, generation, stack
  ;; pointer and length.
  (func $slot_hash (export "__wasm_rewind_slot_hash") (param $slot i32) (param $idx i32) (result i64)
    (call $hash
      (i32.load offset=16 (local.get $slot))
      (i32.add (i32.load offset=12 (local.get $slot)) (i32.const @GLOBALS@))
      (i64.xor
        (call $mix
          (i64.xor (i64.const @KEY@)
            (i64.or
              (i64.shl (i64.extend_i32_u (i32.load offset=4 (local.get $slot))) (i64.const 32))
              (i64.extend_i32_u (local.get $idx)))))
        (call $mix
          (i64.or
            (i64.shl (i64.extend_i32_u (i32.load offset=8 (local.get $slot))) (i64.const 32))
            (i64.extend_i32_u (i32.load offset=12 (local.get $slot))))))))

  ;; Hashes `n` bytes at `p` from `h`. Each step (xor a word, rotate, multiply
  ;; by an odd constant) is a bijection of the state, so changing any one word
  ;; always changes the result; the final mix spreads every bit.
  (func $hash (export "__wasm_rewind_hash") (param $p i32) (param $n i32) (param $h i64) (result i64)
    (block $words_done
      (loop $words
        (br_if $words_done (i32.lt_u (local.get $n) (i32.const 8)))
        (local.set $h
          (i64.mul
            (i64.rotl (i64.xor (local.get $h) (i64.load (local.get $p))) (i64.const 29))
            (i64.const 0x9e3779b97f4a7c15)))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (local.set $n (i32.sub (local.get $n) (i32.const 8)))
        (br $words)))
    (block $bytes_done
      (loop $bytes
        (br_if $bytes_done (i32.eqz (local.get $n)))
        (local.set $h
          (i64.mul
            (i64.rotl (i64.xor (local.get $h) (i64.load8_u (local.get $p))) (i64.const 29))
            (i64.const 0x9e3779b97f4a7c15)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $bytes)))
    (call $mix (local.get $h)))

  ;; splitmix64's finaliser.
  (func $mix (export "__wasm_rewind_mix") (param $x i64) (result i64)
    (local.set $x
      (i64.mul (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 30)))
               (i64.const 0xbf58476d1ce4e5b9)))
    (local.set $x
      (i64.mul (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 27)))
               (i64.const 0x94d049bb133111eb)))
    (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 31))))
)
