//! Emit phase: write the output module.
//!
//! Built on wasm-encoder's `Reencode`, which copies every section while letting
//! us renumber functions (the `asyncify.*` imports disappear) and globals (the
//! state globals may be imported), and append what the pass adds to the type,
//! import, function, memory, global, export and code sections. Sections the
//! input lacks are created at their place in the section order.

use crate::instrument::runtime::AddedFunction;
use crate::instrument::{Ctx, Remap};
use crate::module_info::ModuleInfo;
use std::collections::HashMap;
use std::convert::Infallible;
use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, FunctionSection, GlobalSection,
    GlobalType, ImportSection, MemorySection, MemoryType, Module, NameMap, NameSection, RefType,
    SectionId, TableSection, TableType, TagKind, TagSection, TagType, TypeSection,
    ValType as EncType,
};

/// What the pass adds to the module, besides rewritten bodies.
pub struct Additions<'a> {
    /// The added functions, in index order.
    pub funcs: Vec<AddedFunction>,
    /// Rewritten bodies per defined function (`None`: copy).
    pub bodies: &'a [Option<Vec<u8>>],
    /// Extra exports: name, kind, index in the output.
    pub exports: Vec<(String, ExportKind, u32)>,
    /// Import the state globals instead of defining them.
    pub import_globals: bool,
    /// A secondary memory of this many pages for the buffer.
    pub secondary_memory: Option<u32>,
    /// Whether function imports were removed (indices shift).
    pub renumbered: bool,
    /// Per input function: removed `asyncify.*` import.
    pub removed: Vec<bool>,
    /// Custom sections dropped (filled while writing).
    pub dropped: Vec<String>,
    /// `--embed-runtime`: exported (or start) functions, by input index, whose
    /// export names the wrapper at this output index instead.
    pub entry_wrappers: HashMap<u32, u32>,
    /// Globals defined after the two state globals (the embedded runtime's,
    /// then `__stack_low` when the pass derives it); see `Ctx::extra_global`.
    pub extra_globals: Vec<ExtraGlobal>,
    /// Add the grow hook's table (after the input's tables) for the host.
    pub grow_hook: bool,
    /// Tags to append, by type index (an exceptions lowering's longjmp tag).
    pub tags: Vec<u32>,
}

/// A global the pass defines after the two state globals.
pub struct ExtraGlobal {
    /// Its name in the name section.
    pub name: String,
    /// Its type.
    pub ty: GlobalType,
    /// Its initializer.
    pub init: ConstExpr,
}

impl ExtraGlobal {
    /// An immutable address-typed constant.
    pub fn constant(name: &str, memory64: bool, value: u64) -> ExtraGlobal {
        let (val_type, init) = if memory64 {
            (EncType::I64, ConstExpr::i64_const(value as i64))
        } else {
            (EncType::I32, ConstExpr::i32_const(value as u32 as i32))
        };
        ExtraGlobal {
            name: name.to_string(),
            ty: GlobalType {
                val_type,
                mutable: false,
                shared: false,
            },
            init,
        }
    }
}

struct Writer<'c, 'a> {
    ctx: &'c Ctx<'c>,
    info: &'c ModuleInfo<'a>,
    add: Additions<'c>,
    /// Sections written so far, to create missing ones in the right place.
    written: Vec<SectionId>,
    saw_names: bool,
}

/// Writes the output module.
pub fn write(ctx: &Ctx<'_>, info: &ModuleInfo<'_>, add: Additions<'_>) -> (Vec<u8>, Vec<String>) {
    let mut w = Writer {
        ctx,
        info,
        add,
        written: Vec::new(),
        saw_names: false,
    };
    let mut module = Module::new();
    w.parse_core_module(&mut module, wasmparser::Parser::new(0), info.wasm)
        .expect("the input was validated; re-encoding it cannot fail");
    if !w.saw_names {
        let names = w.names(None);
        module.section(&names);
    }
    if !info.custom_sections.iter().any(|n| n == "producers") {
        module.section(&producers(None));
    }
    (module.finish(), w.add.dropped)
}

/// The tool conventions' `producers` section with `processed-by: wasm-rewind
/// <version>` added to the input's fields (kept), so `wasm-rewind inspect` can
/// tell our output from Binaryen's.
fn producers(
    input: Option<wasmparser::ProducersSectionReader<'_>>,
) -> wasm_encoder::ProducersSection {
    let ours = ("wasm-rewind", env!("CARGO_PKG_VERSION"));
    let mut fields: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for field in input.into_iter().flatten().flatten() {
        let values = field
            .values
            .into_iter()
            .flatten()
            .map(|v| (v.name.to_string(), v.version.to_string()))
            .filter(|(name, _)| name != ours.0)
            .collect();
        fields.push((field.name.to_string(), values));
    }
    match fields.iter_mut().find(|(name, _)| name == "processed-by") {
        Some((_, values)) => values.push((ours.0.into(), ours.1.into())),
        None => fields.push(("processed-by".into(), vec![(ours.0.into(), ours.1.into())])),
    }
    let mut section = wasm_encoder::ProducersSection::new();
    for (name, values) in &fields {
        let mut field = wasm_encoder::ProducersField::new();
        for (n, v) in values {
            field.value(n, v);
        }
        section.field(name, &field);
    }
    section
}

