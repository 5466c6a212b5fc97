//! Parse phase: validate the input and collect the module-level facts the
//! analysis and the rewrite need (types, imports, tables, memories, globals,
//! exports, element segments, names, function bodies).
//!
//! Function bodies are not parsed here; each comes with the validator that the
//! scan phase runs over it, so validation of bodies happens in parallel.

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use wasmparser::{
    CompositeInnerType, DataSectionReader, ElementItems, ElementKind, ElementSectionReader,
    ExportSectionReader, ExternalKind, FuncToValidate, FuncType, FunctionBody,
    FunctionSectionReader, GlobalSectionReader, GlobalType, ImportSectionReader,
    MemorySectionReader, MemoryType, Name, NameSectionReader, Operator, Parser, Payload,
    TableSectionReader, TypeRef, TypeSectionReader, Validator, ValidatorResources, WasmFeatures,
};

/// Which features we accept in the input: everything wasmparser knows about for
/// core modules. Constructs the rewrite cannot handle are refused later, by name.
pub fn features() -> WasmFeatures {
    WasmFeatures::all()
}

/// One function import.
#[derive(Clone, Debug)]
pub struct FuncImport {
    /// The import's module name.
    pub module: String,
    /// The import's field name.
    pub name: String,
}

impl FuncImport {
    /// `module.name`, the form import lists use.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// A table and whether code outside the module can see or change it.
#[derive(Clone, Debug)]
pub struct TableInfo {
    /// Imported or exported: the host may put anything in it.
    pub open: bool,
    /// Its type: the embedded runtime's `context_create` checks and calls
    /// entries of a `funcref` table with 32-bit indices only.
    pub ty: wasmparser::TableType,
}

/// An active element segment: functions placed in a table at instantiation.
#[derive(Clone, Debug, Default)]
pub struct TableInit {
    /// Function indices placed in the table by active segments.
    pub funcs: Vec<u32>,
    /// (slot, function) as the active segments place them, in order (a
    /// later one overwrites an earlier one's slot), when the table starts
    /// empty and every segment's offset is a constant: what the table holds
    /// at instantiation. `None` for an imported table or a computed offset.
    pub slots: Option<Vec<(u32, u32)>>,
}

/// One active data segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSegment {
    /// The memory it initializes.
    pub memory: u32,
    /// Its offset, when that is a plain constant.
    pub offset: Option<u64>,
    /// Its length in bytes.
    pub len: u64,
}

/// Everything the later phases need to know about the input module.
pub struct ModuleInfo<'a> {
    /// The input bytes.
    pub wasm: &'a [u8],
    /// Function types by type index (`None` for struct, array and other types).
    pub types: Vec<Option<FuncType>>,
    /// Whether any type declares a supertype (GC subtyping), which makes
    /// signature-based narrowing of indirect calls unsound; we then stop narrowing.
    pub has_subtyping: bool,
    /// Type index of every function, imports first.
    pub func_types: Vec<u32>,
    /// Function imports, in index order (function `i` for `i < imports.len()`).
    pub imports: Vec<FuncImport>,
    /// Tables, imports first.
    pub tables: Vec<TableInfo>,
    /// Functions placed in each table by active element segments.
    pub table_inits: Vec<TableInit>,
    /// Functions in passive or declarative element segments (they can reach any
    /// table through `table.init`, or become `funcref` values).
    pub passive_elem_funcs: Vec<u32>,
    /// Memory types, imports first.
    pub memories: Vec<MemoryType>,
    /// Memory names from exports and the name section.
    pub memory_names: Vec<Vec<String>>,
    /// Global types, imports first.
    pub globals: Vec<GlobalType>,
    /// Number of imported globals.
    pub imported_globals: u32,
    /// Number of tags, imported and defined: a tag the pass adds comes after.
    pub num_tags: u32,
    /// The initial value of each global whose initializer is a plain
    /// `i32.const` or `i64.const` (as the bits of a u64: an i32 is
    /// zero-extended); `None` for imports and other initializers.
    pub global_inits: Vec<Option<u64>>,
    /// Active data segments: memory, constant offset (`None` when the offset
    /// is not a plain constant) and length.
    pub data_segments: Vec<DataSegment>,
    /// Global names from the name section (and exports).
    pub global_names: HashMap<u32, String>,
    /// Exports: name, kind, index.
    pub exports: Vec<(String, ExternalKind, u32)>,
    /// Function names from the name section.
    pub func_names: HashMap<u32, String>,
    /// Bodies of defined functions, in order, with their validators.
    pub bodies: Vec<FunctionBody<'a>>,
    /// What it takes to validate each body (see [`ModuleInfo::validator_for`]).
    pub body_validators: Vec<FuncToValidate<ValidatorResources>>,
    /// Whether any import or export moves a `funcref` (or other reference) across
    /// the module boundary, which makes the set of possible `call_ref` targets open.
    pub refs_cross_boundary: bool,
    /// Names of custom sections, with their order.
    pub custom_sections: Vec<String>,
    /// The start function, if any.
    pub start: Option<u32>,
}

