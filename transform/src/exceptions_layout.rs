//! Every index the output of an exceptions lowering (`--sjlj exceptions`)
//! uses, decided before any body is rewritten; the counterpart of
//! `layout.rs` for the Asyncify path.
//!
//! The WASIX stack imports go away: `stack_restore` (and `stack_rewind`)
//! become a function that throws the added tag with the jmp_buf's address and
//! the value, and `stack_checkpoint` a function that traps, which only code
//! that never runs still names (every live call to it is rewritten in place).
//! One i64 global numbers the invocations that call setjmp. Nothing else is
//! added: no state globals, no exports, no buffer.

use crate::abi;
use crate::analysis::scan::FunctionScan;
use crate::analysis::unwind::StackImports;
use crate::emit::ExtraGlobal;
use crate::error::{Error, Result};
use crate::instrument::frame_helpers::FrameHelpers;
use crate::instrument::runtime::{self, AddedFunction};
use crate::instrument::{BufferGrowth, Ctx, ExceptionLowering, Lowering, TypeInterner};
use crate::layout::{BufferPlacement, OutputLayout};
use crate::module_info::ModuleInfo;
use crate::options::{OptionName, Options, SjljLowering};
use crate::stack_layout::StackLayout;
use wasm_encoder::{ConstExpr, Function, GlobalType, Instruction, ValType as EncType};
use wasmparser::ValType;

/// Lays out an exceptions lowering of `info`.
pub(crate) fn decide<'m>(
    info: &'m ModuleInfo<'m>,
    scans: &[FunctionScan],
    options: &Options,
    buffer: BufferPlacement,
) -> Result<OutputLayout<'m>> {
    let imports = StackImports::find(info);
    let stack = StackLayout::find(info, scans);
    let addr = if buffer.memory64 {
        ValType::I64
    } else {
        ValType::I32
    };
    check_signatures(info, &imports, addr)?;
    let stack_pointer = match (&stack.pointer, imports.checkpoint) {
        (Some(p), _) => p.index,
        (None, None) => 0,
        (None, Some(_)) => {
            return Err(Error::unsupported(format!(
                "cannot find the module's `__stack_pointer` (not exported, no name section, and \
                 no function prologue lowers a single global), and under {} a longjmp must set \
                 it back where setjmp found it: link with -Wl,--export=__stack_pointer",
                OptionName::Sjlj
            )))
        }
    };

    let n_funcs = info.num_funcs();
    let removed: Vec<bool> = (0..n_funcs).map(|f| imports.contains(f)).collect();
    let n_removed = removed.iter().filter(|r| **r).count() as u32;
    let first = n_funcs - n_removed;
    let (longjmp, unreachable_checkpoint) = (first, first + 1);
    let mut before = 0;
    let func_map: Vec<u32> = (0..n_funcs)
        .map(|f| {
            let mapped = if imports.checkpoint == Some(f) {
                unreachable_checkpoint
            } else if imports.restore.contains(&f) {
                longjmp
            } else {
                f - before
            };
            if removed[f as usize] {
                before += 1;
            }
            mapped
        })
        .collect();

    let mut types = TypeInterner::new(info);
    types.intern(&[addr, ValType::I64], &[]);
    types.intern(&[addr, addr], &[ValType::I32]);
    types.intern(&[], &[addr, ValType::I64]);
    let lowering = ExceptionLowering {
        tag: info.num_tags,
        legacy: options.sjlj == SjljLowering::LegacyExceptions,
        stack_pointer,
        invocation_counter: info.globals.len() as u32,
    };
    let identity_indices = n_removed == 0;
    let ctx = Ctx {
        // No layouts, so no frame helpers.
        helpers: FrameHelpers::new(u32::MAX),
        identity_indices,
        func_map,
        globals_from: u32::MAX,
        globals_by: 0,
        state_global: u32::MAX,
        data_global: u32::MAX,
        memory: buffer.memory,
        growth: BufferGrowth::Fixed,
        memory64: buffer.memory64,
        funcs: runtime::layout_funcs(first, false),
        types,
        asserts: false,
        runtime_import: vec![false; n_funcs as usize],
        info,
        lowering: Lowering::Exceptions(lowering),
    };
    Ok(OutputLayout {
        ctx,
        buffer,
        stack,
        for_wasix_host: false,
        grow_hook: false,
        removed,
        embedded: None,
    })
}

