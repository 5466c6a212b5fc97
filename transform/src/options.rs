//! The options of the pass, shared by the library and the command line.
//!
//! Every field mirrors one of Binaryen's `asyncify-*` pass arguments (see
//! `REFERENCE.md`), so a post-link line written for `wasm-opt --asyncify` maps onto
//! this struct one to one. Lists are already split: the CLI expands `@file`
//! response files and commas before they get here.

use crate::error::{Error, ErrorKind, Result};
use std::borrow::Cow;

/// How the pass decides what can unwind and how it lays out its runtime.
///
/// `Options::default()` is Binaryen's default: every import and every indirect
/// call may unwind, the buffer lives in memory 0, the state globals are internal.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Imports that may unwind, as `module.name` patterns where `*` matches any
    /// run of characters. `None` means every import may unwind. Defaults to `None`.
    pub imports: Option<Vec<String>>,
    /// No import may unwind (only the in-module `asyncify.*` runtime, the add list
    /// and indirect calls can make a function unwind). Defaults to `false`.
    pub ignore_imports: bool,
    /// Indirect calls (`call_indirect`, `call_ref`) never unwind. Defaults to `false`.
    pub ignore_indirect: bool,
    /// Instrument exactly these functions (name patterns) and nothing else; the add
    /// and remove lists must then be empty. Defaults to `None`.
    pub only: Option<Vec<String>>,
    /// Instrument these functions (name patterns) even when the analysis proves they
    /// cannot unwind. Defaults to empty.
    pub add: Vec<String>,
    /// Never instrument these functions (name patterns); they are assumed not to
    /// unwind, so they do not make their callers unwind either. Defaults to empty.
    pub remove: Vec<String>,
    /// Functions in the add list also make their callers unwind. Defaults to `false`.
    pub propagate_add: bool,
    /// Trap (`unreachable` in `__wasm_rewind_assert_failed`) when a call the analysis
    /// assumed could not unwind returns while unwinding. Defaults to `false`.
    pub asserts: bool,
    /// Which memory holds the `{pos, end}` structure and the buffer: an export name,
    /// a name from the name section, or a decimal index. Defaults to memory 0.
    pub memory: Option<String>,
    /// Put the buffer in a new memory of this many 64 KiB pages, exported as
    /// `asyncify_memory`, instead of the program's memory. Defaults to `None`.
    pub secondary_memory: Option<u32>,
    /// Import `__asyncify_state` and `__asyncify_data` from `env` instead of
    /// defining them. Defaults to `false`.
    pub import_globals: bool,
    /// Export `__asyncify_state` and `__asyncify_data`. Defaults to `false`.
    pub export_globals: bool,
    /// Export the globals a stack-switching host needs to find the C stack
    /// (`__stack_pointer`, and `__stack_low`, `__stack_high`, `__data_end`,
    /// `__heap_base` when present) under their own names, found by export,
    /// name section or (the stack pointer) function prologues; add
    /// `__stack_low = 0` when the stack comes first; and refuse a module
    /// whose stack's bottom cannot be found. Set by `--preset wasix`, and
    /// in effect for every module that calls the WASIX stack functions.
    /// Defaults to `false`.
    pub export_stack_globals: bool,
    /// Satisfy the WASIX stack imports (`stack_checkpoint`, `stack_restore`,
    /// `stack_rewind`) and context imports (`context_create`,
    /// `context_switch`, `context_destroy`) inside the module and wrap its
    /// exported entry points in the unwind/rewind loop, so setjmp/longjmp and
    /// WASIX contexts (ucontext) run on any engine with plain WASI and no
    /// asyncify-aware host. wasm32 only. Defaults to `false`.
    pub embed_runtime: bool,
    /// With `embed_runtime`: the most memory its snapshots and buffer may
    /// take, in bytes (whole pages are used). When live snapshots alone
    /// reach it, the checkpoint traps in `__wasm_rewind_snapshot_store_full`.
    /// Defaults to `None`, which means 64 MiB.
    pub embed_max_memory: Option<u64>,
    /// How setjmp/longjmp (the WASIX `stack_checkpoint`/`stack_restore`
    /// calls) are carried out. Defaults to [`SjljLowering::Asyncify`].
    pub sjlj: SjljLowering,
}

