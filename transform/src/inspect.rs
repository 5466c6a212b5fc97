//! What can be known about a module from its bytes: whether and by whom it is
//! instrumented, which functions are, which imports can unwind, what the shim
//! needs, and sizes. The CLI's `inspect` prints these facts and
//! `instrument --report` writes them for its output, with the pass's own
//! decisions; the shim's module check applies the same rules
//! ([`unmet_shim_requirement`]).
//!
//! For an instrumented module the functions and imports are read from the
//! code: a defined function (other than the runtime) that reads or writes the
//! state global `__asyncify_state` is instrumented, and an import is an
//! unwinding one when an instrumented function tests the state right after
//! calling it (within the next few instructions), which both our pass and
//! Binaryen's do after every call that can unwind. For a module that is not
//! instrumented they come from the pass's analysis, with default options: what
//! `wasm-rewind instrument` would do.

use crate::abi::{self, WASIX_CONTEXT_IMPORTS, WASIX_STACK_IMPORTS};
use crate::error::Result;
use crate::stack_layout::{FoundBy, StackLayout};
use crate::{analysis, module_info, Options};
use std::collections::{BTreeSet, HashMap};
use wasmparser::{ExternalKind, KnownCustom, Name, Operator, Payload, TypeRef};

/// The producers entry our emitter adds (`processed-by`).
const OUR_PRODUCER: &str = "wasm-rewind";

/// Everything `inspect` reports.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Facts {
    /// Who instrumented the module: `"wasm-rewind"`, `"binaryen"` or `null`.
    pub instrumented_by: Option<String>,
    /// Our version from the producers section, when it has one.
    pub wasm_rewind_version: Option<String>,
    /// Functions: counts and the instrumented ones.
    pub functions: Functions,
    /// Imports that can unwind, as `module.name`.
    pub unwinding_imports: Vec<String>,
    /// How the two lists above were found: `"code"` (read from an
    /// instrumented module) or `"analysis"` (what `instrument` would do with
    /// default options).
    pub basis: String,
    /// How setjmp/longjmp were lowered, for a module we lowered: `"exceptions"`
    /// (`--sjlj exceptions` or `legacy-exceptions`: the module needs an
    /// engine with exceptions, and no shim), else `null`.
    pub sjlj: Option<String>,
    /// What the WASIX stack shim (`wasm-rewind run`, `wasm_rewind_shim`) needs.
    pub shim: Shim,
    /// Sizes in bytes.
    pub sizes: Sizes,
}

/// Function counts and names.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Functions {
    /// Imported functions.
    pub imported: usize,
    /// Defined functions (the runtime included, for an instrumented module).
    pub defined: usize,
    /// Names (or `$index`) of the instrumented functions, in index order.
    pub instrumented: Vec<String>,
}

/// The shim's requirements and whether the module meets them.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Shim {
    /// The WASIX stack and context calls the module imports; the shim
    /// serves these.
    pub wasix_imports: Vec<String>,
    /// How `__stack_pointer` can be reached: `"exported"`, `"name-section"`
    /// or `"prologue"` (recognised from the code; `instrument` exports it in
    /// both cases), or `"missing"`. Found as the pass finds it.
    pub stack_pointer: String,
    /// Whether the module exports its memory as `memory`.
    pub memory_exported: bool,
    /// Where `wasm-rewind run` puts the unwind buffer: `"asyncify_memory"`
    /// (the module's own exported memory) or `"memory0"` (a window borrowed
    /// at the top of memory 0 for each request).
    pub buffer: String,
    /// Where a WASIX host that unwinds into the free C stack (Wasmer) finds
    /// the stack's bottom: `"__stack_low"` or `"__data_end"` (exported), or
    /// `"missing"` (it would fall back to address 0).
    pub stack_bottom: String,
    /// Bytes of C stack from that bottom to the stack's top, when both are
    /// known (`None` with `stack_bottom` missing). Wasmer unwinds into the part not in use at the call, so this
    /// bounds how deep a stack it can checkpoint; a program that nests
    /// deeper links with a bigger stack (`-Wl,-z,stack-size=N`).
    pub c_stack_bytes: Option<u64>,
    /// Whether `wasm-rewind run` can run the module as it is (true when the
    /// module does not call the WASIX stack functions: it needs no shim).
    pub ready: bool,
    /// Whether Wasmer can run it as it is: what `ready` needs, the buffer in
    /// memory 0, and a known stack bottom.
    pub wasmer_ready: bool,
    /// What stands in the way, each with what to do; those that only concern
    /// Wasmer start with "Wasmer:".
    pub problems: Vec<String>,
}

