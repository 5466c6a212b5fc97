//! Instrumented modules that use WebAssembly proposals and pass options beyond
//! the defaults, run under wasmtime with the Asyncify ABI driven from the host.
//!
//! Every test instruments a small inline module with our pass
//! (`wasm_rewind_transform::instrument`), runs the instrumented module with a host
//! that unwinds at chosen imports (the sleep protocol: in state 0 the import calls
//! `asyncify_start_unwind(ptr)` and returns zeros; the driver sees the export
//! return, calls `asyncify_stop_unwind`, then `asyncify_start_rewind(ptr)` and
//! calls the same export with the same arguments; the import, re-entered in state
//! 2, calls `asyncify_stop_rewind` and returns its real answer), and compares with
//! the ORIGINAL module run by a host that never unwinds. Expected values always
//! come from that original run, never from the instrumented output.
//!
//! The host is the one in `common/`, told which memory holds the `{pos, end}`
//! structure and how wide its fields are; it satisfies the imported
//! `env.__asyncify_state` / `env.__asyncify_data` globals, and records the
//! state and data globals whenever an unwind starts or a rewind arrives. Its
//! engine enables memory64, multi-memory, tail calls and exceptions.
//!
//! Covered: memory64 (i64 pointers, 16-byte `{pos, end}`, a buffer above
//! 4 GiB, overflow checks), `secondary_memory` (with and without a memory of
//! the program's own, and on a memory64 program), `import_globals` and
//! `export_globals` (also on memory64 and next to the module's own globals),
//! tail calls (`return_call` / `return_call_indirect` that can unwind, one that
//! cannot and must stay a tail call, one inside a `try_table`), exceptions
//! (`try_table` with `catch`, `catch_all`, `catch_ref` and `throw_ref` around
//! sleeping calls and throws), `asserts` (a wrong import list, and an
//! in-module scheduler where it must not fire), `memory` naming a second
//! memory (by export name, and by index with mixed address types), and
//! operand-stack values below blocks, block / loop / `if` parameters and
//! branches out of blocks holding sleeping calls.

use std::sync::Arc;

use crate::common::{
    at_imports, backtrace_names, engine, hash_answer, i32s, instrument_ours, never, run_original,
    to_wasm, Answer, Buffer, Finished, Guest, Host, ImportCall, Value, Watch,
};
use wasm_rewind_transform::Options;
use wasmtime::{Module, Val, ValType};

// ---------------------------------------------------------------------------
// The host of these tests
// ---------------------------------------------------------------------------

/// The answer of every import here: [`hash_answer`], except for the imports
/// of the in-module runtime (`asyncify.*`), which only an original calls (the
/// pass turns them into calls of its own functions): they do nothing and
/// report the normal state, as in a program that never switches.
fn answer() -> Answer {
    let hash = hash_answer();
    Arc::new(move |call, results| {
        if call.name.starts_with("asyncify.") {
            results
                .iter()
                .map(|ty| Value::from_val(&Value::zero_val(ty)))
                .collect()
        } else {
            hash(call, results)
        }
    })
}

/// A host that unwinds at every call of the imports `unwinding`, with the
/// asyncify data structure at `buffer`, and records the state and data
/// globals when the module imports them.
fn host(unwinding: &[&str], buffer: &Buffer) -> Host {
    Host::new(answer(), at_imports(unwinding))
        .with_buffer(buffer.clone())
        .watching(Watch::Imported)
}

/// The reference: the original module, whose imports never unwind.
fn original(wasm: &[u8], export: &str, args: &[Value]) -> (Guest, Vec<Value>, Vec<ImportCall>) {
    run_original(wasm, answer(), export, args)
        .unwrap_or_else(|e| panic!("original {export}{args:?}: {e:?}"))
}

/// Instruments `wat` with `options`; checks that `export(args)` of the
/// instrumented module gives the original's results with nothing unwinding,
/// and again when the host unwinds at every call of each import in
/// `unwinding`, resuming once per such call of the original with the same
/// import log. Returns the original's guest and the unwinding guest (for
/// memory comparisons) and the run.
fn check(
    wat: &str,
    options: &Options,
    buffer: &Buffer,
    unwinding: &[&str],
    export: &str,
    args: &[Value],
) -> (Guest, Guest, Finished) {
    let wasm = to_wasm(wat);
    let (original, expected, log) = original(&wasm, export, args);
    let instrumented = instrument_ours(&wasm, options);

    let mut quiet = Guest::new(&instrumented, host(&[], buffer)).expect("output instantiates");
    assert_eq!(
        quiet.call(export, args).unwrap(),
        expected,
        "nothing unwinds, {export}{args:?}"
    );
    assert_eq!(quiet.state().unwrap(), 0);

    let mut guest = Guest::new(&instrumented, host(unwinding, buffer)).unwrap();
    let run = guest
        .drive(export, args)
        .unwrap_or_else(|e| panic!("unwinding at {unwinding:?}, {export}{args:?}: {e:?}"));
    assert_eq!(run.results, expected, "unwinding, {export}{args:?}");
    let calls = log
        .iter()
        .filter(|c| unwinding.contains(&c.name.as_str()))
        .count();
    assert_eq!(run.unwinds, calls, "one unwind per call of {unwinding:?}");
    assert_eq!(guest.host().rewinds_completed, calls);
    assert_eq!(run.log, log, "import log of {export}{args:?}");
    (original, guest, run)
}

/// [`check`] as most tests here call it: default options, the buffer at
/// 0xF000 of `memory`, an unwind at every `env.sleep`; returns the run.
fn check_sleeps(wat: &str, export: &str, args: &[Value]) -> Finished {
    let buffer = Buffer::new("memory", 0xF000, 0x800);
    check(
        wat,
        &Options::default(),
        &buffer,
        &["env.sleep"],
        export,
        args,
    )
    .2
}

/// The parameter types of the exported function `name` of `wasm` (the
/// controls take a pointer as wide as the buffer's memory).
fn export_params(wasm: &[u8], name: &str) -> Vec<String> {
    let module = Module::new(&engine(), wasm).unwrap();
    let ty = module
        .get_export(name)
        .and_then(|e| e.func().cloned())
        .unwrap_or_else(|| panic!("no exported function `{name}`"));
    ty.params().map(|t| t.to_string()).collect()
}

