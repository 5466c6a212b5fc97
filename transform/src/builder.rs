//! [`Instrument`]: the pass as a builder, for build scripts.
//!
//! One setter per [`Options`] field, so a `build.rs` reads like the command
//! line it replaces, plus [`Instrument::run_file`], which reads a module and
//! writes the result atomically (a temporary file in the destination's
//! directory, renamed over it only once everything succeeded), as
//! `wasm-rewind instrument` does.

use crate::{instrument, Error, Instrumented, Options, Result};
use std::fmt;

use std::path::{Path, PathBuf};

/// A progress callback: `(done, total)` units of work.
type Progress = Box<dyn Fn(usize, usize) + Send + Sync>;

/// Builder for one run of the pass.
///
/// ```
/// use wasm_rewind_transform::Instrument;
///
/// let wasm = wat::parse_str(r#"
///     (module
///       (import "env" "sleep" (func $sleep))
///       (import "env" "log" (func $log))
///       (memory 1)
///       (func (export "run") (call $sleep))
///       (func (export "print") (call $log)))
/// "#).unwrap();
/// let out = Instrument::new()
///     .imports(["env.sleep"])
///     .ignore_indirect(true)
///     .run(&wasm)
///     .unwrap();
/// // Only `run` can reach env.sleep.
/// assert_eq!(out.stats.instrumented_functions, 1);
/// assert!(wasmparser::validate(&out.wasm).is_ok());
/// ```
///
/// In a `build.rs`, [`Instrument::run_file`] turns one file into another:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
/// wasm_rewind_transform::Instrument::wasix()
///     .run_file(out_dir.join("app.wasm"), out_dir.join("app.rw.wasm"))?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Instrument {
    options: Options,
    progress: Option<Progress>,
}

impl fmt::Debug for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrument")
            .field("options", &self.options)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Collects any list of strings into owned entries.
fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

impl Instrument {
    /// Binaryen's defaults: every import and every indirect call may unwind,
    /// the buffer lives in memory 0 (see [`Options::default`]).
    pub fn new() -> Instrument {
        Instrument::default()
    }

    /// The `--preset wasix` settings: only the WASIX stack calls
    /// (`stack_checkpoint`, `stack_restore`, `stack_rewind`) unwind, and the
    /// stack globals the shim needs are exported (see [`Options::wasix`]).
    pub fn wasix() -> Instrument {
        Instrument::from_options(Options::wasix())
    }

    /// Starts from existing options.
    pub fn from_options(options: Options) -> Instrument {
        Instrument {
            options,
            progress: None,
        }
    }

    /// The options as set so far.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Imports that may unwind, as `module.name` patterns (`*` matches any
    /// run of characters); every other import is assumed not to. Adds to the
    /// list already set (the preset's, for [`Instrument::wasix`]). Defaults to
    /// every import.
    pub fn imports<I, S>(mut self, imports: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options
            .imports
            .get_or_insert_with(Vec::new)
            .extend(strings(imports));
        self
    }

    /// No import unwinds. Defaults to `false`.
    pub fn ignore_imports(mut self, yes: bool) -> Self {
        self.options.ignore_imports = yes;
        self
    }

    /// Indirect calls (`call_indirect`, `call_ref`) never unwind. Defaults to
    /// `false`.
    pub fn ignore_indirect(mut self, yes: bool) -> Self {
        self.options.ignore_indirect = yes;
        self
    }

    /// Instrument exactly these functions (name patterns); excludes
    /// [`Instrument::add`] and [`Instrument::remove`]. Defaults to none.
    pub fn only<I, S>(mut self, functions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.only = Some(strings(functions));
        self
    }

    /// Instrument these functions too, even when they cannot unwind. Adds to
    /// the list. Defaults to empty.
    // Named after `--add` and `Options::add`; not arithmetic.
    #[allow(clippy::should_implement_trait)]
    pub fn add<I, S>(mut self, functions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.add.extend(strings(functions));
        self
    }

    /// Never instrument these functions; they are assumed not to unwind. Adds
    /// to the list. Defaults to empty.
    pub fn remove<I, S>(mut self, functions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.remove.extend(strings(functions));
        self
    }

    /// Functions in the add list also make their callers unwind. Defaults to
    /// `false`.
    pub fn propagate_add(mut self, yes: bool) -> Self {
        self.options.propagate_add = yes;
        self
    }

