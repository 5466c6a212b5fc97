;; An externref local live across a call that can unwind: it cannot be saved in linear memory.
(module (import "env" "sleep" (func $s)) (memory 1)
  (func (export "run") (param externref) (result externref)
    (call $s) (local.get 0)))
