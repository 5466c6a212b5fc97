;; Nested loops with the import in the inner body, a loop whose trip count comes
;; from the host (masked to 0..3), and a do-while with br_if.
(module
  (import "env" "step" (func $step (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $i i32) (local $j i32) (local $k i32) (local $acc i32) (local $n i32)
    (block $outer_done
      (loop $outer
        (br_if $outer_done (i32.ge_u (local.get $i) (i32.const 5)))
        (local.set $j (i32.const 0))
        (block $inner_done
          (loop $inner
            (br_if $inner_done (i32.ge_u (local.get $j) (i32.const 4)))
            (local.set $acc
              (i32.xor (i32.mul (local.get $acc) (i32.const 33))
                       (call $step (local.get $i) (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $inner)))
        ;; a trip count chosen by the host
        (local.set $n (i32.and (call $step (local.get $acc) (i32.const -1)) (i32.const 3)))
        (local.set $k (i32.const 0))
        (block $k_done
          (loop $k_loop
            (br_if $k_done (i32.ge_u (local.get $k) (local.get $n)))
            (local.set $acc (i32.add (local.get $acc)
                                     (call $step (local.get $k) (local.get $n))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $k_loop)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    ;; do-while: at least once, continues while the host's low bits say so (bounded)
    (local.set $k (i32.const 0))
    (loop $again
      (local.set $acc (i32.rotl (local.get $acc) (call $step (local.get $k) (i32.const 99))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $k) (i32.const 6))))
    (local.get $acc)))