    /// Trap when a call assumed not to unwind returns while unwinding.
    /// Defaults to `false`.
    pub fn asserts(mut self, yes: bool) -> Self {
        self.options.asserts = yes;
        self
    }

    /// The memory holding `{pos, end}` and the buffer: an export name, a
    /// name-section name or a decimal index. Defaults to memory 0.
    pub fn memory(mut self, memory: impl Into<String>) -> Self {
        self.options.memory = Some(memory.into());
        self
    }

    /// Put the buffer in a new memory of `pages` 64 KiB pages, exported as
    /// `asyncify_memory`. Defaults to `None` (memory 0, as Binaryen's ABI
    /// has it).
    pub fn secondary_memory(mut self, pages: u32) -> Self {
        self.options.secondary_memory = Some(pages);
        self
    }

    /// Import `env.__asyncify_state` and `env.__asyncify_data` instead of
    /// defining them. Defaults to `false`.
    pub fn import_globals(mut self, yes: bool) -> Self {
        self.options.import_globals = yes;
        self
    }

    /// Export `__asyncify_state` and `__asyncify_data`. Defaults to `false`.
    pub fn export_globals(mut self, yes: bool) -> Self {
        self.options.export_globals = yes;
        self
    }

    /// Export `__stack_pointer` and the stack's bounds (found by export, name
    /// or prologue), and refuse a module whose stack a WASIX host could not
    /// find. Defaults to `false` (set by [`Instrument::wasix`]; a module
    /// calling the WASIX stack functions gets it anyway).
    pub fn export_stack_globals(mut self, yes: bool) -> Self {
        self.options.export_stack_globals = yes;
        self
    }

    /// Carry setjmp/longjmp inside the module: the WASIX stack imports are
    /// implemented in it and its exports wrapped, so it runs on any engine
    /// with plain WASI. Defaults to `false`.
    pub fn embed_runtime(mut self, yes: bool) -> Self {
        self.options.embed_runtime = yes;
        self
    }

    /// With [`Instrument::embed_runtime`]: the most memory (bytes) its
    /// snapshots and unwind buffer may take. Defaults to 64 MiB.
    pub fn embed_max_memory(mut self, bytes: u64) -> Self {
        self.options.embed_max_memory = Some(bytes);
        self
    }

    /// How setjmp/longjmp are carried out: unwinding (the default) or wasm
    /// exceptions. See [`SjljLowering`](crate::SjljLowering).
    pub fn sjlj(mut self, lowering: crate::SjljLowering) -> Self {
        self.options.sjlj = lowering;
        self
    }

    /// Calls `report(done, total)` as the work advances, for a progress bar
    /// (see [`instrument_with_progress`](crate::instrument_with_progress)).
    pub fn progress(mut self, report: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(report));
        self
    }

    /// Instruments `wasm`, a binary module.
    pub fn run(&self, wasm: &[u8]) -> Result<Instrumented> {
        match &self.progress {
            Some(report) => crate::instrument_with_progress(wasm, &self.options, &**report),
            None => instrument(wasm, &self.options),
        }
    }

    /// Reads the module at `input`, instruments it and writes the result to
    /// `output` through a temporary file in the same directory that is
    /// renamed over `output` only when everything succeeded: a failed run
    /// leaves no partial file and keeps an existing `output` as it was.
    pub fn run_file(
        &self,
        input: impl AsRef<Path>,
        output: impl AsRef<Path>,
    ) -> Result<Instrumented, FileError> {
        let (input, output) = (input.as_ref(), output.as_ref());
        let io = |path: &Path, source| FileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let wasm = std::fs::read(input).map_err(|e| io(input, e))?;
        let done = self.run(&wasm).map_err(|source| FileError::Pass {
            input: input.to_path_buf(),
            source,
        })?;
        crate::atomic_file::write_file_atomically(output, &done.wasm).map_err(|e| io(output, e))?;
        Ok(done)
    }
}