/// The names of the output's functions from its name section, by index.
fn function_names(wasm: &[u8]) -> std::collections::HashMap<u32, String> {
    let mut names = std::collections::HashMap::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::CustomSection(c) = payload.unwrap() {
            if let wasmparser::KnownCustom::Name(reader) = c.as_known() {
                for name in reader {
                    if let wasmparser::Name::Function(map) = name.unwrap() {
                        for n in map {
                            let n = n.unwrap();
                            names.insert(n.index, n.name.to_string());
                        }
                    }
                }
            }
        }
    }
    names
}

/// The operators of the body of the function named `name` in `wasm`, printed
/// with `{:?}` (enough to look for one opcode).
fn body_ops(wasm: &[u8], name: &str) -> Vec<String> {
    let names = function_names(wasm);
    let index = *names
        .iter()
        .find(|(_, n)| n.as_str() == name)
        .unwrap_or_else(|| panic!("no function named `{name}` in {names:?}"))
        .0;
    let mut imported = 0;
    let mut defined = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.unwrap() {
            wasmparser::Payload::ImportSection(reader) => {
                for imports in reader {
                    for import in imports.unwrap() {
                        let (_, import) = import.unwrap();
                        if matches!(import.ty, wasmparser::TypeRef::Func(_)) {
                            imported += 1;
                        }
                    }
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                if imported + defined == index {
                    let mut ops = Vec::new();
                    let mut reader = body.get_operators_reader().unwrap();
                    while !reader.eof() {
                        ops.push(format!("{:?}", reader.read().unwrap()));
                    }
                    return ops;
                }
                defined += 1;
            }
            _ => {}
        }
    }
    panic!("function {index} (`{name}`) has no body");
}

// ---------------------------------------------------------------------------
// 1. memory64
// ---------------------------------------------------------------------------

/// On a memory64 module the controls take an i64 pointer and `{pos, end}` is
/// two i64: sleeping at every level of a recursion and in a loop, with i64 and
/// f64 locals and params live across the sleeps and memory64 stores between
/// them, gives the original's results and memory, with one unwind per sleep.
#[test]
fn memory64_recursion_and_loop() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i64) (result i64)))
      (import "env" "sleepf" (func $sleepf (param f64) (result f64)))
      (memory (export "memory") i64 1)
      (func $rec (param $n i64) (param $x f64) (result f64)
        (local $i i64) (local $acc f64) (local $big i64)
        (local.set $big (i64.mul (local.get $n) (i64.const 0x1_0000_0001)))
        (if (i64.eqz (local.get $n))
          (then (return (call $sleepf (local.get $x)))))
        (loop $l
          (local.set $acc
            (f64.add (f64.mul (local.get $acc) (f64.const 0.5))
              (f64.convert_i64_s
                (i64.shr_s (call $sleep (i64.add (local.get $big) (local.get $i)))
                           (i64.const 40)))))
          (i64.store (i64.mul (i64.add (i64.mul (local.get $n) (i64.const 4)) (local.get $i))
                              (i64.const 8))
                     (i64.add (local.get $big) (local.get $i)))
          (local.set $i (i64.add (local.get $i) (i64.const 1)))
          (br_if $l (i64.lt_u (local.get $i) (i64.const 3))))
        (f64.add
          (f64.add (local.get $acc) (local.get $x))
          (f64.add (f64.convert_i64_u (local.get $big))
                   (call $rec (i64.sub (local.get $n) (i64.const 1))
                              (f64.mul (local.get $x) (f64.const 1.5))))))
      (func (export "run") (param $n i64) (param $x f64) (result f64 i64)
        (call $rec (local.get $n) (local.get $x))
        (i64.load (i64.const 16))))"#;
    let instrumented = instrument_ours(wat, &Options::default());
    // The controls take an i64 pointer.
    for name in ["asyncify_start_unwind", "asyncify_start_rewind"] {
        assert_eq!(
            export_params(&instrumented, name),
            ["i64"],
            "{name} on memory64"
        );
    }
    let buffer = Buffer::wide("memory", 0x8000, 0x4000);
    for n in [0i64, 1, 6] {
        let args = [Value::I64(n), Value::f64(2.25)];
        let (mut original, mut guest, run) = check(
            wat,
            &Options::default(),
            &buffer,
            &["env.sleep", "env.sleepf"],
            "run",
            &args,
        );
        assert_eq!(run.unwinds, 3 * n as usize + 1);
        assert!(run.max_buffer_used > 0);
        // The program's bytes below the buffer are the original's.
        let mine = guest.memory_bytes("memory");
        let theirs = original.memory_bytes("memory");
        assert_eq!(mine[..0x8000], theirs[..0x8000], "memory below the buffer");
        // `end` is an i64 at ptr + 8, untouched by the pass.
        let end = u64::from_le_bytes(mine[0x8008..0x8010].try_into().unwrap());
        assert_eq!(end, 0x8000 + 16 + 0x4000);
    }
}

// ---------------------------------------------------------------------------
// 2. secondary memory
// ---------------------------------------------------------------------------

