//! Where a module's C stack lives: the globals a stack-switching host reads.
//!
//! A WASIX host (Wasmer) drives `stack_checkpoint` / `stack_restore` by
//! unwinding into the free part of the C stack of memory 0. It finds that
//! part through exported globals, by this rule (lib/wasix, `func_env.rs`):
//!
//! - top: `__stack_high`, else the initial value of `__stack_pointer`;
//! - bottom: `__stack_low`, else `__data_end` when it lies below the top,
//!   else address 0 (with a warning when neither is exported);
//! - the free part is `[bottom, __stack_pointer)` at the time of the call,
//!   and without an exported `__stack_pointer` every checkpoint fails with
//!   errno 79.
//!
//! wasm-ld defines these globals only when something references or exports
//! them, and `clang -O` runs `wasm-opt`, which strips the name section, so a
//! module may have none of them by name. This module finds each one by
//! export, then by name, and the stack pointer also by its use in code: it
//! is the mutable global that function prologues lower
//! (`global.get g; i32.const N; i32.sub; ...; global.set g`).
//!
//! The bottom is "known" when a host following the rule above cannot write
//! over program data: `__stack_low` exists, or `__data_end` lies below the
//! stack's top (wasm-ld's classic layout: data, then the stack), or the
//! stack comes first (wasm-ld 22's default, `--stack-first`: every data
//! segment of memory 0 starts at or above the initial stack pointer, so
//! `[0, top)` holds nothing but the stack). In the last case the pass adds
//! `__stack_low = 0` so the host need not fall back on its own.
//! In the classic layout without those globals the bottom cannot be derived:
//! `.bss` follows the data segments but has no segment of its own, so a bound
//! guessed from the segments would land inside it.

use crate::analysis::scan::FunctionScan;
use crate::module_info::ModuleInfo;
use wasmparser::{ExternalKind, ValType};

/// The globals a stack-switching host looks for, in the order it wants them.
pub const STACK_GLOBAL_NAMES: [&str; 5] = [
    "__stack_pointer",
    "__stack_low",
    "__stack_high",
    "__data_end",
    "__heap_base",
];

/// How a stack global was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// The module exports it under its name.
    Export,
    /// The name section names it.
    NameSection,
    /// Recognised from function prologues (the stack pointer only).
    Prologue,
}

/// One stack global of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackGlobal {
    /// Its index in the input's global index space.
    pub index: u32,
    /// How it was found.
    pub found_by: FoundBy,
    /// Its initial value, when the initializer is a constant.
    pub initial: Option<u64>,
}

/// The stack globals of a module, and what a host can derive from them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackLayout {
    /// `__stack_pointer`.
    pub pointer: Option<StackGlobal>,
    /// `__stack_low`.
    pub low: Option<StackGlobal>,
    /// `__stack_high`.
    pub high: Option<StackGlobal>,
    /// `__data_end`.
    pub data_end: Option<StackGlobal>,
    /// `__heap_base`.
    pub heap_base: Option<StackGlobal>,
    /// The stack comes first in memory 0: every data segment starts at or
    /// above the stack pointer's initial value, so the stack's bottom is 0.
    pub stack_first: bool,
}

/// How a host that follows Wasmer's rule would find the bottom of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackBottom {
    /// From `__stack_low`.
    StackLow,
    /// From `__data_end`, which lies below the stack's top.
    DataEnd,
    /// The stack comes first; the pass adds `__stack_low = 0`.
    StackFirst,
    /// Not known: a host would fall back to address 0 and write over data.
    Unknown,
}

impl StackLayout {
    /// Finds the stack globals of `info`; `scans` (one per defined function)
    /// supply the prologues.
    pub fn find(info: &ModuleInfo<'_>, scans: &[FunctionScan]) -> StackLayout {
        let addr = match info.memories.first() {
            Some(m) if m.memory64 => ValType::I64,
            _ => ValType::I32,
        };
        let by_name = |name: &str| find_named(info, name, addr);
        let pointer = by_name("__stack_pointer").or_else(|| from_prologues(info, scans, addr));
        let mut layout = StackLayout {
            pointer,
            low: by_name("__stack_low"),
            high: by_name("__stack_high"),
            data_end: by_name("__data_end"),
            heap_base: by_name("__heap_base"),
            stack_first: false,
        };
        layout.stack_first = layout.top().is_some_and(|top| {
            let mut segments = info
                .data_segments
                .iter()
                .filter(|d| d.memory == 0)
                .peekable();
            // With no segment at all nothing says where `.bss` is.
            segments.peek().is_some() && segments.all(|d| d.offset.is_some_and(|o| o >= top))
        });
        layout
    }

