//! The functions the pass adds: the five exported `asyncify_*` controls and the
//! frame helpers instrumented code calls while unwinding and rewinding.
//!
//! Data layout (Binaryen's): `__asyncify_data` points at `{ pos, end }`, two
//! i32 (two i64 on memory64). Frames are pushed at `pos` and grow upward:
//!
//! ```text
//! pos -> | saved locals (layout of call k) | k: i32 | next frame ...
//! ```
//!
//! The innermost function's frame is pushed first, so a rewind, which enters
//! the outermost function first, pops from the top: it reads `k` first and then
//! knows which layout lies below it. Rewinding only reads the buffer, so the
//! host can rewind the same buffer again after resetting `pos`.
//!
//! A frame is pushed only if 4 bytes stay free after it. A frame that does not
//! fit (and gets no room from the grow hook) uses them for
//! [`OVERFLOW_MARK`] before the unwind traps: a host that rewinds the buffer
//! regardless pops the mark as the outermost call index and traps too, rather
//! than resuming the outer functions from the inner frames below it.

use super::{BufferGrowth, Ctx, RuntimeFuncs, TypeInterner};
use wasm_encoder::{BlockType, Function, Instruction, MemArg, ValType as EncType};
use wasmparser::ValType;

use crate::abi;
use crate::abi::{ASSERT_FUNCTION, OVERFLOW_FUNCTION, OVERFLOW_MARK, TRUNCATED_FUNCTION};

/// One added function: its debug name, type index, body, and export name.
pub struct AddedFunction {
    /// Name for the name section.
    pub name: std::borrow::Cow<'static, str>,
    /// Its type index.
    pub ty: u32,
    /// Its encoded body.
    pub body: Vec<u8>,
    /// The export name, for the five `asyncify_*` controls.
    pub export: Option<&'static str>,
}

/// The added functions in index order, starting at `first` in the output.
pub fn layout_funcs(first: u32, asserts: bool) -> RuntimeFuncs {
    RuntimeFuncs {
        start_unwind: first,
        stop_unwind: first + 1,
        start_rewind: first + 2,
        stop_rewind: first + 3,
        get_state: first + 4,
        push_frame: first + 5,
        pop_index: first + 6,
        pop_frame: first + 7,
        buffer_overflow: first + 8,
        truncated_buffer: first + 9,
        assert_failed: if asserts { first + 10 } else { u32::MAX },
    }
}

/// How many functions [`layout_funcs`] places (and [`build`] builds).
pub fn count(asserts: bool) -> u32 {
    10 + asserts as u32
}

/// Interns the types of the added functions (before any block type, so their
/// indices do not depend on the functions being rewritten).
pub fn intern_types(types: &mut TypeInterner, addr: ValType) {
    types.intern(&[addr], &[]);
    types.intern(&[], &[]);
    types.intern(&[], &[ValType::I32]);
    types.intern(&[ValType::I32, addr], &[addr]);
    types.intern(&[addr], &[addr]);
}

