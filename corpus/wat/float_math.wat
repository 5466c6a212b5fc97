;; f32 and f64 arithmetic on host floats (all finite, nothing produces NaN):
;; sqrt, rounding, min/max, copysign, division, conversions both ways.
(module
  (import "env" "ff" (func $ff (param f64 f32) (result f64)))
  (import "env" "fs" (func $fs (param i32) (result f32)))
  (memory (export "memory") 1)
  (func (export "run") (result i64)
    (local $i i32) (local $x f64) (local $y f32) (local $z f64)
    (local.set $x (f64.const 1.0))
    (local.set $y (f32.const 2.5))
    (loop $l
      (local.set $z (call $ff (local.get $x) (local.get $y)))
      (local.set $x
        (f64.add
          (f64.sqrt (f64.abs (local.get $z)))
          (f64.div (f64.floor (local.get $x))
                   (f64.add (f64.abs (local.get $z)) (f64.const 1.5)))))
      (local.set $y
        (f32.add
          (f32.min (call $fs (local.get $i)) (f32.nearest (local.get $y)))
          (f32.copysign (f32.ceil (f32.demote_f64 (local.get $x)))
                        (call $fs (i32.add (local.get $i) (i32.const 10))))))
      (local.set $x
        (f64.max (local.get $x)
                 (f64.trunc (f64.promote_f32 (f32.mul (local.get $y) (f32.const 0.5))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 12))))
    (i64.xor (i64.reinterpret_f64 (local.get $x))
             (i64.extend_i32_u (i32.reinterpret_f32 (local.get $y))))))