/// Sizes of the parts of the module.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Sizes {
    /// The whole module.
    pub total: usize,
    /// The code section.
    pub code: usize,
    /// The data section.
    pub data: usize,
    /// All custom sections.
    pub custom: usize,
    /// Each custom section: name and size.
    pub custom_sections: Vec<(String, usize)>,
}

/// What one pass over the bytes collects.
#[derive(Default)]
struct Scan {
    func_imports: Vec<String>,
    /// Per global, imported ones first: whether it is mutable.
    global_mutable: Vec<bool>,
    defined_funcs: usize,
    exports: Vec<(String, ExternalKind, u32)>,
    func_names: HashMap<u32, String>,
    global_names: HashMap<u32, String>,
    producers: Vec<(String, String)>,
    /// Per defined function: what `from_code` needs of its body.
    bodies: Vec<Body>,
    sizes: Sizes,
}

impl Scan {
    /// What the module exports under `name`.
    fn export_shape(&self, name: &str) -> Option<ExportShape> {
        let (_, kind, index) = self.exports.iter().find(|(n, _, _)| n == name)?;
        Some(match kind {
            ExternalKind::Func | ExternalKind::FuncExact => ExportShape::Func,
            ExternalKind::Memory => ExportShape::Memory,
            ExternalKind::Global => ExportShape::Global {
                mutable: self.global_mutable.get(*index as usize) == Some(&true),
            },
            _ => ExportShape::Other,
        })
    }
}

#[derive(Default)]
struct Body {
    globals: BTreeSet<u32>,
    /// Each direct call and the globals read within the next few instructions.
    calls: Vec<(u32, Vec<u32>)>,
    /// A body that is just `global.get N` (`asyncify_get_state`'s shape).
    only_global_get: Option<u32>,
}

/// How many instructions after a call may hold the state test.
const STATE_TEST_WINDOW: usize = 4;

/// Reads the facts of `wasm`, a binary module.
pub fn inspect(wasm: &[u8]) -> Result<Facts> {
    let scan = scan(wasm)?;
    // The pass's own reading of the module: where its stack is, and (for a
    // module not yet instrumented) what the pass would do.
    let info = module_info::parse_module(wasm)?;
    let scans = analysis::scan::scan_functions(&info)?;
    let exports = scan.exports.iter().map(|(n, _, _)| n.as_str());
    let global_names = scan.global_names.values().map(|n| n.as_str());
    let has_runtime = instrumentation_marker(exports, global_names).is_some();
    let ours_version = scan
        .producers
        .iter()
        .find(|(name, _)| name == OUR_PRODUCER)
        .map(|(_, v)| v.clone());
    let our_names = scan
        .func_names
        .values()
        .any(|n| n.starts_with("__wasm_rewind_"));
    let instrumented_by = match (has_runtime, ours_version.is_some() || our_names) {
        (false, _) => None,
        (true, true) => Some("wasm-rewind".to_string()),
        (true, false) => Some("binaryen".to_string()),
    };
    let n_imports = scan.func_imports.len() as u32;
    let name_of = |f: u32| {
        scan.func_names.get(&f).cloned().unwrap_or_else(|| {
            if f < n_imports {
                scan.func_imports[f as usize].clone()
            } else {
                format!("${f}")
            }
        })
    };

    let (instrumented, unwinding_imports, basis) = if has_runtime {
        let (funcs, imports) = from_code(&scan);
        (
            funcs.into_iter().map(name_of).collect(),
            imports
                .into_iter()
                .map(|f| scan.func_imports[f as usize].clone())
                .collect(),
            "code",
        )
    } else {
        let (funcs, imports) = from_analysis(&info, &scans)?;
        (funcs, imports, "analysis")
    };

    let wasix_imports: Vec<String> = scan
        .func_imports
        .iter()
        .filter(|i| {
            WASIX_STACK_IMPORTS.contains(&i.as_str()) || WASIX_CONTEXT_IMPORTS.contains(&i.as_str())
        })
        .cloned()
        .collect();
    let shim = shim(&scan, &StackLayout::find(&info, &scans), wasix_imports);
    let sjlj = scan
        .global_names
        .values()
        .any(|n| n == abi::SETJMP_INVOCATIONS_GLOBAL)
        .then(|| "exceptions".to_string());
    Ok(Facts {
        instrumented_by,
        sjlj,
        wasm_rewind_version: ours_version,
        functions: Functions {
            imported: scan.func_imports.len(),
            defined: scan.defined_funcs,
            instrumented,
        },
        unwinding_imports,
        basis: basis.to_string(),
        shim,
        sizes: scan.sizes,
    })
}