/// With `secondary_memory`, the module gains a memory exported as
/// `asyncify_memory` that holds `{pos, end}` and the buffer (the pointer is an
/// address there, here 0, which the program also uses in its own memory); the
/// program's memory 0 ends byte-for-byte equal to the original run's.
#[test]
fn secondary_memory_holds_the_buffer() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $fill (param $n i32) (result i32)
        (local $i i32) (local $sum i32)
        (loop $l
          (i32.store (i32.mul (local.get $i) (i32.const 4))
                     (call $sleep (i32.add (local.get $i) (local.get $n))))
          (local.set $sum (i32.add (local.get $sum)
                                   (i32.load (i32.mul (local.get $i) (i32.const 4)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $sum))
      (func (export "run") (param $n i32) (result i32)
        (i32.xor (call $fill (local.get $n)) (i32.load (i32.const 0)))))"#;
    let options = Options {
        secondary_memory: Some(1),
        ..Options::default()
    };
    let out = wasm_rewind_transform::instrument(&to_wasm(wat), &options).unwrap();
    let engine = engine();
    let module = Module::new(&engine, &out.wasm).unwrap();
    assert!(module
        .get_export("asyncify_memory")
        .unwrap()
        .memory()
        .is_some());

    let buffer = Buffer::new("asyncify_memory", 0, 0x1000);
    let (mut original, mut guest, run) =
        check(wat, &options, &buffer, &["env.sleep"], "run", &i32s(&[12]));
    assert_eq!(run.unwinds, 12);
    assert!(run.max_buffer_used > 0);
    assert_eq!(
        guest.memory_bytes("memory"),
        original.memory_bytes("memory"),
        "memory 0 after the run"
    );
    // The frames were written in asyncify_memory.
    let side = guest.memory_bytes("asyncify_memory");
    assert_eq!(side.len(), 0x1_0000, "one page, as asked");
    assert!(side[8..8 + run.max_buffer_used as usize]
        .iter()
        .any(|&b| b != 0));
}

/// `secondary_memory` also works on a module that has no memory at all.
#[test]
fn secondary_memory_without_a_memory_of_its_own() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (func $rec (param $n i32) (result i32)
        (local $here i32)
        (local.set $here (i32.mul (local.get $n) (i32.const 7)))
        (if (result i32) (i32.eqz (local.get $n))
          (then (call $sleep (i32.const 0)))
          (else (i32.add (local.get $here)
                  (i32.sub (call $rec (i32.sub (local.get $n) (i32.const 1)))
                           (call $sleep (local.get $n)))))))
      (func (export "run") (param i32) (result i32) (call $rec (local.get 0))))"#;
    // Without the option there is nowhere to put the buffer.
    assert!(wasm_rewind_transform::instrument(&to_wasm(wat), &Options::default()).is_err());
    let options = Options {
        secondary_memory: Some(2),
        ..Options::default()
    };
    let buffer = Buffer::new("asyncify_memory", 0x100, 0x2000);
    for n in [0, 5] {
        let (_, mut guest, run) = check(wat, &options, &buffer, &["env.sleep"], "run", &i32s(&[n]));
        assert_eq!(run.unwinds, n as usize + 1);
        assert_eq!(guest.memory_bytes("asyncify_memory").len(), 2 * 0x1_0000);
    }
}

// ---------------------------------------------------------------------------
// 3. imported and exported state globals
// ---------------------------------------------------------------------------

const GLOBALS_WAT: &str = r#"(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (i32.rotl (local.get $acc) (i32.const 5))
                               (call $sleep (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc)))"#;

/// The states the host sees in the globals while driving three sleeps with the
/// structure at `ptr`: 1 and `ptr` when the import starts the unwind and when
/// the export returns, 2 when the rewind starts and when the import is
/// re-entered.
fn expected_sightings(ptr: i64, sleeps: usize) -> Vec<(&'static str, i32, i64)> {
    let one = [
        ("import, unwind started", 1, ptr),
        ("export returned, unwinding", 1, ptr),
        ("rewind started", 2, ptr),
        ("import, rewinding", 2, ptr),
    ];
    one.iter().copied().cycle().take(4 * sleeps).collect()
}

/// With `import_globals` the output imports `env.__asyncify_state` and
/// `env.__asyncify_data` (mutable i32) and defines neither; the host provides
/// them and sees the state turn 1 and the data pointer appear when an unwind
/// starts, and 2 while rewinding; results equal the original's.
#[test]
fn import_globals_are_the_hosts() {
    let options = Options {
        import_globals: true,
        ..Options::default()
    };
    let instrumented = instrument_ours(GLOBALS_WAT, &options);
    let engine = engine();
    let module = Module::new(&engine, &instrumented).unwrap();
    let globals: Vec<String> = module
        .imports()
        .filter(|i| i.ty().global().is_some())
        .map(|i| format!("{}.{}", i.module(), i.name()))
        .collect();
    assert_eq!(globals, ["env.__asyncify_state", "env.__asyncify_data"]);
    assert!(
        !module.exports().any(|e| e.name().starts_with("__asyncify")),
        "imported, not exported"
    );
    for import in module.imports() {
        if let Some(g) = import.ty().global() {
            assert!(matches!(g.content(), ValType::I32), "{}", import.name());
            assert_eq!(
                g.mutability(),
                wasmtime::Mutability::Var,
                "{}",
                import.name()
            );
        }
    }

    let buffer = Buffer::new("memory", 0xF000, 0x800);
    let (_, mut guest, run) = check(
        GLOBALS_WAT,
        &options,
        &buffer,
        &["env.sleep"],
        "run",
        &i32s(&[3]),
    );
    assert_eq!(run.unwinds, 3);
    assert!(
        guest.host().state_globals.is_some(),
        "the host provides the globals"
    );
    assert_eq!(guest.host().seen, expected_sightings(0xF000, 3));
    // After the run the state is back to 0 in the host's own global.
    assert_eq!(guest.watched().unwrap().0, 0);
}

/// With `export_globals` the output exports `__asyncify_state` and
/// `__asyncify_data`; the host reads them from the instance during the unwind
/// (1 and the pointer) and the rewind (2).
#[test]
fn export_globals_are_readable() {
    let options = Options {
        export_globals: true,
        ..Options::default()
    };
    let buffer = Buffer::new("memory", 0xF000, 0x800);
    let wasm = to_wasm(GLOBALS_WAT);
    let (_, expected, _) = original(&wasm, "run", &i32s(&[4]));
    let instrumented = instrument_ours(&wasm, &options);
    let watching = host(&["env.sleep"], &buffer).watching(Watch::Exported);
    let mut guest = Guest::new(&instrumented, watching).unwrap();
    assert_eq!(guest.watched(), Some((0, 0)), "before anything runs");
    let run = guest.drive("run", &i32s(&[4])).unwrap();
    assert_eq!(run.results, expected);
    assert_eq!(run.unwinds, 4);
    assert_eq!(guest.host().seen, expected_sightings(0xF000, 4));
    assert_eq!(guest.watched().unwrap().0, 0);
    // The same numbers through the general check.
    check(
        GLOBALS_WAT,
        &options,
        &buffer,
        &["env.sleep"],
        "run",
        &i32s(&[4]),
    );
}

// ---------------------------------------------------------------------------
// 4. tail calls
// ---------------------------------------------------------------------------

