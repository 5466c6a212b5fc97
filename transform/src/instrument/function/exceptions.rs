//! The exceptions lowering of a function that calls `stack_checkpoint`
//! (`--sjlj exceptions`): its setjmp calls become points it resumes at when
//! it catches a longjmp thrown as a wasm exception. Other functions are not
//! touched: a longjmp passes through them as an exception, so their normal
//! path costs nothing.
//!
//! The shape (WAT sketch; `K` is the setjmp's call index, `R` the results):
//!
//! ```wat
//! (func $f ...
//!   (loop $again (result R)
//!     (block $caught (result addr i64)
//!       (try_table (result R) (catch $longjmp $caught)
//!         (block $body (result R)
//!           ;; frames holding setjmp calls dispatch on $resume as a rewind
//!           ;; does, straight to the call's resume block:
//!           (if (local.get $resume) (then ...push its operands... (br $rK)))
//!           ...
//!           ;; setjmp K, with (env, ret) on the stack:
//!           (if (local.get $resume)
//!             (then (i64.store (ret) (local.get $val)) (local.set $resume (i32.const 0)))
//!             (else ;; number this invocation once, then fill the jmp_buf:
//!               (i64.store (env) $id) (i32.store offset=8 (env) K)
//!               (store offset=16 (env) (global.get $__stack_pointer))
//!               (i64.store (ret) (i64.const 0))))
//!           (i32.const 0) ...))              ;; errno 0, as the import returns
//!       (return))
//!     ;; a jump: (jmp_buf, val). Not for this invocation: throw it on.
//!     (local.set $val) (local.set $jb)
//!     (if (i32.or (i64.eqz $id) (i64.ne (i64.load (jb)) $id)) (then (throw $longjmp ...)))
//!     (global.set $__stack_pointer (load offset=16 (jb)))
//!     (local.set $resume (i32.load offset=8 (jb)))
//!     (br $again)))
//! ```
//!
//! The jmp_buf (24 bytes, WASIX's layout, opaque to the program) holds the
//! invocation's number at 0, the call index at 8 and the stack pointer at 16.
//! Locals are not saved: the frame that catches is the frame that called
//! setjmp, so its locals hold their latest values, as registers do after a
//! native longjmp (C leaves a non-volatile local changed after setjmp
//! indeterminate). The values on the operand stack below the call and its two
//! operands are kept in locals of the call's own, since a jump may land long
//! after the call, with other setjmp calls of the same function in between.

use super::{Emitter, Label};
use crate::error::Result;
use crate::instrument::ExceptionLowering;
use std::borrow::Cow;
use wasm_encoder::{BlockType, Catch, Instruction};
use wasmparser::ValType;

/// Offsets of what the lowering keeps in a jmp_buf.
const JMP_BUF_INVOCATION: u32 = 0;
const JMP_BUF_CALL_INDEX: u32 = 8;
const JMP_BUF_STACK_POINTER: u32 = 16;

impl Emitter<'_, '_> {
    /// The body of a function whose setjmp calls the lowering rewrites.
    pub(super) fn exceptions_body(&mut self, x: &ExceptionLowering) -> Result<()> {
        let results = self.results;
        let bt = self.ctx.block_type(&[], results)?;
        let again = self.fresh();
        self.open(Instruction::Loop(bt), Label::Synth(again));
        if x.legacy {
            let tried = self.fresh();
            self.open(Instruction::Try(bt), Label::Synth(tried));
            self.body_block(bt)?;
            self.ins(Instruction::Catch(x.tag));
            self.catch_jump(x, again);
            self.close();
            self.ins(Instruction::Return);
        } else {
            let addr = self.ctx.address_type();
            let payload = self.ctx.block_type(&[], &[addr, ValType::I64])?;
            let caught = self.fresh();
            self.open(Instruction::Block(payload), Label::Synth(caught));
            // A catch clause's label counts from outside the try_table.
            let catch = Catch::One {
                tag: x.tag,
                label: 0,
            };
            let tried = self.fresh();
            self.open(
                Instruction::TryTable(bt, Cow::Owned(vec![catch])),
                Label::Synth(tried),
            );
            self.body_block(bt)?;
            self.close();
            self.ins(Instruction::Return);
            self.close();
            self.catch_jump(x, again);
        }
        self.close();
        self.ins(Instruction::End);
        Ok(())
    }

    /// The input's body as a block, with the function frame's dispatch; the
    /// body's own final `end` closes it.
    fn body_block(&mut self, bt: BlockType) -> Result<()> {
        self.open(Instruction::Block(bt), Label::Orig);
        self.frame_header((u32::MAX, 0))?;
        self.ops()
    }

