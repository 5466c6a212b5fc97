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

use super::{BufferGrowth, Ctx, RuntimeFuncs, TypeInterner};
use wasm_encoder::{BlockType, Function, Instruction, MemArg, ValType as EncType};
use wasmparser::ValType;

use crate::abi;
use crate::abi::{ASSERT_FUNCTION, OVERFLOW_FUNCTION};

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
        assert_failed: if asserts { first + 9 } else { u32::MAX },
    }
}

/// How many functions [`layout_funcs`] places (and [`build`] builds).
pub fn count(asserts: bool) -> u32 {
    9 + asserts as u32
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

    /// Pushes the frame size plus the 4 bytes of the call index.
    fn size_with_index(&self, size: FrameSize) -> Vec<Instruction<'static>> {
        match size {
            FrameSize::Local(l) => vec![Instruction::LocalGet(l), self.konst(4), self.add()],
            FrameSize::Const(v) => vec![self.konst(v + 4)],
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

    /// `push_frame(k, size) -> p`: checks `end - pos >= size + 4` (no overflow
    /// possible: `pos <= end` holds, the controls check it), stores `k` at
    /// `pos + size`, advances `pos` past it and returns the old `pos`. A frame
    /// that does not fit calls the overflow function, which may give the
    /// buffer more room (a host's grow hook moves `end`, and may move the
    /// frames and `pos`); `{pos, end}` are read again after it, and a frame
    /// that still does not fit traps before any byte past `end` is written.
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
        let lt = if c.memory64 {
            Instruction::I64LtU
        } else {
            Instruction::I32LtU
        };
        // end - pos < size + 4 ? (reads `end` from the data structure)
        let mut short = vec![
            Instruction::GlobalGet(c.data_global),
            self.load_addr(self.word()),
            Instruction::LocalGet(pos),
            self.sub(),
        ];
        short.extend(self.size_with_index(size));
        short.push(lt);
        let mut body = vec![
            Instruction::GlobalGet(c.data_global),
            self.load_addr(0),
            Instruction::LocalSet(pos),
        ];
        body.extend(short.iter().cloned());
        body.push(Instruction::If(BlockType::Empty));
        if c.growth != BufferGrowth::Fixed {
            body.extend(self.size_with_index(size));
            body.extend([
                Instruction::Call(c.funcs.buffer_overflow),
                Instruction::GlobalGet(c.data_global),
                self.load_addr(0),
                Instruction::LocalSet(pos),
            ]);
            body.extend(short.iter().cloned());
            body.extend([
                Instruction::If(BlockType::Empty),
                Instruction::Unreachable,
                Instruction::End,
            ]);
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
            Instruction::I32Store(MemArg {
                offset: 0,
                align: 2,
                memory_index: c.memory,
            }),
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
    /// host put in it, `(call_indirect $hook (local.get $needed) (i32.const 0))`,
    /// or traps when the slot is null (no host offered to grow the buffer); with
    /// the embedded runtime, calls its `grow_buffer(needed)`.
    /// `buffer_overflow()` without one: traps. Either way its name is the
    /// diagnostic in a backtrace.
    fn overflow(&self) -> Vec<u8> {
        let c = self.ctx;
        match c.growth {
            BufferGrowth::Call { func } => Self::finish(
                Function::new([]),
                &[Instruction::LocalGet(0), Instruction::Call(func)],
            ),
            BufferGrowth::HostHook { table } => {
                let ty = c
                    .types
                    .get(&[c.address_type()], &[])
                    .expect("interned by intern_types");
                Self::finish(
                    Function::new([]),
                    &[
                        // No host put a function there (Wasmer, say): trap
                        // here, in a function named for the reason, rather
                        // than on an "undefined element".
                        Instruction::I32Const(0),
                        Instruction::TableGet(table),
                        Instruction::RefIsNull,
                        Instruction::If(BlockType::Empty),
                        Instruction::Unreachable,
                        Instruction::End,
                        Instruction::LocalGet(0),
                        Instruction::I32Const(0),
                        Instruction::CallIndirect {
                            type_index: ty,
                            table_index: table,
                        },
                    ],
                )
            }
            BufferGrowth::Fixed => Self::trap(),
        }
    }

    /// `pop_index() -> k`: `pos -= 4; return *pos`.
    fn pop_index(&self) -> Vec<u8> {
        let c = self.ctx;
        let pos = 0;
        Self::finish(
            Function::new([(1, self.enc_addr())]),
            &[
                Instruction::GlobalGet(c.data_global),
                Instruction::GlobalGet(c.data_global),
                self.load_addr(0),
                self.konst(4),
                self.sub(),
                Instruction::LocalTee(pos),
                self.store_addr(0),
                Instruction::LocalGet(pos),
                Instruction::I32Load(MemArg {
                    offset: 0,
                    align: 2,
                    memory_index: c.memory,
                }),
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
