#!/usr/bin/env python3
"""Writes a synthetic module of about SIZE_MB megabytes of code, as WAT:

    bench/synth.py SIZE_MB > synth.wat

Shaped like compiled C: many functions with locals, a loop each, direct calls
to later functions (a call graph several levels deep), a call to an import
that can unwind (`env.sleep`) in one function in eight, and an indirect call
through a table in one in four. Deterministic: the same SIZE_MB gives the same
module, so runs compare.
"""
import sys

# Bytes of binary code per function, measured on this generator's output;
# only used to pick how many functions make SIZE_MB.
BYTES_PER_FUNCTION = 130


def function(i: int, n: int) -> str:
    callee = lambda k: f"$f{(i + k) % n}" if (i + k) < n else "$leaf"
    body = [
        f"(func $f{i} (param $a i32) (param $b i32) (result i32)",
        "  (local $i i32) (local $acc i32) (local $t i64) (local $x f64)",
        "  (local.set $acc (i32.add (local.get $a) (i32.const %d)))" % (i * 7 + 1),
        "  (local.set $t (i64.extend_i32_u (local.get $b)))",
        "  (block $done (loop $again",
        "    (br_if $done (i32.ge_u (local.get $i) (i32.and (local.get $b) (i32.const 7))))",
        "    (local.set $acc (i32.xor (i32.mul (local.get $acc) (i32.const 31)) (local.get $i)))",
        "    (local.set $x (f64.add (local.get $x) (f64.convert_i32_s (local.get $acc))))",
        "    (local.set $i (i32.add (local.get $i) (i32.const 1)))",
        "    (br $again)))",
        f"  (local.set $acc (i32.add (local.get $acc) (call {callee(1)} (local.get $acc) (i32.shr_u (local.get $b) (i32.const 1)))))",
    ]
    if i % 8 == 0:
        body.append("  (call $sleep (local.get $acc))")
    if i % 4 == 1:
        body.append(
            "  (local.set $acc (i32.add (local.get $acc) (call_indirect (type $bin) "
            "(local.get $acc) (local.get $b) (i32.and (local.get $acc) (i32.const 15)))))"
        )
    body += [
        f"  (if (i32.gt_u (local.get $b) (i32.const 2)) (then",
        f"    (local.set $acc (i32.add (local.get $acc) (call {callee(2)} (local.get $a) (i32.sub (local.get $b) (i32.const 2)))))))",
        "  (i64.store (i32.and (local.get $acc) (i32.const 0xfff8)) (i64.add (local.get $t) (i64.trunc_sat_f64_s (local.get $x))))",
        "  (local.get $acc))",
    ]
    return "\n".join(body)


def main() -> None:
    size_mb = float(sys.argv[1])
    n = max(16, int(size_mb * 1_000_000 / BYTES_PER_FUNCTION))
    out = sys.stdout
    out.write("(module\n")
    out.write('  (type $bin (func (param i32 i32) (result i32)))\n')
    out.write('  (import "env" "sleep" (func $sleep (param i32)))\n')
    out.write("  (memory (export \"memory\") 1)\n")
    out.write("  (table 16 funcref)\n")
    out.write("  (elem (i32.const 0) " + " ".join(f"$f{k * (n // 16)}" for k in range(16)) + ")\n")
    out.write("  (func $leaf (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))\n")
    for i in range(n):
        out.write(function(i, n))
        out.write("\n")
    out.write('  (export "run" (func $f0))\n')
    out.write(")\n")


if __name__ == "__main__":
    main()