/// Names a module exports or gives a global when it already carries an
/// Asyncify runtime, ours or Binaryen's, or our exceptions lowering of
/// setjmp/longjmp (whose only mark is a global's name).
const INSTRUMENTED_MARKERS: [&str; 8] = [
    abi::START_UNWIND,
    abi::STOP_UNWIND,
    abi::START_REWIND,
    abi::STOP_REWIND,
    abi::GET_STATE,
    abi::STATE_GLOBAL,
    abi::DATA_GLOBAL,
    abi::SETJMP_INVOCATIONS_GLOBAL,
];

/// The first sign that a module is already instrumented, from its export
/// names and its globals' names: the one recogniser behind `inspect`,
/// `--report` and the pass's refusal to instrument twice.
pub(crate) fn instrumentation_marker<'a>(
    mut exports: impl Iterator<Item = &'a str>,
    mut global_names: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    exports
        .find(|n| INSTRUMENTED_MARKERS.contains(n))
        .or_else(|| global_names.find(|n| INSTRUMENTED_MARKERS.contains(n)))
}

/// Instrumented functions and unwinding imports, read from the code.
fn from_code(scan: &Scan) -> (Vec<u32>, Vec<u32>) {
    let n_imports = scan.func_imports.len() as u32;
    let export_index = |name: &str| {
        scan.exports
            .iter()
            .find(|(n, k, _)| n == name && *k == ExternalKind::Func)
            .map(|(_, _, i)| *i)
    };
    // The state global: what `asyncify_get_state` returns, else by name.
    let state = export_index("asyncify_get_state")
        .and_then(|f| f.checked_sub(n_imports))
        .and_then(|d| scan.bodies.get(d as usize)?.only_global_get)
        .or_else(|| {
            scan.global_names
                .iter()
                .find(|(_, n)| n.as_str() == abi::STATE_GLOBAL)
                .map(|(g, _)| *g)
        });
    let Some(state) = state else {
        return (Vec::new(), Vec::new());
    };
    let runtime: BTreeSet<u32> = abi::CONTROL_EXPORTS
        .iter()
        .filter_map(|n| export_index(n))
        .collect();
    let is_runtime = |f: u32| {
        runtime.contains(&f)
            || scan
                .func_names
                .get(&f)
                .is_some_and(|n| n.starts_with("__wasm_rewind_") || n.starts_with("asyncify_"))
    };
    let mut funcs = Vec::new();
    let mut imports = BTreeSet::new();
    for (d, body) in scan.bodies.iter().enumerate() {
        let f = n_imports + d as u32;
        if is_runtime(f) || !body.globals.contains(&state) {
            continue;
        }
        funcs.push(f);
        for (callee, next) in &body.calls {
            if *callee < n_imports && next.contains(&state) {
                imports.insert(*callee);
            }
        }
    }
    (funcs, imports.into_iter().collect())
}

