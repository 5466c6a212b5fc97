//! Building a differential test case: a wasm-smith module, the options it is
//! instrumented with, where the unwind buffer lives, and which imports may be
//! unwound at (see `oracle.rs` for how a case is judged).
//!
//! - [`generate`]: wasm-smith builds a module whose imports are picked from
//!   [`IMPORTS_WAT`] (functions with number types only, so the host can answer
//!   every call from its arguments), which exports everything, and which ends
//!   every loop and call chain by a fuel global (`ensure_termination`); a name
//!   section names every function `f<index>`; half the time its tables are
//!   not exported, so the pass narrows indirect calls by their contents;
//!   reference types, GC types, exceptions, SIMD, tail calls and 64-bit
//!   memories come and go with the bytes. The options are drawn from the
//!   same bytes: an import list, add and remove lists, `ignore_indirect`,
//!   `asserts`, `export_globals`, `import_globals`, and where the `{pos, end}`
//!   buffer lives (a secondary memory, or a memory appended to the module that
//!   its code never touches, 32- or 64-bit, named by index or by export name;
//!   `{pos, end}` at an 8-aligned address or, now and then, an unaligned one).
//! - [`unwindable_imports`]: which imports may be unwound at under those
//!   options, computed from the module (never from the pass).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use wasm_encoder::reencode::Reencode;
use wasm_rewind_transform::Options;

use crate::common::Buffer;

/// The function imports a generated module may pick from. Every one has number
/// types only; several results and no results are both represented.
pub const IMPORTS_WAT: &str = r#"(module
  (import "env" "tick" (func))
  (import "env" "ask" (func (param i32) (result i32)))
  (import "env" "wide" (func (param i64 i32) (result i64)))
  (import "env" "real" (func (param f32) (result f32)))
  (import "env" "mix" (func (param f64 i64) (result f64)))
  (import "env" "pair" (func (param i32) (result i32 i64)))
  (import "env" "many" (func (param i32 i64 f32 f64) (result f64 f32 i32)))
  (import "env" "sink" (func (param i64 i64)))
)"#;

/// Fuel of the global that `ensure_termination` adds (one of these per case):
/// every function entry and loop iteration costs one, so runs stay short and
/// call chains shallow, or, now and then, long and deep.
const SMITH_FUEL: [u32; 4] = [50, 400, 400, 1500];

/// Pages of the memory holding the unwind buffer.
const BUFFER_PAGES: u32 = 16;

/// When import calls unwind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never: the instrumented module must behave as the original.
    Never,
    /// At every call of an import that may unwind.
    Every,
    /// At the calls of such imports a hash of this seed and the call's number
    /// selects.
    Subset(u64),
}

/// One generated test case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The original module (with the appended buffer memory, if any).
    pub wasm: Vec<u8>,
    /// The options it is instrumented with.
    pub options: Options,
    /// Where the unwind buffer lives.
    pub buffer: Buffer,
    /// The unwinding modes to run.
    pub modes: Vec<Mode>,
    /// Seed of the argument values.
    pub args_seed: u64,
}