    /// The stack's top as a host computes it: `__stack_high`, else the
    /// stack pointer's initial value.
    pub fn top(&self) -> Option<u64> {
        match self.high {
            Some(h) => h.initial,
            None => self.pointer.and_then(|p| p.initial),
        }
    }

    /// How a host following Wasmer's rule finds the stack's bottom.
    pub fn bottom(&self) -> StackBottom {
        if self.low.is_some() {
            return StackBottom::StackLow;
        }
        if let (Some(end), Some(top)) = (self.data_end.and_then(|d| d.initial), self.top()) {
            if end < top {
                return StackBottom::DataEnd;
            }
        }
        if self.stack_first {
            StackBottom::StackFirst
        } else {
            StackBottom::Unknown
        }
    }

    /// Bytes of C stack between the bottom a host following Wasmer's rule
    /// finds and the top: what Wasmer can unwind into, less what is in use
    /// at the call. `None` when the bottom or the top is not known.
    pub fn size(&self) -> Option<u64> {
        let bottom = match self.bottom() {
            StackBottom::StackLow => self.low?.initial?,
            StackBottom::DataEnd => self.data_end?.initial?,
            StackBottom::StackFirst => 0,
            StackBottom::Unknown => return None,
        };
        self.top()?.checked_sub(bottom)
    }

    /// The globals found, with the names a host looks for, in
    /// [`STACK_GLOBAL_NAMES`] order.
    pub fn named(&self) -> Vec<(&'static str, StackGlobal)> {
        let all = [
            self.pointer,
            self.low,
            self.high,
            self.data_end,
            self.heap_base,
        ];
        STACK_GLOBAL_NAMES
            .iter()
            .zip(all)
            .filter_map(|(n, g)| Some((*n, g?)))
            .collect()
    }
}

/// The global exported as `name`, else the lowest-numbered one the name
/// section calls so, if it has the address type (and, for the stack
/// pointer, is mutable; the bounds are immutable).
fn find_named(info: &ModuleInfo<'_>, name: &str, addr: ValType) -> Option<StackGlobal> {
    let (index, exported) = info.find_named(ExternalKind::Global, name)?;
    let found_by = if exported {
        FoundBy::Export
    } else {
        FoundBy::NameSection
    };
    let ty = info.globals.get(index as usize)?;
    let mutable_wanted = name == "__stack_pointer";
    (ty.content_type == addr && ty.mutable == mutable_wanted).then(|| StackGlobal {
        index,
        found_by,
        initial: info.global_inits[index as usize],
    })
}

