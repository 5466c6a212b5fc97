;; Sign-extension operators and saturating float-to-int conversions, including
;; out-of-range, negative-to-unsigned and NaN inputs, on host values.
(module
  (import "env" "bits" (func $bits (param i32) (result i32)))
  (import "env" "big" (func $big (param i64) (result f64)))
  (memory (export "memory") 1)
  (func (export "run") (result i64)
    (local $i i32) (local $b i32) (local $acc i64)
    (loop $l
      (local.set $b (call $bits (local.get $i)))
      (local.set $acc
        (i64.add (local.get $acc)
          (i64.add
            (i64.extend_i32_s (i32.add (i32.extend8_s (local.get $b))
                                       (i32.extend16_s (local.get $b))))
            (i64.add (i64.extend8_s (i64.extend_i32_u (local.get $b)))
                     (i64.add (i64.extend16_s (i64.extend_i32_u (local.get $b)))
                              (i64.extend32_s (i64.shl (i64.extend_i32_u (local.get $b))
                                                       (i64.const 3))))))))
      (local.set $acc
        (i64.xor (local.get $acc)
          (i64.add
            (i64.trunc_sat_f64_u (f64.mul (call $big (local.get $acc)) (f64.const 1e18)))
            (i64.add
              (i64.extend_i32_u (i32.trunc_sat_f32_s
                (f32.mul (f32.convert_i32_s (local.get $b)) (f32.const 1e10))))
              (i64.extend_i32_u (i32.trunc_sat_f64_u (f64.neg (call $big (local.get $acc)))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
    (i64.add (local.get $acc)
      (i64.add (i64.extend_i32_u (i32.trunc_sat_f32_s (f32.const nan)))
               (i64.trunc_sat_f64_s (f64.const -inf))))))
