//! What the normal path of an instrumented function pays, counted in the
//! output: the code a program runs when nothing unwinds must stay close to the
//! input's, or an interpreter's dispatch loop slows down several times (Lua's
//! did, 3x, when every block of its `switch` tested the state).

use wasm_rewind_transform::{instrument, Options};
use wasmparser::{Operator, Parser, Payload};

/// A C `switch` as clang emits it: `cases` nested blocks around a `br_table`,
/// each block followed by a case that calls the unwinding import.
fn switch_module(cases: usize) -> String {
    let mut wat = String::from(
        r#"(module
          (import "env" "sleep" (func $sleep (param i32) (result i32)))
          (memory 1)
          (func (export "run") (param $k i32) (result i32)
            (local $r i32)
            (block $done
        "#,
    );
    for _ in 0..cases {
        wat.push_str("(block\n");
    }
    wat.push_str("(br_table");
    for c in 0..cases {
        wat.push_str(&format!(" {c}"));
    }
    wat.push_str(&format!(" {cases} (local.get $k))\n"));
    for c in 0..cases {
        wat.push_str(&format!(
            ")\n(local.set $r (call $sleep (i32.const {c})))\n(br {})\n",
            cases - 1 - c
        ));
    }
    wat.push_str(")\n(local.get $r)))");
    wat
}

/// Reads of the state global in each defined function, by function index.
/// The global is the one `asyncify_get_state` returns.
fn state_reads(wasm: &[u8]) -> Vec<usize> {
    let mut imported_funcs = 0;
    let mut get_state_func = None;
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("output parses") {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(
                        import.expect("import").ty,
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_)
                    ) {
                        imported_funcs += 1;
                    }
                }
            }
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.expect("export");
                    if export.name == "asyncify_get_state" {
                        get_state_func = Some(export.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let ops: Vec<Operator<'_>> = body
                    .get_operators_reader()
                    .expect("operators")
                    .into_iter()
                    .map(|op| op.expect("operator"))
                    .collect();
                bodies.push(
                    ops.iter()
                        .filter_map(|op| match op {
                            Operator::GlobalGet { global_index } => Some(*global_index),
                            _ => None,
                        })
                        .collect::<Vec<u32>>(),
                );
            }
            _ => {}
        }
    }
    let get_state = get_state_func.expect("asyncify_get_state is exported") - imported_funcs;
    let state = bodies[get_state as usize][0];
    bodies
        .iter()
        .map(|gets| gets.iter().filter(|&&g| g == state).count())
        .collect()
}

#[test]
fn a_switch_tests_the_state_once_on_entry_not_once_per_case() {
    let cases = 40;
    let wasm = wat::parse_str(switch_module(cases)).expect("test module parses");
    let out = instrument(&wasm, &Options::default()).expect("instrumentation succeeds");
    // `run` is the first defined function (the runtime's come after it).
    let reads = state_reads(&out.wasm)[0];
    // One test at function entry, one after each of the `cases` calls, and
    // the dispatch into the switch: one for the whole chain of blocks.
    assert_eq!(
        reads,
        cases + 2,
        "reads of the state global in `run` with {cases} cases"
    );
}