impl Case {
    /// The options and buffer in words, for reports.
    pub fn describe(&self) -> String {
        let o = &self.options;
        let mut s = String::new();
        if let Some(list) = &o.imports {
            let _ = write!(s, "imports={list:?} ");
        }
        for (on, name) in [
            (o.ignore_indirect, "ignore_indirect"),
            (o.asserts, "asserts"),
            (o.export_globals, "export_globals"),
            (o.import_globals, "import_globals"),
            (o.propagate_add, "propagate_add"),
        ] {
            if on {
                let _ = write!(s, "{name} ");
            }
        }
        if !o.add.is_empty() {
            let _ = write!(s, "add={:?} ", o.add);
        }
        if !o.remove.is_empty() {
            let _ = write!(s, "remove={:?} ", o.remove);
        }
        match (&o.secondary_memory, &o.memory) {
            (Some(p), _) => {
                let _ = write!(s, "secondary_memory={p}");
            }
            (None, Some(m)) => {
                let _ = write!(
                    s,
                    "memory={m} ({}-bit, export `{}`)",
                    if self.buffer.wide { 64 } else { 32 },
                    self.buffer.memory
                );
            }
            (None, None) => s.push_str("memory 0"),
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Generating
// ---------------------------------------------------------------------------

fn imports_module() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| wat::parse_str(IMPORTS_WAT).expect("IMPORTS_WAT parses"))
}

/// Builds a case from bytes. Errors only when the bytes cannot make a module
/// (wasm-smith's own refusals); such input is not a test case.
pub fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<Case> {
    let reference_types = u.ratio(1, 3)?;
    let config = wasm_smith::Config {
        available_imports: Some(imports_module().to_vec()),
        max_imports: 8,
        min_funcs: 6,
        max_funcs: 16,
        max_types: 10,
        max_instructions: if u.ratio(1, 4)? { 400 } else { 150 },
        max_globals: 6,
        max_tags: 3,
        max_data_segments: 3,
        max_element_segments: 3,
        max_elements: 12,
        max_memories: u.int_in_range(1..=3)?,
        memory64_enabled: u.arbitrary()?,
        max_memory32_bytes: 2 << 16,
        max_memory64_bytes: 2 << 16,
        memory_max_size_required: true,
        max_tables: if reference_types { 2 } else { 1 },
        max_table_elements: 16,
        table_max_size_required: true,
        reference_types_enabled: reference_types,
        bulk_memory_enabled: true,
        multi_value_enabled: true,
        simd_enabled: u.ratio(1, 3)?,
        relaxed_simd_enabled: false,
        exceptions_enabled: u.ratio(1, 3)?,
        tail_call_enabled: u.arbitrary()?,
        gc_enabled: reference_types && u.ratio(1, 3)?,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        custom_descriptors_enabled: false,
        export_everything: true,
        disallow_traps: u.ratio(2, 3)?,
        ..wasm_smith::Config::default()
    };
    let mut module = wasm_smith::Module::new(config, u)?;
    module
        .ensure_termination(*u.choose(&SMITH_FUEL)?)
        .map_err(|_| arbitrary::Error::IncorrectFormat)?;
    let mut wasm = module.to_bytes();
    if u.arbitrary()? {
        // Unexported tables hold only what the module puts there, so the pass
        // narrows indirect calls by their contents.
        wasm = drop_table_exports(&wasm);
    }
    let n_funcs = add_function_names(&mut wasm);

    let mut options = Options::default();
    let names = import_names(&wasm);
    if !names.is_empty() && u.ratio(1, 3)? {
        let mut list = Vec::new();
        for name in &names {
            if u.arbitrary()? {
                list.push(name.clone());
            }
        }
        if u.ratio(1, 4)? {
            // A wildcard for the imports whose name starts like the first one.
            let first = &names[0];
            list.push(format!("{}*", &first[..first.len().min(5)]));
        }
        options.imports = Some(list);
    }
    options.ignore_indirect = u.ratio(1, 4)?;
    let n_imports = names.len() as u32;
    if n_funcs > n_imports && u.ratio(1, 4)? {
        for f in n_imports..n_funcs {
            match u.int_in_range(0..=5)? {
                0 => options.add.push(function_name(f)),
                1 => options.remove.push(function_name(f)),
                _ => {}
            }
        }
        options.propagate_add = u.arbitrary()?;
    }
    options.import_globals = u.ratio(1, 6)?;
    options.asserts = u.ratio(1, 3)?;
    options.export_globals = u.ratio(1, 4)?;

    let buffer = if u.arbitrary()? {
        options.secondary_memory = Some(BUFFER_PAGES);
        Buffer {
            memory: "asyncify_memory".into(),
            ptr: buffer_address(u)?,
            size: 0,
            wide: false,
        }
    } else {
        let wide = u.arbitrary()?;
        let export = unique_export_name(&wasm, "rewind_buffer");
        let (with_memory, index) = append_memory(&wasm, wide, &export);
        wasm = with_memory;
        options.memory = Some(if u.arbitrary()? {
            index.to_string()
        } else {
            export.clone()
        });
        Buffer {
            memory: export,
            ptr: buffer_address(u)?,
            size: 0,
            wide,
        }
    };
    let buffer = Buffer {
        size: BUFFER_PAGES as u64 * 65536 - buffer.ptr - buffer.header(),
        ..buffer
    };
    let modes = vec![Mode::Never, Mode::Every, Mode::Subset(u.arbitrary()?)];
    Ok(Case {
        wasm,
        options,
        buffer,
        modes,
        args_seed: u.arbitrary()?,
    })
}

/// `module.name` of every function import, in index order.
fn import_names(wasm: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::ImportSection(reader)) = payload {
            for imp in reader.into_imports().flatten() {
                if matches!(imp.ty, wasmparser::TypeRef::Func(_)) {
                    names.push(format!("{}.{}", imp.module, imp.name));
                }
            }
        }
    }
    names
}

