;; Mutable globals of all four number types, updated before and after import
;; calls; the result folds them together.
(module
  (import "env" "g" (func $g (param i32 i64) (result i64)))
  (import "env" "h" (func $h (param f32 f64) (result f64)))
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (global $sum (mut i64) (i64.const 1))
  (global $fs (mut f32) (f32.const 0.5))
  (global $fd (mut f64) (f64.const -1))
  (global $k i32 (i32.const 17))
  (func $bump (result i64)
    (global.set $count (i32.add (global.get $count) (global.get $k)))
    (global.set $sum
      (i64.add (global.get $sum) (call $g (global.get $count) (global.get $sum))))
    (global.get $sum))
  (func (export "run") (result i64)
    (local $i i32)
    (loop $l
      (drop (call $bump))
      (global.set $fd (call $h (global.get $fs) (global.get $fd)))
      (global.set $fs (f32.add (global.get $fs) (f32.const 1.25)))
      (global.set $count (i32.xor (global.get $count) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 9))))
    (i64.add
      (i64.add (global.get $sum) (i64.extend_i32_u (global.get $count)))
      (i64.add (i64.trunc_sat_f64_s (f64.mul (global.get $fd) (f64.const 16)))
               (i64.trunc_sat_f32_s (global.get $fs))))))