/// Builds the added functions.
pub fn build(ctx: &Ctx<'_>) -> Vec<AddedFunction> {
    let addr = ctx.address_type();
    let t = |p: &[ValType], r: &[ValType]| ctx.types.get(p, r).expect("interned by intern_types");
    let ptr_to_unit = t(&[addr], &[]);
    let unit = t(&[], &[]);
    let to_i32 = t(&[], &[ValType::I32]);
    let push_ty = t(&[ValType::I32, addr], &[addr]);
    let pop_ty = t(&[addr], &[addr]);
    let b = Builder { ctx };
    let mut funcs = vec![
        AddedFunction {
            name: abi::START_UNWIND.into(),
            ty: ptr_to_unit,
            body: b.control(1, true),
            export: Some(abi::START_UNWIND),
        },
        AddedFunction {
            name: abi::STOP_UNWIND.into(),
            ty: unit,
            body: b.control(0, false),
            export: Some(abi::STOP_UNWIND),
        },
        AddedFunction {
            name: abi::START_REWIND.into(),
            ty: ptr_to_unit,
            body: b.control(2, true),
            export: Some(abi::START_REWIND),
        },
        AddedFunction {
            name: abi::STOP_REWIND.into(),
            ty: unit,
            body: b.control(0, false),
            export: Some(abi::STOP_REWIND),
        },
        AddedFunction {
            name: abi::GET_STATE.into(),
            ty: to_i32,
            body: b.get_state(),
            export: Some(abi::GET_STATE),
        },
        AddedFunction {
            name: "__wasm_rewind_push_frame".into(),
            ty: push_ty,
            body: b.push_frame(),
            export: None,
        },
        AddedFunction {
            name: "__wasm_rewind_pop_index".into(),
            ty: to_i32,
            body: b.pop_index(),
            export: None,
        },
        AddedFunction {
            name: "__wasm_rewind_pop_frame".into(),
            ty: pop_ty,
            body: b.pop_frame(),
            export: None,
        },
        AddedFunction {
            name: OVERFLOW_FUNCTION.into(),
            ty: if ctx.growth == BufferGrowth::Fixed {
                unit
            } else {
                ptr_to_unit
            },
            body: b.overflow(),
            export: None,
        },
        AddedFunction {
            name: TRUNCATED_FUNCTION.into(),
            ty: unit,
            body: Builder::trap(),
            export: None,
        },
    ];
    if ctx.asserts {
        funcs.push(AddedFunction {
            name: ASSERT_FUNCTION.into(),
            ty: unit,
            body: Builder::trap(),
            export: None,
        });
    }
    funcs
}

/// The body of the save helper of a frame shape whose slots are `slots`
/// (type and offset) in a frame of `size` bytes: `(k, values...) -> ()`. It
/// has `push_frame`'s code inline, so saving a frame costs one call.
pub fn save_helper(ctx: &Ctx<'_>, slots: &[(ValType, u32)], size: u32) -> Vec<u8> {
    Builder { ctx }.save_helper(slots, size)
}

/// The body of the restore helper of the same shape: `() -> values...`, with
/// `pop_frame`'s code inline.
pub fn restore_helper(ctx: &Ctx<'_>, slots: &[(ValType, u32)], size: u32) -> Vec<u8> {
    Builder { ctx }.restore_helper(slots, size)
}

/// Where `push_frame`'s and `pop_frame`'s code gets the frame's size.
#[derive(Clone, Copy)]
enum FrameSize {
    /// A local (the runtime functions' parameter).
    Local(u32),
    /// A constant (a frame helper's shape).
    Const(u32),
}

struct Builder<'c> {
    ctx: &'c Ctx<'c>,
}