/// A countdown that recurses with `return_call`, sleeps at every level (once
/// directly, once through a function whose body is `return_call $sleep`) and
/// accumulates in a parameter gives the original's result with one unwind per
/// sleep, also through `return_call_indirect`.
#[test]
fn return_call_chain_that_sleeps() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (type $count_t (func (param i32 i32) (result i32)))
      (table funcref (elem $count))
      (func $tail_sleep (param i32) (result i32)
        (return_call $sleep (i32.mul (local.get 0) (i32.const 3))))
      (func $count (type $count_t) (param $n i32) (param $acc i32) (result i32)
        (if (i32.eqz (local.get $n)) (then (return (local.get $acc))))
        (local.set $acc (i32.add (i32.rotl (local.get $acc) (i32.const 3))
                                 (call $sleep (local.get $n))))
        (local.set $acc (i32.xor (local.get $acc) (call $tail_sleep (local.get $n))))
        (if (i32.and (local.get $n) (i32.const 1))
          (then
            (return_call_indirect (type $count_t)
              (i32.sub (local.get $n) (i32.const 1)) (local.get $acc) (i32.const 0))))
        (return_call $count (i32.sub (local.get $n) (i32.const 1)) (local.get $acc)))
      (func (export "run") (param $n i32) (result i32)
        (return_call $count (local.get $n) (i32.const 17))))"#;
    for n in [0, 1, 7] {
        let run = check_sleeps(wat, "run", &i32s(&[n]));
        assert_eq!(run.unwinds, 2 * n as usize);
    }
}

/// A `return_call` in a function that cannot unwind stays a tail call: the
/// output's body of that function still holds `return_call`, and a million
/// levels of it run in constant stack next to a sleeping caller.
#[test]
fn return_call_that_cannot_unwind_stays_a_tail_call() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $spin (param $n i64) (param $acc i64) (result i64)
        (if (i64.eqz (local.get $n)) (then (return (local.get $acc))))
        (return_call $spin (i64.sub (local.get $n) (i64.const 1))
                           (i64.add (i64.mul (local.get $acc) (i64.const 3)) (local.get $n))))
      (func $run (export "run") (param $n i32) (result i64)
        (local $s i32)
        (local.set $s (call $sleep (local.get $n)))
        (i64.add (call $spin (i64.extend_i32_u (local.get $n)) (i64.const 1))
                 (i64.extend_i32_u (call $sleep (local.get $s)))))
      (func $run_tail (export "run_tail") (param $n i32) (result i64)
        (local $s i32)
        (local.set $s (call $sleep (local.get $n)))
        (return_call $spin (i64.extend_i32_u (local.get $n))
                           (i64.extend_i32_u (call $sleep (local.get $s))))))"#;
    let instrumented = instrument_ours(wat, &Options::default());
    let spin = body_ops(&instrumented, "spin");
    assert!(
        spin.iter().any(|op| op.starts_with("ReturnCall {")),
        "spin lost its tail call: {spin:?}"
    );
    let run = body_ops(&instrumented, "run");
    assert!(!run.iter().any(|op| op.starts_with("ReturnCall")));
    // An instrumented function keeps a tail call whose callee cannot unwind.
    let run_tail = body_ops(&instrumented, "run_tail");
    assert!(
        run_tail.iter().any(|op| op.starts_with("ReturnCall {")),
        "run_tail lost its tail call: {run_tail:?}"
    );
    for export in ["run", "run_tail"] {
        for n in [3, 1_000_000] {
            let run = check_sleeps(wat, export, &i32s(&[n]));
            assert_eq!(run.unwinds, 2);
        }
    }
}

// ---------------------------------------------------------------------------
// 5. exceptions
// ---------------------------------------------------------------------------

/// A `try_table` whose body sleeps, then calls a function that sleeps and
/// throws a tag caught by the `try_table`'s `catch` clause (and, every other
/// round, a `catch_all` one level out after sleeping in the handler), in a
/// loop: the original's result with one unwind per sleep.
#[test]
fn try_table_around_sleeps_and_throws() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (tag $boom (param i32))
      (tag $bang)
      (func $thrower (param $x i32)
        (local $v i32)
        (local.set $v (i32.add (call $sleep (local.get $x)) (local.get $x)))
        (throw $boom (local.get $v)))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32) (local $caught i32)
        (loop $l
          (block $all
            (local.set $caught
              (block $h (result i32)
                (try_table (catch $boom $h)
                  (local.set $acc (i32.add (local.get $acc)
                                           (call $sleep (i32.add (local.get $i) (i32.const 100)))))
                  (call $thrower (local.get $i))
                  (unreachable))
                (unreachable)))
            (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 3))
                                     (local.get $caught)))
            (try_table (catch_all $all)
              (if (i32.and (local.get $i) (i32.const 1))
                (then
                  (local.set $acc (i32.xor (local.get $acc) (call $sleep (local.get $acc))))
                  (throw $bang))))
            (local.set $acc (i32.add (local.get $acc) (i32.const 1))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#;
    for n in [1, 6] {
        let run = check_sleeps(wat, "run", &i32s(&[n]));
        assert_eq!(run.unwinds, 2 * n as usize + n as usize / 2);
    }
}

// ---------------------------------------------------------------------------
// 6. asserts
// ---------------------------------------------------------------------------

const ASSERTS_WAT: &str = r#"(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (import "env" "other" (func $other (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $helper (param $x i32) (result i32)
    (i32.add (call $other (local.get $x)) (i32.const 1)))
  (func (export "run") (param $x i32) (result i32)
    (local $a i32)
    (local.set $a (call $sleep (local.get $x)))
    (i32.add (local.get $a) (i32.mul (call $helper (local.get $x)) (i32.const 3)))))"#;

fn asserts_options(asserts: bool) -> Options {
    Options {
        imports: Some(vec!["env.sleep".to_string()]),
        asserts,
        ..Options::default()
    }
}

