//! Save and restore code shared by the frame layouts of one shape.
//!
//! While unwinding, an instrumented function stores the locals of its layout
//! into a frame; while rewinding, it loads them back. Inline, that costs about
//! 7 bytes per local on each side (`local.get $p`, the store or load, and a
//! `local.get` or `local.set`), in every layout of every function. Layouts
//! with the same [`Shape`] (as many locals of each type, so the same offsets)
//! share a pair of helpers instead:
//!
//! ```wat
//! ;; save: k and the locals on the stack, in slot order
//! (func $__wasm_rewind_save_<shape> (param $k i32) (param ...)
//!   ;; push_frame's code with the size a constant: $p = the frame
//!   (i64.store (local.get $p) (local.get 1)) ...)
//! ;; restore: the locals, in slot order, for the caller to set
//! (func $__wasm_rewind_restore_<shape> (result ...)
//!   ;; pop_frame's code with the size a constant: $p = the frame
//!   (i64.load (local.get $p)) ...)
//! ```
//!
//! A save is then the `local.get`s and a call, a restore a call and the
//! `local.set`s: 2 bytes per local and one call, the call that went to
//! `push_frame` or `pop_frame` before. The helpers run only while unwinding
//! or rewinding: the normal path does not change.
//! Shapes are numbered in order of first use, which the pass makes the order
//! of the functions (see [`super::rewrite_functions`]), so the output does not
//! depend on threads.

use super::plan::{shape_types, type_size, Shape, SHAPE_ORDER};
use super::runtime::{self, AddedFunction};
use super::{Ctx, TypeInterner};
use std::collections::HashMap;
use wasmparser::ValType;

/// Layouts with more locals than this keep their code inline: a helper that
/// large is seldom shared, and one used once costs more than inline code.
const MOST_SLOTS: u32 = 24;

/// Whether a layout of `n_slots` locals saves and restores them by helpers.
fn shares_code(n_slots: usize) -> bool {
    n_slots <= MOST_SLOTS as usize
}

/// The helpers the pass adds, by shape.
pub struct FrameHelpers {
    /// Output index of the first helper: they come after every other added
    /// function, so their number can grow while functions are rewritten.
    first: u32,
    /// The shapes, in order of first use: shape `i` has its save helper at
    /// `first + 2i` and its restore helper right after.
    shapes: Vec<Shape>,
    ids: HashMap<Shape, u32>,
}

impl FrameHelpers {
    /// No helpers yet; the first will have output index `first`.
    pub fn new(first: u32) -> FrameHelpers {
        FrameHelpers {
            first,
            shapes: Vec::new(),
            ids: HashMap::new(),
        }
    }

    /// Output index of the first helper.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// Whether layouts of this shape use helpers.
    fn shared(shape: &Shape) -> bool {
        shares_code(shape.iter().sum::<u32>() as usize)
    }

    /// Whether a layout of this shape can be emitted now: it keeps its code
    /// inline, or its helpers exist.
    pub fn has(&self, shape: &Shape) -> bool {
        !Self::shared(shape) || self.ids.contains_key(shape)
    }

    /// Makes sure the helpers of `shape` exist (when it uses helpers), with
    /// their types in `types`. Called in function order, between the
    /// parallel steps.
    pub fn intern(&mut self, shape: &Shape, types: &mut TypeInterner) {
        if !Self::shared(shape) || self.ids.contains_key(shape) {
            return;
        }
        let (save, restore) = signatures(shape);
        types.intern(&save.0, &save.1);
        types.intern(&restore.0, &restore.1);
        self.ids.insert(*shape, self.shapes.len() as u32);
        self.shapes.push(*shape);
    }

    /// The save helper of `shape`, if it has one: `(k, locals...) -> ()`.
    pub fn save(&self, shape: &Shape) -> Option<u32> {
        self.ids.get(shape).map(|&i| self.first + 2 * i)
    }

    /// The restore helper of `shape`, if it has one: `() -> locals...`.
    pub fn restore(&self, shape: &Shape) -> Option<u32> {
        self.ids.get(shape).map(|&i| self.first + 2 * i + 1)
    }

    /// The helpers, in index order.
    pub fn functions(&self, ctx: &Ctx<'_>) -> Vec<AddedFunction> {
        let mut out = Vec::with_capacity(2 * self.shapes.len());
        for shape in &self.shapes {
            let (save, restore) = signatures(shape);
            let name = shape_name(shape);
            let (size, slots) = (frame_size(shape), slots(shape));
            let helpers = [
                ("save", save, runtime::save_helper(ctx, &slots, size)),
                (
                    "restore",
                    restore,
                    runtime::restore_helper(ctx, &slots, size),
                ),
            ];
            for (kind, (params, results), body) in helpers {
                out.push(AddedFunction {
                    name: format!("__wasm_rewind_{kind}_{name}").into(),
                    ty: ctx
                        .types
                        .get(&params, &results)
                        .expect("interned with the shape"),
                    body,
                    export: None,
                });
            }
        }
        out
    }
}

type Signature = (Vec<ValType>, Vec<ValType>);

/// The types of the save and the restore helper of `shape`.
fn signatures(shape: &Shape) -> (Signature, Signature) {
    let slots = shape_types(shape);
    let mut save_params = vec![ValType::I32];
    save_params.extend(&slots);
    ((save_params, Vec::new()), (Vec::new(), slots))
}

/// A name like `i64x2_i32x3`.
fn shape_name(shape: &Shape) -> String {
    let parts: Vec<String> = SHAPE_ORDER
        .iter()
        .zip(shape)
        .filter(|(_, &n)| n > 0)
        .map(|(t, n)| format!("{t}x{n}"))
        .collect();
    if parts.is_empty() {
        "empty".to_string()
    } else {
        parts.join("_")
    }
}

/// The slots of `shape`: type and offset, in order (as `make_layout` lays
/// out a layout of this shape).
fn slots(shape: &Shape) -> Vec<(ValType, u32)> {
    let mut offset = 0;
    shape_types(shape)
        .into_iter()
        .map(|t| {
            let o = offset;
            offset += type_size(t);
            (t, o)
        })
        .collect()
}

fn frame_size(shape: &Shape) -> u32 {
    shape_types(shape).into_iter().map(type_size).sum()
}
