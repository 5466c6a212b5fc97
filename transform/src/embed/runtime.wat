;; The embedded runtime of `--embed-runtime`: the WASIX calls
;; `stack_checkpoint` and `stack_restore` (setjmp/longjmp) implemented inside
;; the module, with the semantics of the host shim (runtime-shim/src/driver.rs
;; and store.rs).
;;
;; This is a template, not a module of its own: `embed/mod.rs` fills in the
;; `@NAME@` constants, parses it, and links it into the instrumented module.
;; Its imports are resolved against that module ("rt" "start_unwind" is our
;; `asyncify_start_unwind`, "rt" "stack_pointer" the program's
;; `__stack_pointer`, "rt" "save_globals"/"restore_globals" and
;; "init_allocator" are generated per module); every function it defines is
;; exported under the name it gets in the output's name section, which is
;; also how the linker finds the entry points (`__wasm_rewind_stack_checkpoint`,
;; `__wasm_rewind_stack_restore`, `__wasm_rewind_after_unwind`,
;; `__wasm_rewind_grow_buffer`). The export section itself is not copied.
;;
;; How it runs. Every exported function that can unwind is wrapped (in Rust,
;; `embed/mod.rs`): the wrapper calls it, and when it returns because the stack
;; unwound it calls `after_unwind` and calls it again, which rewinds. So:
;;
;; - checkpoint(env, ret), state 0: note the request, start unwinding.
;;   `after_unwind` stores the unwound frames and the saved globals as a
;;   snapshot, writes its identity into the jmp_buf and rewinds the same
;;   frames; the checkpoint is re-entered in state 2 and returns 0 through
;;   `ret`.
;; - restore(env, val): check the jmp_buf against the store (unknown, stale,
;;   corrupt: each traps in its own named function), then unwind the current
;;   stack. `after_unwind` rebuilds the snapshot's frames in the buffer,
;;   restores the globals (the stack pointer above all; linear memory is never
;;   restored) and rewinds; the checkpoint returns `val` through `ret`.
;;
;; Memory. Everything lives in pages taken with `memory.grow`, in chunks, as
;; needed, up to @CAP_PAGES@ pages in all (`instrument --embed-max-memory`):
;; a program that never calls setjmp pays nothing. The program's allocator is
;; made to set itself up first ("rt" "init_allocator", a call of its `malloc`
;; and `free` when the module has them): the 2022 wasi-libc malloc takes all
;; memory up to the end of memory the first time it runs, which would
;; otherwise include pages taken before it.
;;
;; - The asyncify buffer: `{pos, end}` (its address is the one the unwinding
;;   code holds, so it never moves) and the frames, elsewhere. A frame that
;;   does not fit calls `grow_buffer`, which moves the frames to a larger
;;   place and points `{pos, end}` there.
;; - Frames of stored snapshots, shared: they are cut into chunks of 64 bytes
;;   counted from the end (the outermost frames, which nested checkpoints have
;;   in common, come last), and each snapshot is a list of chunk nodes from
;;   the innermost outwards. Nodes are hash-consed on (bytes, next node), so
;;   lists that end the same way share their nodes, and reference-counted.
;;
;;     node (@NODE@ bytes): +0 outer node  +4 refs  +8 length  +12 next in
;;                          bucket  +16 key (i64)  +24 the bytes (64)
;;
;; - Snapshots: an array of slots, doubled when full:
;;
;;     slot (@SLOT@ bytes): +0 env (free: next free slot + 1)
;;                          +4 generation (0: free)  +8 stack pointer
;;                          +12 frame bytes  +16 first node  +20 displaced
;;                          +24 hash (i64)  +32 the saved globals
;;
;; - Displaced snapshots (a later setjmp gave their jmp_buf another one): a
;;   ring of @MAX_DISPLACED@ (slot index, generation) pairs, oldest first.
;; - The last slot stored for each jmp_buf address: @LAST_ENTRIES@ entries of
;;   (address, slot index + 1, generation), found by hashing the address and
;;   probing the @LAST_PROBES@ entries from there (entries whose slot is gone
;;   are reused). A setjmp finds the jmp_buf's previous snapshot through the
;;   jmp_buf itself, or through this table when its bytes were written over
;;   since (Lua's jmp_buf lies in a stack frame that is reused between
;;   `pcall`s): without it, such snapshots were never displaced and filled
;;   the store.
;;
;; Which snapshots go when room is needed (as in the host shim): dead ones
;; (taken below the current stack pointer: their frames returned) and
;; displaced ones whose jmp_buf does not hold them again. Live ones never:
;; when they alone fill the cap, the checkpoint traps in
;; `__wasm_rewind_snapshot_store_full`.
;;
;; A jmp_buf (24 bytes: u64 user, 16-byte hash) holds, in its hash field,
;; the slot index + 1 (i32), the slot's generation (i32) and the slot's hash
;; (i64). The hash is keyed with a constant derived from the input module and
;; covers the snapshot's frames, globals, index, generation, stack pointer
;; and length: it catches a jmp_buf that was never set, was overwritten or
;; copied from another run, and a store the program scribbled over. It is
;; not a defence against a program that wants to forge one: the key is in the
;; module. A forged jump could only hurt the program itself, inside its own
;; sandbox.
;;
;; Contexts (WASIX `context_create`, `context_switch`, `context_destroy`).
;; The code between the `ctx` block-comment markers is linked in only when
;; the module imports one of these calls (`embed/mod.rs` removes the markers;
;; otherwise it stays a comment and the output is what it was without
;; contexts). The entry wrapper is then the driver of every context: it asks
;; `context_run` whether the main context (id 0) runs, and calls its function
;; if so; otherwise `context_run` calls the running context's entry through
;; the function table ("rt" "call_entry"), which starts or rewinds it. A
;; switch is a third request: `context_switch` unwinds the running context,
;; `after_unwind` keeps its frames (as a chunk list, like a snapshot's) and
;; its saved globals in its record, and either leaves the target to be
;; started by the wrapper or puts the target's frames and globals back and
;; rewinds. Records live in an array indexed by id, doubled when full; ids
;; are never reused (a destroyed context keeps its record, marked destroyed):
;;
;;     record (@CTX@ bytes): +0 state (0 destroyed, 1 not started,
;;                          2 suspended, 3 running)  +4 entry (table index)
;;                          +8 first frame node  +12 frame bytes
;;                          +16 stack low  +20 stack high (from the header's
;;                          descriptor, 0 when absent)  +24 the saved globals
;;
;; A snapshot then also records its context (slot +32, hashed with the
;; globals, which move to +40). A longjmp to another context's snapshot traps
;; in `__wasm_rewind_longjmp_across_contexts`; a snapshot is dead when taken
;; below the stack pointer of its own context (the current one for the
;; running context, the one saved at its last switch for the others), since
;; contexts have separate C stacks; destroying a context frees its snapshots.
(module
  (import "rt" "start_unwind" (func $start_unwind (param i32)))
  (import "rt" "stop_unwind" (func $stop_unwind))
  (import "rt" "start_rewind" (func $start_rewind (param i32)))
  (import "rt" "stop_rewind" (func $stop_rewind))
  (import "rt" "get_state" (func $get_state (result i32)))
  (import "rt" "save_globals" (func $save_globals (param i32)))
  (import "rt" "restore_globals" (func $restore_globals (param i32)))
  (import "rt" "init_allocator" (func $init_allocator))
  (;ctx
  ;; call_entry(i) is `call_indirect` of table entry i with type () -> ();
  ;; entry_ok(i): whether i is a non-null entry of the table; entry_returned
  ;; ends the program (`proc_exit(129)`, or a trap without WASI).
  (import "rt" "call_entry" (func $call_entry (param i32)))
  (import "rt" "entry_ok" (func $entry_ok (param i32) (result i32)))
  (import "rt" "entry_returned" (func $entry_returned))
  ctx;)
  (import "rt" "memory" (memory 0))
  (import "rt" "stack_pointer" (global $sp (mut i32)))

  ;; Bump allocation: the free part of the last chunk taken. 0 until the
  ;; runtime is set up.
  (global $top (mut i32) (i32.const 0))
  (global $chunk_end (mut i32) (i32.const 0))
  ;; Pages taken so far (at most @CAP_PAGES@).
  (global $pages (mut i32) (i32.const 0))
  ;; The asyncify buffer: `{pos, end}` at $buf, frames from $frames.
  (global $buf (mut i32) (i32.const 0))
  (global $frames (mut i32) (i32.const 0))
  ;; Chunk nodes: free list, hash buckets.
  (global $node_free (mut i32) (i32.const 0))
  (global $buckets (mut i32) (i32.const 0))
  (global $nbuckets (mut i32) (i32.const 0))
  (global $nnodes (mut i32) (i32.const 0))
  ;; Slots: the array, its capacity, the free list (index + 1), slots used
  ;; so far.
  (global $slots (mut i32) (i32.const 0))
  (global $nslots (mut i32) (i32.const 0))
  (global $slot_free (mut i32) (i32.const 0))
  (global $slots_used (mut i32) (i32.const 0))
  ;; The displaced ring: base, oldest entry, entries.
  (global $ring (mut i32) (i32.const 0))
  (global $ring_head (mut i32) (i32.const 0))
  (global $ring_len (mut i32) (i32.const 0))
  ;; Where `unchanged` saves the globals to compare them (fresh memory, so
  ;; the bytes an i32 global leaves are zero, as in every slot).
  (global $scratch (mut i32) (i32.const 0))
  ;; The table of the last slot stored for each jmp_buf (see `last_entry`).
  (global $last (mut i32) (i32.const 0))
  ;; The request being completed: 0 none, 1 checkpoint, 2 restore.
  (global $pending (mut i32) (i32.const 0))
  ;; The checkpoint's jmp_buf, or the restore's slot.
  (global $target (mut i32) (i32.const 0))
  ;; What the rewound checkpoint returns through `ret`.
  (global $resume (mut i64) (i64.const 0))
  ;; The last generation handed out.
  (global $generation (mut i32) (i32.const 0))
  (;ctx
  ;; Context records: the array, its capacity, ids handed out (0 until the
  ;; first create), the running context's id.
  (global $ctxs (mut i32) (i32.const 0))
  (global $ctx_cap (mut i32) (i32.const 0))
  (global $nctx (mut i32) (i32.const 0))
  (global $cur (mut i32) (i32.const 0))
  ctx;)

  ;; Traps, one per reason: the name in the backtrace is the diagnostic.
  (func $unknown (export "__wasm_rewind_unknown_snapshot") unreachable)
  (func $stale (export "__wasm_rewind_stale_snapshot") unreachable)
  (func $corrupt (export "__wasm_rewind_corrupt_snapshot") unreachable)
  (func $full (export "__wasm_rewind_snapshot_store_full") unreachable)
  (func $out_of_memory (export "__wasm_rewind_out_of_memory") unreachable)
  (func $bad_state (export "__wasm_rewind_bad_state") unreachable)
  (;ctx
  (func $across (export "__wasm_rewind_longjmp_across_contexts") unreachable)
  ctx;)

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
    (call $setup)
    (global.set $pending (i32.const 1))
    (global.set $target (local.get $env))
    (call $reset_buffer)
    (call $start_unwind (global.get $buf))
    (i32.const 0))

  ;; stack_restore(env, val): never returns to its caller, which unwinds.
  (func (export "__wasm_rewind_stack_restore") (param $env i32) (param $val i64)
    (if (i32.or (call $get_state) (global.get $pending))
      (then (call $bad_state)))
    (global.set $target (call $find (local.get $env)))
    (global.set $pending (i32.const 2))
    (global.set $resume (local.get $val))
    (call $reset_buffer)
    (call $start_unwind (global.get $buf)))

  ;; Called by an entry wrapper when its function returned with the state at
  ;; 1: completes the request and starts the rewind.
  (func (export "__wasm_rewind_after_unwind")
    (local $request i32) (local $slot i32) (local $len i32)
    (call $stop_unwind)
    (local.set $request (global.get $pending))
    (if (i32.eq (local.get $request) (i32.const 1))
      (then
        ;; The frames stay in the buffer: the rewind replays them. The
        ;; request stays pending while they are stored (see $current).
        (call $store (global.get $target)
          (i32.sub (i32.load (global.get $buf)) (global.get $frames)))
        (global.set $pending (i32.const 0))
        (global.set $resume (i64.const 0))
        (call $start_rewind (global.get $buf))
        (return)))
    (global.set $pending (i32.const 0))
    (if (i32.eq (local.get $request) (i32.const 2))
      (then
        ;; The current frames are discarded; the slot's take their place.
        (local.set $slot (global.get $target))
        (local.set $len (i32.load offset=12 (local.get $slot)))
        (call $ensure_buffer (local.get $len))
        (call $read_list (i32.load offset=16 (local.get $slot)) (global.get $frames))
        (i32.store (global.get $buf) (i32.add (global.get $frames) (local.get $len)))
        (call $restore_globals (i32.add (local.get $slot) (i32.const @SLOT_GLOBALS@)))
        (call $start_rewind (global.get $buf))
        (return)))
    (;ctx
    (if (i32.eq (local.get $request) (i32.const 3))
      (then
        (call $switch_to (global.get $target))
        (return)))
    ctx;)
    ;; Something other than a checkpoint or a restore unwound the stack.
    (call $bad_state))

  ;; The buffer overflowed while unwinding: a frame of `needed` bytes does
  ;; not fit. Moves the frames so far to a place at least twice as large.
  (func (export "__wasm_rewind_grow_buffer") (param $needed i32)
    (local $used i32) (local $cap i32) (local $new i32)
    (local.set $used (i32.sub (i32.load (global.get $buf)) (global.get $frames)))
    (local.set $cap
      (i32.shl (i32.sub (i32.load offset=4 (global.get $buf)) (global.get $frames))
               (i32.const 1)))
    (if (i32.lt_u (local.get $cap) (i32.add (local.get $used) (local.get $needed)))
      (then (local.set $cap (i32.add (local.get $used) (local.get $needed)))))
    (local.set $cap (i32.and (i32.add (local.get $cap) (i32.const 7)) (i32.const -8)))
    (local.set $new (call $alloc (local.get $cap)))
    (if (i32.eqz (local.get $new)) (then (call $full)))
    (memory.copy (local.get $new) (global.get $frames) (local.get $used))
    (global.set $frames (local.get $new))
    (i32.store (global.get $buf) (i32.add (local.get $new) (local.get $used)))
    (i32.store offset=4 (global.get $buf) (i32.add (local.get $new) (local.get $cap))))

  ;; A buffer of at least `len` bytes (its contents are not kept).
  (func $ensure_buffer (export "__wasm_rewind_ensure_buffer") (param $len i32)
    (local $new i32)
    (local.set $len (i32.and (i32.add (local.get $len) (i32.const 7)) (i32.const -8)))
    (br_if 0 (i32.le_u (i32.add (global.get $frames) (local.get $len))
                       (i32.load offset=4 (global.get $buf))))
    (local.set $new (call $alloc (local.get $len)))
    (if (i32.eqz (local.get $new)) (then (call $full)))
    (global.set $frames (local.get $new))
    (i32.store offset=4 (global.get $buf) (i32.add (local.get $new) (local.get $len))))

  ;; Sets the runtime up on first use: the program's allocator first, then
  ;; the buffer, the buckets, the slots and the ring.
  (func $setup (export "__wasm_rewind_setup")
    (br_if 0 (global.get $top))
    (call $init_allocator)
    (global.set $buf (call $alloc_or_trap (i32.const 16400)))
    (global.set $frames (i32.add (global.get $buf) (i32.const 16)))
    (i32.store offset=4 (global.get $buf) (i32.add (global.get $buf) (i32.const 16400)))
    (global.set $nbuckets (i32.const 1024))
    (global.set $buckets (call $alloc_or_trap (i32.const 4096)))
    (global.set $nslots (i32.const 64))
    (global.set $slots (call $alloc_or_trap (i32.mul (i32.const 64) (i32.const @SLOT@))))
    (global.set $ring (call $alloc_or_trap (i32.const @RING_BYTES@)))
    (global.set $scratch (call $alloc_or_trap (i32.const @GLOBALS_ALLOC@)))
    (global.set $last (call $alloc_or_trap (i32.const @LAST_BYTES@))))

  ;; `bytes` (a multiple of 8) of fresh memory, or 0 when the cap is reached.
  (func $alloc (export "__wasm_rewind_alloc") (param $bytes i32) (result i32)
    (local $at i32) (local $pages i32) (local $page i32)
    (if (i32.le_u (i32.add (global.get $top) (local.get $bytes)) (global.get $chunk_end))
      (then
        (local.set $at (global.get $top))
        (global.set $top (i32.add (global.get $top) (local.get $bytes)))
        (return (local.get $at))))
    ;; A new chunk: 4 pages, or what `bytes` needs.
    (local.set $pages (i32.shr_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 16)))
    (if (i32.lt_u (local.get $pages) (i32.const 4)) (then (local.set $pages (i32.const 4))))
    (if (i32.gt_u (i32.add (global.get $pages) (local.get $pages)) (i32.const @CAP_PAGES@))
      (then
        ;; Near the cap: just what is needed.
        (local.set $pages (i32.shr_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 16)))
        (if (i32.gt_u (i32.add (global.get $pages) (local.get $pages)) (i32.const @CAP_PAGES@))
          (then (return (i32.const 0))))))
    (local.set $page (memory.grow (local.get $pages)))
    (if (i32.eq (local.get $page) (i32.const -1)) (then (call $out_of_memory)))
    (global.set $pages (i32.add (global.get $pages) (local.get $pages)))
    (local.set $at (i32.shl (local.get $page) (i32.const 16)))
    (global.set $top (i32.add (local.get $at) (local.get $bytes)))
    (global.set $chunk_end
      (i32.add (local.get $at) (i32.shl (local.get $pages) (i32.const 16))))
    (local.get $at))

  (func $alloc_or_trap (export "__wasm_rewind_alloc_or_trap") (param $bytes i32) (result i32)
    (local $at i32)
    (local.set $at (call $alloc (local.get $bytes)))
    (if (i32.eqz (local.get $at)) (then (call $full)))
    (local.get $at))

  ;; An empty buffer: pos at its start.
  (func $reset_buffer (export "__wasm_rewind_reset_buffer")
    (i32.store (global.get $buf) (global.get $frames)))

  ;; Address of slot `idx` (the array moves when it grows: keep indices).
  (func $slot (export "__wasm_rewind_slot") (param $idx i32) (result i32)
    (i32.add (global.get $slots) (i32.mul (local.get $idx) (i32.const @SLOT@))))

  ;; Index of the slot at `slot`.
  (func $index_of (export "__wasm_rewind_index_of") (param $slot i32) (result i32)
    (i32.div_u (i32.sub (local.get $slot) (global.get $slots)) (i32.const @SLOT@)))

  ;; The slot a jmp_buf names, verified; traps when there is none.
  (func $find (export "__wasm_rewind_find") (param $env i32) (result i32)
    (local $idx i32) (local $slot i32)
    (if (i32.eqz (global.get $top)) (then (call $unknown)))
    (local.set $idx (i32.sub (i32.load offset=8 (local.get $env)) (i32.const 1)))
    (if (i32.ge_u (local.get $idx) (global.get $slots_used)) (then (call $unknown)))
    (local.set $slot (call $slot (local.get $idx)))
    (if (i32.or
          (i32.eqz (i32.load offset=4 (local.get $slot)))
          (i32.or
            (i32.ne (i32.load offset=4 (local.get $slot)) (i32.load offset=12 (local.get $env)))
            (i64.ne (i64.load offset=24 (local.get $slot)) (i64.load offset=16 (local.get $env)))))
      (then (call $unknown)))
    (;ctx
    ;; Each context rewinds only its own frames.
    (if (i32.ne (i32.load offset=32 (local.get $slot)) (global.get $cur))
      (then (call $across)))
    ctx;)
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
    (local $slot i32) (local $idx i32) (local $gen i32) (local $head i32) (local $old i32)
    ;; The snapshot the jmp_buf holds, or else the last one stored for it
    ;; (its bytes may have been written over since, as when it lies in a
    ;; stack frame that returned and was reused).
    (local.set $old (call $slot_of (local.get $env)))
    (if (i32.eqz (local.get $old))
      (then (local.set $old (call $last_slot (local.get $env)))))
    (if (local.get $old)
      (then
        ;; Set again with the same frames, globals and stack pointer (a
        ;; setjmp in a loop whose variables live in memory): the snapshot
        ;; it holds is the one this would store, so it stays, current
        ;; again, and nothing is hashed or copied. Otherwise the previous
        ;; snapshot is displaced.
        (if (call $unchanged (local.get $old) (local.get $len))
          (then
            (i32.store offset=20 (local.get $old) (i32.const 0))
            (call $name (local.get $env) (local.get $old))
            (return)))
        (if (i32.eqz (i32.load offset=20 (local.get $old)))
          (then (call $displace (local.get $old))))))
    (local.set $slot (call $new_slot))
    (if (i32.eqz (local.get $slot))
      (then
        (call $make_room)
        (local.set $slot (call $new_slot))
        (if (i32.eqz (local.get $slot)) (then (call $full)))))
    (local.set $head (call $insert_frames (global.get $frames) (local.get $len)))
    (if (i32.eq (local.get $head) (i32.const -1))
      (then
        (call $make_room)
        (local.set $head (call $insert_frames (global.get $frames) (local.get $len)))
        (if (i32.eq (local.get $head) (i32.const -1)) (then (call $full)))))
    (local.set $gen (i32.add (global.get $generation) (i32.const 1)))
    (if (i32.eqz (local.get $gen)) (then (local.set $gen (i32.const 1))))
    (global.set $generation (local.get $gen))
    (local.set $idx (call $index_of (local.get $slot)))
    (i32.store (local.get $slot) (local.get $env))
    (i32.store offset=4 (local.get $slot) (local.get $gen))
    (i32.store offset=8 (local.get $slot) (global.get $sp))
    (i32.store offset=12 (local.get $slot) (local.get $len))
    (i32.store offset=16 (local.get $slot) (local.get $head))
    (i32.store offset=20 (local.get $slot) (i32.const 0))
    (call $save_globals (i32.add (local.get $slot) (i32.const @SLOT_GLOBALS@)))
    (;ctx
    (i32.store offset=32 (local.get $slot) (global.get $cur))
    ctx;)
    (i64.store offset=24 (local.get $slot) (call $slot_hash (local.get $slot) (local.get $idx)))
    (call $name (local.get $env) (local.get $slot)))

  ;; Writes the identity of `slot` into the jmp_buf at `env`, and notes it
  ;; as the last slot stored for `env`.
  (func $name (export "__wasm_rewind_name") (param $env i32) (param $slot i32)
    (local $idx1 i32) (local $at i32)
    (local.set $idx1 (i32.add (call $index_of (local.get $slot)) (i32.const 1)))
    (i32.store offset=8 (local.get $env) (local.get $idx1))
    (i32.store offset=12 (local.get $env) (i32.load offset=4 (local.get $slot)))
    (i64.store offset=16 (local.get $env) (i64.load offset=24 (local.get $slot)))
    (local.set $at (call $last_entry (local.get $env) (i32.const 1)))
    (i32.store (local.get $at) (local.get $env))
    (i32.store offset=4 (local.get $at) (local.get $idx1))
    (i32.store offset=8 (local.get $at) (i32.load offset=4 (local.get $slot))))

  ;; The entry of `env` in the table of last slots (@LAST_ENTRIES@ entries of
  ;; (env, slot index + 1, generation)), among the @LAST_PROBES@ from where
  ;; its address hashes to; 0 if none. With `for_insert`, the first entry
  ;; whose slot is gone instead, or else the first one: a table that full
  ;; forgets an older jmp_buf, which then only loses this way of being
  ;; found.
  (func $last_entry (export "__wasm_rewind_last_entry") (param $env i32) (param $for_insert i32) (result i32)
    (local $home i32) (local $i i32) (local $at i32) (local $free i32)
    (local.set $home (i32.shr_u (i32.mul (local.get $env) (i32.const 0x9e3779b1))
                                (i32.const @LAST_SHIFT@)))
    (block $done
      (loop $probe
        (br_if $done (i32.eq (local.get $i) (i32.const @LAST_PROBES@)))
        (local.set $at
          (i32.add (global.get $last)
            (i32.mul (i32.and (i32.add (local.get $home) (local.get $i))
                              (i32.const @LAST_MASK@))
                     (i32.const 12))))
        (if (i32.eq (i32.load (local.get $at)) (local.get $env))
          (then (return (local.get $at))))
        (if (i32.and (i32.eqz (local.get $free)) (i32.eqz (call $entry_slot (local.get $at))))
          (then (local.set $free (local.get $at))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $probe)))
    (if (i32.eqz (local.get $for_insert)) (then (return (i32.const 0))))
    (if (result i32) (local.get $free)
      (then (local.get $free))
      (else (i32.add (global.get $last) (i32.mul (local.get $home) (i32.const 12))))))

  ;; The live slot the table entry at `at` names, taken for the jmp_buf the
  ;; entry is for, or 0.
  (func $entry_slot (export "__wasm_rewind_entry_slot") (param $at i32) (result i32)
    (call $live_slot (i32.load offset=4 (local.get $at)) (i32.load offset=8 (local.get $at))
      (i32.load (local.get $at))))

  ;; The live slot last stored for the jmp_buf at `env`, whatever the
  ;; jmp_buf holds now, or 0.
  (func $last_slot (export "__wasm_rewind_last_slot") (param $env i32) (result i32)
    (local $at i32)
    (local.set $at (call $last_entry (local.get $env) (i32.const 0)))
    (if (result i32) (local.get $at)
      (then (call $entry_slot (local.get $at)))
      (else (i32.const 0))))

  ;; Whether `slot` holds what a snapshot of the `len` bytes of frames in
  ;; the buffer would: the same stack pointer, context, saved globals and
  ;; frames. A list the program wrote over (see `chunk_len`) only makes
  ;; this answer no: a restore of that slot still finds it corrupt.
  (func $unchanged (export "__wasm_rewind_unchanged") (param $slot i32) (param $len i32) (result i32)
    (local $node i32) (local $p i32) (local $n i32) (local $left i32)
    (if (i32.or (i32.ne (i32.load offset=8 (local.get $slot)) (global.get $sp))
                (i32.ne (i32.load offset=12 (local.get $slot)) (local.get $len)))
      (then (return (i32.const 0))))
    (;ctx
    (if (i32.ne (i32.load offset=32 (local.get $slot)) (global.get $cur))
      (then (return (i32.const 0))))
    ctx;)
    (call $save_globals (global.get $scratch))
    (if (i32.eqz (call $same (i32.add (local.get $slot) (i32.const @SLOT_GLOBALS@))
                             (global.get $scratch) (i32.const @GLOBALS@)))
      (then (return (i32.const 0))))
    (local.set $node (i32.load offset=16 (local.get $slot)))
    (local.set $p (global.get $frames))
    (local.set $left (local.get $len))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $node)))
        (local.set $n (call $chunk_len (local.get $node) (local.get $left)))
        (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
        (if (i32.eqz (call $same (i32.add (local.get $node) (i32.const 24))
                                 (local.get $p) (local.get $n)))
          (then (return (i32.const 0))))
        (local.set $p (i32.add (local.get $p) (local.get $n)))
        (local.set $left (i32.sub (local.get $left) (local.get $n)))
        (local.set $node (i32.load (local.get $node)))
        (br $next)))
    (i32.eqz (local.get $left)))

  ;; The live slot the jmp_buf at `env` names and that was taken for `env`,
  ;; or 0.
  (func $slot_of (export "__wasm_rewind_slot_of") (param $env i32) (result i32)
    (call $live_slot (i32.load offset=8 (local.get $env)) (i32.load offset=12 (local.get $env))
      (local.get $env)))

  ;; Slot `idx1 - 1` if it is live, of generation `gen` and taken for the
  ;; jmp_buf at `env`; else 0.
  (func $live_slot (export "__wasm_rewind_live_slot") (param $idx1 i32) (param $gen i32) (param $env i32) (result i32)
    (local $slot i32)
    (if (i32.ge_u (i32.sub (local.get $idx1) (i32.const 1)) (global.get $slots_used))
      (then (return (i32.const 0))))
    (local.set $slot (call $slot (i32.sub (local.get $idx1) (i32.const 1))))
    (if (result i32)
      (i32.and
        (i32.ne (i32.load offset=4 (local.get $slot)) (i32.const 0))
        (i32.and
          (i32.eq (i32.load offset=4 (local.get $slot)) (local.get $gen))
          (i32.eq (i32.load (local.get $slot)) (local.get $env))))
      (then (local.get $slot))
      (else (i32.const 0))))

  ;; Whether the jmp_buf a slot was taken for names it (again).
  (func $current (export "__wasm_rewind_current") (param $slot i32) (result i32)
    (local $env i32)
    (local.set $env (i32.load (local.get $slot)))
    ;; The request under way is about to give that jmp_buf another slot.
    (if (i32.and (i32.eq (global.get $pending) (i32.const 1))
                 (i32.eq (local.get $env) (global.get $target)))
      (then (return (i32.const 0))))
    (i32.and
      (i32.eq (i32.load offset=8 (local.get $env))
              (i32.add (call $index_of (local.get $slot)) (i32.const 1)))
      (i32.eq (i32.load offset=12 (local.get $env)) (i32.load offset=4 (local.get $slot)))))

  ;; Marks a slot displaced and queues it; beyond @MAX_DISPLACED@ queued,
  ;; the oldest goes.
  (func $displace (export "__wasm_rewind_displace") (param $slot i32)
    (local $at i32)
    (if (i32.ge_u (global.get $ring_len) (i32.const @MAX_DISPLACED@))
      (then (call $drop_oldest_displaced)))
    (i32.store offset=20 (local.get $slot) (i32.const 1))
    (local.set $at
      (i32.add (global.get $ring)
        (i32.shl
          (i32.and (i32.add (global.get $ring_head) (global.get $ring_len))
                   (i32.const @RING_MASK@))
          (i32.const 3))))
    (i32.store (local.get $at) (call $index_of (local.get $slot)))
    (i32.store offset=4 (local.get $at) (i32.load offset=4 (local.get $slot)))
    (global.set $ring_len (i32.add (global.get $ring_len) (i32.const 1))))

  ;; Takes the oldest entry off the ring and frees its slot if that is still
  ;; the displaced snapshot queued and its jmp_buf does not hold it again.
  (func $drop_oldest_displaced (export "__wasm_rewind_drop_oldest_displaced")
    (local $at i32) (local $slot i32)
    (br_if 0 (i32.eqz (global.get $ring_len)))
    (local.set $at (i32.add (global.get $ring) (i32.shl (global.get $ring_head) (i32.const 3))))
    (global.set $ring_head (i32.and (i32.add (global.get $ring_head) (i32.const 1))
                                    (i32.const @RING_MASK@)))
    (global.set $ring_len (i32.sub (global.get $ring_len) (i32.const 1)))
    (local.set $slot (call $slot (i32.load (local.get $at))))
    (br_if 0 (i32.ne (i32.load offset=4 (local.get $slot)) (i32.load offset=4 (local.get $at))))
    (br_if 0 (i32.eqz (i32.load offset=20 (local.get $slot))))
    (if (call $current (local.get $slot))
      (then
        ;; The program put it back in its jmp_buf: live again.
        (i32.store offset=20 (local.get $slot) (i32.const 0))
        (return)))
    (call $free_slot (local.get $slot)))

  ;; Frees the slots of snapshots that are dead (taken below the current
  ;; stack pointer, of their own context when there are contexts) and of
  ;; displaced ones their jmp_buf does not hold again.
  (func $make_room (export "__wasm_rewind_make_room")
    (local $idx i32) (local $slot i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $idx) (global.get $slots_used)))
        (local.set $slot (call $slot (local.get $idx)))
        (if (i32.and (i32.ne (i32.load offset=4 (local.get $slot)) (i32.const 0))
                     (i32.lt_u (i32.load offset=8 (local.get $slot)) @SP_OF_SLOT@))
          (then (call $free_slot (local.get $slot))))
        (local.set $idx (i32.add (local.get $idx) (i32.const 1)))
        (br $next)))
    (block $empty
      (loop $again
        (br_if $empty (i32.eqz (global.get $ring_len)))
        (call $drop_oldest_displaced)
        (br $again))))

  ;; A free slot, growing the array when all are taken; 0 at the cap.
  (func $new_slot (export "__wasm_rewind_new_slot") (result i32)
    (local $slot i32) (local $new i32)
    (if (global.get $slot_free)
      (then
        (local.set $slot (call $slot (i32.sub (global.get $slot_free) (i32.const 1))))
        (global.set $slot_free (i32.load (local.get $slot)))
        (return (local.get $slot))))
    (if (i32.ge_u (global.get $slots_used) (global.get $nslots))
      (then
        (local.set $new
          (call $alloc (i32.mul (i32.shl (global.get $nslots) (i32.const 1)) (i32.const @SLOT@))))
        (if (i32.eqz (local.get $new)) (then (return (i32.const 0))))
        (memory.copy (local.get $new) (global.get $slots)
          (i32.mul (global.get $nslots) (i32.const @SLOT@)))
        (global.set $slots (local.get $new))
        (global.set $nslots (i32.shl (global.get $nslots) (i32.const 1)))))
    (local.set $slot (call $slot (global.get $slots_used)))
    (global.set $slots_used (i32.add (global.get $slots_used) (i32.const 1)))
    (local.get $slot))

  ;; Frees a slot and its frames.
  (func $free_slot (export "__wasm_rewind_free_slot") (param $slot i32)
    (call $release (i32.load offset=16 (local.get $slot)))
    (i32.store offset=4 (local.get $slot) (i32.const 0))
    (i32.store (local.get $slot) (global.get $slot_free))
    (global.set $slot_free (i32.add (call $index_of (local.get $slot)) (i32.const 1))))

  ;; Stores `len` bytes of frames at `p` as a list of shared chunk nodes and
  ;; returns its first node (0 for no frames), or -1 at the cap (nothing
  ;; kept).
  (func $insert_frames (export "__wasm_rewind_insert_frames") (param $p i32) (param $len i32) (result i32)
    (local $outer i32) (local $end i32) (local $start i32) (local $node i32)
    (local.set $end (local.get $len))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $end)))
        (local.set $start (i32.sub (local.get $end) (i32.const 64)))
        (if (i32.gt_s (i32.const 0) (local.get $start)) (then (local.set $start (i32.const 0))))
        (local.set $node
          (call $intern (i32.add (local.get $p) (local.get $start))
            (i32.sub (local.get $end) (local.get $start)) (local.get $outer)))
        (if (i32.eqz (local.get $node))
          (then
            (call $release (local.get $outer))
            (return (i32.const -1))))
        (local.set $outer (local.get $node))
        (local.set $end (local.get $start))
        (br $next)))
    (local.get $outer))

  ;; The node for the `len` bytes at `p` followed by `outer`: an existing one
  ;; (one more reference; the caller's reference to `outer` is dropped, the
  ;; node holds its own) or a new one (which takes over the caller's
  ;; reference to `outer`); 0 at the cap.
  (func $intern (export "__wasm_rewind_intern") (param $p i32) (param $len i32) (param $outer i32) (result i32)
    (local $key i64) (local $bucket i32) (local $node i32)
    (local.set $key
      (call $hash (local.get $p) (local.get $len)
        (call $mix (i64.xor (i64.const @KEY@) (i64.extend_i32_u (local.get $outer))))))
    (local.set $bucket
      (i32.add (global.get $buckets)
        (i32.shl (i32.and (i32.wrap_i64 (local.get $key))
                          (i32.sub (global.get $nbuckets) (i32.const 1)))
                 (i32.const 2))))
    (local.set $node (i32.load (local.get $bucket)))
    (block $miss
      (loop $probe
        (br_if $miss (i32.eqz (local.get $node)))
        (if (i32.and
              (i64.eq (i64.load offset=16 (local.get $node)) (local.get $key))
              (i32.and
                (i32.eq (i32.load (local.get $node)) (local.get $outer))
                (i32.eq (i32.load offset=8 (local.get $node)) (local.get $len))))
          (then
            (if (call $same (i32.add (local.get $node) (i32.const 24)) (local.get $p) (local.get $len))
              (then
                (i32.store offset=4 (local.get $node)
                  (i32.add (i32.load offset=4 (local.get $node)) (i32.const 1)))
                (if (local.get $outer)
                  (then (i32.store offset=4 (local.get $outer)
                    (i32.sub (i32.load offset=4 (local.get $outer)) (i32.const 1)))))
                (return (local.get $node))))))
        (local.set $node (i32.load offset=12 (local.get $node)))
        (br $probe)))
    (local.set $node (global.get $node_free))
    (if (local.get $node)
      (then (global.set $node_free (i32.load (local.get $node))))
      (else
        (local.set $node (call $alloc (i32.const @NODE@)))
        (if (i32.eqz (local.get $node)) (then (return (i32.const 0))))))
    (i32.store (local.get $node) (local.get $outer))
    (i32.store offset=4 (local.get $node) (i32.const 1))
    (i32.store offset=8 (local.get $node) (local.get $len))
    (i32.store offset=12 (local.get $node) (i32.load (local.get $bucket)))
    (i64.store offset=16 (local.get $node) (local.get $key))
    (memory.copy (i32.add (local.get $node) (i32.const 24)) (local.get $p) (local.get $len))
    (i32.store (local.get $bucket) (local.get $node))
    (global.set $nnodes (i32.add (global.get $nnodes) (i32.const 1)))
    (if (i32.gt_u (global.get $nnodes) (i32.shl (global.get $nbuckets) (i32.const 1)))
      (then (call $rehash)))
    (local.get $node))

  ;; Whether `len` bytes at `a` and `b` are equal.
  (func $same (export "__wasm_rewind_same") (param $a i32) (param $b i32) (param $len i32) (result i32)
    ;; Eight bytes at a time, then the rest byte by byte.
    (block $words_done
      (loop $words
        (br_if $words_done (i32.lt_u (local.get $len) (i32.const 8)))
        (if (i64.ne (i64.load (local.get $a)) (i64.load (local.get $b)))
          (then (return (i32.const 0))))
        (local.set $a (i32.add (local.get $a) (i32.const 8)))
        (local.set $b (i32.add (local.get $b) (i32.const 8)))
        (local.set $len (i32.sub (local.get $len) (i32.const 8)))
        (br $words)))
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Doubles the buckets when the cap allows (otherwise chains just grow).
  (func $rehash (export "__wasm_rewind_rehash")
    (local $new i32) (local $n i32) (local $i i32) (local $node i32) (local $next i32) (local $b i32)
    (local.set $n (i32.shl (global.get $nbuckets) (i32.const 1)))
    (local.set $new (call $alloc (i32.shl (local.get $n) (i32.const 2))))
    (br_if 0 (i32.eqz (local.get $new)))
    (memory.fill (local.get $new) (i32.const 0) (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $bucket
        (br_if $done (i32.ge_u (local.get $i) (global.get $nbuckets)))
        (local.set $node
          (i32.load (i32.add (global.get $buckets) (i32.shl (local.get $i) (i32.const 2)))))
        (block $chain_done
          (loop $chain
            (br_if $chain_done (i32.eqz (local.get $node)))
            (local.set $next (i32.load offset=12 (local.get $node)))
            (local.set $b
              (i32.add (local.get $new)
                (i32.shl (i32.and (i32.wrap_i64 (i64.load offset=16 (local.get $node)))
                                  (i32.sub (local.get $n) (i32.const 1)))
                         (i32.const 2))))
            (i32.store offset=12 (local.get $node) (i32.load (local.get $b)))
            (i32.store (local.get $b) (local.get $node))
            (local.set $node (local.get $next))
            (br $chain)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $bucket)))
    (global.set $buckets (local.get $new))
    (global.set $nbuckets (local.get $n)))

  ;; Drops one reference to the list starting at `node`, freeing the nodes
  ;; no longer referenced.
  (func $release (export "__wasm_rewind_release") (param $node i32)
    (local $outer i32) (local $at i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $node)))
        (i32.store offset=4 (local.get $node)
          (i32.sub (i32.load offset=4 (local.get $node)) (i32.const 1)))
        (br_if $done (i32.load offset=4 (local.get $node)))
        ;; Unlink it from its bucket.
        (local.set $at
          (i32.add (global.get $buckets)
            (i32.shl (i32.and (i32.wrap_i64 (i64.load offset=16 (local.get $node)))
                              (i32.sub (global.get $nbuckets) (i32.const 1)))
                     (i32.const 2))))
        (block $unlinked
          (loop $walk
            (br_if $unlinked (i32.eqz (i32.load (local.get $at))))
            (if (i32.eq (i32.load (local.get $at)) (local.get $node))
              (then
                (i32.store (local.get $at) (i32.load offset=12 (local.get $node)))
                (br $unlinked)))
            (local.set $at (i32.add (i32.load (local.get $at)) (i32.const 12)))
            (br $walk)))
        (global.set $nnodes (i32.sub (global.get $nnodes) (i32.const 1)))
        (local.set $outer (i32.load (local.get $node)))
        (i32.store (local.get $node) (global.get $node_free))
        (global.set $node_free (local.get $node))
        (local.set $node (local.get $outer))
        (br $next))))

  ;; Copies the frames of the list starting at `node` to `to`.
  (func $read_list (export "__wasm_rewind_read_list") (param $node i32) (param $to i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $node)))
        (memory.copy (local.get $to) (i32.add (local.get $node) (i32.const 24))
          (i32.load offset=8 (local.get $node)))
        (local.set $to (i32.add (local.get $to) (i32.load offset=8 (local.get $node))))
        (local.set $node (i32.load (local.get $node)))
        (br $next))))

  ;; The keyed hash of a slot: its frames (chunk by chunk, as the list holds
  ;; them), its saved globals, and its index, generation, stack pointer and
  ;; length. The list is walked warily, since a program may have written
  ;; over it: a node outside memory, of a length no chunk has, or more bytes
  ;; than the slot's frames is a corrupt snapshot, not a wild read.
  (func $slot_hash (export "__wasm_rewind_slot_hash") (param $slot i32) (param $idx i32) (result i64)
    (local $h i64) (local $node i32) (local $left i32) (local $n i32)
    (local.set $h
      (i64.xor
        (call $mix
          (i64.xor (i64.const @KEY@)
            (i64.or
              (i64.shl (i64.extend_i32_u (i32.load offset=4 (local.get $slot))) (i64.const 32))
              (i64.extend_i32_u (local.get $idx)))))
        (call $mix
          (i64.or
            (i64.shl (i64.extend_i32_u (i32.load offset=8 (local.get $slot))) (i64.const 32))
            (i64.extend_i32_u (i32.load offset=12 (local.get $slot)))))))
    (local.set $node (i32.load offset=16 (local.get $slot)))
    (local.set $left (i32.load offset=12 (local.get $slot)))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $node)))
        (local.set $n (call $chunk_len (local.get $node) (local.get $left)))
        (if (i32.eqz (local.get $n)) (then (call $corrupt)))
        (local.set $left (i32.sub (local.get $left) (local.get $n)))
        (local.set $h
          (call $hash (i32.add (local.get $node) (i32.const 24)) (local.get $n) (local.get $h)))
        (local.set $node (i32.load (local.get $node)))
        (br $next)))
    (if (local.get $left) (then (call $corrupt)))
    (call $hash (i32.add (local.get $slot) (i32.const 32)) (i32.const @SLOT_HASHED@) (local.get $h)))

  ;; The length of the chunk at `node` in a list with `left` bytes still to
  ;; come, or 0 when it cannot be one (outside memory, a length no chunk
  ;; has, more bytes than are left): the program wrote over the list.
  (func $chunk_len (export "__wasm_rewind_chunk_len") (param $node i32) (param $left i32) (result i32)
    (local $n i32)
    (if (i32.gt_u (local.get $node)
          (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const @NODE@)))
      (then (return (i32.const 0))))
    (local.set $n (i32.load offset=8 (local.get $node)))
    (if (i32.or (i32.gt_u (local.get $n) (i32.const 64)) (i32.gt_u (local.get $n) (local.get $left)))
      (then (return (i32.const 0))))
    (local.get $n))

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
    ;; Frames are made of 4- and 8-byte values: a 4-byte word if left.
    (if (i32.ge_u (local.get $n) (i32.const 4))
      (then
        (local.set $h
          (i64.mul
            (i64.rotl (i64.xor (local.get $h) (i64.load32_u (local.get $p))) (i64.const 29))
            (i64.const 0x9e3779b97f4a7c15)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 4)))))
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
  (;ctx
  ;; context_create(new_context, entrypoint) -> errno
  (func (export "__wasm_rewind_context_create") (param $ptr i32) (param $entry i32) (result i32)
    (local $id i32) (local $rec i32) (local $end i64)
    ;; No GC `ref.test` here: an entry of another type traps when it starts.
    (if (i32.eqz (call $entry_ok (local.get $entry))) (then (return (i32.const 28))))
    (local.set $end (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    ;; The id's 8 bytes must be in memory (EFAULT, as a host says).
    (if (i64.gt_u (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.const 8)) (local.get $end))
      (then (return (i32.const 21))))
    (call $setup)
    (local.set $id (call $ctx_new))
    (if (i32.eqz (local.get $id)) (then (return (i32.const 48))))
    (local.set $rec (call $rec (local.get $id)))
    (i32.store (local.get $rec) (i32.const 1))
    (i32.store offset=4 (local.get $rec) (local.get $entry))
    (i64.store offset=8 (local.get $rec) (i64.const 0))
    (i64.store offset=16 (local.get $rec) (i64.const 0))
    ;; Our header's descriptor after the id: magic "WRCX" and version 1 as
    ;; one u64, then low < high, both below 4 GiB. Anything else: no bounds.
    (if (i64.le_u (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (local.get $end))
      (then
        (if (i32.and
              (i64.eq (i64.load offset=8 (local.get $ptr)) (i64.const 0x158435257))
              (i32.and
                (i64.lt_u (i64.load offset=16 (local.get $ptr)) (i64.load offset=24 (local.get $ptr)))
                (i64.le_u (i64.load offset=24 (local.get $ptr)) (i64.const 0xffffffff))))
          (then
            (i32.store offset=16 (local.get $rec) (i32.load offset=16 (local.get $ptr)))
            (i32.store offset=20 (local.get $rec) (i32.load offset=24 (local.get $ptr)))))))
    (i64.store (local.get $ptr) (i64.extend_i32_u (local.get $id)))
    (i32.const 0))

  ;; context_switch(target) -> errno. In state 2 the rewind of the target
  ;; has reached its switch: it returns 0.
  (func (export "__wasm_rewind_context_switch") (param $target i64) (result i32)
    (local $state i32)
    (local.set $state (call $get_state))
    (if (i32.eq (local.get $state) (i32.const 2))
      (then
        (call $stop_rewind)
        (return (i32.const 0))))
    (if (i32.or (local.get $state) (global.get $pending))
      (then (call $bad_state)))
    (if (i64.eq (local.get $target) (i64.extend_i32_u (global.get $cur)))
      (then (return (i32.const 0))))
    ;; Only a context not started or suspended can run: EINVAL otherwise.
    (if (i64.ge_u (local.get $target) (i64.extend_i32_u (global.get $nctx)))
      (then (return (i32.const 28))))
    (if (i32.ge_u
          (i32.sub (i32.load (call $rec (i32.wrap_i64 (local.get $target)))) (i32.const 1))
          (i32.const 2))
      (then (return (i32.const 28))))
    (global.set $pending (i32.const 3))
    (global.set $target (i32.wrap_i64 (local.get $target)))
    (call $reset_buffer)
    (call $start_unwind (global.get $buf))
    (i32.const 0))

  ;; context_destroy(id) -> errno
  (func (export "__wasm_rewind_context_destroy") (param $id i64) (result i32)
    (local $rec i32) (local $idx i32) (local $slot i32)
    (if (i32.or (i64.eqz (local.get $id))
                (i64.eq (local.get $id) (i64.extend_i32_u (global.get $cur))))
      (then (return (i32.const 28))))
    ;; Unknown or already destroyed: nothing to do.
    (if (i64.ge_u (local.get $id) (i64.extend_i32_u (global.get $nctx)))
      (then (return (i32.const 0))))
    (local.set $rec (call $rec (i32.wrap_i64 (local.get $id))))
    (if (i32.eqz (i32.load (local.get $rec))) (then (return (i32.const 0))))
    (call $release (i32.load offset=8 (local.get $rec)))
    (i32.store offset=8 (local.get $rec) (i32.const 0))
    (i32.store (local.get $rec) (i32.const 0))
    ;; Its snapshots: no longjmp can use them any more.
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $idx) (global.get $slots_used)))
        (local.set $slot (call $slot (local.get $idx)))
        (if (i32.and (i32.ne (i32.load offset=4 (local.get $slot)) (i32.const 0))
                     (i64.eq (i64.extend_i32_u (i32.load offset=32 (local.get $slot)))
                             (local.get $id)))
          (then (call $free_slot (local.get $slot))))
        (local.set $idx (i32.add (local.get $idx) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Called by every entry wrapper before it calls its function: 1 when the
  ;; main context runs (the wrapper calls its function); otherwise calls the
  ;; running context's entry, which starts or rewinds it, and returns 0.
  (func (export "__wasm_rewind_context_run") (result i32)
    (if (i32.eqz (global.get $cur)) (then (return (i32.const 1))))
    (call $call_entry (i32.load offset=4 (call $rec (global.get $cur))))
    ;; An entry returns only by unwinding; a real return ends the program.
    (if (i32.eqz (call $get_state)) (then (call $entry_returned)))
    (i32.const 0))

  ;; After the unwind of the running context for a switch to `t`: keeps its
  ;; frames and globals, then leaves `t` to be started (never run) or puts
  ;; its frames and globals back and rewinds it.
  (func $switch_to (export "__wasm_rewind_switch_to") (param $t i32)
    (local $rec i32) (local $len i32) (local $head i32)
    (local.set $len (i32.sub (i32.load (global.get $buf)) (global.get $frames)))
    (local.set $head (call $insert_frames (global.get $frames) (local.get $len)))
    (if (i32.eq (local.get $head) (i32.const -1))
      (then
        (call $make_room)
        (local.set $head (call $insert_frames (global.get $frames) (local.get $len)))
        (if (i32.eq (local.get $head) (i32.const -1)) (then (call $full)))))
    (local.set $rec (call $rec (global.get $cur)))
    (i32.store (local.get $rec) (i32.const 2))
    (i32.store offset=8 (local.get $rec) (local.get $head))
    (i32.store offset=12 (local.get $rec) (local.get $len))
    (call $save_globals (i32.add (local.get $rec) (i32.const 24)))
    (global.set $cur (local.get $t))
    (local.set $rec (call $rec (local.get $t)))
    (if (i32.eq (i32.load (local.get $rec)) (i32.const 1))
      (then
        (i32.store (local.get $rec) (i32.const 3))
        (return)))
    (i32.store (local.get $rec) (i32.const 3))
    (local.set $len (i32.load offset=12 (local.get $rec)))
    (local.set $head (i32.load offset=8 (local.get $rec)))
    (call $restore_globals (i32.add (local.get $rec) (i32.const 24)))
    (call $ensure_buffer (local.get $len))
    (call $read_list (local.get $head) (global.get $frames))
    (i32.store (global.get $buf) (i32.add (global.get $frames) (local.get $len)))
    (call $release (local.get $head))
    (i32.store offset=8 (local.get $rec) (i32.const 0))
    (call $start_rewind (global.get $buf)))

  ;; A new record: its id, or 0 at the cap. The first one made also makes
  ;; record 0, the main context, running.
  (func $ctx_new (export "__wasm_rewind_ctx_new") (result i32)
    (local $cap i32) (local $new i32)
    (if (i32.ge_u (i32.add (global.get $nctx) (i32.const 1)) (global.get $ctx_cap))
      (then
        (local.set $cap (i32.shl (global.get $ctx_cap) (i32.const 1)))
        (if (i32.eqz (local.get $cap)) (then (local.set $cap (i32.const 16))))
        (local.set $new (call $alloc (i32.mul (local.get $cap) (i32.const @CTX@))))
        (if (i32.eqz (local.get $new)) (then (return (i32.const 0))))
        (memory.copy (local.get $new) (global.get $ctxs)
          (i32.mul (global.get $nctx) (i32.const @CTX@)))
        (global.set $ctxs (local.get $new))
        (global.set $ctx_cap (local.get $cap))))
    (if (i32.eqz (global.get $nctx))
      (then
        (i32.store (global.get $ctxs) (i32.const 3))
        (global.set $nctx (i32.const 1))))
    (global.set $nctx (i32.add (global.get $nctx) (i32.const 1)))
    (i32.sub (global.get $nctx) (i32.const 1)))

  ;; Address of the record of context `id`.
  (func $rec (export "__wasm_rewind_rec") (param $id i32) (result i32)
    (i32.add (global.get $ctxs) (i32.mul (local.get $id) (i32.const @CTX@))))

  ;; The stack pointer of context `id`: the live one for the running
  ;; context, the one saved at its last switch for the others.
  (func $sp_of (export "__wasm_rewind_sp_of") (param $id i32) (result i32)
    (if (result i32) (i32.eq (local.get $id) (global.get $cur))
      (then (global.get $sp))
      (else (i32.load offset=24 (call $rec (local.get $id))))))
  ctx;)
)
