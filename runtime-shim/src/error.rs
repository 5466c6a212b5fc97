//! Errors of the shim.
//!
//! Every variant is plain data (`Clone + Eq`, no engine types inside) so that
//! tests can match on it and it can cross threads inside an `anyhow::Error`
//! or a wasmtime trap. Each message says what went wrong and what to do,
//! because the person reading it is usually a C programmer whose
//! setjmp/longjmp program just stopped.

use core::fmt;

use crate::abi::Errno;
use crate::hash::{hash_hex, SnapshotHash};

/// Which cap of the snapshot store a checkpoint met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotLimitKind {
    /// [`crate::StoreLimits::max_snapshots`].
    Count,
    /// [`crate::StoreLimits::max_bytes`].
    Bytes,
}

/// Errors of the shim; each Display says what went wrong and what to do. Must be Send + Sync + 'static and impl std::error::Error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimError {
    /// `stack_restore` on a hash the store does not hold: a forged or
    /// overwritten `jmp_buf`, one never filled by `stack_checkpoint` in this
    /// instance, or one whose snapshot was evicted.
    UnknownSnapshot {
        /// The hash read from the `jmp_buf`.
        hash: SnapshotHash,
    },
    /// A stored snapshot no longer hashes to its name: host memory was
    /// corrupted (or a test corrupted it on purpose).
    CorruptedSnapshot {
        /// The name the snapshot was stored under.
        hash: SnapshotHash,
    },
    /// `longjmp` to a `jmp_buf` whose `setjmp` frame has returned: the
    /// snapshot's stack pointer is below the current one (the stack grows
    /// down), so the frames it would resume no longer exist.
    StaleSnapshot {
        /// `__stack_pointer` when the snapshot was taken.
        snapshot_sp: u64,
        /// `__stack_pointer` at the `stack_restore`.
        current_sp: u64,
    },
    /// A checkpoint found the snapshot store full of live snapshots (none
    /// dead or displaced left to drop): the checkpoint fails rather than
    /// drop one a longjmp may still need.
    SnapshotLimit {
        /// Which cap was met.
        kind: SnapshotLimitKind,
        /// The cap ([`crate::StoreLimits`]).
        limit: u64,
        /// What the store held: snapshots, or bytes.
        live: u64,
    },
    /// The unwound frames do not fit the most the asyncify buffer may grow
    /// to ([`crate::ShimConfig::max_buffer`]), or the buffer's memory cannot
    /// grow.
    BufferTooSmall {
        /// Bytes the frames need (at least).
        needed: u64,
        /// Bytes the buffer may have.
        available: u64,
    },
    /// The module lacks the `asyncify_*` exports, so it cannot be unwound.
    NotInstrumented {
        /// The first missing export.
        missing: String,
    },
    /// The module lacks an export the shim needs, such as `__stack_pointer`.
    MissingExport {
        /// The missing export's name.
        name: String,
        /// How to get the export (linker flag, instrument preset).
        hint: String,
    },
    /// `longjmp` to a `jmp_buf` whose `setjmp` ran in another WASIX
    /// context: each context has its own stack, and a jump cannot move
    /// between them.
    LongjmpAcrossContexts {
        /// The context the `setjmp` ran in (0: the main one).
        set_in: u64,
        /// The context calling `longjmp`.
        current: u64,
    },
    /// The entrypoint of a WASIX context returned, which Wasmer does not
    /// allow either: the program ends with status 129, as on Wasmer.
    ContextEntrypointReturned {
        /// The context's id.
        id: u64,
    },
    /// Misuse detected at run time, e.g. `stack_restore` re-entered while
    /// rewinding.
    Guest {
        /// What the guest did wrong.
        message: String,
    },
}

impl ShimError {
    /// The exit status of a program whose context entrypoint returned
    /// ([`ShimError::ContextEntrypointReturned`]): Wasmer's.
    pub const CONTEXT_RETURNED_STATUS: i32 = 129;

