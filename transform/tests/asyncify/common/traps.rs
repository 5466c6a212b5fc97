//! What a trap looks like from the host: its code and the functions it passed.

use wasmtime::WasmBacktrace;

/// The function names on the wasm backtrace of an error (innermost first), empty
/// when the error carries none.
pub fn backtrace_names(err: &wasmtime::Error) -> Vec<String> {
    err.downcast_ref::<WasmBacktrace>()
        .map(|bt| {
            bt.frames()
                .iter()
                .map(|f| f.func_name().unwrap_or("<unnamed>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The trap code of an error, if it is a wasm trap.
pub fn trap_code(err: &wasmtime::Error) -> Option<wasmtime::Trap> {
    err.downcast_ref::<wasmtime::Trap>().copied()
}