impl Builder<'_> {
    fn enc_addr(&self) -> EncType {
        if self.ctx.memory64 {
            EncType::I64
        } else {
            EncType::I32
        }
    }

    fn word(&self) -> u32 {
        if self.ctx.memory64 {
            8
        } else {
            4
        }
    }

    fn arg(&self, offset: u32) -> MemArg {
        MemArg {
            offset: offset as u64,
            align: self.word().trailing_zeros(),
            memory_index: self.ctx.memory,
        }
    }

    fn load_addr(&self, offset: u32) -> Instruction<'static> {
        if self.ctx.memory64 {
            Instruction::I64Load(self.arg(offset))
        } else {
            Instruction::I32Load(self.arg(offset))
        }
    }

    fn store_addr(&self, offset: u32) -> Instruction<'static> {
        if self.ctx.memory64 {
            Instruction::I64Store(self.arg(offset))
        } else {
            Instruction::I32Store(self.arg(offset))
        }
    }

    fn add(&self) -> Instruction<'static> {
        if self.ctx.memory64 {
            Instruction::I64Add
        } else {
            Instruction::I32Add
        }
    }

    fn sub(&self) -> Instruction<'static> {
        if self.ctx.memory64 {
            Instruction::I64Sub
        } else {
            Instruction::I32Sub
        }
    }

    /// Pushes the frame size.
    fn size(&self, size: FrameSize) -> Instruction<'static> {
        match size {
            FrameSize::Local(l) => Instruction::LocalGet(l),
            FrameSize::Const(v) => self.konst(v),
        }
    }

    /// Pushes the room a frame needs: its size, the 4 bytes of the call
    /// index, and the 4 bytes kept free for the overflow mark.
    fn needed(&self, size: FrameSize) -> Vec<Instruction<'static>> {
        match size {
            FrameSize::Local(l) => vec![Instruction::LocalGet(l), self.konst(8), self.add()],
            FrameSize::Const(v) => vec![self.konst(v + 8)],
        }
    }

    /// `end - pos < needed` for the `needed` the given code pushes, with
    /// `pos` in local `pos` (reads `end` from the data structure).
    fn short(&self, pos: u32, needed: Vec<Instruction<'static>>) -> Vec<Instruction<'static>> {
        let mut short = vec![
            Instruction::GlobalGet(self.ctx.data_global),
            self.load_addr(self.word()),
            Instruction::LocalGet(pos),
            self.sub(),
        ];
        short.extend(needed);
        short.push(if self.ctx.memory64 {
            Instruction::I64LtU
        } else {
            Instruction::I32LtU
        });
        short
    }

    /// Reads `pos` from the data structure into local `pos`.
    fn read_pos(&self, pos: u32) -> [Instruction<'static>; 3] {
        [
            Instruction::GlobalGet(self.ctx.data_global),
            self.load_addr(0),
            Instruction::LocalSet(pos),
        ]
    }

    /// Leaves [`OVERFLOW_MARK`] at `pos` (when 4 bytes are free, which a
    /// buffer that ever held a frame has) and moves `pos` past it, then
    /// traps. Local `pos` holds `pos`.
    fn mark_and_trap(&self, pos: u32) -> Vec<Instruction<'static>> {
        let c = self.ctx;
        let mut body = self.short(pos, vec![self.konst(4)]);
        body.extend([
            Instruction::I32Eqz,
            Instruction::If(BlockType::Empty),
            Instruction::LocalGet(pos),
            Instruction::I32Const(OVERFLOW_MARK as i32),
            Instruction::I32Store(self.index_arg()),
            Instruction::GlobalGet(c.data_global),
            Instruction::LocalGet(pos),
            self.konst(4),
            self.add(),
            self.store_addr(0),
            Instruction::End,
            Instruction::Unreachable,
        ]);
        body
    }

    /// Where a call index is loaded or stored: an i32 at the address.
    fn index_arg(&self) -> MemArg {
        MemArg {
            offset: 0,
            align: 2,
            memory_index: self.ctx.memory,
        }
    }

    fn konst(&self, v: u32) -> Instruction<'static> {
        if self.ctx.memory64 {
            Instruction::I64Const(v as i64)
        } else {
            Instruction::I32Const(v as i32)
        }
    }

    fn finish(mut f: Function, body: &[Instruction<'_>]) -> Vec<u8> {
        for i in body {
            f.instruction(i);
        }
        f.instruction(&Instruction::End);
        f.into_raw_body()
    }

    /// `(func (param $ptr)? (global.set $state (i32.const STATE))
    ///    (global.set $data (local.get $ptr))?
    ///    (if (pos > end) (unreachable)))`: Binaryen's control functions,
    /// including their check that the buffer did not overflow.
    fn control(&self, state: i32, sets_data: bool) -> Vec<u8> {
        let c = self.ctx;
        let mut body = vec![
            Instruction::I32Const(state),
            Instruction::GlobalSet(c.state_global),
        ];
        if sets_data {
            body.push(Instruction::LocalGet(0));
            body.push(Instruction::GlobalSet(c.data_global));
        }
        body.extend([
            Instruction::GlobalGet(c.data_global),
            self.load_addr(0),
            Instruction::GlobalGet(c.data_global),
            self.load_addr(self.word()),
            if c.memory64 {
                Instruction::I64GtU
            } else {
                Instruction::I32GtU
            },
            Instruction::If(BlockType::Empty),
            Instruction::Unreachable,
            Instruction::End,
        ]);
        Self::finish(Function::new([]), &body)
    }

    fn get_state(&self) -> Vec<u8> {
        Self::finish(
            Function::new([]),
            &[Instruction::GlobalGet(self.ctx.state_global)],
        )
    }

    /// `push_frame(k, size) -> p`: checks `end - pos >= size + 8` (no overflow
    /// possible: `pos <= end` holds, the controls check it), stores `k` at
    /// `pos + size`, advances `pos` past it and returns the old `pos`; the
    /// last 4 bytes stay free for the overflow mark. A frame that does not
    /// fit calls the overflow function, which returns only once it fits (a
    /// host's grow hook moves `end`, and may move the frames and `pos`, so
    /// `pos` is read again) and otherwise marks the buffer and traps before
    /// any byte past `end` is written.
    fn push_frame(&self) -> Vec<u8> {
        let (k, size, pos) = (0, 1, 2);
        let mut body = self.push_frame_ops(k, FrameSize::Local(size), pos);
        body.push(Instruction::LocalGet(pos));
        Self::finish(Function::new([(1, self.enc_addr())]), &body)
    }

    /// The body of `push_frame` without its result: the call index in local
    /// `k`, the frame's size from `size` (a local or a constant), the frame's
    /// address left in local `pos`. The frame helpers inline it.
    fn push_frame_ops(&self, k: u32, size: FrameSize, pos: u32) -> Vec<Instruction<'static>> {
        let c = self.ctx;
        let mut body = self.read_pos(pos).to_vec();
        body.extend(self.short(pos, self.needed(size)));
        body.push(Instruction::If(BlockType::Empty));
        if c.growth != BufferGrowth::Fixed {
            body.extend(self.needed(size));
            body.push(Instruction::Call(c.funcs.buffer_overflow));
            body.extend(self.read_pos(pos));
        } else {
            body.push(Instruction::Call(c.funcs.buffer_overflow));
        }
        body.push(Instruction::End);
        body.extend([
            // *(pos + size) = k
            Instruction::LocalGet(pos),
            self.size(size),
            self.add(),
            Instruction::LocalGet(k),
            Instruction::I32Store(self.index_arg()),
            // data.pos = pos + size + 4
            Instruction::GlobalGet(c.data_global),
            Instruction::LocalGet(pos),
        ]);
        match size {
            FrameSize::Local(_) => {
                body.extend([self.size(size), self.add(), self.konst(4), self.add()])
            }
            FrameSize::Const(v) => body.extend([self.konst(v + 4), self.add()]),
        }
        body.push(self.store_addr(0));
        body
    }

    /// `buffer_overflow(needed)` with a grow hook: calls the function the
    /// host put in it, `(call_indirect $hook (local.get $needed) (i32.const 0))`;
    /// with the embedded runtime, its `grow_buffer(needed)`. Returns once
    /// `needed` bytes are free at `pos`. When the slot is null (no host
    /// offered to grow the buffer: Wasmer, say) or the room is still short,
    /// it marks the buffer and traps (see the module comment).
    /// `buffer_overflow()` without a hook: marks the buffer and traps. Either
    /// way its name is the diagnostic in a backtrace.
    fn overflow(&self) -> Vec<u8> {
        let c = self.ctx;
        let (needed, pos) = (0, 1);
        let mut body = Vec::new();
        match c.growth {
            BufferGrowth::Call { func } => {
                body.extend([Instruction::LocalGet(needed), Instruction::Call(func)]);
            }
            BufferGrowth::HostHook { table } => {
                let ty = c
                    .types
                    .get(&[c.address_type()], &[])
                    .expect("interned by intern_types");
                body.extend([
                    Instruction::I32Const(0),
                    Instruction::TableGet(table),
                    Instruction::RefIsNull,
                    Instruction::If(BlockType::Empty),
                ]);
                body.extend(self.read_pos(pos));
                body.extend(self.mark_and_trap(pos));
                body.extend([
                    Instruction::End,
                    Instruction::LocalGet(needed),
                    Instruction::I32Const(0),
                    Instruction::CallIndirect {
                        type_index: ty,
                        table_index: table,
                    },
                ]);
            }
            BufferGrowth::Fixed => {
                // No parameter: `pos` is local 0.
                body.extend(self.read_pos(0));
                body.extend(self.mark_and_trap(0));
                return Self::finish(Function::new([(1, self.enc_addr())]), &body);
            }
        }
        body.extend(self.read_pos(pos));
        body.extend(self.short(pos, vec![Instruction::LocalGet(needed)]));
        body.push(Instruction::If(BlockType::Empty));
        body.extend(self.mark_and_trap(pos));
        body.push(Instruction::End);
        Self::finish(Function::new([(1, self.enc_addr())]), &body)
    }

    /// `pop_index() -> k`: `pos -= 4; return *pos`, trapping in
    /// `truncated_buffer` when `*pos` is the overflow mark.
    fn pop_index(&self) -> Vec<u8> {
        let c = self.ctx;
        let (pos, k) = (0, 1);
        Self::finish(
            Function::new([(1, self.enc_addr()), (1, EncType::I32)]),
            &[
                Instruction::GlobalGet(c.data_global),
                Instruction::GlobalGet(c.data_global),
                self.load_addr(0),
                self.konst(4),
                self.sub(),
                Instruction::LocalTee(pos),
                self.store_addr(0),
                Instruction::LocalGet(pos),
                Instruction::I32Load(self.index_arg()),
                Instruction::LocalTee(k),
                Instruction::I32Const(OVERFLOW_MARK as i32),
                Instruction::I32Eq,
                Instruction::If(BlockType::Empty),
                Instruction::Call(c.funcs.truncated_buffer),
                Instruction::End,
                Instruction::LocalGet(k),
            ],
        )
    }

    /// `pop_frame(size) -> p`: `pos -= size; return pos`.
    fn pop_frame(&self) -> Vec<u8> {
        let (size, pos) = (0, 1);
        let mut body = self.pop_frame_ops(FrameSize::Local(size), pos);
        body.push(Instruction::LocalGet(pos));
        Self::finish(Function::new([(1, self.enc_addr())]), &body)
    }

    /// The body of `pop_frame` without its result: moves `pos` down by
    /// `size` (a local or a constant), leaving the frame's address in `pos`.
    fn pop_frame_ops(&self, size: FrameSize, pos: u32) -> Vec<Instruction<'static>> {
        let c = self.ctx;
        vec![
            Instruction::GlobalGet(c.data_global),
            Instruction::GlobalGet(c.data_global),
            self.load_addr(0),
            self.size(size),
            self.sub(),
            Instruction::LocalTee(pos),
            self.store_addr(0),
        ]
    }

    /// A frame helper's save: `(k, values...)`, the values stored at their
    /// offsets in a frame of `size` bytes pushed with `push_frame`'s code.
    fn save_helper(&self, slots: &[(ValType, u32)], size: u32) -> Vec<u8> {
        let pos = 1 + slots.len() as u32;
        let mut body = self.push_frame_ops(0, FrameSize::Const(size), pos);
        for (i, &(t, offset)) in slots.iter().enumerate() {
            body.push(Instruction::LocalGet(pos));
            body.push(Instruction::LocalGet(1 + i as u32));
            body.push(self.ctx.store(t, offset));
        }
        Self::finish(Function::new([(1, self.enc_addr())]), &body)
    }

    /// A frame helper's restore: `() -> values...`, loaded from a frame of
    /// `size` bytes popped with `pop_frame`'s code.
    fn restore_helper(&self, slots: &[(ValType, u32)], size: u32) -> Vec<u8> {
        let pos = 0;
        let mut body = self.pop_frame_ops(FrameSize::Const(size), pos);
        for &(t, offset) in slots {
            body.push(Instruction::LocalGet(pos));
            body.push(self.ctx.load(t, offset));
        }
        Self::finish(Function::new([(1, self.enc_addr())]), &body)
    }

    fn trap() -> Vec<u8> {
        Self::finish(Function::new([]), &[Instruction::Unreachable])
    }
}