impl<'a> ModuleInfo<'a> {
    /// A module with no sections yet, which [`parse_module`] fills in payload
    /// by payload.
    fn empty(wasm: &'a [u8]) -> ModuleInfo<'a> {
        ModuleInfo {
            wasm,
            types: Vec::new(),
            has_subtyping: false,
            func_types: Vec::new(),
            imports: Vec::new(),
            tables: Vec::new(),
            table_inits: Vec::new(),
            passive_elem_funcs: Vec::new(),
            memories: Vec::new(),
            memory_names: Vec::new(),
            globals: Vec::new(),
            imported_globals: 0,
            num_tags: 0,
            global_inits: Vec::new(),
            data_segments: Vec::new(),
            global_names: HashMap::new(),
            exports: Vec::new(),
            func_names: HashMap::new(),
            bodies: Vec::new(),
            body_validators: Vec::new(),
            refs_cross_boundary: false,
            custom_sections: Vec::new(),
            start: None,
        }
    }

    /// Number of imported functions.
    pub fn num_imported_funcs(&self) -> u32 {
        self.imports.len() as u32
    }

    /// Total number of functions, imported and defined.
    pub fn num_funcs(&self) -> u32 {
        self.func_types.len() as u32
    }

    /// The signature of function `f`.
    pub fn func_sig(&self, f: u32) -> &FuncType {
        self.types[self.func_types[f as usize] as usize]
            .as_ref()
            .expect("validated: functions have function types")
    }

    /// The signature with type index `ty`.
    pub fn sig(&self, ty: u32) -> &FuncType {
        self.types[ty as usize]
            .as_ref()
            .expect("validated: type is a function type")
    }

    /// A name for function `f` fit for messages: an import's `module.name`, else
    /// the name section's, else its export name, else `$<index>`.
    pub fn func_display_name(&self, f: u32) -> String {
        if let Some(imp) = self.imports.get(f as usize) {
            return imp.qualified();
        }
        if let Some(n) = self.func_names.get(&f) {
            return n.clone();
        }
        let exported = self.exports.iter().find(|(_, kind, index)| {
            matches!(kind, ExternalKind::Func | ExternalKind::FuncExact) && *index == f
        });
        match exported {
            Some((name, _, _)) => name.clone(),
            None => format!("${f}"),
        }
    }

    /// The function or global (by `kind`) called `name`: the one exported
    /// under it (and `true`), else the lowest-numbered one the name section
    /// calls so (and `false`).
    pub fn find_named(&self, kind: ExternalKind, name: &str) -> Option<(u32, bool)> {
        let exported = self
            .exports
            .iter()
            .find(|(n, k, _)| n == name && *k == kind)
            .map(|(_, _, i)| (*i, true));
        exported.or_else(|| {
            let names = match kind {
                ExternalKind::Func | ExternalKind::FuncExact => &self.func_names,
                ExternalKind::Global => &self.global_names,
                _ => return None,
            };
            names
                .iter()
                .filter(|(_, n)| n.as_str() == name)
                .map(|(i, _)| *i)
                .min()
                .map(|i| (i, false))
        })
    }

    /// Whether the module exports a function with this name.
    pub fn exports_name(&self, name: &str) -> bool {
        self.exports.iter().any(|(n, _, _)| n == name)
    }

    /// A fresh validator for defined function number `i` (0 is the first
    /// defined function): the scan and the rewrite each decode the body once.
    pub fn validator_for(&self, i: usize) -> FuncToValidate<ValidatorResources> {
        let v = &self.body_validators[i];
        FuncToValidate {
            resources: v.resources.clone(),
            index: v.index,
            ty: v.ty,
            features: v.features,
        }
    }

    /// Resolves `--memory NAME`: an export name, a name-section name or an index.
    pub fn find_memory(&self, name: &str) -> Result<u32> {
        if let Some(i) = self
            .memory_names
            .iter()
            .position(|names| names.iter().any(|n| n == name))
        {
            return Ok(i as u32);
        }
        if let Ok(i) = name.parse::<u32>() {
            if (i as usize) < self.memories.len() {
                return Ok(i);
            }
        }
        Err(Error::new(
            ErrorKind::BadOptions,
            format!(
                "{} `{name}`: the module has no memory of that name or index ({} memories)",
                crate::OptionName::Memory,
                self.memories.len()
            ),
        ))
    }
}

/// Validates the module structure of `wasm` and collects its facts.
pub fn parse_module(wasm: &[u8]) -> Result<ModuleInfo<'_>> {
    let mut validator = Validator::new_with_features(features());
    let mut info = ModuleInfo::empty(wasm);
    let mut name_section = None;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let wasmparser::ValidPayload::Func(func, body) = validator.payload(&payload)? {
            info.body_validators.push(func);
            info.bodies.push(body);
            continue;
        }
        read_payload(&mut info, payload, &mut name_section)?;
    }
    if let Some(names) = name_section {
        // A malformed name section is not worth refusing the module for: the
        // engine ignores it too. We keep what parses.
        let _ = read_names(&mut info, names);
    }
    Ok(info)
}

