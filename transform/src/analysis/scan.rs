//! Scan phase: validate every function body (in parallel) and record what the
//! call graph needs: direct calls, indirect calls by signature and table,
//! `call_ref` by signature, functions that become `funcref` values, and tables
//! that code can change.

use crate::error::{Error, Result};
use crate::module_info::ModuleInfo;
use rayon::prelude::*;
use wasmparser::{FuncValidatorAllocations, Operator};

/// What one function body calls and exposes.
#[derive(Clone, Debug, Default)]
pub struct FunctionScan {
    /// Direct calls (`call`, `return_call`): callee and byte offset.
    pub calls: Vec<(u32, usize)>,
    /// `call_indirect` / `return_call_indirect`: type index, table, offset.
    pub indirect_calls: Vec<(u32, u32, usize)>,
    /// `call_ref` / `return_call_ref`: type index and offset.
    pub ref_calls: Vec<(u32, usize)>,
    /// Functions named by `ref.func`.
    pub ref_funcs: Vec<u32>,
    /// Tables written by `table.set`, `table.grow`, `table.fill`, `table.copy`
    /// or `table.init`.
    pub mutated_tables: Vec<u32>,
    /// Globals this function lowers the way a C stack pointer is lowered in a
    /// prologue: `global.get g; i32.const c; i32.sub` (or the i64 forms) with
    /// `c > 0`, and a `global.set g` somewhere in the body. Each at most once.
    pub stack_decrements: Vec<u32>,
}

/// Validates all bodies and scans them. Errors name the function.
pub fn scan_functions(info: &ModuleInfo<'_>) -> Result<Vec<FunctionScan>> {
    let imported = info.num_imported_funcs();
    info.bodies
        .par_iter()
        .enumerate()
        .map_init(FuncValidatorAllocations::default, |allocs, (i, body)| {
            let index = imported + i as u32;
            let mut validator = info.validator_for(i).into_validator(std::mem::take(allocs));
            let result = scan_body(&mut validator, body);
            *allocs = validator.into_allocations();
            result.map_err(|e| e.in_function(info.func_display_name(index)))
        })
        .collect()
}

fn scan_body(
    validator: &mut wasmparser::FuncValidator<wasmparser::ValidatorResources>,
    body: &wasmparser::FunctionBody<'_>,
) -> Result<FunctionScan> {
    let mut scan = FunctionScan::default();
    let mut locals = body.get_locals_reader()?;
    for _ in 0..locals.get_count() {
        let offset = locals.original_position();
        let (count, ty) = locals.read()?;
        validator.define_locals(offset, count, ty)?;
    }
    let mut ops = body.get_operators_reader()?;
    let mut prologue = PrologueMatcher::default();
    let mut set_globals = Vec::new();
    while !ops.eof() {
        let offset = ops.original_position();
        let op = ops.read()?;
        validator.op(offset, &op).map_err(Error::from)?;
        prologue.step(&op);
        match op {
            Operator::GlobalSet { global_index } => set_globals.push(global_index),
            Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                scan.calls.push((function_index, offset))
            }
            Operator::CallIndirect {
                type_index,
                table_index,
            }
            | Operator::ReturnCallIndirect {
                type_index,
                table_index,
            } => scan.indirect_calls.push((type_index, table_index, offset)),
            Operator::CallRef { type_index } | Operator::ReturnCallRef { type_index } => {
                scan.ref_calls.push((type_index, offset))
            }
            Operator::RefFunc { function_index } => scan.ref_funcs.push(function_index),
            Operator::TableSet { table }
            | Operator::TableGrow { table }
            | Operator::TableFill { table } => scan.mutated_tables.push(table),
            Operator::TableCopy { dst_table, .. } => scan.mutated_tables.push(dst_table),
            Operator::TableInit { table, .. } => scan.mutated_tables.push(table),
            _ => {}
        }
    }
    ops.finish()?;
    scan.stack_decrements = prologue.lowered;
    scan.stack_decrements.sort_unstable();
    scan.stack_decrements.dedup();
    set_globals.sort_unstable();
    scan.stack_decrements
        .retain(|g| set_globals.binary_search(g).is_ok());
    Ok(scan)
}

/// Recognises `global.get g; iNN.const c; iNN.sub` with `c > 0`, the way
/// wasm-ld's code (clang's prologues) lowers `__stack_pointer`.
#[derive(Default)]
struct PrologueMatcher {
    /// 1: saw `global.get g`; 2: then a positive constant of that width.
    state: u8,
    global: u32,
    wide: bool,
    lowered: Vec<u32>,
}

impl PrologueMatcher {
    fn step(&mut self, op: &Operator<'_>) {
        self.state = match (self.state, op) {
            (_, Operator::GlobalGet { global_index }) => {
                self.global = *global_index;
                1
            }
            (1, Operator::I32Const { value }) if *value > 0 => {
                self.wide = false;
                2
            }
            (1, Operator::I64Const { value }) if *value > 0 => {
                self.wide = true;
                2
            }
            (2, Operator::I32Sub) if !self.wide => {
                self.lowered.push(self.global);
                0
            }
            (2, Operator::I64Sub) if self.wide => {
                self.lowered.push(self.global);
                0
            }
            _ => 0,
        };
    }
}