/// Instrumented functions and unwinding imports as the pass would decide them
/// with default options.
fn from_analysis(
    info: &module_info::ModuleInfo<'_>,
    scans: &[analysis::scan::FunctionScan],
) -> Result<(Vec<String>, Vec<String>)> {
    let analysis = analysis::unwind::analyze(info, scans, &Options::default())?;
    let n_imports = info.num_imported_funcs();
    let funcs = (n_imports..info.num_funcs())
        .filter(|&f| analysis.instrumented[f as usize])
        .map(|f| info.func_display_name(f))
        .collect();
    Ok((funcs, crate::unwinding_imports(info, &analysis)))
}

/// What an exported name is, as far as a stack host cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportShape {
    /// A function.
    Func,
    /// A memory.
    Memory,
    /// A global, and whether it is mutable.
    Global {
        /// Whether it is mutable.
        mutable: bool,
    },
    /// A table, tag or anything else.
    Other,
}

/// Something the WASIX stack shim needs from a module that calls the stack
/// functions, and that it lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShimRequirement {
    /// It is not instrumented: it lacks this control export.
    Instrumented {
        /// The first of [`abi::CONTROL_EXPORTS`] it does not export.
        missing: &'static str,
    },
    /// It does not export its memory as `memory`.
    MemoryExport,
    /// It does not export `__stack_pointer` as a mutable global.
    StackPointerExport,
}

impl ShimRequirement {
    /// The export that is missing.
    pub fn export(&self) -> &'static str {
        match self {
            ShimRequirement::Instrumented { missing } => missing,
            ShimRequirement::MemoryExport => "memory",
            ShimRequirement::StackPointerExport => "__stack_pointer",
        }
    }

    /// Why the shim needs it and how to get it.
    pub fn hint(&self) -> &'static str {
        match self {
            ShimRequirement::Instrumented { .. } => {
                "not instrumented: run `wasm-rewind instrument` on it (it also exports \
                 __stack_pointer and the stack bounds it finds)"
            }
            ShimRequirement::MemoryExport => {
                "the shim reads the jmp_buf and the stack through the memory exported as `memory`"
            }
            ShimRequirement::StackPointerExport => {
                "instrument the original with `wasm-rewind instrument` (it exports \
                 `__stack_pointer`, found by name or from function prologues), or link with \
                 -Wl,--export=__stack_pointer"
            }
        }
    }
}

/// The first thing the shim needs that a module calling the WASIX stack
/// functions lacks, judged from its exports (`export(name)` says what the
/// module exports under `name`). `None` when it has everything. The one rule
/// for `inspect`, `--report` and the shim's check before a module runs.
pub fn unmet_shim_requirement(
    export: impl Fn(&str) -> Option<ExportShape>,
) -> Option<ShimRequirement> {
    if let Some(missing) = abi::CONTROL_EXPORTS
        .iter()
        .find(|n| export(n) != Some(ExportShape::Func))
    {
        return Some(ShimRequirement::Instrumented { missing });
    }
    if export("memory") != Some(ExportShape::Memory) {
        return Some(ShimRequirement::MemoryExport);
    }
    if export("__stack_pointer") != Some(ExportShape::Global { mutable: true }) {
        return Some(ShimRequirement::StackPointerExport);
    }
    None
}

