;; A call_ref whose target can unwind: refused.
(module (type $t (func)) (import "env" "sleep" (func $s (type $t))) (memory 1)
  (elem declare func $f)
  (func $f (type $t) (call $s))
  (func (export "run") (call_ref $t (ref.func $f))))