/// How the WASIX stack calls behind our `setjmp.h` are carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SjljLowering {
    /// Unwind and rewind the call stack (the Asyncify ABI): a host such as
    /// Wasmer or `wasm-rewind run` serves the calls, or the embedded runtime.
    #[default]
    Asyncify,
    /// Lower them to wasm exceptions in the module itself, with `try_table`
    /// and `throw` (the exception-handling proposal as standardised, exnref):
    /// only the functions that call `stack_checkpoint` change, and nothing
    /// unwinds on the normal path. Needs an engine with exceptions.
    Exceptions,
    /// As `Exceptions`, with the legacy `try`/`catch` instructions, for
    /// engines that have only those (node 20, older browsers).
    LegacyExceptions,
}

impl SjljLowering {
    /// Every value, with its command-line spelling.
    pub const ALL: [(SjljLowering, &'static str); 3] = [
        (SjljLowering::Asyncify, "asyncify"),
        (SjljLowering::Exceptions, "exceptions"),
        (SjljLowering::LegacyExceptions, "legacy-exceptions"),
    ];

    /// The lowering spelled `name` on the command line.
    pub fn from_name(name: &str) -> Option<SjljLowering> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(l, _)| *l)
    }

    /// Whether setjmp/longjmp become wasm exceptions.
    pub fn uses_exceptions(self) -> bool {
        self != SjljLowering::Asyncify
    }
}

pub use crate::abi::{WASIX_CONTEXT_IMPORTS, WASIX_STACK_IMPORTS, WASIX_UNWINDING_IMPORTS};

/// One field of [`Options`]: how messages, the command line and wasm-opt
/// name it. Declared once, in [`OPTIONS`]; the command line's flags and its
/// wasm-opt translation are checked against that table by tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionName {
    /// [`Options::imports`].
    Imports,
    /// [`Options::ignore_imports`].
    IgnoreImports,
    /// [`Options::ignore_indirect`].
    IgnoreIndirect,
    /// [`Options::only`].
    Only,
    /// [`Options::add`].
    Add,
    /// [`Options::remove`].
    Remove,
    /// [`Options::propagate_add`].
    PropagateAdd,
    /// [`Options::asserts`].
    Asserts,
    /// [`Options::memory`].
    Memory,
    /// [`Options::secondary_memory`].
    SecondaryMemory,
    /// [`Options::import_globals`].
    ImportGlobals,
    /// [`Options::export_globals`].
    ExportGlobals,
    /// [`Options::export_stack_globals`].
    ExportStackGlobals,
    /// [`Options::embed_runtime`].
    EmbedRuntime,
    /// [`Options::embed_max_memory`].
    EmbedMaxMemory,
    /// [`Options::sjlj`].
    Sjlj,
}

/// How one option is spelled in each place that names it.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    /// Which option.
    pub name: OptionName,
    /// The field of [`Options`] (and the method of `Instrument`).
    pub field: &'static str,
    /// The `wasm-rewind instrument` flag, when it has one of its own
    /// (`export_stack_globals` comes with `--preset wasix`).
    pub flag: Option<&'static str>,
    /// Binaryen's pass argument, `asyncify-…`, when it has one.
    pub wasm_opt: Option<&'static str>,
    /// Whether the flag and the pass argument take a value.
    pub takes_value: bool,
}

/// Every option of the pass, in the order of [`Options`]' fields.
pub const OPTIONS: [OptionSpec; 16] = {
    const fn spec(
        name: OptionName,
        field: &'static str,
        flag: Option<&'static str>,
        wasm_opt: Option<&'static str>,
        takes_value: bool,
    ) -> OptionSpec {
        OptionSpec {
            name,
            field,
            flag,
            wasm_opt,
            takes_value,
        }
    }
    use OptionName as N;
    [
        spec(
            N::Imports,
            "imports",
            Some("--imports"),
            Some("asyncify-imports"),
            true,
        ),
        spec(
            N::IgnoreImports,
            "ignore_imports",
            Some("--ignore-imports"),
            Some("asyncify-ignore-imports"),
            false,
        ),
        spec(
            N::IgnoreIndirect,
            "ignore_indirect",
            Some("--ignore-indirect"),
            Some("asyncify-ignore-indirect"),
            false,
        ),
        spec(
            N::Only,
            "only",
            Some("--only"),
            Some("asyncify-onlylist"),
            true,
        ),
        spec(N::Add, "add", Some("--add"), Some("asyncify-addlist"), true),
        spec(
            N::Remove,
            "remove",
            Some("--remove"),
            Some("asyncify-removelist"),
            true,
        ),
        spec(
            N::PropagateAdd,
            "propagate_add",
            Some("--propagate-add"),
            Some("asyncify-propagate-addlist"),
            false,
        ),
        spec(
            N::Asserts,
            "asserts",
            Some("--asserts"),
            Some("asyncify-asserts"),
            false,
        ),
        spec(
            N::Memory,
            "memory",
            Some("--memory"),
            Some("asyncify-memory"),
            true,
        ),
        // Binaryen spells this one as two arguments, a switch and a size;
        // the command line translates the pair.
        spec(
            N::SecondaryMemory,
            "secondary_memory",
            Some("--secondary-memory"),
            Some("asyncify-in-secondary-memory"),
            true,
        ),
        spec(
            N::ImportGlobals,
            "import_globals",
            Some("--import-globals"),
            Some("asyncify-import-globals"),
            false,
        ),
        spec(
            N::ExportGlobals,
            "export_globals",
            Some("--export-globals"),
            Some("asyncify-export-globals"),
            false,
        ),
        spec(
            N::ExportStackGlobals,
            "export_stack_globals",
            None,
            None,
            false,
        ),
        spec(
            N::EmbedRuntime,
            "embed_runtime",
            Some("--embed-runtime"),
            None,
            false,
        ),
        spec(
            N::EmbedMaxMemory,
            "embed_max_memory",
            Some("--embed-max-memory"),
            None,
            true,
        ),
        spec(N::Sjlj, "sjlj", Some("--sjlj"), None, true),
    ]
};

