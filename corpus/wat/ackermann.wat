;; Ackermann's function A(2, 3) = 9; each call adds a host-chosen i64 weight to a
;; global, and a void import is told every (m, n) pair.
(module
  (import "env" "weight" (func $weight (param i32 i32) (result i64)))
  (import "env" "visit" (func $visit (param i32 i32)))
  (memory (export "memory") 1)
  (global $total (mut i64) (i64.const 0))
  (func $ack (param $m i32) (param $n i32) (result i32)
    (global.set $total
      (i64.add (i64.rotl (global.get $total) (i64.const 5))
               (call $weight (local.get $m) (local.get $n))))
    (if (i32.eqz (local.get $m))
      (then (return (i32.add (local.get $n) (i32.const 1)))))
    (call $visit (local.get $m) (local.get $n))
    (if (result i32) (i32.eqz (local.get $n))
      (then (call $ack (i32.sub (local.get $m) (i32.const 1)) (i32.const 1)))
      (else
        (call $ack (i32.sub (local.get $m) (i32.const 1))
                   (call $ack (local.get $m) (i32.sub (local.get $n) (i32.const 1)))))))
  (func (export "run") (result i64)
    (i64.add (i64.extend_i32_u (call $ack (i32.const 2) (i32.const 3)))
             (i64.shl (global.get $total) (i64.const 8)))))