/// With `asserts` and an import list naming only `env.sleep`, a host that
/// unwinds in `env.other` anyway makes the call trap in
/// `__wasm_rewind_assert_failed` right after the unexpected unwind (called
/// from the function that made the call); unwinding only where the list says
/// still gives the original's result.
#[test]
fn asserts_catch_an_unwind_the_import_list_did_not_allow() {
    let buffer = Buffer::new("memory", 0xF000, 0x800);
    let args = i32s(&[5]);
    let instrumented = instrument_ours(ASSERTS_WAT, &asserts_options(true));
    let mut guest = Guest::new(&instrumented, host(&["env.other"], &buffer)).unwrap();
    let err = guest
        .drive("run", &args)
        .expect_err("an unwind in env.other must trip the assert");
    let names = backtrace_names(&err);
    assert_eq!(
        names.first().map(String::as_str),
        Some("__wasm_rewind_assert_failed"),
        "{err:?}"
    );
    assert_eq!(
        names.get(1).map(String::as_str),
        Some("helper"),
        "{names:?}"
    );
    assert_eq!(guest.host().log.len(), 2, "sleep, then the unwinding other");

    // The correct configuration runs through with asserts on.
    check(
        ASSERTS_WAT,
        &asserts_options(true),
        &buffer,
        &["env.sleep"],
        "run",
        &args,
    );
}

/// Without `asserts` the same misconfiguration does not trap at that point: the
/// export returns to the host in state 1, and nothing named
/// `__wasm_rewind_assert_failed` exists.
#[test]
fn without_asserts_the_unexpected_unwind_goes_unnoticed() {
    let buffer = Buffer::new("memory", 0xF000, 0x800);
    let instrumented = instrument_ours(ASSERTS_WAT, &asserts_options(false));
    assert!(!function_names(&instrumented)
        .values()
        .any(|n| n == "__wasm_rewind_assert_failed"));
    let mut guest = Guest::new(&instrumented, host(&["env.other"], &buffer)).unwrap();
    guest.init_buffer(&buffer);
    guest
        .call("run", &i32s(&[5]))
        .expect("no trap without asserts");
    assert_eq!(guest.state().unwrap(), 1, "the unwind escaped to the host");
}

// ---------------------------------------------------------------------------
// 7. the buffer in a named second memory
// ---------------------------------------------------------------------------

/// With `memory = "second"` on a module with two memories, `{pos, end}` and
/// the buffer live in memory 1 (exported as `second`); memory 0 ends
/// byte-for-byte equal to the original run's, and so does memory 1 outside the
/// buffer (the program uses both).
#[test]
fn buffer_in_a_named_second_memory() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory $main (export "memory") 1)
      (memory $aux (export "second") 1)
      (func $work (param $n i32) (result i32)
        (local $i i32) (local $v i32)
        (loop $l
          (local.set $v (call $sleep (local.get $i)))
          (i32.store $main (i32.mul (local.get $i) (i32.const 4)) (local.get $v))
          (i32.store $aux (i32.add (i32.const 0x8000) (i32.mul (local.get $i) (i32.const 4)))
                     (i32.xor (local.get $v) (local.get $n)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (i32.load $main (i32.const 4)) (i32.load $aux (i32.const 0x8008))))
      (func (export "run") (param $n i32) (result i32)
        (i32.add (call $work (local.get $n)) (call $sleep (i32.const -1)))))"#;
    let options = Options {
        memory: Some("second".to_string()),
        ..Options::default()
    };
    let buffer = Buffer::new("second", 0x100, 0x1000);
    let (mut original, mut guest, run) =
        check(wat, &options, &buffer, &["env.sleep"], "run", &i32s(&[9]));
    assert_eq!(run.unwinds, 10);
    assert!(run.max_buffer_used > 0);
    assert_eq!(
        guest.memory_bytes("memory"),
        original.memory_bytes("memory"),
        "memory 0"
    );
    let (mine, theirs) = (
        guest.memory_bytes("second"),
        original.memory_bytes("second"),
    );
    let region = buffer.ptr as usize..(buffer.ptr + 8 + buffer.size) as usize;
    assert_eq!(mine[..region.start], theirs[..region.start]);
    assert_eq!(mine[region.end..], theirs[region.end..]);
    assert!(
        mine[region.start + 8..region.end].iter().any(|&b| b != 0),
        "frames in `second`"
    );
}

// ---------------------------------------------------------------------------
// 8. operand stack below blocks, block parameters
// ---------------------------------------------------------------------------

/// A value on the operand stack below a block holding a sleeping call
/// (`i32.const 40 (block (result i32) ... call $sleep ...) i32.add`), and a
/// block with parameters whose body sleeps, inside a loop run 5 times: the
/// original's result with one unwind per sleep.
#[test]
fn operand_stack_below_blocks_and_block_parameters() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        loop $l
          ;; 40 stays on the stack below a block that sleeps
          i32.const 40
          block (result i32)
            local.get $i
            call $sleep
            local.get $acc
            i32.xor
          end
          i32.add
          local.get $acc
          i32.add
          local.set $acc
          ;; a block with parameters: acc and i go in, sleep inside
          local.get $acc
          local.get $i
          block (param i32 i32) (result i32)
            call $sleep
            i32.const 7
            i32.mul
            i32.sub
          end
          local.get $i
          i32.const 3
          ;; a deeper stack below a block with a parameter and a sleep
          block (param i32) (result i32)
            call $sleep
          end
          i32.mul
          i32.add
          local.set $acc
          local.get $i
          i32.const 1
          i32.add
          local.tee $i
          local.get $n
          i32.lt_u
          br_if $l
        end
        local.get $acc))"#;
    let run = check_sleeps(wat, "run", &i32s(&[5]));
    assert_eq!(run.unwinds, 15);
}

// ---------------------------------------------------------------------------
// Combinations
// ---------------------------------------------------------------------------