/// What the shim needs, and what is missing.
fn shim(scan: &Scan, stack: &StackLayout, wasix_imports: Vec<String>) -> Shim {
    let shape = |name: &str| scan.export_shape(name);
    let exported_global = |name: &str| matches!(shape(name), Some(ExportShape::Global { .. }));
    let stack_pointer = match stack.pointer.map(|p| p.found_by) {
        Some(FoundBy::Export) => "exported",
        Some(FoundBy::NameSection) => "name-section",
        Some(FoundBy::Prologue) => "prologue",
        None => "missing",
    };
    let memory_exported = shape("memory") == Some(ExportShape::Memory);
    let buffer = if shape(abi::SECONDARY_MEMORY_EXPORT) == Some(ExportShape::Memory) {
        abi::SECONDARY_MEMORY_EXPORT
    } else {
        "memory0"
    };
    let stack_bottom = if exported_global("__stack_low") {
        "__stack_low"
    } else if exported_global("__data_end") {
        "__data_end"
    } else {
        "missing"
    };
    let mut problems = Vec::new();
    let mut wasmer_problems = Vec::new();
    if !wasix_imports.is_empty() {
        if let Some(unmet) = unmet_shim_requirement(shape) {
            problems.push(match unmet {
                ShimRequirement::Instrumented { .. } => unmet.hint().to_string(),
                _ => format!("`{}` is not exported: {}", unmet.export(), unmet.hint()),
            });
        }
        if buffer == abi::SECONDARY_MEMORY_EXPORT {
            wasmer_problems.push(format!(
                "Wasmer: the unwind buffer is in `asyncify_memory`, but Wasmer writes it in \
                 memory 0: instrument without {}",
                crate::OptionName::SecondaryMemory
            ));
        }
        if stack_bottom == "missing" {
            wasmer_problems.push(
                "Wasmer: it cannot tell where the C stack begins and would unwind from \
                 address 0: link with -Wl,--export=__stack_low (wasm-rewind instrument \
                 exports it, and derives it when the stack comes first)"
                    .to_string(),
            );
        }
    }
    let ready = problems.is_empty();
    let wasmer_ready = ready && wasmer_problems.is_empty();
    problems.extend(wasmer_problems);
    Shim {
        ready,
        wasmer_ready,
        wasix_imports,
        stack_pointer: stack_pointer.to_string(),
        memory_exported,
        buffer: buffer.to_string(),
        stack_bottom: stack_bottom.to_string(),
        // Only where Wasmer finds the bottom too (by export).
        c_stack_bytes: stack.size().filter(|_| stack_bottom != "missing"),
        problems,
    }
}

