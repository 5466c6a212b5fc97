;; i64 arithmetic on host values: mul, rotations, counts, division (never by
;; zero), remainders, shifts, comparisons.
(module
  (import "env" "r64" (func $r64 (param i64) (result i64)))
  (memory (export "memory") 1)
  (func $mix (param $x i64) (param $y i64) (result i64)
    (local $d i64)
    (local.set $d (i64.or (i64.and (local.get $y) (i64.const 0xffff)) (i64.const 1)))
    (i64.add
      (i64.add (i64.mul (local.get $x) (i64.const 0x9e3779b97f4a7c15))
               (i64.rotr (local.get $y) (i64.clz (local.get $x))))
      (i64.add
        (i64.add (i64.div_u (local.get $x) (local.get $d))
                 (i64.rem_s (local.get $y) (local.get $d)))
        (i64.add (i64.shr_s (local.get $x) (i64.popcnt (local.get $y)))
                 (i64.extend_i32_u (i64.lt_s (local.get $x) (local.get $y)))))))
  (func (export "run") (result i64)
    (local $i i32) (local $acc i64) (local $t i64)
    (local.set $acc (i64.const 0x0123456789abcdef))
    (loop $l
      (local.set $t (call $r64 (local.get $acc)))
      (local.set $acc
        (i64.xor (call $mix (local.get $acc) (local.get $t))
                 (i64.ctz (call $r64 (local.get $t)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
    (i64.sub (local.get $acc) (i64.div_s (local.get $acc) (i64.const -7)))))