/// On memory64, every buffer size either holds the whole unwind and the 4
/// bytes kept for the overflow mark (and the run gives the original's
/// result) or traps in `__wasm_rewind_buffer_overflow` with nothing written
/// at or past `end` and the mark on top of the frames saved: the i64 bounds
/// arithmetic is right.
#[test]
fn memory64_small_buffers_fit_or_trap_before_end() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i64) (result i64)))
      (memory (export "memory") i64 1)
      (func $rec (param $n i64) (param $f f64) (result i64)
        (local $keep i64) (local $g f64)
        (local.set $keep (i64.mul (local.get $n) (i64.const 0x7fff_0000_1234)))
        (local.set $g (f64.mul (local.get $f) (f64.const 3.5)))
        (if (result i64) (i64.eqz (local.get $n))
          (then (call $sleep (local.get $keep)))
          (else
            (i64.add (i64.add (local.get $keep) (i64.trunc_f64_s (local.get $g)))
                     (call $rec (i64.sub (local.get $n) (i64.const 1)) (local.get $g))))))
      (func (export "run") (param $n i64) (result i64)
        (call $rec (local.get $n) (f64.const 1.25))))"#;
    let args = [Value::I64(4)];
    let full = Buffer::wide("memory", 0x4000, 0x1000);
    let (_, _, run) = check(
        wat,
        &Options::default(),
        &full,
        &["env.sleep"],
        "run",
        &args,
    );
    let needed = run.max_buffer_used;
    assert!(needed > 16);
    let instrumented = instrument_ours(wat, &Options::default());
    let (_, expected, _) = original(&to_wasm(wat), "run", &args);
    for size in 0..=needed + 4 {
        let buffer = Buffer {
            size,
            ..full.clone()
        };
        let mut guest = Guest::new(&instrumented, host(&["env.sleep"], &buffer)).unwrap();
        // Poison everything from `end` on, to see any write past it.
        let end = (buffer.ptr + 16 + size) as usize;
        let m = guest.memory("memory");
        m.data_mut(&mut guest.store)[end..].fill(0xA5);
        let result = guest.drive("run", &args);
        let after = guest.memory_bytes("memory");
        assert!(
            after[end..].iter().all(|&b| b == 0xA5),
            "size {size}: bytes at or past end were written"
        );
        match result {
            Ok(run) => {
                assert_eq!(
                    size,
                    needed + 4,
                    "size {size} is not the {needed} one unwind used and the mark's 4"
                );
                assert_eq!(run.results, expected);
            }
            Err(e) => {
                assert!(size < needed + 4, "size {size}: {e:?}");
                let (pos, _) = guest.pos_end(&buffer);
                if size >= 4 {
                    let top = &after[pos as usize - 4..pos as usize];
                    assert_eq!(top, [0xFF; 4], "size {size}: no overflow mark on top");
                }
                let names = backtrace_names(&e);
                assert_eq!(
                    names.first().map(String::as_str),
                    Some("__wasm_rewind_buffer_overflow"),
                    "size {size}: {e:?}"
                );
            }
        }
    }
}

/// `import_globals` and `export_globals` on memory64: the data global is an
/// i64 and holds the i64 pointer during the unwind.
#[test]
fn state_globals_on_memory64() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i64) (result i64)))
      (memory (export "memory") i64 1)
      (func (export "run") (param $n i64) (result i64)
        (local $i i64) (local $acc i64)
        (loop $l
          (local.set $acc (i64.add (i64.rotl (local.get $acc) (i64.const 7))
                                   (call $sleep (local.get $i))))
          (local.set $i (i64.add (local.get $i) (i64.const 1)))
          (br_if $l (i64.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#;
    let buffer = Buffer::wide("memory", 0x9000, 0x800);
    let args = [Value::I64(3)];

    let imported = Options {
        import_globals: true,
        ..Options::default()
    };
    let module = Module::new(&engine(), instrument_ours(wat, &imported)).unwrap();
    let types: Vec<String> = module
        .imports()
        .filter_map(|i| {
            i.ty()
                .global()
                .map(|g| format!("{} {}", i.name(), g.content()))
        })
        .collect();
    assert_eq!(types, ["__asyncify_state i32", "__asyncify_data i64"]);
    let (_, mut guest, _) = check(wat, &imported, &buffer, &["env.sleep"], "run", &args);
    assert_eq!(guest.host().seen, expected_sightings(0x9000, 3));

    let exported = Options {
        export_globals: true,
        ..Options::default()
    };
    let wasm = instrument_ours(wat, &exported);
    let (_, expected, _) = original(&to_wasm(wat), "run", &args);
    let watching = host(&["env.sleep"], &buffer).watching(Watch::Exported);
    let mut guest = Guest::new(&wasm, watching).unwrap();
    let run = guest.drive("run", &args).unwrap();
    assert_eq!(run.results, expected);
    assert_eq!(guest.host().seen, expected_sightings(0x9000, 3));
}

/// `secondary_memory` on a memory64 program: the added memory is a 32-bit
/// one, so the controls take an i32 pointer and `{pos, end}` is two i32
/// there, while the program's memory64 ends equal to the original run's.
#[test]
fn secondary_memory_on_a_memory64_program() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i64) (result i64)))
      (memory (export "memory") i64 1)
      (func (export "run") (param $n i64) (result i64)
        (local $i i64) (local $acc i64)
        (loop $l
          (i64.store (i64.mul (local.get $i) (i64.const 8)) (call $sleep (local.get $i)))
          (local.set $acc (i64.xor (local.get $acc)
                                   (i64.load (i64.mul (local.get $i) (i64.const 8)))))
          (local.set $i (i64.add (local.get $i) (i64.const 1)))
          (br_if $l (i64.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#;
    let options = Options {
        secondary_memory: Some(1),
        ..Options::default()
    };
    let instrumented = instrument_ours(wat, &options);
    assert_eq!(
        export_params(&instrumented, "asyncify_start_unwind"),
        ["i32"]
    );
    let buffer = Buffer::new("asyncify_memory", 0, 0x800);
    let (mut original, mut guest, run) = check(
        wat,
        &options,
        &buffer,
        &["env.sleep"],
        "run",
        &[Value::I64(5)],
    );
    assert_eq!(run.unwinds, 5);
    assert_eq!(
        guest.memory_bytes("memory"),
        original.memory_bytes("memory")
    );
}

/// `memory` given as a decimal index picks memory 1 even when it is the only
/// memory64 one: the controls take i64 pointers, memory 0 (32-bit) is untouched.
#[test]
fn memory_by_index_mixed_address_types() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (memory $wide (export "wide") i64 1)
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (i32.store (i32.mul (local.get $i) (i32.const 4)) (call $sleep (local.get $i)))
          (i64.store $wide (i64.const 0x20) (i64.extend_i32_u (local.get $i)))
          (local.set $acc (i32.add (local.get $acc) (i32.load (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (local.get $acc) (i32.wrap_i64 (i64.load $wide (i64.const 0x20))))))"#;
    let options = Options {
        memory: Some("1".to_string()),
        ..Options::default()
    };
    let instrumented = instrument_ours(wat, &options);
    assert_eq!(
        export_params(&instrumented, "asyncify_start_rewind"),
        ["i64"]
    );
    let buffer = Buffer::wide("wide", 0x1000, 0x800);
    let (mut original, mut guest, run) =
        check(wat, &options, &buffer, &["env.sleep"], "run", &i32s(&[6]));
    assert_eq!(run.unwinds, 6);
    assert_eq!(
        guest.memory_bytes("memory"),
        original.memory_bytes("memory")
    );
    let (mine, theirs) = (guest.memory_bytes("wide"), original.memory_bytes("wide"));
    assert_eq!(mine[..0x1000], theirs[..0x1000]);
}

/// Loops with parameters whose bodies sleep, with i64, f64 and v128 values
/// left on the operand stack below them, and an `if` with parameters holding a
/// sleep in its `else` arm: the original's result, one unwind per sleep.
#[test]
fn loop_and_if_parameters_with_typed_values_below() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $run (export "run") (param $n i32) (result i64 f64 i32)
        (local $i i32)
        i64.const 0x1234_5678_9abc
        f64.const 6.5
        v128.const i32x4 1 2 3 4
        i32.const 0
        loop $l (param i32) (result i32)
          ;; acc on the stack; sleep with it, mix in i
          call $sleep
          local.get $i
          i32.xor
          local.get $i
          i32.const 1
          i32.and
          if (param i32) (result i32)
            i32.const 5
            i32.add
          else
            call $sleep
          end
          local.get $i
          i32.const 1
          i32.add
          local.tee $i
          local.get $n
          i32.lt_u
          br_if $l
        end
        ;; v128 below: fold one lane in
        i32x4.replace_lane 2
        i32x4.extract_lane 2
        local.set $i
        f64.const 0.25
        f64.add
        local.get $i))"#;
    for n in [1, 5] {
        let run = check_sleeps(wat, "run", &i32s(&[n]));
        assert_eq!(run.unwinds, n as usize + (n as usize).div_ceil(2));
    }
}