/// Where `{pos, end}` goes: usually 8-aligned, sometimes not (the ABI does
/// not ask for alignment).
fn buffer_address(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    let slot = u.int_in_range(0..=64u64)?;
    Ok(if u.ratio(1, 4)? {
        slot * 8 + u.int_in_range(1..=7u64)?
    } else {
        slot * 8
    })
}

/// The module without its table exports.
fn drop_table_exports(wasm: &[u8]) -> Vec<u8> {
    struct Drop;
    impl Reencode for Drop {
        type Error = std::convert::Infallible;

        fn parse_export(
            &mut self,
            exports: &mut wasm_encoder::ExportSection,
            export: wasmparser::Export<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            if export.kind == wasmparser::ExternalKind::Table {
                return Ok(());
            }
            wasm_encoder::reencode::utils::parse_export(self, exports, export)
        }
    }
    let mut module = wasm_encoder::Module::new();
    Drop.parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .expect("wasm-smith output re-encodes");
    module.finish()
}

/// Appends a name section naming every function `f<index>` (the add and
/// remove lists match names); returns the number of functions.
fn add_function_names(wasm: &mut Vec<u8>) -> u32 {
    let mut count = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::ImportSection(reader)) => {
                for imp in reader.into_imports().flatten() {
                    if matches!(imp.ty, wasmparser::TypeRef::Func(_)) {
                        count += 1;
                    }
                }
            }
            Ok(wasmparser::Payload::FunctionSection(reader)) => count += reader.count(),
            _ => {}
        }
    }
    let mut map = wasm_encoder::NameMap::new();
    for f in 0..count {
        map.append(f, &function_name(f));
    }
    let mut names = wasm_encoder::NameSection::new();
    names.functions(&map);
    let mut section = wasm_encoder::Module::new();
    section.section(&names);
    wasm.extend_from_slice(&section.finish()[8..]);
    count
}

/// Names of the exports that are function imports passed through.
pub fn reexported_imports(wasm: &[u8]) -> HashSet<String> {
    let n_imports = import_names(wasm).len() as u32;
    let mut names = HashSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::ExportSection(reader)) = payload {
            for e in reader.into_iter().flatten() {
                if e.kind == wasmparser::ExternalKind::Func && e.index < n_imports {
                    names.insert(e.name.to_string());
                }
            }
        }
    }
    names
}

fn unique_export_name(wasm: &[u8], base: &str) -> String {
    let taken: HashSet<String> = exports_of(wasm).into_iter().collect();
    (0..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken.contains(n))
        .expect("some name is free")
}

fn exports_of(wasm: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::ExportSection(reader)) = payload {
            names.extend(reader.into_iter().flatten().map(|e| e.name.to_string()));
        }
    }
    names
}

