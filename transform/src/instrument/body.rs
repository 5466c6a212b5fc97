//! One function body, decoded once for the rewrite: its locals, its operators,
//! the matching `else`/`end` of every block, and the operand types the rewrite
//! needs (taken from wasmparser's validator at the points that matter).

use crate::error::{Error, Result};
use wasmparser::{FuncValidator, Operator, ValType, ValidatorResources};

/// What the validator said about the operand stack just before an operator.
#[derive(Clone, Debug, Default)]
pub struct StackBefore {
    /// Types on the operand stack of the innermost frame, bottom first. Values of
    /// enclosing frames are not included: they are out of reach of this frame.
    pub frame_types: Vec<ValType>,
    /// The operator is in unreachable code (after `br`, `return`, ...): it never
    /// runs, so it is never a resume point.
    pub unreachable: bool,
}

/// A decoded function body.
pub struct Body<'a> {
    /// Types of all locals, parameters first.
    pub locals: Vec<ValType>,
    /// Number of parameters.
    pub num_params: u32,
    /// The operators, including the final `end`.
    pub ops: Vec<Operator<'a>>,
    /// Byte offset of each operator in the input.
    pub offsets: Vec<usize>,
    /// The body's bytes, and the offset in the input where they start: an
    /// operator's encoding is `code[offsets[i] - start..offsets[i + 1] - start]`.
    pub code: &'a [u8],
    /// See `code`.
    pub code_start: usize,
    /// For `block`, `loop`, `if`, `try_table`, `try`: index of the matching `end`.
    /// For `else`, `catch`, `catch_all`: index of the construct's `end`.
    /// `u32::MAX` elsewhere.
    pub end_of: Vec<u32>,
    /// For `if`: index of its `else`, or `u32::MAX`. For `else`: index of its `if`.
    pub else_of: Vec<u32>,
    /// Whether the body uses exception handling (liveness is then conservative).
    pub has_exceptions: bool,
    /// Operand stacks before the operators for which `want(op)` returned true.
    pub stacks: Vec<(u32, StackBefore)>,
}

impl<'a> Body<'a> {
    /// The input's encoding of operator `i` (never the final `end`), when it
    /// is as compact as re-encoding it would make it.
    ///
    /// Linkers pad relocated immediates (call indices, addresses) to five
    /// bytes; re-encoding drops the padding. A padded LEB128 holds a byte with
    /// the continuation bit followed by a final 0x00, or 0xff followed by 0x7f
    /// (negative); a minimal one never does. Constants' raw bytes can look the
    /// same: those are re-encoded too, which only costs time.
    pub fn compact_op_bytes(&self, i: usize) -> Option<&'a [u8]> {
        let bytes =
            &self.code[self.offsets[i] - self.code_start..self.offsets[i + 1] - self.code_start];
        let padded = bytes
            .windows(2)
            .any(|w| (w[0] & 0x80 != 0 && w[1] == 0x00) || (w[0] == 0xff && w[1] == 0x7f));
        (!padded).then_some(bytes)
    }

    /// The operand stack recorded before operator `op`, if it was wanted.
    pub fn stack_before(&self, op: u32) -> Option<&StackBefore> {
        // Recorded in operator order: a binary search, no map to build.
        self.stacks
            .binary_search_by_key(&op, |(i, _)| *i)
            .ok()
            .map(|at| &self.stacks[at].1)
    }
}

/// Whether `op` opens a block with its own label and frame (`block`, `loop`,
/// `if`, `try_table`, legacy `try`).
pub fn is_block_opener(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. }
            | Operator::Try { .. }
    )
}

/// Decodes `body`, running `validator` over it to learn operand types. `want`
/// says before which operators the stack is recorded.
pub fn decode<'a>(
    body: &wasmparser::FunctionBody<'a>,
    num_params: u32,
    params: &[ValType],
    validator: &mut FuncValidator<ValidatorResources>,
    mut want: impl FnMut(&Operator<'a>) -> bool,
) -> Result<Body<'a>> {
    let mut locals: Vec<ValType> = params.to_vec();
    let mut reader = body.get_locals_reader()?;
    for _ in 0..reader.get_count() {
        let offset = reader.original_position();
        let (count, ty) = reader.read()?;
        validator.define_locals(offset, count, ty)?;
        if locals.len() as u64 + count as u64 > 50_000 {
            return Err(Error::unsupported(format!(
                "{} locals; wasm-rewind supports at most 50000 locals per function",
                locals.len() as u64 + count as u64
            ))
            .at(offset));
        }
        locals.extend(std::iter::repeat_n(ty, count as usize));
    }
    let mut ops = Vec::new();
    let mut offsets = Vec::new();
    let mut stacks = Vec::new();
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let offset = reader.original_position();
        let op = reader.read()?;
        if want(&op) {
            stacks.push((ops.len() as u32, stack_before(validator)));
        }
        validator.op(offset, &op)?;
        ops.push(op);
        offsets.push(offset);
    }
    reader.finish()?;

    let n = ops.len();
    let mut end_of = vec![u32::MAX; n];
    let mut else_of = vec![u32::MAX; n];
    let mut has_exceptions = false;
    // Openers, and the `else`/`catch` markers that also need the end index.
    let mut open: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                open.push((i, Vec::new()))
            }
            Operator::TryTable { .. } | Operator::Try { .. } => {
                has_exceptions = true;
                open.push((i, Vec::new()))
            }
            Operator::Else => {
                let top = open.last_mut().expect("validated");
                else_of[top.0] = i as u32;
                else_of[i] = top.0 as u32;
                top.1.push(i);
            }
            Operator::Catch { .. } | Operator::CatchAll => {
                has_exceptions = true;
                open.last_mut().expect("validated").1.push(i);
            }
            Operator::Delegate { .. } => {
                // `delegate` ends a `try` like `end` does.
                has_exceptions = true;
                let (start, markers) = open.pop().expect("validated");
                end_of[start] = i as u32;
                for m in markers {
                    end_of[m] = i as u32;
                }
            }
            Operator::Throw { .. } | Operator::ThrowRef | Operator::Rethrow { .. } => {
                has_exceptions = true
            }
            Operator::End => {
                if let Some((start, markers)) = open.pop() {
                    end_of[start] = i as u32;
                    for m in markers {
                        end_of[m] = i as u32;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Body {
        locals,
        num_params,
        ops,
        offsets,
        code: body.as_bytes(),
        code_start: body.range().start,
        end_of,
        else_of,
        has_exceptions,
        stacks,
    })
}

fn stack_before(validator: &FuncValidator<ValidatorResources>) -> StackBefore {
    let frame = validator
        .get_control_frame(0)
        .expect("a body always has its function frame");
    let height = validator.operand_stack_height() as usize;
    let base = frame.height.min(height);
    let mut frame_types = Vec::with_capacity(height - base);
    let mut known = true;
    for depth in (0..height - base).rev() {
        match validator.get_operand_type(depth) {
            Some(Some(t)) => frame_types.push(t),
            _ => known = false,
        }
    }
    StackBefore {
        frame_types,
        unreachable: frame.unreachable || !known,
    }
}
