;; Recursive Fibonacci. Every call asks the host for a tick, whose low bit is
;; added to the result, so the answer depends on every import call.
;; args: 12
(module
  (import "env" "tick" (func $tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $fib (param $n i32) (result i32)
    (local $t i32)
    (local.set $t (i32.and (call $tick (local.get $n)) (i32.const 1)))
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (i32.add (local.get $n) (local.get $t)))
      (else
        (i32.add
          (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                   (call $fib (i32.sub (local.get $n) (i32.const 2))))
          (local.get $t)))))
  (func (export "run") (param $n i32) (result i32)
    (call $fib (local.get $n))))