/// Adds what one (validated) payload says to `info`. The name section is only
/// kept in `name_section`, to be read once the module is complete: it may come
/// before the sections whose items it names.
fn read_payload<'a>(
    info: &mut ModuleInfo<'a>,
    payload: Payload<'a>,
    name_section: &mut Option<NameSectionReader<'a>>,
) -> Result<()> {
    match payload {
        Payload::Version {
            encoding, range, ..
        } if encoding != wasmparser::Encoding::Module => Err(Error::new(
            ErrorKind::Unsupported,
            "the input is a component; wasm-rewind instruments core modules",
        )
        .at(range.start)),
        Payload::TypeSection(reader) => read_types(info, reader),
        Payload::ImportSection(reader) => read_imports(info, reader),
        Payload::FunctionSection(reader) => read_functions(info, reader),
        Payload::TableSection(reader) => read_tables(info, reader),
        Payload::MemorySection(reader) => read_memories(info, reader),
        Payload::GlobalSection(reader) => read_globals(info, reader),
        Payload::TagSection(reader) => {
            info.num_tags += reader.count();
            Ok(())
        }
        Payload::ExportSection(reader) => read_exports(info, reader),
        Payload::StartSection { func, .. } => {
            info.start = Some(func);
            Ok(())
        }
        Payload::ElementSection(reader) => read_elements(info, reader),
        Payload::DataSection(reader) => read_data(info, reader),
        Payload::CustomSection(reader) => {
            info.custom_sections.push(reader.name().to_string());
            if let wasmparser::KnownCustom::Name(names) = reader.as_known() {
                *name_section = Some(names);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Keeps the function types by index (other types only hold their index as
/// `None`), and notes whether any type declares a supertype: subtyping makes
/// narrowing indirect calls by signature unsound.
fn read_types(info: &mut ModuleInfo<'_>, reader: TypeSectionReader<'_>) -> Result<()> {
    for group in reader {
        for sub in group?.into_types() {
            if sub.supertype_idx.is_some() {
                info.has_subtyping = true;
            }
            info.types.push(match sub.composite_type.inner {
                CompositeInnerType::Func(f) => Some(f),
                _ => None,
            });
        }
    }
    Ok(())
}

/// Imported functions, tables, memories and globals take the first indices of
/// their spaces. An imported table is open (the host can fill it), and any
/// reference that comes in through an import opens the set of `call_ref`
/// targets.
fn read_imports(info: &mut ModuleInfo<'_>, reader: ImportSectionReader<'_>) -> Result<()> {
    for import in reader.into_imports() {
        let import = import?;
        match import.ty {
            TypeRef::Func(ty) | TypeRef::FuncExact(ty) => {
                info.func_types.push(ty);
                info.imports.push(FuncImport {
                    module: import.module.to_string(),
                    name: import.name.to_string(),
                });
                if sig_has_refs(info.types[ty as usize].as_ref()) {
                    info.refs_cross_boundary = true;
                }
            }
            TypeRef::Table(ty) => {
                info.tables.push(TableInfo { open: true, ty });
                info.table_inits.push(TableInit::default());
                // Its contents are the importer's: unknown here.
                info.refs_cross_boundary = true;
            }
            TypeRef::Memory(ty) => {
                info.memories.push(ty);
                info.memory_names.push(Vec::new());
            }
            TypeRef::Global(ty) => {
                if ty.content_type.is_reference_type() {
                    info.refs_cross_boundary = true;
                }
                info.globals.push(ty);
                info.global_inits.push(None);
                info.imported_globals += 1;
            }
            TypeRef::Tag(_) => info.num_tags += 1,
        }
    }
    Ok(())
}

/// The type of each defined function, after the imported ones.
fn read_functions(info: &mut ModuleInfo<'_>, reader: FunctionSectionReader<'_>) -> Result<()> {
    for ty in reader {
        info.func_types.push(ty?);
    }
    Ok(())
}

/// Defined tables start closed: only an export can open them.
fn read_tables(info: &mut ModuleInfo<'_>, reader: TableSectionReader<'_>) -> Result<()> {
    for table in reader {
        let ty = table?.ty;
        info.tables.push(TableInfo { open: false, ty });
        info.table_inits.push(TableInit {
            funcs: Vec::new(),
            slots: Some(Vec::new()),
        });
    }
    Ok(())
}

/// Defined memories, after the imported ones, nameless until an export or the
/// name section names them.
fn read_memories(info: &mut ModuleInfo<'_>, reader: MemorySectionReader<'_>) -> Result<()> {
    for mem in reader {
        info.memories.push(mem?);
        info.memory_names.push(Vec::new());
    }
    Ok(())
}

/// Defined globals, with their initial value when it is a plain constant.
fn read_globals(info: &mut ModuleInfo<'_>, reader: GlobalSectionReader<'_>) -> Result<()> {
    for global in reader {
        let global = global?;
        info.globals.push(global.ty);
        info.global_inits.push(const_value(&global.init_expr));
    }
    Ok(())
}

/// Records every export. An exported table is open (the host can change it),
/// and an exported table, reference global or function taking or returning
/// references lets references cross the boundary. An exported memory is named
/// by its export, for `--memory`.
///
/// The export section comes after the import, table, memory, global and
/// function sections, so the items it names are all known here.
fn read_exports(info: &mut ModuleInfo<'_>, reader: ExportSectionReader<'_>) -> Result<()> {
    for export in reader {
        let export = export?;
        match export.kind {
            ExternalKind::Table => {
                info.tables[export.index as usize].open = true;
                info.refs_cross_boundary = true;
            }
            ExternalKind::Memory => {
                info.memory_names[export.index as usize].push(export.name.to_string())
            }
            ExternalKind::Global => {
                if info.globals[export.index as usize]
                    .content_type
                    .is_reference_type()
                {
                    info.refs_cross_boundary = true;
                }
            }
            ExternalKind::Func | ExternalKind::FuncExact => {
                let ty = info.func_types[export.index as usize];
                if sig_has_refs(info.types[ty as usize].as_ref()) {
                    info.refs_cross_boundary = true;
                }
            }
            ExternalKind::Tag => {}
        }
        info.exports
            .push((export.name.to_string(), export.kind, export.index));
    }
    Ok(())
}

/// Which functions can end up in which table: an active segment places its
/// functions in its table; a passive or declarative one may put them in any
/// table (through `table.init`) or turn them into `funcref` values.
fn read_elements(info: &mut ModuleInfo<'_>, reader: ElementSectionReader<'_>) -> Result<()> {
    for element in reader {
        let element = element?;
        let funcs = element_funcs(&element.items)?;
        match element.kind {
            ElementKind::Active {
                table_index,
                offset_expr,
            } => {
                let t = table_index.unwrap_or(0) as usize;
                let init = &mut info.table_inits[t];
                // Expressions may be null or computed, which `funcs` leaves
                // out: only a plain list of indices says what each slot gets.
                let positional = matches!(element.items, ElementItems::Functions(_));
                match (init.slots.as_mut(), const_value(&offset_expr)) {
                    (Some(slots), Some(offset)) if positional => slots.extend(
                        funcs
                            .iter()
                            .zip(offset..)
                            .map(|(&f, slot)| (slot as u32, f)),
                    ),
                    _ => init.slots = None,
                }
                init.funcs.extend(funcs);
            }
            ElementKind::Passive | ElementKind::Declared => info.passive_elem_funcs.extend(funcs),
        }
    }
    Ok(())
}

/// Where active data segments write at instantiation; passive ones are only
/// copied by `memory.init`, at addresses the code decides.
fn read_data(info: &mut ModuleInfo<'_>, reader: DataSectionReader<'_>) -> Result<()> {
    for data in reader {
        let data = data?;
        if let wasmparser::DataKind::Active {
            memory_index,
            offset_expr,
        } = data.kind
        {
            info.data_segments.push(DataSegment {
                memory: memory_index,
                offset: const_value(&offset_expr),
                len: data.data.len() as u64,
            });
        }
    }
    Ok(())
}

/// The value of a constant expression that is one `i32.const` or `i64.const`
/// (an i32 zero-extended: addresses are unsigned).
fn const_value(expr: &wasmparser::ConstExpr<'_>) -> Option<u64> {
    let mut ops = expr.get_operators_reader();
    let value = match ops.read().ok()? {
        Operator::I32Const { value } => value as u32 as u64,
        Operator::I64Const { value } => value as u64,
        _ => return None,
    };
    matches!(ops.read().ok()?, Operator::End).then_some(value)
}

fn sig_has_refs(sig: Option<&FuncType>) -> bool {
    sig.is_some_and(|s| {
        s.params()
            .iter()
            .chain(s.results())
            .any(|t| t.is_reference_type())
    })
}

/// The functions an element segment names, through indices or `ref.func`.
fn element_funcs(items: &ElementItems<'_>) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    match items {
        ElementItems::Functions(funcs) => {
            for f in funcs.clone() {
                out.push(f?);
            }
        }
        ElementItems::Expressions(_, exprs) => {
            for expr in exprs.clone() {
                let mut ops = expr?.get_operators_reader();
                while !ops.eof() {
                    if let Operator::RefFunc { function_index } = ops.read()? {
                        out.push(function_index);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Function, global and memory names from the name section: for messages, and
/// to find items (such as `__stack_pointer`) that are not exported.
fn read_names(info: &mut ModuleInfo<'_>, names: wasmparser::NameSectionReader<'_>) -> Result<()> {
    for name in names {
        match name? {
            Name::Function(map) => {
                for naming in map {
                    let naming = naming?;
                    info.func_names
                        .insert(naming.index, naming.name.to_string());
                }
            }
            Name::Global(map) => {
                for naming in map {
                    let naming = naming?;
                    info.global_names
                        .insert(naming.index, naming.name.to_string());
                }
            }
            Name::Memory(map) => {
                for naming in map {
                    let naming = naming?;
                    if let Some(names) = info.memory_names.get_mut(naming.index as usize) {
                        names.push(naming.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
