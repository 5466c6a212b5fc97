//! The guests' common part and the host that runs them.

use wasm_rewind_shim::{add_to_linker, call, ShimConfig, ShimError, ShimState};
use wasmtime::{Engine, Instance, Linker, Module, Store, Trap, Val};

/// A program with a C-like stack: `__stack_pointer` starts at 65536 and the
/// data ends at 1072, so the stack's low end is 1072. Bytes 1040..1072 are
/// zeros, for jmp_bufs and counters outside the stack. `$setjmp`/`$longjmp`
/// mirror the header: the jmp_buf's `user` field is the checkpoint's `ret`.
pub const PRELUDE: &str = r#"
  (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (import "wasix_32v1" "stack_restore" (func $restore (param i32 i64)))
  (memory (export "memory") 2)
  (global $__stack_pointer (mut i32) (i32.const 65536))
  (global $__stack_low i32 (i32.const 1072))
  (data (i32.const 1024) "sixteen bytes...")
  (data (i32.const 1040) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (func $setjmp (param $env i32) (result i32)
    (drop (call $checkpoint (local.get $env) (local.get $env)))
    (i32.wrap_i64 (i64.load (local.get $env))))
  (func $longjmp (param $env i32) (param $val i32)
    (call $restore (local.get $env)
      (i64.extend_i32_u (select (local.get $val) (i32.const 1) (local.get $val)))))
  ;; Allocates a frame of `size` bytes on the C stack, returns its address.
  (func $push (param $size i32) (result i32)
    (global.set $__stack_pointer (i32.sub (global.get $__stack_pointer) (local.get $size)))
    (global.get $__stack_pointer))
  (func $pop (param $size i32)
    (global.set $__stack_pointer (i32.add (global.get $__stack_pointer) (local.get $size))))
"#;

/// The store's data: the shim alone (the guests import nothing else).
pub struct Host {
    pub shim: ShimState,
}

/// The shim's part of a [`Host`].
pub fn shim(h: &mut Host) -> &mut ShimState {
    &mut h.shim
}

/// `(module imports PRELUDE body)`, instrumented with default options.
pub fn instrument(imports: &str, body: &str) -> Vec<u8> {
    let wat = format!("(module {imports} {PRELUDE} {body})");
    let wasm = wat::parse_str(&wat).expect("test module parses");
    wasm_rewind_transform::instrument(&wasm, &Default::default())
        .expect("instrumentation succeeds")
        .wasm
}

/// One module, compiled once, with the engine and linker every instance of
/// it shares.
pub struct Guest {
    engine: Engine,
    module: Module,
    linker: Linker<Host>,
}

impl Guest {
    /// An instrumented module.
    pub fn from_wasm(wasm: &[u8]) -> Guest {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker, shim).unwrap();
        Guest {
            engine,
            module,
            linker,
        }
    }

    /// The compiled module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// A fresh instance with its own shim state.
    pub fn instance(&self, config: ShimConfig) -> (Store<Host>, Instance) {
        let mut store = Store::new(
            &self.engine,
            Host {
                shim: ShimState::new(config),
            },
        );
        let instance = self.linker.instantiate(&mut store, &self.module).unwrap();
        (store, instance)
    }

    /// Calls `name` (no parameters, one i32 result) through the shim.
    pub fn call(
        &self,
        store: &mut Store<Host>,
        instance: &Instance,
        name: &str,
    ) -> wasmtime::Result<i32> {
        let mut out = [Val::I32(0)];
        call(store, instance, shim, name, &[], &mut out)?;
        Ok(out[0].unwrap_i32())
    }

    /// Runs `name` in a fresh instance: its result, and the store after.
    pub fn run(&self, name: &str, config: ShimConfig) -> (wasmtime::Result<i32>, Store<Host>) {
        let (mut store, instance) = self.instance(config);
        let result = self.call(&mut store, &instance, name);
        (result, store)
    }

    /// Runs `name` in a fresh instance and returns its error.
    pub fn fails(&self, name: &str, config: ShimConfig) -> wasmtime::Error {
        match self.run(name, config).0 {
            Ok(v) => panic!("`{name}` returned {v} instead of failing"),
            Err(e) => e,
        }
    }
}

/// The shim's error behind `e`, if that is what it is.
pub fn shim_error(e: &wasmtime::Error) -> Option<&ShimError> {
    e.downcast_ref::<ShimError>()
        .or_else(|| e.chain().find_map(|c| c.downcast_ref::<ShimError>()))
}

/// The trap behind `e`, if that is what it is.
pub fn trap(e: &wasmtime::Error) -> Option<Trap> {
    e.chain().find_map(|c| c.downcast_ref::<Trap>()).copied()
}
