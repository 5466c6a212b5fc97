;; A frame whose middle item is a construct holding many resume points, so the
;; frame's call-index range is much wider than its number of dispatch cases:
;; wasm-rewind dispatches such frames by binary search instead of a br_table.
;; Also a loop that re-enters the frame after the rewind has finished.
(module
  (import "env" "tick" (func $tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $many (param $x i32) (result i32)
    (local $acc i32)
    (local.set $acc (call $tick (local.get $x)))
    (block $inner
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 1))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 2))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 3))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 4))))
      (br_if $inner (i32.and (local.get $acc) (i32.const 1)))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 5))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 6))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 7))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 8))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 9))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 10))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 11))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 12))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 13))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 14))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 15))))
      (local.set $acc (i32.add (local.get $acc) (call $tick (i32.const 16)))))
    (i32.mul (local.get $acc) (call $tick (i32.const 99))))
  (func (export "run") (result i32)
    (local $i i32) (local $sum i32)
    (loop $again
      (local.set $sum (i32.xor (i32.mul (local.get $sum) (i32.const 31))
                               (call $many (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 3))))
    (local.get $sum)))
