;; select and typed select over host values: the first operands sit on the stack
;; while the condition (or a later operand) is computed by an import.
(module
  (import "env" "pick" (func $pick (param i32) (result i32)))
  (import "env" "wide" (func $wide (param i32) (result i64)))
  (import "env" "real" (func $real (param i32) (result f64)))
  (memory (export "memory") 1)
  (func (export "run") (result i64)
    (local $i i32) (local $a i32) (local $b i64) (local $c f64)
    (loop $l
      (local.set $a
        (select (call $pick (local.get $i))
                (i32.mul (local.get $a) (i32.const 5))
                (i32.and (call $pick (i32.add (local.get $i) (i32.const 50))) (i32.const 1))))
      (local.set $b
        (select (result i64)
                (i64.add (local.get $b) (i64.extend_i32_u (local.get $a)))
                (call $wide (local.get $i))
                (i32.gt_s (local.get $a) (i32.const 0))))
      (local.set $c
        (select (result f64)
                (call $real (local.get $i))
                (f64.add (local.get $c) (f64.const 0.5))
                (i32.lt_u (local.get $i) (i32.const 4))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 8))))
    (i64.add (i64.add (local.get $b) (i64.extend_i32_s (local.get $a)))
             (i64.trunc_sat_f64_s (f64.mul (local.get $c) (f64.const 8))))))