/// Position of a section in the required order (tags and data count are out
/// of numeric order).
fn rank(id: SectionId) -> u8 {
    match id {
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
        _ => 0,
    }
}

impl<'c, 'a> Writer<'c, 'a> {
    fn remap(&self) -> Remap<'c> {
        self.ctx.remap()
    }

    fn enc_addr(&self) -> EncType {
        if self.ctx.memory64 {
            EncType::I64
        } else {
            EncType::I32
        }
    }

    fn state_global_types(&self) -> [GlobalType; 2] {
        let g = |val_type| GlobalType {
            val_type,
            mutable: true,
            shared: false,
        };
        [g(EncType::I32), g(self.enc_addr())]
    }

    fn added_types(&mut self, types: &mut TypeSection) {
        for (params, results) in &self.ctx.types.added {
            let p: Vec<EncType> = params
                .iter()
                .map(|t| self.ctx.val_type(*t).unwrap())
                .collect();
            let r: Vec<EncType> = results
                .iter()
                .map(|t| self.ctx.val_type(*t).unwrap())
                .collect();
            types.ty().function(p, r);
        }
    }

    fn added_imports(&self, imports: &mut ImportSection) {
        if self.add.import_globals {
            let [s, d] = self.state_global_types();
            imports.import("env", crate::abi::STATE_GLOBAL, EntityType::Global(s));
            imports.import("env", crate::abi::DATA_GLOBAL, EntityType::Global(d));
        }
    }

    fn added_functions(&self, funcs: &mut FunctionSection) {
        for f in &self.add.funcs {
            funcs.function(f.ty);
        }
    }

    fn added_memories(&self, mems: &mut MemorySection) {
        if let Some(pages) = self.add.secondary_memory {
            // Fixed size, as Binaryen's `asyncify-in-secondary-memory`.
            mems.memory(MemoryType {
                minimum: pages as u64,
                maximum: Some(pages as u64),
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
    }

    fn added_globals(&self, globals: &mut GlobalSection) {
        if !self.add.import_globals && self.ctx.state_globals() > 0 {
            let [s, d] = self.state_global_types();
            globals.global(s, &ConstExpr::i32_const(0));
            let zero = if self.ctx.memory64 {
                ConstExpr::i64_const(0)
            } else {
                ConstExpr::i32_const(0)
            };
            globals.global(d, &zero);
        }
        for g in &self.add.extra_globals {
            globals.global(g.ty, &g.init);
        }
    }

    fn added_tags(&self, tags: &mut TagSection) {
        for &ty in &self.add.tags {
            tags.tag(TagType {
                kind: TagKind::Exception,
                func_type_idx: ty,
            });
        }
    }

    fn added_tables(&self, tables: &mut TableSection) {
        if self.add.grow_hook {
            tables.table(TableType {
                element_type: RefType::FUNCREF,
                table64: false,
                minimum: 1,
                maximum: Some(1),
                shared: false,
            });
        }
    }

    fn added_exports(&self, exports: &mut ExportSection) {
        for (name, kind, index) in &self.add.exports {
            exports.export(name, *kind, *index);
        }
    }

    fn added_code(&self, code: &mut CodeSection) {
        for f in &self.add.funcs {
            code.raw(&f.body);
        }
    }

    /// Creates, empty but for our additions, every section that must exist and
    /// whose place lies between `after` and `before`.
    fn fill_missing(
        &mut self,
        module: &mut Module,
        after: Option<SectionId>,
        before: Option<SectionId>,
    ) {
        let lo = after.map_or(0, rank);
        let hi = before.map_or(u8::MAX, rank);
        let needed = [
            (SectionId::Type, !self.ctx.types.added.is_empty()),
            (SectionId::Import, self.add.import_globals),
            (SectionId::Function, true),
            (SectionId::Table, self.add.grow_hook),
            (SectionId::Memory, self.add.secondary_memory.is_some()),
            (SectionId::Tag, !self.add.tags.is_empty()),
            (
                SectionId::Global,
                (!self.add.import_globals && self.ctx.state_globals() > 0)
                    || !self.add.extra_globals.is_empty(),
            ),
            (SectionId::Export, true),
            (SectionId::Code, true),
        ];
        for (id, need) in needed {
            let r = rank(id);
            if !need || r <= lo || r >= hi || self.written.contains(&id) {
                continue;
            }
            self.written.push(id);
            match id {
                SectionId::Type => {
                    let mut s = TypeSection::new();
                    self.added_types(&mut s);
                    module.section(&s);
                }
                SectionId::Import => {
                    let mut s = ImportSection::new();
                    self.added_imports(&mut s);
                    module.section(&s);
                }
                SectionId::Function => {
                    let mut s = FunctionSection::new();
                    self.added_functions(&mut s);
                    module.section(&s);
                }
                SectionId::Table => {
                    let mut s = TableSection::new();
                    self.added_tables(&mut s);
                    module.section(&s);
                }
                SectionId::Memory => {
                    let mut s = MemorySection::new();
                    self.added_memories(&mut s);
                    module.section(&s);
                }
                SectionId::Tag => {
                    let mut s = TagSection::new();
                    self.added_tags(&mut s);
                    module.section(&s);
                }
                SectionId::Global => {
                    let mut s = GlobalSection::new();
                    self.added_globals(&mut s);
                    module.section(&s);
                }
                SectionId::Export => {
                    let mut s = ExportSection::new();
                    self.added_exports(&mut s);
                    module.section(&s);
                }
                SectionId::Code => {
                    let mut s = CodeSection::new();
                    self.added_code(&mut s);
                    module.section(&s);
                }
                _ => unreachable!(),
            }
        }
    }

    /// The name section: the input's names renumbered, plus the added functions
    /// and globals.
    fn names(&mut self, input: Option<wasmparser::NameSectionReader<'_>>) -> NameSection {
        let mut names = NameSection::new();
        let mut func_names = NameMap::new();
        let mut global_names = NameMap::new();
        let mut wrote_funcs = false;
        let mut wrote_globals = false;
        if let Some(reader) = input {
            for sub in reader.into_iter().flatten() {
                match sub {
                    wasmparser::Name::Module { name, .. } => names.module(name),
                    wasmparser::Name::Function(map) => {
                        for n in map.into_iter().flatten() {
                            if let Some(f) = self.mapped_func(n.index) {
                                func_names.append(f, n.name);
                            }
                        }
                        self.append_added_func_names(&mut func_names);
                        names.functions(&func_names);
                        wrote_funcs = true;
                    }
                    wasmparser::Name::Global(map) => {
                        let mut entries: Vec<(u32, String)> = map
                            .into_iter()
                            .flatten()
                            .map(|n| {
                                (
                                    self.remap().global_index(n.index).unwrap(),
                                    n.name.to_string(),
                                )
                            })
                            .collect();
                        entries.extend(self.added_global_names());
                        entries.sort_by_key(|(i, _)| *i);
                        for (i, n) in &entries {
                            global_names.append(*i, n);
                        }
                        names.globals(&global_names);
                        wrote_globals = true;
                    }
                    wasmparser::Name::Local(map) => {
                        if !wrote_funcs {
                            // Function names must come first; keep order by
                            // writing them now.
                            self.append_added_func_names(&mut func_names);
                            names.functions(&func_names);
                            wrote_funcs = true;
                        }
                        let mut locals = wasm_encoder::IndirectNameMap::new();
                        for f in map.into_iter().flatten() {
                            let Some(mapped) = self.mapped_func(f.index) else {
                                continue;
                            };
                            let mut m = NameMap::new();
                            for n in f.names.into_iter().flatten() {
                                m.append(n.index, n.name);
                            }
                            locals.append(mapped, &m);
                        }
                        names.locals(&locals);
                    }
                    // Label names index blocks in order; rewritten functions
                    // have new blocks, so their label names would be wrong.
                    wasmparser::Name::Label(map) => {
                        let mut labels = wasm_encoder::IndirectNameMap::new();
                        for f in map.into_iter().flatten() {
                            let defined = f.index.checked_sub(self.info.num_imported_funcs());
                            if defined.is_some_and(|d| {
                                self.add.bodies.get(d as usize).is_none_or(|b| b.is_some())
                            }) {
                                continue;
                            }
                            let Some(mapped) = self.mapped_func(f.index) else {
                                continue;
                            };
                            let mut m = NameMap::new();
                            for n in f.names.into_iter().flatten() {
                                m.append(n.index, n.name);
                            }
                            labels.append(mapped, &m);
                        }
                        names.labels(&labels);
                    }
                    other => {
                        let _ = self.parse_custom_name_subsection(&mut names, other);
                    }
                }
            }
        }
        if !wrote_funcs {
            self.append_added_func_names(&mut func_names);
            names.functions(&func_names);
        }
        if !wrote_globals {
            for (i, n) in self.added_global_names() {
                global_names.append(i, &n);
            }
            names.globals(&global_names);
        }
        names
    }

    /// The output index of input function `index`, or `None` when the input
    /// has no such function (a name section may name anything: engines
    /// ignore what does not fit, and so do we) or it was removed.
    fn mapped_func(&self, index: u32) -> Option<u32> {
        let removed = self
            .add
            .removed
            .get(index as usize)
            .copied()
            .unwrap_or(false);
        match self.ctx.func_map.get(index as usize) {
            Some(&f) if !removed => Some(f),
            _ => None,
        }
    }

    fn append_added_func_names(&self, map: &mut NameMap) {
        let first = self.ctx.funcs.start_unwind;
        for (i, f) in self.add.funcs.iter().enumerate() {
            map.append(first + i as u32, &f.name);
        }
    }

    fn added_global_names(&self) -> Vec<(u32, String)> {
        let mut names = Vec::new();
        if self.ctx.state_globals() > 0 {
            names.push((self.ctx.state_global, crate::abi::STATE_GLOBAL.to_string()));
            names.push((self.ctx.data_global, crate::abi::DATA_GLOBAL.to_string()));
        }
        for (i, g) in self.add.extra_globals.iter().enumerate() {
            names.push((self.ctx.extra_global(i), g.name.clone()));
        }
        names
    }
}

impl Reencode for Writer<'_, '_> {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Infallible>> {
        self.remap().function_index(func)
    }

    fn global_index(&mut self, global: u32) -> Result<u32, ReencodeError<Infallible>> {
        self.remap().global_index(global)
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<Infallible>> {
        if let Some(b) = before {
            self.fill_missing(module, after, Some(b));
            self.written.push(b);
        } else {
            self.fill_missing(module, after, None);
        }
        Ok(())
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_type_section(self, types, section)?;
        self.added_types(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        let mut func = 0usize;
        for import in section.into_imports() {
            let import = import?;
            if matches!(
                import.ty,
                wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_)
            ) {
                func += 1;
                if self.add.removed[func - 1] {
                    continue;
                }
            }
            let ty = self.entity_type(import.ty)?;
            imports.import(import.module, import.name, ty);
        }
        self.added_imports(imports);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        funcs: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_function_section(self, funcs, section)?;
        self.added_functions(funcs);
        Ok(())
    }

    fn parse_table_section(
        &mut self,
        tables: &mut TableSection,
        section: wasmparser::TableSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_table_section(self, tables, section)?;
        self.added_tables(tables);
        Ok(())
    }

    fn parse_memory_section(
        &mut self,
        mems: &mut MemorySection,
        section: wasmparser::MemorySectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_memory_section(self, mems, section)?;
        self.added_memories(mems);
        Ok(())
    }

    fn parse_tag_section(
        &mut self,
        tags: &mut TagSection,
        section: wasmparser::TagSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_tag_section(self, tags, section)?;
        self.added_tags(tags);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_global_section(self, globals, section)?;
        self.added_globals(globals);
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        let wrapper = match export.kind {
            wasmparser::ExternalKind::Func => self.add.entry_wrappers.get(&export.index),
            _ => None,
        };
        match wrapper {
            Some(&w) => {
                exports.export(export.name, ExportKind::Func, w);
            }
            None => utils::parse_export(self, exports, export)?,
        }
        Ok(())
    }

    fn start_section(&mut self, start: u32) -> Result<u32, ReencodeError<Infallible>> {
        match self.add.entry_wrappers.get(&start) {
            Some(&w) => Ok(w),
            None => self.function_index(start),
        }
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        utils::parse_export_section(self, exports, section)?;
        self.added_exports(exports);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        for (i, body) in section.into_iter().enumerate() {
            let body = body?;
            match &self.add.bodies[i] {
                Some(bytes) => {
                    code.raw(bytes);
                }
                None if !self.add.renumbered && self.ctx.globals_by == 0 => {
                    code.raw(&self.info.wasm[body.range()]);
                }
                None => self.parse_function_body(code, body)?,
            }
        }
        self.added_code(code);
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), ReencodeError<Infallible>> {
        if section.name().starts_with(".debug_") {
            self.add.dropped.push(section.name().to_string());
            return Ok(());
        }
        if let wasmparser::KnownCustom::Producers(reader) = section.as_known() {
            module.section(&producers(Some(reader)));
            return Ok(());
        }
        if let wasmparser::KnownCustom::Name(reader) = section.as_known() {
            self.saw_names = true;
            let names = self.names(Some(reader));
            module.section(&names);
            return Ok(());
        }
        utils::parse_custom_section(self, module, section)
    }
}