impl OptionName {
    /// Its spelling in every place.
    pub fn spec(self) -> &'static OptionSpec {
        OPTIONS
            .iter()
            .find(|s| s.name == self)
            .expect("every option is in OPTIONS")
    }
}

/// Library messages name an option as `` `Options::field` ``, so a library
/// user reads the field to set, and a front end can put its own spelling in
/// its place (the command line puts the flag).
impl std::fmt::Display for OptionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`Options::{}`", self.spec().field)
    }
}

/// `text` (a library message) with every option named by its flag, for
/// the command line: `` `Options::only` `` becomes `--only`.
pub fn with_flags(text: &str) -> String {
    let mut out = text.to_string();
    for spec in &OPTIONS {
        let flag = match (spec.flag, spec.name) {
            (Some(flag), _) => flag,
            (None, OptionName::ExportStackGlobals) => "--preset wasix",
            (None, _) => continue,
        };
        out = out.replace(&spec.name.to_string(), flag);
    }
    out
}

impl Options {
    /// The options of `--preset wasix`: only the WASIX stack imports and
    /// `context_switch` unwind ([`WASIX_UNWINDING_IMPORTS`]), and
    /// the stack globals the shim needs are exported.
    pub fn wasix() -> Options {
        Options {
            imports: Some(
                WASIX_UNWINDING_IMPORTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            export_stack_globals: true,
            ..Options::default()
        }
    }
}

impl Options {
    /// Checks the options against each other, before any module is read, and
    /// returns the ones the pass runs with: under `embed_runtime`, the WASIX
    /// stack calls and `context_switch` are the only unwinding imports unless a list is given
    /// (nothing else can complete an unwind without a host).
    ///
    /// Every check that does not need the module is here, so a contradiction
    /// is reported at once rather than after every body has been validated.
    pub(crate) fn checked(&self) -> Result<Cow<'_, Options>> {
        use OptionName as N;
        if self.only.is_some() && (!self.add.is_empty() || !self.remove.is_empty()) {
            return Err(bad(format!(
                "{} cannot be combined with {} or {} (it already decides every function)",
                N::Only,
                N::Add,
                N::Remove
            )));
        }
        if let Some(pages) = self.secondary_memory {
            if self.memory.is_some() {
                return Err(bad(format!(
                    "{} and {} exclude each other",
                    N::Memory,
                    N::SecondaryMemory
                )));
            }
            if pages == 0 || pages > 65536 {
                return Err(bad(format!(
                    "{} of {pages} pages: give between 1 and 65536",
                    N::SecondaryMemory
                )));
            }
        }
        if let Some(bytes) = self.embed_max_memory {
            if bytes < 65536 {
                return Err(bad(format!(
                    "{} of {bytes} bytes: give at least 65536 (one page)",
                    N::EmbedMaxMemory
                )));
            }
        }
        if self.sjlj.uses_exceptions() {
            self.refuse_unwinding_options()?;
        }
        if !self.embed_runtime {
            return Ok(Cow::Borrowed(self));
        }
        let clash = if self.memory.is_some() {
            Some(N::Memory)
        } else if self.secondary_memory.is_some() {
            Some(N::SecondaryMemory)
        } else if self.import_globals {
            Some(N::ImportGlobals)
        } else {
            None
        };
        if let Some(option) = clash {
            return Err(bad(format!(
                "{} places its buffer and state itself; drop {option} (it is for a host that \
                 drives the Asyncify exports)",
                N::EmbedRuntime
            )));
        }
        let mut options = self.clone();
        if options.imports.is_none() {
            options.imports = Some(
                WASIX_UNWINDING_IMPORTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
        Ok(Cow::Owned(options))
    }
}

impl Options {
    /// Under an exceptions lowering nothing unwinds: the options that say
    /// what unwinds, or where the buffer goes, have nothing to act on, and
    /// silently ignoring one would hide a mistaken command line.
    fn refuse_unwinding_options(&self) -> Result<()> {
        use OptionName as N;
        // `--preset wasix` sets an import list too: name the preset first.
        let set = [
            (N::ExportStackGlobals, self.export_stack_globals),
            (N::Imports, self.imports.is_some()),
            (N::IgnoreImports, self.ignore_imports),
            (N::IgnoreIndirect, self.ignore_indirect),
            (N::Only, self.only.is_some()),
            (N::Add, !self.add.is_empty()),
            (N::Remove, !self.remove.is_empty()),
            (N::PropagateAdd, self.propagate_add),
            (N::Asserts, self.asserts),
            (N::Memory, self.memory.is_some()),
            (N::SecondaryMemory, self.secondary_memory.is_some()),
            (N::ImportGlobals, self.import_globals),
            (N::ExportGlobals, self.export_globals),
            (N::EmbedRuntime, self.embed_runtime),
            (N::EmbedMaxMemory, self.embed_max_memory.is_some()),
        ];
        match set.iter().find(|(_, on)| *on) {
            Some((option, _)) => Err(bad(format!(
                "{} lowers setjmp/longjmp to wasm exceptions and unwinds nothing, so {option} \
                 (an option of the unwinding pass) does not apply: drop it, or keep the default \
                 lowering",
                N::Sjlj
            ))),
            None => Ok(()),
        }
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadOptions, message)
}

/// Whether `name` matches `pattern`, where `*` in the pattern matches any run of
/// characters (including none) and every other character matches itself.
///
/// Linear in practice: the classic greedy matcher with one backtrack point.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::{wildcard_match, with_flags, OptionName, Options, OPTIONS};