/// Appends a memory of [`BUFFER_PAGES`] pages (64-bit when `wide`) exported as
/// `export`; returns the module and the memory's index. The module's code
/// cannot name it (its index is past every memory the code was built with).
fn append_memory(wasm: &[u8], wide: bool, export: &str) -> (Vec<u8>, u32) {
    struct Append<'a> {
        ty: wasm_encoder::MemoryType,
        export: &'a str,
        memories: u32,
        memory_done: bool,
        export_done: bool,
    }
    fn rank(id: wasm_encoder::SectionId) -> u8 {
        use wasm_encoder::SectionId as S;
        match id {
            S::Type => 0,
            S::Import => 1,
            S::Function => 2,
            S::Table => 3,
            S::Memory => 4,
            S::Tag => 5,
            S::Global => 6,
            S::Export => 7,
            S::Start => 8,
            S::Element => 9,
            S::DataCount => 10,
            S::Code => 11,
            S::Data => 12,
            _ => 13,
        }
    }
    impl Reencode for Append<'_> {
        type Error = std::convert::Infallible;

        fn parse_import_section(
            &mut self,
            imports: &mut wasm_encoder::ImportSection,
            section: wasmparser::ImportSectionReader<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            for imp in section.clone().into_imports().flatten() {
                if matches!(imp.ty, wasmparser::TypeRef::Memory(_)) {
                    self.memories += 1;
                }
            }
            wasm_encoder::reencode::utils::parse_import_section(self, imports, section)
        }

        fn parse_memory_section(
            &mut self,
            memories: &mut wasm_encoder::MemorySection,
            section: wasmparser::MemorySectionReader<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            self.memories += section.count();
            wasm_encoder::reencode::utils::parse_memory_section(self, memories, section)?;
            memories.memory(self.ty);
            self.memories += 1;
            self.memory_done = true;
            Ok(())
        }

        fn parse_export_section(
            &mut self,
            exports: &mut wasm_encoder::ExportSection,
            section: wasmparser::ExportSectionReader<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
            exports.export(
                self.export,
                wasm_encoder::ExportKind::Memory,
                self.memories - 1,
            );
            self.export_done = true;
            Ok(())
        }

        fn intersperse_section_hook(
            &mut self,
            module: &mut wasm_encoder::Module,
            _after: Option<wasm_encoder::SectionId>,
            before: Option<wasm_encoder::SectionId>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            let past = |id| before.is_none_or(|b| rank(b) > rank(id));
            if !self.memory_done && past(wasm_encoder::SectionId::Memory) {
                let mut s = wasm_encoder::MemorySection::new();
                s.memory(self.ty);
                module.section(&s);
                self.memories += 1;
                self.memory_done = true;
            }
            if !self.export_done && past(wasm_encoder::SectionId::Export) {
                let mut s = wasm_encoder::ExportSection::new();
                s.export(
                    self.export,
                    wasm_encoder::ExportKind::Memory,
                    self.memories - 1,
                );
                module.section(&s);
                self.export_done = true;
            }
            Ok(())
        }
    }
    let ty = wasm_encoder::MemoryType {
        minimum: BUFFER_PAGES as u64,
        maximum: Some(BUFFER_PAGES as u64),
        memory64: wide,
        shared: false,
        page_size_log2: None,
    };
    let mut r = Append {
        ty,
        export,
        memories: 0,
        memory_done: false,
        export_done: false,
    };
    let mut module = wasm_encoder::Module::new();
    r.parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .expect("wasm-smith output re-encodes");
    assert!(r.memory_done && r.export_done, "buffer memory appended");
    (module.finish(), r.memories - 1)
}

// ---------------------------------------------------------------------------
// Which imports may unwind
// ---------------------------------------------------------------------------

/// For every function import (by index): whether an unwind may start there
/// under `options`. Computed from the module alone: the import must be listed
/// (or no list given); under `ignore_indirect` no function a table or a
/// funcref can hold may reach it by direct calls (an indirect call would be on
/// the way); and no function in the remove list may reach it at all.
pub fn unwindable_imports(wasm: &[u8], options: &Options) -> Vec<bool> {
    let names = import_names(wasm);
    let n_imports = names.len();
    let graph = CallGraph::of(wasm, n_imports);
    let behind_indirect = if options.ignore_indirect {
        graph.reach(graph.addressed.iter().copied(), false)
    } else {
        vec![false; graph.len()]
    };
    let removed: Vec<u32> = (0..graph.len() as u32)
        .filter(|&f| {
            let name = function_name(f);
            f as usize >= n_imports
                && options
                    .remove
                    .iter()
                    .any(|p| wasm_rewind_transform::wildcard_match(p, &name))
        })
        .collect();
    let behind_removed = graph.reach(removed.into_iter(), true);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let listed = match &options.imports {
                None => true,
                Some(list) => list
                    .iter()
                    .any(|p| wasm_rewind_transform::wildcard_match(p, name)),
            };
            listed && !options.ignore_imports && !behind_indirect[i] && !behind_removed[i]
        })
        .collect()
}

