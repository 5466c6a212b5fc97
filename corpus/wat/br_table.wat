;; A state machine: 24 steps of a br_table over 5 states plus a default; the host
;; picks the next state from the current one.
(module
  (import "env" "next" (func $next (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $state i32) (local $acc i32) (local $steps i32)
    (loop $machine
      (block $default
        (block $s4
          (block $s3
            (block $s2
              (block $s1
                (block $s0
                  (br_table $s0 $s1 $s2 $s3 $s4 $default (local.get $state)))
                ;; state 0
                (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
                (local.set $state (i32.and (call $next (i32.const 0) (local.get $acc)) (i32.const 7)))
                (br $default))
              ;; state 1: falls through into state 2
              (local.set $acc (i32.mul (local.get $acc) (i32.const 3))))
            ;; state 2
            (local.set $acc (i32.add (local.get $acc) (i32.add (local.get $steps) (i32.const 1))))
            (local.set $state
              (i32.and (i32.add (call $next (i32.const 2) (local.get $acc)) (local.get $state))
                       (i32.const 7)))
            (br $default))
          ;; state 3: nested br_table on the low bit of the host's answer
          (block $odd
            (block $even
              (br_table $even $odd
                (i32.and (call $next (i32.const 3) (local.get $acc)) (i32.const 1))))
            (local.set $acc (i32.sub (local.get $acc) (i32.const 7)))
            (local.set $state (i32.const 4))
            (br $default))
          (local.set $acc (i32.xor (local.get $acc) (i32.const 0x55)))
          (local.set $state (i32.const 0))
          (br $default))
        ;; state 4
        (local.set $acc (i32.add (local.get $acc) (call $next (i32.const 4) (local.get $state))))
        (local.set $state (i32.const 1)))
      ;; states 5..7 land here directly and are mapped back into 0..4
      (if (i32.ge_u (local.get $state) (i32.const 5))
        (then (local.set $state (i32.sub (local.get $state) (i32.const 5)))))
      (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
      (br_if $machine (i32.lt_u (local.get $steps) (i32.const 24))))
    (i32.add (local.get $acc) (i32.mul (local.get $state) (i32.const 1000000)))))
