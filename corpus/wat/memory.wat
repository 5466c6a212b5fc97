;; Loads and stores of every width, a data segment, memory.fill and memory.copy,
;; with the host supplying bytes in between. Touches only [0, 0x2000).
(module
  (import "env" "byte" (func $byte (param i32) (result i32)))
  (import "env" "word" (func $word (param i64) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "wasm-rewind corpus: memory\00")
  (func $checksum (param $from i32) (param $len i32) (result i32)
    (local $h i32) (local $i i32)
    (local.set $h (i32.const 0x811c9dc5))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $h
          (i32.mul (i32.xor (local.get $h)
                            (i32.load8_u (i32.add (local.get $from) (local.get $i))))
                   (i32.const 0x01000193)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $h))
  (func (export "run") (result i32)
    (local $i i32) (local $w i64)
    ;; fill 0x400..0x500 with a host byte
    (memory.fill (i32.const 0x400) (call $byte (i32.const 0)) (i32.const 0x100))
    ;; sixteen host bytes at 0x500, each store after its own call
    (loop $l
      (i32.store8 (i32.add (i32.const 0x500) (local.get $i)) (call $byte (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 16))))
    ;; wide stores of host words, narrow reloads
    (local.set $w (call $word (i64.load (i32.const 0x500))))
    (i64.store (i32.const 0x600) (local.get $w))
    (i64.store32 (i32.const 0x608) (call $word (i64.load16_s (i32.const 0x602))))
    (i32.store16 (i32.const 0x60c) (i32.load8_s (i32.const 0x607)))
    (f64.store (i32.const 0x610) (f64.convert_i64_s (i64.load32_s (i32.const 0x604))))
    (f32.store (i32.const 0x618) (f32.demote_f64 (f64.load (i32.const 0x610))))
    ;; copy the text and the host bytes, overlapping copies in both directions
    (memory.copy (i32.const 0x700) (i32.const 0x100) (i32.const 27))
    (memory.copy (i32.const 0x704) (i32.const 0x700) (i32.const 20))
    (memory.copy (i32.const 0x800) (i32.const 0x500) (i32.const 0x120))
    (memory.copy (i32.const 0x7f0) (i32.const 0x800) (i32.const 0x40))
    (i32.store offset=0x900 align=1 (i32.and (call $byte (i32.const 99)) (i32.const 0xff))
      (call $checksum (i32.const 0x400) (i32.const 0x500)))
    (i32.add (call $checksum (i32.const 0) (i32.const 0x2000))
             (i32.mul (memory.size) (i32.const 0x10000)))))
