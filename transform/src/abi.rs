//! The names of the Asyncify ABI and of our additions to it, in one place:
//! the pass writes them, and the shim, `inspect` and the recogniser of
//! instrumented modules look for them.

/// Starts unwinding into the buffer whose `{pos, end}` header is at the
/// given address: `asyncify_start_unwind(ptr)`.
pub const START_UNWIND: &str = "asyncify_start_unwind";
/// Ends an unwind once the stack is back at the host: `asyncify_stop_unwind()`.
pub const STOP_UNWIND: &str = "asyncify_stop_unwind";
/// Starts rewinding from the buffer at the given address:
/// `asyncify_start_rewind(ptr)`.
pub const START_REWIND: &str = "asyncify_start_rewind";
/// Ends a rewind, called from the innermost resumed call:
/// `asyncify_stop_rewind()`.
pub const STOP_REWIND: &str = "asyncify_stop_rewind";
/// Reads the state (0 normal, 1 unwinding, 2 rewinding):
/// `asyncify_get_state() -> i32`.
pub const GET_STATE: &str = "asyncify_get_state";

/// The five control functions every instrumented module exports, in the
/// order the pass adds them.
pub const CONTROL_EXPORTS: [&str; 5] = [
    START_UNWIND,
    STOP_UNWIND,
    START_REWIND,
    STOP_REWIND,
    GET_STATE,
];

/// The state global (exported with `--export-globals`, imported from `env`
/// with `--import-globals`).
pub const STATE_GLOBAL: &str = "__asyncify_state";
/// The global holding the address of the `{pos, end}` header.
pub const DATA_GLOBAL: &str = "__asyncify_data";

/// The memory `--secondary-memory` adds for the buffer, exported under this
/// name (as Binaryen's `asyncify-in-secondary-memory` does).
pub const SECONDARY_MEMORY_EXPORT: &str = "asyncify_memory";

/// Name of the function called when a frame does not fit in the buffer: it
/// asks the host for room through the grow hook, or traps.
pub const OVERFLOW_FUNCTION: &str = "__wasm_rewind_buffer_overflow";
/// Name of the function that traps when a rewind meets [`OVERFLOW_MARK`]: the
/// buffer holds an unwind that overflowed, cut short before its outer frames.
pub const TRUNCATED_FUNCTION: &str = "__wasm_rewind_truncated_buffer";
/// The call index an overflowing unwind leaves on top of its frames before it
/// traps (no function has that many calls). A host that rewinds the buffer
/// anyway, as Wasmer 7.4 does (it runs its after-unwind step even when the
/// unwind trapped), reads it first and traps, instead of resuming the outer
/// functions from inner frames' bytes.
pub const OVERFLOW_MARK: u32 = u32::MAX;
/// Export name of the grow hook: a table of one `funcref`, null until a host
/// that can grow the buffer puts a `(func (param needed: addr))` in it.
pub const GROW_HOOK_EXPORT: &str = "__wasm_rewind_grow_hook";
/// Name of the function that traps when `--asserts` finds an unexpected unwind.
pub const ASSERT_FUNCTION: &str = "__wasm_rewind_assert_failed";

/// The global an exceptions lowering (`--sjlj exceptions`) adds to number
/// the invocations that call setjmp; its name in the name section marks the
/// module as lowered.
pub const SETJMP_INVOCATIONS_GLOBAL: &str = "__wasm_rewind_setjmp_invocations";

/// The function a longjmp becomes under an exceptions lowering: it throws.
pub const LONGJMP_FUNCTION: &str = "__wasm_rewind_longjmp";

/// The function left where code that never runs still calls
/// `stack_checkpoint` under an exceptions lowering: it traps.
pub const UNREACHABLE_CHECKPOINT_FUNCTION: &str = "__wasm_rewind_unreachable_checkpoint";

/// The WASIX stack calls, in both the 32-bit and the 64-bit module, under
/// both names of the restore call: the setjmp/longjmp calls the shim
/// serves.
pub const WASIX_STACK_IMPORTS: &[&str] = &[
    "wasix_32v1.stack_checkpoint",
    "wasix_32v1.stack_restore",
    "wasix_32v1.stack_rewind",
    "wasix_64v1.stack_checkpoint",
    "wasix_64v1.stack_restore",
    "wasix_64v1.stack_rewind",
];

