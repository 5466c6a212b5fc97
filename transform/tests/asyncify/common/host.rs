//! The store data and the body of every host import: the import side of the
//! sleep protocol.
//!
//! In state 0 an import logs the call; if the [`UnwindPolicy`] says so it
//! calls `asyncify_start_unwind(ptr)` and returns zeros, otherwise it returns
//! the [`Answer`]. When the export is called again under
//! `asyncify_start_rewind(ptr)` the import is re-entered in state 2, calls
//! `asyncify_stop_rewind()` and returns the answer for the call it recorded.
//! The re-entry must pass the same arguments as the call that unwound
//! (Binaryen's output does, and a host may read them then), which the host
//! checks.

use wasmtime::{
    bail, format_err, AsContextMut, Caller, Extern, ExternType, Func, Global, Instance, Module,
    Result, Store, Val, ValType,
};

use super::{values, Answer, At, Buffer, ImportCall, UnwindPolicy, Value};

/// Where the host reads the state and data globals from, to record them at
/// the moments of an unwind and a rewind ([`Host::seen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// It does not.
    Nothing,
    /// From its own globals, when the module imports them
    /// ([`Host::state_globals`]); nothing is recorded when it does not.
    Imported,
    /// From the module's exports `__asyncify_state` and `__asyncify_data`.
    Exported,
}