/// `catch_ref` hands an `exnref` to a handler that rethrows it with
/// `throw_ref` to an outer `try_table`; sleeps before the throw and after the
/// outer catch (never with the `exnref` live across a sleep, which the pass
/// refuses) give the original's result.
#[test]
fn catch_ref_and_throw_ref_around_sleeps() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (tag $boom (param i32))
      (func $inner (param $x i32) (result i32)
        (local $v i32)
        (block $h (result i32 exnref)
          (try_table (catch_ref $boom $h)
            (local.set $v (call $sleep (local.get $x)))
            (throw $boom (i32.add (local.get $v) (local.get $x))))
          (unreachable))
        (throw_ref))
      (func $run (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc
            (i32.add (local.get $acc)
              (block $outer (result i32)
                (try_table (result i32) (catch $boom $outer)
                  (call $inner (local.get $i))))))
          (local.set $acc (i32.xor (local.get $acc) (call $sleep (local.get $acc))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#;
    let run = check_sleeps(wat, "run", &i32s(&[4]));
    assert_eq!(run.unwinds, 8);
}

/// A `return_call` inside a `try_table` leaves the handler behind: an
/// exception thrown by the (sleeping) callee is not caught by the caller's
/// `try_table` but by the one further out. The instrumented module must keep
/// that, whether or not anything unwinds.
#[test]
fn return_call_inside_try_table_skips_its_handler() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (tag $boom (param i32))
      (func $thrower (param $x i32) (result i32)
        (throw $boom (i32.and (call $sleep (local.get $x)) (i32.const 0xff))))
      (func $mid (param $x i32) (result i32)
        (block $h (result i32)
          (try_table (result i32) (catch $boom $h)
            (return_call $thrower (local.get $x))))
        (i32.add (i32.const 1000)))
      (func $run (export "run") (param $x i32) (result i32)
        (block $h (result i32)
          (try_table (result i32) (catch $boom $h)
            (call $mid (local.get $x))))))"#;
    check_sleeps(wat, "run", &i32s(&[3]));
}

/// On memory64 the `{pos, end}` structure and the buffer may sit above 4 GiB:
/// the pointer is a full i64 and nothing truncates it to 32 bits.
#[test]
fn memory64_buffer_above_4_gib() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i64) (result i64)))
      (memory (export "memory") i64 65537)
      (func $rec (param $n i64) (result i64)
        (local $keep i64)
        (local.set $keep (i64.mul (local.get $n) (i64.const 0x1_0000_0003)))
        (i64.store (i64.mul (local.get $n) (i64.const 8)) (local.get $keep))
        (if (result i64) (i64.eqz (local.get $n))
          (then (call $sleep (i64.const 1)))
          (else (i64.add (local.get $keep)
                  (i64.xor (call $rec (i64.sub (local.get $n) (i64.const 1)))
                           (call $sleep (local.get $n)))))))
      (func (export "run") (param $n i64) (result i64 i64)
        (call $rec (local.get $n))
        (i64.load (i64.const 24))))"#;
    let buffer = Buffer::wide("memory", 0x1_0000_0000, 0x1000);
    let args = [Value::I64(5)];
    let (mut original, mut guest, run) = check(
        wat,
        &Options::default(),
        &buffer,
        &["env.sleep"],
        "run",
        &args,
    );
    assert_eq!(run.unwinds, 6);
    assert!(run.max_buffer_used > 0);
    // Below 4 GiB the program's bytes are the original's (first pages only, to
    // keep the copy small), and nothing of the buffer landed at ptr mod 2^32.
    let low = |g: &mut Guest| {
        let m = g.memory("memory");
        m.data(&g.store)[..0x2_0000].to_vec()
    };
    assert_eq!(low(&mut guest), low(&mut original));
}

