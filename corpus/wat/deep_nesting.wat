;; Import calls from deep inside nested ifs, blocks and loops, with branches out
;; of several levels at once and values on the stack at every level.
(module
  (import "env" "probe" (func $probe (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $deep (param $x i32) (result i32)
    (local $i i32) (local $j i32) (local $r i32)
    (block $exit (result i32)
      (loop $outer
        (local.set $j (i32.const 0))
        (if (i32.and (local.get $i) (i32.const 1))
          (then
            (loop $inner
              (if (i32.lt_u (local.get $j) (i32.const 3))
                (then
                  (block $skip
                    (if (i32.and (local.get $x) (i32.const 4))
                      (then
                        (if (i32.gt_u (local.get $j) (i32.const 0))
                          (then
                            (local.set $r
                              (i32.add (local.get $r)
                                (i32.mul (i32.const 3)
                                  (call $probe (local.get $i) (local.get $j)))))
                            ;; leave two levels at once when the host says so
                            (br_if $skip (i32.and (local.get $r) (i32.const 1)))))
                        (local.set $r (i32.xor (local.get $r) (i32.const 0x10)))))
                    (local.set $r (i32.add (local.get $r)
                                           (call $probe (local.get $j) (local.get $x)))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br $inner)))))
          (else
            (local.set $r
              (i32.sub (local.get $r)
                (block (result i32)
                  (i32.const 1000)
                  (drop (br_if 0 (i32.const 0)
                                 (i32.eqz (i32.and (call $probe (local.get $i) (i32.const -1))
                                                   (i32.const 3)))))
                  (i32.add (call $probe (local.get $x) (local.get $i))))))))
        ;; leave the function's block from inside the loop, with a value
        (br_if $exit (i32.add (local.get $r) (i32.const 7))
                     (i32.ge_u (local.get $i) (i32.const 9)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $x (i32.add (local.get $x) (i32.const 1)))
        (br $outer))
      (unreachable)))
  (func (export "run") (result i32)
    (i32.add (call $deep (i32.const 4)) (call $deep (i32.const 3)))))
