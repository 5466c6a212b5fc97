//! One instance of a module with the host's imports, and typed access to its
//! memories, its state globals and the five `asyncify_*` exports.

use std::fmt;

use wasmtime::{bail, format_err, Instance, Memory, Module, Result, Store, Val};

use super::{
    engine, link, never, read_globals, values, watched_globals, Answer, Buffer, Host, ImportCall,
    Value,
};

/// One instance of a module, with the host's imports.
pub struct Guest {
    /// The store (its data is the [`Host`]).
    pub store: Store<Host>,
    /// The instance.
    pub instance: Instance,
}

/// A module that failed to instantiate (its start function trapped, a
/// segment did not fit), with the store it ran in: the import calls the
/// start function made are in its log, its fuel is spent.
pub struct Unlinked {
    /// Why instantiation failed.
    pub error: wasmtime::Error,
    /// The store.
    pub store: Store<Host>,
}

impl fmt::Debug for Unlinked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.error)
    }
}

/// The wasmtime fuel `store` used so far (its host must have
/// [`Host::fuel`]).
pub fn fuel_used(store: &Store<Host>) -> u64 {
    let start = store
        .data()
        .fuel
        .expect("the host starts the store with fuel");
    start - store.get_fuel().expect("the engine meters fuel")
}

/// The reference run: `export(args)` of the original module, called once on a
/// fresh instance whose imports answer with `answer` and never unwind.
/// Returns the guest (for its memories and globals afterwards), the results
/// and the import log.
pub fn run_original(
    wasm: impl AsRef<[u8]>,
    answer: Answer,
    export: &str,
    args: &[Value],
) -> Result<(Guest, Vec<Value>, Vec<ImportCall>)> {
    let mut guest = Guest::new(wasm, Host::new(answer, never()))?;
    let results = guest.call(export, args)?;
    let log = std::mem::take(&mut guest.host().log);
    Ok((guest, results, log))
}

impl Guest {
    /// Compiles `wasm` (or WAT) on [`engine`] and instantiates it (see
    /// [`link`]).
    pub fn new(wasm: impl AsRef<[u8]>, host: Host) -> Result<Guest> {
        let module = Module::new(&engine(), wasm.as_ref())?;
        Guest::from_module(&module, host).map_err(|unlinked| unlinked.error)
    }

    /// Instantiates `module` in a new store of its engine, with the host's
    /// fuel if it has some.
    pub fn from_module(module: &Module, host: Host) -> Result<Guest, Unlinked> {
        let fuel = host.fuel;
        let mut store = Store::new(module.engine(), host);
        if let Some(fuel) = fuel {
            store.set_fuel(fuel).expect("the engine meters fuel");
        }
        match link(&mut store, module) {
            Ok(instance) => Ok(Guest { store, instance }),
            Err(error) => Err(Unlinked { error, store }),
        }
    }

