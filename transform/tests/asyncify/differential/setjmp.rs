//! Differential test of the two ways setjmp/longjmp run with no host:
//! the exceptions lowering (`Options::sjlj`) against the embedded Asyncify
//! runtime (`Options::embed_runtime`), two implementations that share no
//! code past the plan, on random setjmp-shaped programs.
//!
//! A program is a chain of functions `f0 -> f1 -> ... -> fn-1`. Each one
//! lowers the C stack pointer, computes a local from its argument, calls
//! setjmp on a jmp_buf of its own (sometimes with a value left on the
//! operand stack below the call, as clang's output sometimes has), and logs
//! what setjmp returned and the stack pointer there. After a jump it logs
//! and returns; otherwise it runs random statements: calls to the next
//! function (in a loop, some of them, so jmp_bufs are armed again), jumps to
//! its own jmp_buf or an outer one (within a budget kept in memory), and
//! logs. Jumps only go to jmp_bufs of live invocations, and no local is
//! changed after setjmp: what C leaves undefined or indeterminate, where
//! the two may differ, never happens. The log in linear memory (which
//! neither restores) and the result must be the same.

use wasm_rewind_transform::{instrument, Options, SjljLowering};
use wasmtime::{Engine, Instance, Module, Store};

/// Byte offsets in linear memory.
const BUDGET: u32 = 16;
const LOG_LEN: u32 = 20;
const JMP_BUFS: u32 = 256;
const RET_SLOTS: u32 = 512;
const LOG: u32 = 1024;
const STACK_TOP: u32 = 65536;

/// xorshift64*: reproducible programs from a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The WAT of the program for `seed`.
fn program(seed: u64) -> String {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n = 2 + rng.below(5) as u32;
    let mut funcs = String::new();
    for i in 0..n {
        funcs.push_str(&function(&mut rng, i, n));
    }
    let budget = 1 + rng.below(12);
    format!(
        r#"(module
  (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (import "wasix_32v1" "stack_restore" (func $restore (param i32 i64)))
  (memory (export "memory") 2)
  (global $__stack_pointer (mut i32) (i32.const {STACK_TOP}))
  (func $log (param $v i32)
    (local $at i32)
    (local.set $at (i32.load (i32.const {LOG_LEN})))
    (if (i32.lt_u (local.get $at) (i32.const 4000))
      (then
        (i32.store (i32.add (i32.const {LOG}) (i32.shl (local.get $at) (i32.const 2)))
                   (local.get $v))
        (i32.store (i32.const {LOG_LEN}) (i32.add (local.get $at) (i32.const 1))))))
  (func $jump (param $env i32) (param $v i64)
    (if (i32.gt_s (i32.load (i32.const {BUDGET})) (i32.const 0))
      (then
        (i32.store (i32.const {BUDGET}) (i32.sub (i32.load (i32.const {BUDGET})) (i32.const 1)))
        (call $restore (local.get $env) (local.get $v)))))
  {funcs}
  (func (export "run") (param $seed i32) (result i32)
    (i32.store (i32.const {BUDGET}) (i32.const {budget}))
    (call $f0 (local.get $seed))))
"#
    )
}