    /// The table names every field of `Options`, once, in order: the
    /// destructuring fails to compile when a field is added and not listed.
    #[test]
    fn the_table_covers_every_field() {
        let Options {
            imports: _,
            ignore_imports: _,
            ignore_indirect: _,
            only: _,
            add: _,
            remove: _,
            propagate_add: _,
            asserts: _,
            memory: _,
            secondary_memory: _,
            import_globals: _,
            export_globals: _,
            export_stack_globals: _,
            embed_runtime: _,
            embed_max_memory: _,
            sjlj: _,
        } = Options::default();
        let fields = [
            "imports",
            "ignore_imports",
            "ignore_indirect",
            "only",
            "add",
            "remove",
            "propagate_add",
            "asserts",
            "memory",
            "secondary_memory",
            "import_globals",
            "export_globals",
            "export_stack_globals",
            "embed_runtime",
            "embed_max_memory",
            "sjlj",
        ];
        let table: Vec<&str> = OPTIONS.iter().map(|s| s.field).collect();
        assert_eq!(table, fields);
        for spec in &OPTIONS {
            assert_eq!(spec.name.spec().field, spec.field);
            if let Some(flag) = spec.flag {
                assert_eq!(flag, format!("--{}", spec.field.replace('_', "-")));
            }
        }
    }

    #[test]
    fn messages_take_the_flags() {
        let text = format!(
            "{} and {} clash",
            OptionName::Only,
            OptionName::ExportStackGlobals
        );
        assert_eq!(
            text,
            "`Options::only` and `Options::export_stack_globals` clash"
        );
        assert_eq!(with_flags(&text), "--only and --preset wasix clash");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("env.sleep", "env.sleep"));
        assert!(!wildcard_match("env.sleep", "env.sleeps"));
        assert!(wildcard_match("env.*", "env.sleep"));
        assert!(wildcard_match("*.sleep", "env.sleep"));
        assert!(wildcard_match("e*v.s*p", "env.sleep"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "acbd"));
        assert!(wildcard_match("a*b*", "acbd"));
    }
}