/// One pass over the module's sections.
fn scan(wasm: &[u8]) -> Result<Scan> {
    let mut s = Scan::default();
    s.sizes.total = wasm.len();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => s
                            .func_imports
                            .push(format!("{}.{}", import.module, import.name)),
                        TypeRef::Global(g) => s.global_mutable.push(g.mutable),
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => s.defined_funcs = reader.count() as usize,
            Payload::GlobalSection(reader) => {
                for global in reader {
                    s.global_mutable.push(global?.ty.mutable);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let e = export?;
                    s.exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::CodeSectionStart { size, .. } => s.sizes.code = size as usize,
            Payload::CodeSectionEntry(body) => s.bodies.push(read_body(&body)?),
            Payload::DataSection(reader) => s.sizes.data = reader.range().len(),
            Payload::CustomSection(c) => {
                s.sizes.custom += c.range().len();
                s.sizes
                    .custom_sections
                    .push((c.name().to_string(), c.data().len()));
                match c.as_known() {
                    KnownCustom::Name(names) => {
                        for name in names.into_iter().flatten() {
                            let (map, into) = match name {
                                Name::Function(m) => (m, &mut s.func_names),
                                Name::Global(m) => (m, &mut s.global_names),
                                _ => continue,
                            };
                            for n in map.into_iter().flatten() {
                                into.insert(n.index, n.name.to_string());
                            }
                        }
                    }
                    KnownCustom::Producers(fields) => {
                        for field in fields.into_iter().flatten() {
                            if field.name != "processed-by" {
                                continue;
                            }
                            for v in field.values.into_iter().flatten() {
                                s.producers
                                    .push((v.name.to_string(), v.version.to_string()));
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The globals a body touches and what follows each of its calls.
fn read_body(body: &wasmparser::FunctionBody<'_>) -> Result<Body> {
    let ops: Vec<Operator<'_>> = body
        .get_operators_reader()?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut b = Body::default();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Operator::GlobalGet { global_index } | Operator::GlobalSet { global_index } => {
                b.globals.insert(*global_index);
            }
            Operator::Call { function_index } => {
                let next = ops[i + 1..]
                    .iter()
                    .take(STATE_TEST_WINDOW)
                    .take_while(|op| !matches!(op, Operator::Call { .. }))
                    .filter_map(|op| match op {
                        Operator::GlobalGet { global_index } => Some(*global_index),
                        _ => None,
                    })
                    .collect();
                b.calls.push((*function_index, next));
            }
            _ => {}
        }
    }
    if let [Operator::GlobalGet { global_index }, Operator::End] = ops.as_slice() {
        b.only_global_get = Some(*global_index);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C-like module that calls `stack_checkpoint`, with its stack pointer
    /// `mutability` and its memory exported or not.
    fn module(mutability: &str, export_memory: bool) -> Vec<u8> {
        let memory = if export_memory {
            "(export \"memory\")"
        } else {
            ""
        };
        wat::parse_str(format!(
            r#"(module
              (import "wasix_32v1" "stack_checkpoint" (func $cp (param i32 i32) (result i32)))
              (memory {memory} 1)
              (global $sp (export "__stack_pointer") {mutability} (i32.const 4096))
              (global (export "__stack_low") i32 (i32.const 1024))
              (func (export "_start") (drop (call $cp (i32.const 0) (i32.const 0)))))"#
        ))
        .unwrap()
    }

    fn unmet(wasm: &[u8]) -> Option<ShimRequirement> {
        let facts = inspect(wasm).unwrap();
        let unmet = facts.shim.problems.first().cloned();
        let scan = scan(wasm).unwrap();
        let rule = unmet_shim_requirement(|name| scan.export_shape(name));
        assert_eq!(facts.shim.ready, rule.is_none(), "{unmet:?} vs {rule:?}");
        rule
    }

    /// The stack pointer is found as the pass finds it, also with no name
    /// and no export: from the prologues that lower it.
    #[test]
    fn stack_pointer_found_from_prologues() {
        let wasm = wat::parse_str(
            r#"(module
              (memory 1)
              (global (mut i32) (i32.const 65536))
              (func (export "f")
                (global.set 0 (i32.sub (global.get 0) (i32.const 16)))
                (global.set 0 (i32.add (global.get 0) (i32.const 16)))))"#,
        )
        .unwrap();
        assert_eq!(inspect(&wasm).unwrap().shim.stack_pointer, "prologue");
        let named = wat::parse_str(
            r#"(module (memory 1) (global $__stack_pointer (mut i32) (i32.const 65536)))"#,
        )
        .unwrap();
        assert_eq!(inspect(&named).unwrap().shim.stack_pointer, "name-section");
    }

    #[test]
    fn shim_requirements_in_order() {
        let plain = module("(mut i32)", true);
        assert_eq!(
            unmet(&plain),
            Some(ShimRequirement::Instrumented {
                missing: abi::START_UNWIND
            })
        );
        let done = |wasm: &[u8]| crate::instrument(wasm, &Options::default()).unwrap().wasm;
        assert_eq!(unmet(&done(&plain)), None);
        let facts = inspect(&done(&plain)).unwrap();
        assert!(facts.shim.wasmer_ready, "{:?}", facts.shim.problems);
        assert_eq!(facts.instrumented_by.as_deref(), Some("wasm-rewind"));
        assert_eq!(facts.unwinding_imports, ["wasix_32v1.stack_checkpoint"]);
        assert_eq!(
            unmet(&done(&module("(mut i32)", false))),
            Some(ShimRequirement::MemoryExport)
        );
        // An immutable `__stack_pointer` cannot be the stack pointer the shim
        // moves back on a restore. (`instrument` refuses it for a WASIX host
        // unless the buffer has a memory of its own.)
        let secondary = Options {
            secondary_memory: Some(1),
            ..Options::default()
        };
        let immutable = crate::instrument(&module("i32", true), &secondary).unwrap();
        assert_eq!(
            unmet(&immutable.wasm),
            Some(ShimRequirement::StackPointerExport)
        );
    }
}