    /// The WASIX errno that best describes the error, for a syscall that
    /// returns one (`stack_checkpoint`) or for the exit code of a trap.
    pub fn errno(&self) -> Errno {
        match self {
            // The jmp_buf argument names nothing usable.
            ShimError::UnknownSnapshot { .. } => Errno::Inval,
            // Not the guest's fault: a host-side failure.
            ShimError::CorruptedSnapshot { .. } => Errno::Unknown,
            // longjmp to a dead frame is an invalid argument (UB in C).
            ShimError::StaleSnapshot { .. } => Errno::Inval,
            ShimError::LongjmpAcrossContexts { .. } => Errno::Inval,
            ShimError::ContextEntrypointReturned { .. } => Errno::Inval,
            // "Value too large to be stored": the state does not fit its space.
            ShimError::SnapshotLimit { .. } | ShimError::BufferTooSmall { .. } => Errno::Overflow,
            // "Executable file format error": the module is not built for this.
            ShimError::NotInstrumented { .. } | ShimError::MissingExport { .. } => Errno::Noexec,
            ShimError::Guest { .. } => Errno::Inval,
        }
    }
}

impl fmt::Display for ShimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShimError::UnknownSnapshot { hash } => write!(
                f,
                "longjmp/stack_restore: no snapshot {} is stored. The jmp_buf was not \
                 filled by setjmp (stack_checkpoint) in this instance, was overwritten, \
                 or it names a snapshot the store dropped: its setjmp frame has returned, \
                 or the jmp_buf was given a newer snapshot by a later setjmp and the old \
                 one was dropped to make room; make sure setjmp ran on this jmp_buf and \
                 its function is still running",
                hash_hex(hash)
            ),
            ShimError::CorruptedSnapshot { hash } => write!(
                f,
                "snapshot {} no longer matches its hash: the host memory holding it was \
                 corrupted. This is a bug in the host, not in the guest; please report it",
                hash_hex(hash)
            ),
            ShimError::StaleSnapshot {
                snapshot_sp,
                current_sp,
            } => write!(
                f,
                "longjmp to a jmp_buf whose setjmp frame has already returned (stack \
                 pointer {snapshot_sp:#x} at setjmp is below the current {current_sp:#x}); \
                 this is undefined behaviour in C: call longjmp only while the function \
                 that called setjmp is still running"
            ),
            ShimError::LongjmpAcrossContexts { set_in, current } => write!(
                f,
                "longjmp across WASIX contexts: the jmp_buf was set by setjmp in context \
                 {set_in}, and longjmp was called in context {current}; each context has \
                 its own stack, so a jump can only return to a setjmp of the context that \
                 makes it: switch back to context {set_in} and longjmp there"
            ),
            ShimError::ContextEntrypointReturned { id } => write!(
                f,
                "the entrypoint of WASIX context {id} returned, which is not allowed: a \
                 context must switch to another one instead (the program ends with status \
                 {}, as on Wasmer)",
                ShimError::CONTEXT_RETURNED_STATUS
            ),
            ShimError::SnapshotLimit { kind, limit, live } => match kind {
                SnapshotLimitKind::Count => write!(
                    f,
                    "setjmp/stack_checkpoint: the snapshot store holds {live} live snapshots, \
                     its limit of {limit}, and every one may still be jumped to; raise the \
                     limit (wasm-rewind run --max-snapshots N, or StoreLimits::max_snapshots)"
                ),
                SnapshotLimitKind::Bytes => write!(
                    f,
                    "setjmp/stack_checkpoint: the snapshot store holds {live} bytes of live \
                     snapshots and the next does not fit its limit of {limit} bytes; raise \
                     the limit (wasm-rewind run --max-snapshot-memory BYTES, or \
                     StoreLimits::max_bytes)"
                ),
            },
            ShimError::BufferTooSmall { needed, available } => write!(
                f,
                "the unwound stack needs at least {needed} bytes of asyncify buffer, and \
                 it may have {available}; raise the limit (wasm-rewind run \
                 --max-unwind-buffer BYTES, or ShimConfig::max_buffer)"
            ),
            ShimError::NotInstrumented { missing } => write!(
                f,
                "the module is not instrumented for stack unwinding (it does not export \
                 `{missing}`); run `wasm-rewind instrument` on it first"
            ),
            ShimError::MissingExport { name, hint } => {
                write!(f, "the module does not export `{name}`: {hint}")
            }
            ShimError::Guest { message } => {
                write!(f, "the guest misused setjmp/longjmp or contexts: {message}")
            }
        }
    }
}