/// The state and data globals read at one moment: `(moment, state, data)`,
/// the data pointer widened to i64. The moments are `"import, unwind
/// started"`, `"export returned, unwinding"`, `"rewind started"` and
/// `"import, rewinding"`.
pub type Sighting = (&'static str, i32, i64);

/// The store data: how imports behave, and what they saw.
pub struct Host {
    /// Every import call made in state 0, in order, over the store's life
    /// (re-entries while rewinding are not calls: the module is only resuming
    /// the call already logged).
    pub log: Vec<ImportCall>,
    /// How many import calls were made in state 0 over the store's life.
    pub calls: usize,
    /// The results of an import call.
    pub answer: Answer,
    /// Which calls unwind. It is not asked while the module is being
    /// instantiated: nothing could resume a start function.
    pub unwind: UnwindPolicy,
    /// Imports that call back into an export (`("env.callback", "helper")`): the
    /// host calls the export with the import's arguments and returns its results.
    pub callbacks: Vec<(String, String)>,
    /// The asyncify data structure of the running coroutine, passed to
    /// `asyncify_start_unwind` by an import that unwinds (the driver sets it
    /// for each coroutine it runs).
    pub buffer: Buffer,
    /// The call that unwound and waits for its answer: set by the import when it
    /// starts an unwind, taken by the driver, handed back before the rewind.
    pub pending: Option<ImportCall>,
    /// How many unwinds an import started.
    pub unwinds_started: usize,
    /// How many unwinds the driver saw reach it and stopped.
    pub unwinds_stopped: usize,
    /// How many times an import was re-entered in state 2 and stopped the rewind.
    pub rewinds_completed: usize,
    /// The driver gives up on a coroutine after this many unwinds (a module
    /// that unwinds forever would otherwise hang the test).
    pub max_unwinds: usize,
    /// Where the state and data globals are read from.
    pub watch: Watch,
    /// The host's own `env.__asyncify_state` and `env.__asyncify_data`, when
    /// the module imports them (they start at 0).
    pub state_globals: Option<(Global, Global)>,
    /// The globals at every moment of the protocol, when watched.
    pub seen: Vec<Sighting>,
    /// Wasmtime fuel the store starts with; `Some` exactly when the engine
    /// meters fuel ([`metered_engine`](super::metered_engine)).
    pub fuel: Option<u64>,
    /// Whether instantiation finished (until then no import unwinds).
    pub instantiated: bool,
}

impl Host {
    /// A host where every import answers with `answer` and `unwind` decides,
    /// with the buffer in the reserved region of memory 0.
    pub fn new(answer: Answer, unwind: UnwindPolicy) -> Host {
        Host {
            log: Vec::new(),
            calls: 0,
            answer,
            unwind,
            callbacks: Vec::new(),
            buffer: Buffer::reserved(),
            pending: None,
            unwinds_started: 0,
            unwinds_stopped: 0,
            rewinds_completed: 0,
            max_unwinds: usize::MAX,
            watch: Watch::Nothing,
            state_globals: None,
            seen: Vec::new(),
            fuel: None,
            instantiated: false,
        }
    }

    /// Adds a callback import (see [`Host::callbacks`]).
    pub fn with_callback(mut self, import: &str, export: &str) -> Host {
        self.callbacks
            .push((import.to_string(), export.to_string()));
        self
    }

    /// Puts the asyncify data structure at `buffer`.
    pub fn with_buffer(mut self, buffer: Buffer) -> Host {
        self.buffer = buffer;
        self
    }

    /// Records the state and data globals, read from `watch`.
    pub fn watching(mut self, watch: Watch) -> Host {
        self.watch = watch;
        self
    }

    /// Starts the store with `fuel` (the engine must meter fuel).
    pub fn with_fuel(mut self, fuel: u64) -> Host {
        self.fuel = Some(fuel);
        self
    }

    /// Gives up on a coroutine after `max` unwinds.
    pub fn with_max_unwinds(mut self, max: usize) -> Host {
        self.max_unwinds = max;
        self
    }
}

/// Defines the host's imports in `store` and instantiates `module` with them:
/// a host function for every function import, and for a global import the
/// host's own global (see below); any other kind of import is an error. The
/// store stays the caller's, so that a failed instantiation (a trapping start
/// function) can still be looked at.
///
/// `env.__asyncify_state` and `env.__asyncify_data` (the `import_globals`
/// option) start at 0 and become [`Host::state_globals`]. Other imported
/// globals get a fixed non-zero value, so that reading the wrong global shows.
pub fn link(store: &mut Store<Host>, module: &Module) -> Result<Instance> {
    let mut imports: Vec<Extern> = Vec::new();
    let mut functions = 0;
    let (mut state, mut data) = (None, None);
    for import in module.imports() {
        let name = format!("{}.{}", import.module(), import.name());
        match import.ty() {
            ExternType::Func(ty) => {
                let index = functions;
                functions += 1;
                let result_types: Vec<ValType> = ty.results().collect();
                let func = Func::new(&mut *store, ty, move |mut caller, params, results| {
                    host_import(&mut caller, index, &name, &result_types, params, results)
                });
                imports.push(func.into());
            }
            ExternType::Global(ty) => {
                let asyncify = matches!(
                    name.as_str(),
                    "env.__asyncify_state" | "env.__asyncify_data"
                );
                let init = match ty.content() {
                    content if asyncify => Value::zero_val(content),
                    ValType::I32 => Val::I32(77),
                    ValType::I64 => Val::I64(7_700_000_000),
                    other => bail!("global import `{name}` of type {other}"),
                };
                let global = Global::new(&mut *store, ty, init)?;
                match name.as_str() {
                    "env.__asyncify_state" => state = Some(global),
                    "env.__asyncify_data" => data = Some(global),
                    _ => {}
                }
                imports.push(global.into());
            }
            _ => bail!("import `{name}` is neither a function nor a global"),
        }
    }
    if let (Some(s), Some(d)) = (state, data) {
        store.data_mut().state_globals = Some((s, d));
    }
    let instance = Instance::new(&mut *store, module, &imports)?;
    store.data_mut().instantiated = true;
    Ok(instance)
}

/// The state and data globals the host watches: its own (`own`), or the
/// module's exports, looked up with `export`.
pub fn watched_globals(
    watch: Watch,
    own: Option<(Global, Global)>,
    mut export: impl FnMut(&str) -> Option<Global>,
) -> Option<(Global, Global)> {
    match watch {
        Watch::Nothing => None,
        Watch::Imported => own,
        Watch::Exported => Some((export("__asyncify_state")?, export("__asyncify_data")?)),
    }
}

/// Reads the state and data globals (the data pointer widened to i64).
pub fn read_globals(mut store: impl AsContextMut, globals: (Global, Global)) -> (i32, i64) {
    let (state, data) = globals;
    let s = state.get(&mut store).unwrap_i32();
    let d = match data.get(&mut store) {
        Val::I32(x) => x as u32 as i64,
        Val::I64(x) => x,
        other => panic!("__asyncify_data holds {other:?}"),
    };
    (s, d)
}

fn export_func(caller: &mut Caller<'_, Host>, name: &str) -> Option<Func> {
    caller.get_export(name).and_then(Extern::into_func)
}

fn call_in_caller(caller: &mut Caller<'_, Host>, name: &str, args: &[Val]) -> Result<Vec<Val>> {
    let f = export_func(caller, name).ok_or_else(|| format_err!("no export `{name}`"))?;
    let ty = f.ty(&*caller);
    let mut out: Vec<Val> = ty.results().map(|t| Value::zero_val(&t)).collect();
    f.call(&mut *caller, args, &mut out)?;
    Ok(out)
}

/// Records the watched globals at `moment`, from inside an import.
fn sight(caller: &mut Caller<'_, Host>, moment: &'static str) {
    let (watch, own) = (caller.data().watch, caller.data().state_globals);
    let globals = watched_globals(watch, own, |name| {
        caller.get_export(name).and_then(Extern::into_global)
    });
    if let Some(globals) = globals {
        let (s, d) = read_globals(&mut *caller, globals);
        caller.data_mut().seen.push((moment, s, d));
    }
}

/// The body of every host function import; `import` is its index among the
/// module's function imports.
fn host_import(
    caller: &mut Caller<'_, Host>,
    import: usize,
    name: &str,
    result_types: &[ValType],
    params: &[Val],
    results: &mut [Val],
) -> Result<()> {
    // An import called by the host itself (a re-exported import) or by an
    // uninstrumented module runs in state 0.
    let state = match export_func(caller, "asyncify_get_state") {
        Some(_) => call_in_caller(caller, "asyncify_get_state", &[])?[0].unwrap_i32(),
        None => 0,
    };
    let answer = caller.data().answer.clone();
    let fill = |results: &mut [Val], vals: Vec<Value>| -> Result<()> {
        if vals.len() != results.len() {
            bail!(
                "answer for `{name}` has {} values, want {}",
                vals.len(),
                results.len()
            );
        }
        for (slot, v) in results.iter_mut().zip(vals) {
            *slot = v.to_val();
        }
        Ok(())
    };
    match state {
        0 => {
            let call = ImportCall {
                name: name.to_string(),
                args: values(params),
            };
            let nth = caller.data().calls;
            caller.data_mut().calls += 1;
            caller.data_mut().log.push(call.clone());
            let callback = caller
                .data()
                .callbacks
                .iter()
                .find(|(import, _)| import == name)
                .map(|(_, export)| export.clone());
            if let Some(export) = callback {
                let out = call_in_caller(caller, &export, params)?;
                results.clone_from_slice(&out);
                return Ok(());
            }
            let host = caller.data();
            if host.instantiated && (host.unwind)(&call, At { import, nth }) {
                if export_func(caller, "asyncify_start_unwind").is_none() {
                    bail!("`{name}` wants to unwind but the module is not instrumented");
                }
                if caller.data().pending.is_some() {
                    bail!("`{name}` unwinds while another call is pending");
                }
                caller.data_mut().pending = Some(call);
                caller.data_mut().unwinds_started += 1;
                let ptr = caller.data().buffer.ptr_val();
                call_in_caller(caller, "asyncify_start_unwind", &[ptr])?;
                sight(caller, "import, unwind started");
                for (slot, ty) in results.iter_mut().zip(result_types) {
                    *slot = Value::zero_val(ty);
                }
            } else {
                fill(results, answer(&call, result_types))?;
            }
            Ok(())
        }
        2 => {
            sight(caller, "import, rewinding");
            call_in_caller(caller, "asyncify_stop_rewind", &[])?;
            let call = caller.data_mut().pending.take().ok_or_else(|| {
                format_err!("`{name}` re-entered while rewinding, but no call is pending")
            })?;
            if call.name != name {
                bail!(
                    "rewind resumed `{name}` but the call that unwound was `{}`",
                    call.name
                );
            }
            // Binaryen's output re-enters the import with the arguments of the
            // call that unwound (its saved locals feed the call again). A host
            // may rely on that, e.g. to write a result through a pointer
            // argument when the rewind arrives, so we hold ours to it too.
            let again = values(params);
            if again != call.args {
                bail!(
                    "rewind re-entered `{name}` with {again:?}, but the call that unwound \
                     passed {:?}",
                    call.args
                );
            }
            caller.data_mut().rewinds_completed += 1;
            fill(results, answer(&call, result_types))
        }
        s => bail!("`{name}` called in asyncify state {s}"),
    }
}
