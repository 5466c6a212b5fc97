;; Two resume points with very different live sets in one function, called in
;; a loop: wasm-rewind gives each its own frame layout (the prologue picks the
;; layout by call index, and each has its own save block), instead of saving
;; the union at both.
(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $mix (param $a i32) (result i64)
    (local $b i64) (local $c i64) (local $d i64) (local $e i64) (local $g i64) (local $h i64)
    (local.set $a (i32.add (local.get $a) (call $wait (local.get $a))))
    (local.set $b (i64.extend_i32_u (local.get $a)))
    (local.set $c (i64.mul (local.get $b) (i64.const 3)))
    (local.set $d (i64.add (local.get $c) (i64.const 1)))
    (local.set $e (i64.xor (local.get $d) (local.get $b)))
    (local.set $g (i64.sub (local.get $e) (local.get $c)))
    (local.set $h (i64.rotl (local.get $g) (local.get $d)))
    (drop (call $wait (i32.wrap_i64 (local.get $h))))
    (i64.add (i64.add (local.get $b) (local.get $c))
             (i64.add (i64.add (local.get $d) (local.get $e))
                      (i64.add (local.get $g) (local.get $h)))))
  (func (export "run") (result i64)
    (local $i i32) (local $acc i64)
    (loop $again
      (local.set $acc (i64.add (i64.rotl (local.get $acc) (i64.const 7))
                               (call $mix (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 4))))
    (local.get $acc)))