impl std::error::Error for ShimError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<ShimError> {
        vec![
            ShimError::UnknownSnapshot { hash: [0xab; 16] },
            ShimError::CorruptedSnapshot { hash: [0x01; 16] },
            ShimError::StaleSnapshot {
                snapshot_sp: 0x1000,
                current_sp: 0x2000,
            },
            ShimError::SnapshotLimit {
                kind: SnapshotLimitKind::Count,
                limit: 10,
                live: 10,
            },
            ShimError::BufferTooSmall {
                needed: 2048,
                available: 1024,
            },
            ShimError::NotInstrumented {
                missing: "asyncify_start_unwind".into(),
            },
            ShimError::MissingExport {
                name: "__stack_pointer".into(),
                hint: "link with -Wl,--export=__stack_pointer".into(),
            },
            ShimError::Guest {
                message: "stack_restore re-entered while rewinding".into(),
            },
            ShimError::LongjmpAcrossContexts {
                set_in: 0,
                current: 3,
            },
            ShimError::ContextEntrypointReturned { id: 2 },
        ]
    }

    #[test]
    fn is_a_std_error_that_crosses_threads() {
        fn assert_bounds<T: std::error::Error + Send + Sync + 'static>() {}
        assert_bounds::<ShimError>();
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(all().remove(0));
        assert!(boxed.to_string().contains("no snapshot"));
    }

    #[test]
    fn errnos() {
        let errnos: Vec<Errno> = all().iter().map(ShimError::errno).collect();
        assert_eq!(
            errnos,
            [
                Errno::Inval,
                Errno::Unknown,
                Errno::Inval,
                Errno::Overflow,
                Errno::Overflow,
                Errno::Noexec,
                Errno::Noexec,
                Errno::Inval,
                Errno::Inval,
                Errno::Inval,
            ]
        );
        assert!(all().iter().all(|e| e.errno() != Errno::Success));
    }

    #[test]
    fn messages_carry_the_details() {
        let msgs: Vec<String> = all().iter().map(ToString::to_string).collect();
        assert!(msgs[0].contains(&"ab".repeat(16)));
        assert!(msgs[1].contains(&"01".repeat(16)));
        assert!(msgs[2].contains("0x1000") && msgs[2].contains("0x2000"));
        assert!(msgs[3].contains("10 live") && msgs[3].contains("--max-snapshots"));
        assert!(msgs[4].contains("2048") && msgs[4].contains("1024"));
        assert!(msgs[4].contains("--max-unwind-buffer"));
        assert!(msgs[8].contains("context 0") && msgs[8].contains("context 3"));
        assert!(msgs[9].contains("context 2") && msgs[9].contains("129"));
        let bytes = ShimError::SnapshotLimit {
            kind: SnapshotLimitKind::Bytes,
            limit: 4096,
            live: 4000,
        };
        assert!(bytes.to_string().contains("--max-snapshot-memory"));
        assert!(
            msgs[5].contains("asyncify_start_unwind") && msgs[5].contains("wasm-rewind instrument")
        );
        assert!(msgs[6].contains("__stack_pointer") && msgs[6].contains("-Wl,--export"));
        assert!(msgs[7].contains("re-entered"));
    }
}