/// Why [`Instrument::run_file`] failed.
#[derive(Debug)]
pub enum FileError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The pass refused the module.
    Pass {
        /// The input module.
        input: PathBuf,
        /// Why.
        source: Error,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io { path, source } => write!(f, "`{}`: {source}", path.display()),
            FileError::Pass { input, source } => {
                write!(f, "cannot instrument `{}`: {source}", input.display())
            }
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { source, .. } => Some(source),
            FileError::Pass { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Instrument;
    use crate::Options;
    use std::sync::Arc;

    const TWO: &str = r#"(module
      (import "env" "a" (func $a))
      (import "env" "b" (func $b))
      (memory 1)
      (func $fa (export "fa") (call $a))
      (func $fb (export "fb") (call $b)))"#;

    fn wasm() -> Vec<u8> {
        wat::parse_str(TWO).unwrap()
    }

    #[test]
    fn setters_reach_the_options() {
        let b = Instrument::new()
            .imports(["env.a"])
            .imports(vec!["env.b".to_string()])
            .ignore_imports(true)
            .ignore_indirect(true)
            .only(["o"])
            .add(["x"])
            .remove(["y"])
            .propagate_add(true)
            .asserts(true)
            .memory("m")
            .secondary_memory(2)
            .import_globals(true)
            .export_globals(true)
            .export_stack_globals(true)
            .embed_runtime(true)
            .embed_max_memory(1 << 20)
            .sjlj(crate::SjljLowering::Exceptions);
        // One setter per option, named as the field (`OPTIONS`): the
        // destructuring stops compiling when an option is added, until it
        // is set above and checked here.
        let Options {
            imports,
            ignore_imports,
            ignore_indirect,
            only,
            add,
            remove,
            propagate_add,
            asserts,
            memory,
            secondary_memory,
            import_globals,
            export_globals,
            export_stack_globals,
            embed_runtime,
            embed_max_memory,
            sjlj,
        } = b.options().clone();
        assert_eq!(imports, Some(vec!["env.a".into(), "env.b".into()]));
        assert_eq!(only, Some(vec!["o".into()]));
        assert_eq!((add, remove), (vec!["x".into()], vec!["y".into()]));
        assert_eq!(memory.as_deref(), Some("m"));
        assert_eq!(secondary_memory, Some(2));
        assert_eq!(embed_max_memory, Some(1 << 20));
        assert!(ignore_imports && ignore_indirect && propagate_add && asserts);
        assert!(import_globals && export_globals && export_stack_globals && embed_runtime);
        assert_eq!(sjlj, crate::SjljLowering::Exceptions);
        assert_eq!(crate::OPTIONS.len(), 16, "a new option needs a setter");
    }

    #[test]
    fn imports_narrow_what_is_instrumented() {
        let all = Instrument::new().run(&wasm()).unwrap();
        assert_eq!(all.stats.instrumented_functions, 2);
        let one = Instrument::new().imports(["env.b"]).run(&wasm()).unwrap();
        assert_eq!(one.stats.instrumented_functions, 1);
        let names: Vec<_> = one
            .decisions
            .iter()
            .filter(|d| d.instrumented)
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["fb"]);
    }

    #[test]
    fn wasix_preset_extends_its_list() {
        let b = Instrument::wasix().imports(["env.a"]);
        let imports = b.options().imports.clone().unwrap();
        assert!(imports.contains(&"wasix_32v1.stack_checkpoint".to_string()));
        assert!(imports.contains(&"env.a".to_string()));
        assert!(b.options().export_stack_globals);
    }

    #[test]
    fn progress_runs_from_zero_to_total() {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        Instrument::new()
            .progress(move |done, total| seen.lock().unwrap().push((done, total)))
            .run(&wasm())
            .unwrap();
        let calls = calls.lock().unwrap();
        let total = calls[0].1;
        assert!(total > 1, "{calls:?}");
        assert_eq!(calls.first().unwrap().0, 0, "{calls:?}");
        assert_eq!(*calls.last().unwrap(), (total, total), "{calls:?}");
        assert!(calls.iter().all(|&(_, t)| t == total), "{calls:?}");
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    }

    #[test]
    fn run_file_writes_atomically() {
        let dir = tempfile_dir();
        let input = dir.join("in.wasm");
        let output = dir.join("out.wasm");
        std::fs::write(&input, wasm()).unwrap();
        std::fs::write(&output, b"previous").unwrap();
        let done = Instrument::new().run_file(&input, &output).unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), done.wasm);

        // A failure (already instrumented input) keeps the old output and
        // leaves no temporary file.
        let err = Instrument::new().run_file(&output, &input).unwrap_err();
        assert!(err.to_string().contains("already instrumented"), "{err}");
        assert_eq!(std::fs::read(&input).unwrap(), wasm());
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["in.wasm", "out.wasm"]);

        let err = Instrument::new()
            .run_file(dir.join("missing.wasm"), &output)
            .unwrap_err();
        assert!(err.to_string().contains("missing.wasm"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory under the system's temporary directory (the crate
    /// has no tempfile dependency).
    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wasm-rewind-builder-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