    /// With a caught jump's `(jmp_buf, value)` on the stack: throws it on
    /// unless this invocation filled the jmp_buf; else sets the stack pointer
    /// and the resume local, and re-enters the body.
    fn catch_jump(&mut self, x: &ExceptionLowering, again: u32) {
        let (id, val) = self.plan.exception_locals.expect("planned for exceptions");
        let jb = self.plan.frame_ptr_local;
        self.ins(Instruction::LocalSet(val));
        self.ins(Instruction::LocalSet(jb));
        // An invocation that never called setjmp has number 0 and filled no
        // jmp_buf, even one holding 0 (a jmp_buf never filled, say).
        self.ins(Instruction::LocalGet(id));
        self.ins(Instruction::I64Eqz);
        self.ins(Instruction::LocalGet(jb));
        self.ins(self.ctx.load(ValType::I64, JMP_BUF_INVOCATION));
        self.ins(Instruction::LocalGet(id));
        self.ins(Instruction::I64Ne);
        self.ins(Instruction::I32Or);
        let not_mine = self.fresh();
        self.open(Instruction::If(BlockType::Empty), Label::Synth(not_mine));
        self.ins(Instruction::LocalGet(jb));
        self.ins(Instruction::LocalGet(val));
        self.ins(Instruction::Throw(x.tag));
        self.close();
        // The frames the exception left never ran their epilogues.
        self.ins(Instruction::LocalGet(jb));
        self.ins(
            self.ctx
                .load(self.ctx.address_type(), JMP_BUF_STACK_POINTER),
        );
        self.ins(Instruction::GlobalSet(x.stack_pointer));
        self.ins(Instruction::LocalGet(jb));
        self.ins(self.ctx.load(ValType::I32, JMP_BUF_CALL_INDEX));
        self.ins(Instruction::LocalSet(self.plan.resume_local));
        self.ins(Instruction::Br(self.depth_of(again)));
    }

    /// A call to `stack_checkpoint(env, ret) -> errno`: fills the jmp_buf on
    /// the normal path, delivers the jump's value when resumed.
    pub(super) fn exceptions_site(&mut self, s: usize, x: &ExceptionLowering) -> Result<()> {
        let plan = self.plan;
        let site = &plan.sites[s];
        let (id, val) = plan.exception_locals.expect("planned for exceptions");
        let [env, ret] = site.operand_locals[..] else {
            unreachable!("stack_checkpoint's two operands, checked in the layout")
        };
        self.ins(Instruction::LocalSet(ret));
        self.ins(Instruction::LocalSet(env));
        // The values below stay on the stack; their copies are what a jump
        // that lands here pushes back (see `case`).
        for &l in site.below_locals.iter().rev() {
            self.ins(Instruction::LocalSet(l));
        }
        for &l in &site.below_locals {
            self.ins(Instruction::LocalGet(l));
        }
        self.ins(Instruction::LocalGet(plan.resume_local));
        let landed = self.fresh();
        self.open(Instruction::If(BlockType::Empty), Label::Synth(landed));
        {
            self.ins(Instruction::LocalGet(ret));
            self.ins(Instruction::LocalGet(val));
            self.ins(self.ctx.store(ValType::I64, 0));
            self.ins(Instruction::I32Const(0));
            self.ins(Instruction::LocalSet(plan.resume_local));
        }
        self.ins(Instruction::Else);
        {
            self.number_invocation(id, x);
            self.ins(Instruction::LocalGet(env));
            self.ins(Instruction::LocalGet(id));
            self.ins(self.ctx.store(ValType::I64, JMP_BUF_INVOCATION));
            self.ins(Instruction::LocalGet(env));
            self.ins(Instruction::I32Const(site.k as i32));
            self.ins(self.ctx.store(ValType::I32, JMP_BUF_CALL_INDEX));
            self.ins(Instruction::LocalGet(env));
            self.ins(Instruction::GlobalGet(x.stack_pointer));
            self.ins(
                self.ctx
                    .store(self.ctx.address_type(), JMP_BUF_STACK_POINTER),
            );
            self.ins(Instruction::LocalGet(ret));
            self.ins(Instruction::I64Const(0));
            self.ins(self.ctx.store(ValType::I64, 0));
        }
        self.close();
        self.ins(Instruction::I32Const(0));
        if site.tail {
            self.ins(Instruction::Return);
        }
        Ok(())
    }

    /// Gives this invocation its number the first time it calls setjmp.
    fn number_invocation(&mut self, id: u32, x: &ExceptionLowering) {
        self.ins(Instruction::LocalGet(id));
        self.ins(Instruction::I64Eqz);
        let first = self.fresh();
        self.open(Instruction::If(BlockType::Empty), Label::Synth(first));
        self.ins(Instruction::GlobalGet(x.invocation_counter));
        self.ins(Instruction::I64Const(1));
        self.ins(Instruction::I64Add);
        self.ins(Instruction::LocalTee(id));
        self.ins(Instruction::GlobalSet(x.invocation_counter));
        self.close();
    }
}