/// Whether the module has anything to lower: the added tag, functions and
/// global exist only then.
pub(crate) fn lowers_anything(ctx: &Ctx<'_>) -> bool {
    // A WASIX stack import was removed: the added functions then start
    // before the input's count of functions.
    ctx.func_map.len() as u32 > ctx.funcs.start_unwind
}

/// The functions an exceptions lowering adds, in index order.
pub(crate) fn added_functions(ctx: &Ctx<'_>, lowering: &ExceptionLowering) -> Vec<AddedFunction> {
    if !lowers_anything(ctx) {
        return Vec::new();
    }
    let addr = ctx.address_type();
    let mut longjmp = Function::new([]);
    longjmp.instruction(&Instruction::LocalGet(0));
    longjmp.instruction(&Instruction::LocalGet(1));
    longjmp.instruction(&Instruction::Throw(lowering.tag));
    longjmp.instruction(&Instruction::End);
    let mut trap = Function::new([]);
    trap.instruction(&Instruction::Unreachable);
    trap.instruction(&Instruction::End);
    vec![
        AddedFunction {
            name: abi::LONGJMP_FUNCTION.into(),
            ty: ctx.types.get(&[addr, ValType::I64], &[]).expect("interned"),
            body: longjmp.into_raw_body(),
            export: None,
        },
        AddedFunction {
            name: abi::UNREACHABLE_CHECKPOINT_FUNCTION.into(),
            ty: ctx
                .types
                .get(&[addr, addr], &[ValType::I32])
                .expect("interned"),
            body: trap.into_raw_body(),
            export: None,
        },
    ]
}

/// The tags an exceptions lowering adds (their type indices): the one a
/// longjmp throws.
pub(crate) fn added_tags(ctx: &Ctx<'_>) -> Vec<u32> {
    if !lowers_anything(ctx) {
        return Vec::new();
    }
    let addr = ctx.address_type();
    vec![ctx.types.get(&[addr, ValType::I64], &[]).expect("interned")]
}

/// The globals an exceptions lowering adds: the invocation counter.
pub(crate) fn added_globals(ctx: &Ctx<'_>) -> Vec<ExtraGlobal> {
    if !lowers_anything(ctx) {
        return Vec::new();
    }
    vec![ExtraGlobal {
        name: abi::SETJMP_INVOCATIONS_GLOBAL.into(),
        ty: GlobalType {
            val_type: EncType::I64,
            mutable: true,
            shared: false,
        },
        init: ConstExpr::i64_const(0),
    }]
}

/// Refuses stack imports whose types are not the ones our setjmp.h (and
/// WASIX) declare: the lowering replaces them with code of those types.
fn check_signatures(info: &ModuleInfo<'_>, imports: &StackImports, addr: ValType) -> Result<()> {
    let expect = |f: u32, params: &[ValType], results: &[ValType]| -> Result<()> {
        let sig = info.func_sig(f);
        if sig.params() == params && sig.results() == results {
            return Ok(());
        }
        Err(Error::unsupported(format!(
            "the import `{}` has type {:?} -> {:?}, where {} expects {:?} -> {:?}",
            info.imports[f as usize].qualified(),
            sig.params(),
            sig.results(),
            OptionName::Sjlj,
            params,
            results
        )))
    };
    if let Some(c) = imports.checkpoint {
        expect(c, &[addr, addr], &[ValType::I32])?;
    }
    for &r in &imports.restore {
        expect(r, &[addr, ValType::I64], &[])?;
    }
    Ok(())
}