/// A module that runs its own scheduler loop with the in-module runtime
/// (`asyncify.stop_unwind` / `asyncify.start_rewind` in `main`, as ruby.wasm
/// does): `main` is not instrumented, and `call $work` in it returns while
/// unwinding on purpose, every time `work` yields. The result equals the
/// original's (whose runtime imports do nothing), with and without `asserts`:
/// an assert must not fire after a call the analysis knows can unwind.
#[test]
fn in_module_scheduler_with_and_without_asserts() {
    let wat = r#"(module
      (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
      (import "asyncify" "stop_unwind" (func $stop_unwind))
      (import "asyncify" "start_rewind" (func $start_rewind (param i32)))
      (import "asyncify" "stop_rewind" (func $stop_rewind))
      (import "asyncify" "get_state" (func $get_state (result i32)))
      (memory (export "memory") 1)
      (global $rewinding (mut i32) (i32.const 0))
      (func $yield
        (if (global.get $rewinding)
          (then
            (global.set $rewinding (i32.const 0))
            (call $stop_rewind))
          (else
            (global.set $rewinding (i32.const 1))
            (call $start_unwind (i32.const 0xF000)))))
      (func $work (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 7)) (local.get $i)))
          (call $yield)
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc))
      (func $main (export "main") (param $n i32) (result i32 i32)
        (local $r i32) (local $switches i32)
        (i32.store (i32.const 0xF000) (i32.const 0xF008))
        (i32.store (i32.const 0xF004) (i32.const 0xF800))
        (loop $again
          (local.set $r (call $work (local.get $n)))
          (if (i32.eq (call $get_state) (i32.const 1))
            (then
              (call $stop_unwind)
              (local.set $switches (i32.add (local.get $switches) (i32.const 1)))
              (call $start_rewind (i32.const 0xF000))
              (br $again))))
        (local.get $r)
        (local.get $switches)))"#;
    let wasm = to_wasm(wat);
    let args = i32s(&[5]);
    let (_, expected, _) = original(&wasm, "main", &args);
    // The original never switches.
    assert_eq!(expected[1], Value::I32(0));
    for asserts in [false, true] {
        let options = Options {
            asserts,
            ..Options::default()
        };
        let instrumented = instrument_ours(&wasm, &options);
        let mut guest = Guest::new(&instrumented, Host::new(answer(), never())).unwrap();
        let results = guest
            .call("main", &args)
            .unwrap_or_else(|e| panic!("asserts: {asserts}: {e:?}"));
        assert_eq!(results[0], expected[0], "asserts: {asserts}");
        assert_eq!(results[1], Value::I32(5), "one switch per yield");
        assert_eq!(guest.state().unwrap(), 0);
    }
}

/// `import_globals` on a module that imports a global of its own and defines
/// others: the two added imports come after the module's imported globals,
/// every `global.get` / `global.set` of a defined global and every global
/// export still reach the right global (exports and results equal the
/// original's), and `export_globals` on top exports the added pair.
#[test]
fn import_globals_next_to_the_modules_own_globals() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (import "env" "base" (global $base i32))
      (memory (export "memory") 1)
      (global $counter (export "counter") (mut i32) (i32.const 5))
      (global $wide (export "wide") (mut i64) (i64.const -3))
      (func (export "run") (param $n i32) (result i32 i64)
        (local $i i32)
        (loop $l
          (global.set $counter
            (i32.add (i32.mul (global.get $counter) (global.get $base))
                     (call $sleep (i32.add (local.get $i) (global.get $counter)))))
          (global.set $wide (i64.add (global.get $wide) (i64.extend_i32_s (global.get $counter))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (global.get $counter)
        (global.get $wide)))"#;
    let buffer = Buffer::new("memory", 0xF000, 0x800);
    for export_globals in [false, true] {
        let options = Options {
            import_globals: true,
            export_globals,
            ..Options::default()
        };
        let module = Module::new(&engine(), instrument_ours(wat, &options)).unwrap();
        let globals: Vec<String> = module
            .imports()
            .filter(|i| i.ty().global().is_some())
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect();
        assert_eq!(
            globals,
            ["env.base", "env.__asyncify_state", "env.__asyncify_data"]
        );
        let (mut original, mut guest, run) =
            check(wat, &options, &buffer, &["env.sleep"], "run", &i32s(&[4]));
        assert_eq!(run.unwinds, 4);
        for name in ["counter", "wide"] {
            let mine = guest.instance.get_global(&mut guest.store, name).unwrap();
            let theirs = original
                .instance
                .get_global(&mut original.store, name)
                .unwrap();
            assert_eq!(
                Value::from_val(&mine.get(&mut guest.store)),
                Value::from_val(&theirs.get(&mut original.store)),
                "exported global `{name}`"
            );
        }
        if export_globals {
            // The exported pair is the host's imported pair.
            let Some((state, _)) = guest.host().state_globals else {
                panic!("the host provides the globals");
            };
            let exported = guest
                .instance
                .get_global(&mut guest.store, "__asyncify_state")
                .unwrap();
            state.set(&mut guest.store, Val::I32(2)).unwrap();
            assert_eq!(exported.get(&mut guest.store).unwrap_i32(), 2);
            state.set(&mut guest.store, Val::I32(0)).unwrap();
            assert_eq!(guest.host().seen, expected_sightings(0xF000, 4));
        }
    }
}

/// Tail calls that can unwind with values left on the operand stack below
/// them (discarded by the tail call), nested in blocks that hold other sleeps,
/// and a `br_if` / `br_table` leaving a block with a value after a sleep
/// while a value waits below that block: the original's result.
#[test]
fn tail_calls_and_branches_with_values_below() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $step (param $n i32) (param $acc i32) (result i32)
        (if (i32.eqz (local.get $n)) (then (return (local.get $acc))))
        i64.const 123456789
        f32.const 2.5
        block (result i32)
          i32.const 40
          block $b (result i32)
            local.get $n
            call $sleep
            local.tee $acc
            local.get $n
            i32.const 3
            i32.rem_u
            br_if $b
            drop
            local.get $acc
            i32.const 1
            i32.add
            local.get $n
            i32.const 3
            i32.rem_u
            br_table $b $b 1
          end
          i32.add
        end
        local.set $acc
        ;; junk below the tail call: i64 and f32
        local.get $n
        i32.const 1
        i32.sub
        local.get $acc
        call $sleep
        return_call $step)
      (func (export "run") (param $n i32) (result i32)
        (call $step (local.get $n) (i32.const 0))))"#;
    for n in [1, 6] {
        let run = check_sleeps(wat, "run", &i32s(&[n]));
        assert_eq!(run.unwinds, 2 * n as usize);
    }
}
