;; Values of every number type left on the operand stack below calls that reach
;; an import, including call arguments already pushed when a later argument calls.
(module
  (import "env" "mix" (func $mix (param i64 f64) (result f32)))
  (import "env" "num" (func $num (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $five (param i32 i64 f32 f64 i32) (result i64)
    (i64.add
      (i64.add (i64.extend_i32_s (local.get 0)) (local.get 1))
      (i64.add (i64.trunc_sat_f32_s (local.get 2))
               (i64.add (i64.trunc_sat_f64_s (local.get 3)) (i64.extend_i32_u (local.get 4))))))
  (func $asks (param $x i32) (result f32)
    (f32.add (call $mix (i64.extend_i32_s (local.get $x)) (f64.convert_i32_s (local.get $x)))
             (f32.const 0.25)))
  (func (export "run") (result i64)
    (local $t i64)
    ;; the arguments of $five are computed left to right, each later one calls out
    (call $five
      (call $num (i32.const 1))
      (i64.mul (i64.const 3) (i64.extend_i32_u (call $num (i32.const 2))))
      (call $asks (i32.const 3))
      (f64.promote_f32 (call $asks (call $num (i32.const 4))))
      (call $num (i32.const 5)))
    ;; a raw stack sequence: i32, f64, i64 below a call
    i32.const 7
    f64.const 1.5
    i64.const -9
    i32.const 6
    call $num
    i64.extend_i32_u
    i64.add
    f64.convert_i64_s
    f64.add
    i64.trunc_sat_f64_s
    local.set $t
    ;; the i32 pushed before the call is still there
    i64.extend_i32_u
    local.get $t
    i64.add
    i64.xor))