/// The name [`generate`] gives function `f` in the name section.
pub fn function_name(f: u32) -> String {
    format!("f{f}")
}

/// Direct calls, indirect calls and address-taken functions of a module.
struct CallGraph {
    n_imports: usize,
    /// Per defined function: its direct callees.
    callees: Vec<Vec<u32>>,
    /// Per defined function: whether it makes an indirect call.
    indirect: Vec<bool>,
    /// Functions a table or a funcref value can hold.
    addressed: Vec<u32>,
}

impl CallGraph {
    fn of(wasm: &[u8], n_imports: usize) -> CallGraph {
        let mut g = CallGraph {
            n_imports,
            callees: Vec::new(),
            indirect: Vec::new(),
            addressed: Vec::new(),
        };
        let note_const = |expr: &wasmparser::ConstExpr<'_>, out: &mut Vec<u32>| {
            let mut ops = expr.get_operators_reader();
            while let Ok(op) = ops.read() {
                if let wasmparser::Operator::RefFunc { function_index } = op {
                    out.push(function_index);
                }
            }
        };
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            let Ok(payload) = payload else { break };
            match payload {
                wasmparser::Payload::ElementSection(reader) => {
                    for elem in reader.into_iter().flatten() {
                        match elem.items {
                            wasmparser::ElementItems::Functions(fs) => {
                                g.addressed.extend(fs.into_iter().flatten())
                            }
                            wasmparser::ElementItems::Expressions(_, es) => {
                                for e in es.into_iter().flatten() {
                                    note_const(&e, &mut g.addressed);
                                }
                            }
                        }
                    }
                }
                wasmparser::Payload::GlobalSection(reader) => {
                    for gl in reader.into_iter().flatten() {
                        note_const(&gl.init_expr, &mut g.addressed);
                    }
                }
                wasmparser::Payload::TableSection(reader) => {
                    for t in reader.into_iter().flatten() {
                        if let wasmparser::TableInit::Expr(e) = t.init {
                            note_const(&e, &mut g.addressed);
                        }
                    }
                }
                wasmparser::Payload::CodeSectionEntry(body) => {
                    use wasmparser::Operator as O;
                    let mut calls = Vec::new();
                    let mut indirect = false;
                    if let Ok(mut ops) = body.get_operators_reader() {
                        while let Ok(op) = ops.read() {
                            match op {
                                O::Call { function_index } | O::ReturnCall { function_index } => {
                                    calls.push(function_index)
                                }
                                O::RefFunc { function_index } => g.addressed.push(function_index),
                                O::CallIndirect { .. }
                                | O::ReturnCallIndirect { .. }
                                | O::CallRef { .. }
                                | O::ReturnCallRef { .. } => indirect = true,
                                _ => {}
                            }
                        }
                    }
                    g.callees.push(calls);
                    g.indirect.push(indirect);
                }
                _ => {}
            }
        }
        g
    }

    fn len(&self) -> usize {
        self.n_imports + self.callees.len()
    }

    /// The functions reachable from `from` (included) by direct calls, and by
    /// indirect calls too when `indirect` (which may reach any addressed
    /// function).
    fn reach(&self, from: impl Iterator<Item = u32>, indirect: bool) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut work: Vec<u32> = from.collect();
        let mut addressed_added = false;
        while let Some(f) = work.pop() {
            match seen.get_mut(f as usize) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            let Some(d) = (f as usize).checked_sub(self.n_imports) else {
                continue;
            };
            work.extend(self.callees[d].iter().copied());
            if indirect && self.indirect[d] && !addressed_added {
                addressed_added = true;
                work.extend(self.addressed.iter().copied());
            }
        }
        seen
    }
}