/// The one mutable global of the address type that prologues lower, when
/// exactly one global is lowered that way. Two candidates are ambiguous: no
/// guess.
fn from_prologues(
    info: &ModuleInfo<'_>,
    scans: &[FunctionScan],
    addr: ValType,
) -> Option<StackGlobal> {
    let mut candidates: Vec<u32> = scans
        .iter()
        .flat_map(|s| s.stack_decrements.iter().copied())
        .filter(|&g| {
            let ty = info.globals[g as usize];
            ty.mutable && ty.content_type == addr
        })
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    match candidates[..] {
        [index] => Some(StackGlobal {
            index,
            found_by: FoundBy::Prologue,
            initial: info.global_inits[index as usize],
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::scan::scan_functions;
    use crate::module_info::parse_module;

    fn layout(wat: &str) -> StackLayout {
        let wasm = wat::parse_str(wat).unwrap();
        let info = parse_module(&wasm).unwrap();
        let scans = scan_functions(&info).unwrap();
        StackLayout::find(&info, &scans)
    }

    /// A stripped module (no names, no exports of the globals) in wasm-ld's
    /// classic layout: data at 1024, the stack above it.
    const STRIPPED_CLASSIC: &str = r#"(module
        (memory 2)
        (global (mut i32) (i32.const 70000))
        (global $other (mut i32) (i32.const 5))
        (func (local i32)
          global.get 0
          i32.const 32
          i32.sub
          local.tee 0
          global.set 0
          global.get 1
          i32.const 1
          i32.add
          global.set 1
          local.get 0
          i32.const 32
          i32.add
          global.set 0)
        (data (i32.const 1024) "hello"))"#;

    #[test]
    fn stack_pointer_is_found_from_prologues() {
        let l = layout(STRIPPED_CLASSIC);
        let sp = l.pointer.unwrap();
        assert_eq!(sp.index, 0);
        assert_eq!(sp.found_by, FoundBy::Prologue);
        assert_eq!(sp.initial, Some(70000));
        assert_eq!(l.top(), Some(70000));
        // Data below the stack and no bound: not derivable.
        assert!(!l.stack_first);
        assert_eq!(l.bottom(), StackBottom::Unknown);
    }

    #[test]
    fn two_lowered_globals_are_ambiguous() {
        let l = layout(
            r#"(module
            (memory 1)
            (global (mut i32) (i32.const 100))
            (global (mut i32) (i32.const 200))
            (func
              global.get 0 i32.const 16 i32.sub global.set 0
              global.get 1 i32.const 16 i32.sub global.set 1))"#,
        );
        assert_eq!(l.pointer, None);
    }

    #[test]
    fn a_lowered_global_that_is_never_set_is_not_the_stack_pointer() {
        let l = layout(
            r#"(module
            (memory 1)
            (global (mut i32) (i32.const 100))
            (func (result i32) global.get 0 i32.const 16 i32.sub))"#,
        );
        assert_eq!(l.pointer, None);
    }

    #[test]
    fn stack_first_layout_has_a_known_bottom() {
        let l = layout(
            r#"(module
            (memory 3)
            (global $__stack_pointer (mut i32) (i32.const 65536))
            (func global.get 0 i32.const 16 i32.sub global.set 0)
            (data (i32.const 65536) "rodata")
            (data (i32.const 70000) "data"))"#,
        );
        assert_eq!(l.pointer.unwrap().found_by, FoundBy::NameSection);
        assert!(l.stack_first);
        assert_eq!(l.bottom(), StackBottom::StackFirst);
    }

    #[test]
    fn no_data_segment_says_nothing_about_bss() {
        let l = layout(
            r#"(module
            (memory 3)
            (global $__stack_pointer (mut i32) (i32.const 65536)))"#,
        );
        assert!(!l.stack_first);
        assert_eq!(l.bottom(), StackBottom::Unknown);
    }

    #[test]
    fn exported_bounds_are_used_as_a_host_would() {
        let l = layout(
            r#"(module
            (memory 3)
            (global $sp (mut i32) (i32.const 140000))
            (global $end i32 (i32.const 70000))
            (export "__stack_pointer" (global $sp))
            (export "__data_end" (global $end))
            (data (i32.const 1024) "x"))"#,
        );
        assert_eq!(l.pointer.unwrap().found_by, FoundBy::Export);
        assert_eq!(l.bottom(), StackBottom::DataEnd);

        // __data_end above the top (stack first) is not a bound by itself.
        let l = layout(
            r#"(module
            (memory 3)
            (global $sp (mut i32) (i32.const 65536))
            (global $end i32 (i32.const 70000))
            (global $low i32 (i32.const 0))
            (export "__stack_pointer" (global $sp))
            (export "__data_end" (global $end))
            (export "__stack_low" (global $low))
            (data (i32.const 65536) "x"))"#,
        );
        assert_eq!(l.bottom(), StackBottom::StackLow);
        assert_eq!(
            l.named().iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["__stack_pointer", "__stack_low", "__data_end"]
        );
    }

    #[test]
    fn a_name_on_a_global_of_the_wrong_kind_is_ignored() {
        let l = layout(
            r#"(module
            (memory 1)
            (global $__stack_pointer i32 (i32.const 100))
            (global $__stack_low (mut i32) (i32.const 0)))"#,
        );
        assert_eq!(l.pointer, None);
        assert_eq!(l.low, None);
    }
}