    /// The host data.
    pub fn host(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// Calls export `name` once (no driver loop) and returns its results.
    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>> {
        let args: Vec<Val> = args.iter().map(|v| v.to_val()).collect();
        Ok(values(&self.call_vals(name, &args)?))
    }

    /// [`Guest::call`] with wasmtime values (references included).
    pub fn call_vals(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>> {
        let f = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| format_err!("no exported function `{name}`"))?;
        let ty = f.ty(&self.store);
        let mut out: Vec<Val> = ty.results().map(|t| Value::zero_val(&t)).collect();
        f.call(&mut self.store, args, &mut out)?;
        Ok(out)
    }

    /// The wasmtime fuel used so far (see [`fuel_used`]).
    pub fn fuel_used(&self) -> u64 {
        fuel_used(&self.store)
    }

    /// Whether the module exports the asyncify controls (an original does not).
    pub fn instrumented(&mut self) -> bool {
        self.instance
            .get_func(&mut self.store, "asyncify_get_state")
            .is_some()
    }

    /// `asyncify_get_state()`.
    pub fn state(&mut self) -> Result<i32> {
        match self.call("asyncify_get_state", &[])?[..] {
            [Value::I32(s)] => Ok(s),
            ref other => bail!("asyncify_get_state returned {other:?}"),
        }
    }

    /// `asyncify_start_unwind(buffer.ptr)`.
    pub fn start_unwind(&mut self, buffer: &Buffer) -> Result<()> {
        self.call_vals("asyncify_start_unwind", &[buffer.ptr_val()])
            .map(drop)
    }

    /// `asyncify_stop_unwind()`.
    pub fn stop_unwind(&mut self) -> Result<()> {
        self.call("asyncify_stop_unwind", &[]).map(drop)
    }

    /// `asyncify_start_rewind(buffer.ptr)`.
    pub fn start_rewind(&mut self, buffer: &Buffer) -> Result<()> {
        self.call_vals("asyncify_start_rewind", &[buffer.ptr_val()])
            .map(drop)
    }

    /// `asyncify_stop_rewind()`.
    pub fn stop_rewind(&mut self) -> Result<()> {
        self.call("asyncify_stop_rewind", &[]).map(drop)
    }

    /// The exported memory `name`.
    pub fn memory(&mut self, name: &str) -> Memory {
        self.instance
            .get_memory(&mut self.store, name)
            .unwrap_or_else(|| panic!("no exported memory `{name}`"))
    }

    /// A copy of the whole exported memory `name`.
    pub fn memory_bytes(&mut self, name: &str) -> Vec<u8> {
        let m = self.memory(name);
        m.data(&self.store).to_vec()
    }

    /// Writes bytes at `addr` of the exported memory `name`.
    pub fn write_bytes(&mut self, name: &str, addr: u64, bytes: &[u8]) {
        let m = self.memory(name);
        m.write(&mut self.store, addr as usize, bytes)
            .expect("write in bounds");
    }

    /// Reads a field of `buffer`'s width at `addr` of its memory.
    fn read_word(&mut self, buffer: &Buffer, addr: u64) -> u64 {
        let m = self.memory(&buffer.memory);
        let mut b = [0; 8];
        let n = buffer.header() as usize / 2;
        m.read(&self.store, addr as usize, &mut b[..n])
            .expect("read in bounds");
        u64::from_le_bytes(b)
    }

    /// Writes a field of `buffer`'s width at `addr` of its memory.
    fn write_word(&mut self, buffer: &Buffer, addr: u64, value: u64) {
        let n = buffer.header() as usize / 2;
        self.write_bytes(&buffer.memory, addr, &value.to_le_bytes()[..n]);
    }

    /// Sets up `{pos, end}` as the ABI asks before an unwind:
    /// `pos = buffer.start()`, `end = buffer.end()`.
    pub fn init_buffer(&mut self, buffer: &Buffer) {
        self.write_word(buffer, buffer.ptr, buffer.start());
        self.write_word(buffer, buffer.ptr + buffer.header() / 2, buffer.end());
    }

    /// `(pos, end)` of `buffer`'s structure.
    pub fn pos_end(&mut self, buffer: &Buffer) -> (u64, u64) {
        (
            self.read_word(buffer, buffer.ptr),
            self.read_word(buffer, buffer.ptr + buffer.header() / 2),
        )
    }

    /// Sets `pos` of `buffer`'s structure (to rewind a saved unwind again).
    pub fn set_pos(&mut self, buffer: &Buffer, pos: u64) {
        self.write_word(buffer, buffer.ptr, pos);
    }

    /// The watched state and data globals (see [`Host::watch`]), read from
    /// the host side.
    pub fn watched(&mut self) -> Option<(i32, i64)> {
        let (watch, own) = (self.store.data().watch, self.store.data().state_globals);
        let globals = watched_globals(watch, own, |name| {
            self.instance.get_global(&mut self.store, name)
        })?;
        Some(read_globals(&mut self.store, globals))
    }

    /// Records the watched globals at `moment` in [`Host::seen`].
    pub fn note(&mut self, moment: &'static str) {
        if let Some((s, d)) = self.watched() {
            self.host().seen.push((moment, s, d));
        }
    }
}