/// The WASIX context calls (issue 16: cooperative multitasking), in both
/// modules. Only `context_switch` unwinds; create and destroy are plain
/// calls.
pub const WASIX_CONTEXT_IMPORTS: &[&str] = &[
    "wasix_32v1.context_create",
    "wasix_32v1.context_switch",
    "wasix_32v1.context_destroy",
    "wasix_64v1.context_create",
    "wasix_64v1.context_switch",
    "wasix_64v1.context_destroy",
];

/// The imports that may unwind the stack when a WASIX host serves them: the
/// stack calls and `context_switch`. `--preset wasix` and `--embed-runtime`
/// let exactly these unwind.
pub const WASIX_UNWINDING_IMPORTS: &[&str] = &[
    "wasix_32v1.stack_checkpoint",
    "wasix_32v1.stack_restore",
    "wasix_32v1.stack_rewind",
    "wasix_32v1.context_switch",
    "wasix_64v1.stack_checkpoint",
    "wasix_64v1.stack_restore",
    "wasix_64v1.stack_rewind",
    "wasix_64v1.context_switch",
];

/// Whether `module.name` is one of [`WASIX_CONTEXT_IMPORTS`].
pub fn is_wasix_context_import(module: &str, name: &str) -> bool {
    matches!(module, "wasix_32v1" | "wasix_64v1")
        && matches!(
            name,
            "context_create" | "context_switch" | "context_destroy"
        )
}

/// Whether `module.name` is one of [`WASIX_UNWINDING_IMPORTS`].
pub fn is_wasix_unwinding_import(module: &str, name: &str) -> bool {
    is_wasix_stack_import(module, name)
        || (is_wasix_context_import(module, name) && name == "context_switch")
}

/// Whether `module.name` is a WASIX call whose unwind is never rewound:
/// `stack_restore` (or `stack_rewind`) unwinds the stack only to discard it
/// and rewind a checkpoint's frames in its place.
pub fn is_never_rewound_import(module: &str, name: &str) -> bool {
    matches!(module, "wasix_32v1" | "wasix_64v1")
        && matches!(name, "stack_restore" | "stack_rewind")
}

/// Whether `module.name` is one of [`WASIX_STACK_IMPORTS`].
pub fn is_wasix_stack_import(module: &str, name: &str) -> bool {
    matches!(module, "wasix_32v1" | "wasix_64v1")
        && matches!(name, "stack_checkpoint" | "stack_restore" | "stack_rewind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unwinding_list_is_the_stack_calls_and_context_switch() {
        let mut expected: Vec<&str> = WASIX_STACK_IMPORTS
            .iter()
            .chain(
                WASIX_CONTEXT_IMPORTS
                    .iter()
                    .filter(|i| i.ends_with(".context_switch")),
            )
            .copied()
            .collect();
        let mut listed = WASIX_UNWINDING_IMPORTS.to_vec();
        expected.sort();
        listed.sort();
        assert_eq!(listed, expected);
        for import in WASIX_CONTEXT_IMPORTS {
            let (module, name) = import.split_once('.').unwrap();
            assert!(is_wasix_context_import(module, name), "{import}");
            assert!(!is_wasix_stack_import(module, name), "{import}");
        }
        assert!(!is_wasix_context_import("env", "context_switch"));
        for import in WASIX_STACK_IMPORTS.iter().chain(WASIX_CONTEXT_IMPORTS) {
            let (module, name) = import.split_once('.').unwrap();
            assert_eq!(
                is_wasix_unwinding_import(module, name),
                WASIX_UNWINDING_IMPORTS.contains(import),
                "{import}"
            );
        }
    }

    #[test]
    fn wasix_predicate_matches_the_list() {
        for module in ["wasix_32v1", "wasix_64v1", "wasi_snapshot_preview1", "env"] {
            for name in [
                "stack_checkpoint",
                "stack_restore",
                "stack_rewind",
                "fd_write",
            ] {
                let listed = WASIX_STACK_IMPORTS.contains(&format!("{module}.{name}").as_str());
                assert_eq!(
                    is_wasix_stack_import(module, name),
                    listed,
                    "{module}.{name}"
                );
            }
        }
    }
}