/// Function `f{i}` of `n`.
fn function(rng: &mut Rng, i: u32, n: u32) -> String {
    let env = JMP_BUFS + 24 * i;
    let ret = RET_SLOTS + 8 * i;
    let mul = 3 + rng.below(7);
    let add = rng.below(100);
    // With a value below the call, setjmp's result is added to it.
    let checkpoint = if rng.below(3) == 0 {
        format!(
            "(i32.add (local.get $x) (i32.const 1))
    (drop (call $checkpoint (i32.const {env}) (i32.const {ret})))
    (local.set $r (i32.wrap_i64 (i64.load (i32.const {ret}))))
    (call $log (i32.sub (i32.add (local.get $r)) (local.get $x)))"
        )
    } else {
        format!(
            "(drop (call $checkpoint (i32.const {env}) (i32.const {ret})))
    (local.set $r (i32.wrap_i64 (i64.load (i32.const {ret}))))
    (call $log (i32.add (local.get $r) (i32.const 1)))"
        )
    };
    let mut body = String::new();
    for _ in 0..1 + rng.below(4) {
        let statement = match rng.below(4) {
            0 | 1 if i + 1 < n => {
                let times = 1 + rng.below(3);
                let s = rng.below(50);
                format!(
                    "(local.set $k (i32.const 0))
    (loop $again
      (call $log (call $f{next} (i32.add (local.get $x) (i32.const {s}))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $k) (i32.const {times}))))",
                    next = i + 1
                )
            }
            2 => {
                let to = rng.below(u64::from(i) + 1) as u32;
                let v = 1 + rng.below(9);
                format!(
                    "(call $jump (i32.const {}) (i64.const {v}))",
                    JMP_BUFS + 24 * to
                )
            }
            _ => "(call $log (local.get $x))".to_string(),
        };
        body.push_str("\n    ");
        body.push_str(&statement);
    }
    format!(
        r#"
  (func $f{i} (param $a i32) (result i32)
    (local $x i32) (local $r i32) (local $k i32)
    (global.set $__stack_pointer (i32.sub (global.get $__stack_pointer) (i32.const 16)))
    (local.set $x (i32.add (i32.mul (local.get $a) (i32.const {mul})) (i32.const {add})))
    {checkpoint}
    (call $log (i32.sub (i32.const {STACK_TOP}) (global.get $__stack_pointer)))
    (if (local.get $r)
      (then
        (call $log (i32.add (i32.const {tag}) (local.get $r)))
        (global.set $__stack_pointer (i32.add (global.get $__stack_pointer) (i32.const 16)))
        (return (i32.add (local.get $r) (local.get $x)))))
    {body}
    (global.set $__stack_pointer (i32.add (global.get $__stack_pointer) (i32.const 16)))
    (local.get $x))
"#,
        tag = 1000 * (i + 1)
    )
}

/// The result, the log and the final stack pointer's distance from the top.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    result: i32,
    log: Vec<i32>,
}

fn run(wasm: &[u8], seed: i32) -> Result<Run, String> {
    let engine = Engine::default();
    let module = Module::new(&engine, wasm).map_err(|e| format!("compile: {e:?}"))?;
    let mut store = Store::new(&engine, ());
    let instance =
        Instance::new(&mut store, &module, &[]).map_err(|e| format!("instantiate: {e:?}"))?;
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .map_err(|e| format!("{e:?}"))?;
    let result = f
        .call(&mut store, seed)
        .map_err(|e| format!("trap: {e:?}"))?;
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let bytes = memory.data(&store);
    let word =
        |at: u32| i32::from_le_bytes(bytes[at as usize..at as usize + 4].try_into().unwrap());
    let len = word(LOG_LEN) as u32;
    let log = (0..len).map(|k| word(LOG + 4 * k)).collect();
    Ok(Run { result, log })
}

#[test]
fn exceptions_lowering_agrees_with_the_embedded_runtime() {
    let seeds = 400;
    let mut jumps_landed = 0;
    for seed in 0..seeds {
        let wat = program(seed);
        let wasm = wat::parse_str(&wat).expect("generated program parses");
        let lowered = instrument(
            &wasm,
            &Options {
                sjlj: SjljLowering::Exceptions,
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed}: lowering failed: {e}\n{wat}"));
        let embedded = instrument(
            &wasm,
            &Options {
                embed_runtime: true,
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed}: embedding failed: {e}\n{wat}"));
        let arg = (seed % 17) as i32;
        let a = run(&lowered.wasm, arg);
        let b = run(&embedded.wasm, arg);
        assert_eq!(
            a, b,
            "seed {seed}: exceptions (left) and embedded runtime (right) differ\n{wat}"
        );
        let a = a.unwrap_or_else(|e| panic!("seed {seed}: {e}\n{wat}"));
        jumps_landed += a.log.iter().filter(|&&v| v >= 1000).count();
    }
    // The generator must actually make jumps land, or it tests nothing.
    assert!(
        jumps_landed > seeds as usize / 2,
        "only {jumps_landed} jumps landed"
    );
}
