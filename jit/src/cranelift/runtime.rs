//! The `extern "C"` helpers compiled blocks call on their slow paths, and
//! the context block that travels with every call.
//!
//! Compiled code never touches `Interp` itself: it hands the helpers a
//! pointer to a [`JitCtx`] (which points at the `Interp`), and reads back
//! only [`JitCtx::value`]. Helpers never panic (a panic cannot unwind
//! through compiled frames); a guest fault is a value stored in the context.

use crate::block::Insn;
use crate::emit::{Emitter, Stop, Width};
use crate::exception::Exception;
use crate::flags::{self, Cond};
use crate::interp::{mask_ip, Interp};
use crate::mmu;
use crate::state::CpuState;
use std::panic::{self, AssertUnwindSafe};

/// What a compiled block receives besides the CPU state: the interpreter
/// context (memory, I/O) and the slots helpers use to answer.
#[repr(C)]
pub struct JitCtx {
    /// Result of the last slow-path load.
    pub value: u64,
    /// The context the block runs in.
    pub interp: *mut Interp,
    /// The fault a helper reported (status [`super::status::FAULT`]).
    pub fault: Option<Exception>,
    /// The instructions the block runs through [`exec_insn`], by index.
    pub helpers: *const Insn,
    /// Code size of the block (16, 32, 64).
    pub bitness: u32,
    /// A panic caught in a helper, re-raised once the compiled frames are
    /// gone (a panic must not unwind through them).
    pub panic: Option<Box<dyn std::any::Any + Send>>,
}

/// Byte offset of [`JitCtx::value`], for compiled code.
pub const CTX_VALUE: i32 = core::mem::offset_of!(JitCtx, value) as i32;

/// Helper answer: the access was done.
pub const OK: u64 = 0;
/// Helper answer: the access faulted; the exception is in `JitCtx::fault`.
/// It is the block's exit status as it stands.
pub const FAULTED: u64 = super::status::FAULT;

fn width_of(bytes: u64) -> Width {
    // Compiled code only passes 1, 2, 4 or 8.
    Width::from_bytes(bytes as u32).unwrap_or(Width::Q)
}

/// Run `f` on the interpreter context with `icount` exact for the
/// instruction being executed: compiled code adds the whole block's count
/// at entry, so the helper subtracts the `adj` instructions that have not
/// retired yet (a device must see the exact count).
///
/// # Safety
/// `ctx` must be the live context of the running block.
unsafe fn with_exact_icount<T>(ctx: *mut JitCtx, adj: u64, f: impl FnOnce(&mut Interp) -> T) -> T {
    let cx = &mut *(*ctx).interp;
    cx.cpu.icount = cx.cpu.icount.wrapping_sub(adj);
    let r = f(cx);
    cx.cpu.icount = cx.cpu.icount.wrapping_add(adj);
    r
}

/// A load that missed the inline TLB fast path. Returns [`OK`] with the
/// value in `JitCtx::value`, or [`FAULTED`].
///
/// # Safety
/// Called only by compiled code with the context it was given.
pub unsafe extern "C" fn load_slow(ctx: *mut JitCtx, lin: u64, bytes: u64, adj: u64) -> u64 {
    let r = with_exact_icount(ctx, adj, |cx| {
        mmu::read_slow(&mut cx.cpu, &mut cx.mem, &mut *cx.io, lin, width_of(bytes))
    });
    match r {
        Ok(v) => {
            (*ctx).value = v;
            OK
        }
        Err(ex) => {
            (*ctx).fault = Some(ex);
            FAULTED
        }
    }
}

/// A store that missed the inline TLB fast path. Returns [`OK`] or
/// [`FAULTED`] (then nothing was written).
///
/// # Safety
/// Called only by compiled code with the context it was given.
pub unsafe extern "C" fn store_slow(
    ctx: *mut JitCtx,
    lin: u64,
    bytes: u64,
    v: u64,
    adj: u64,
) -> u64 {
    let r = with_exact_icount(ctx, adj, |cx| {
        mmu::write_slow(
            &mut cx.cpu,
            &mut cx.mem,
            &mut *cx.io,
            lin,
            width_of(bytes),
            v,
        )
    });
    match r {
        Ok(()) => OK,
        Err(ex) => {
            (*ctx).fault = Some(ex);
            FAULTED
        }
    }
}

/// Check that the `bytes` bytes at `lin` can all be written
/// ([`Emitter::probe_write`], the interpreter's definition). Returns [`OK`]
/// or [`FAULTED`].
///
/// # Safety
/// Called only by compiled code with the context it was given.
pub unsafe extern "C" fn probe_write_slow(ctx: *mut JitCtx, lin: u64, bytes: u64, adj: u64) -> u64 {
    let r = with_exact_icount(ctx, adj, |cx| cx.probe_write(lin, bytes.clamp(1, 4096)));
    match r {
        Ok(()) => OK,
        Err(Stop::Fault(ex)) => {
            (*ctx).fault = Some(ex);
            FAULTED
        }
        // A probe never restarts.
        Err(Stop::Restart) => OK,
    }
}

/// Condition `cc` (encoding 0–15) of the lazy state stored in `cpu`, for a
/// block that does not know the last flag-setting operation statically.
///
/// # Safety
/// `cpu` must point at the running CPU state, with the lazy state stored.
pub unsafe extern "C" fn cond(cpu: *const CpuState, cc: u64) -> u64 {
    flags::cond_concrete(&*cpu, Cond::from_index(cc as u8)) as u64
}

/// RFLAGS materialised from the lazy state stored in `cpu`.
///
/// # Safety
/// As for [`cond`].
pub unsafe extern "C" fn rflags(cpu: *const CpuState) -> u64 {
    (*cpu).rflags()
}

/// [`exec_insn`] answer: the instruction retired and nothing asks the block
/// to end; compiled code goes on with the next instruction.
pub const CONTINUE: u64 = 0;
// The last instruction of a block returns the helper's answer as the
// block's status: "continue" after the last instruction is "completed".
const _: () = assert!(CONTINUE == super::status::COMPLETED);

/// Run helper instruction `j` of the block with the interpreter, for one
/// instruction, exactly as the engine's interpreter loop would.
///
/// Compiled code has stored every register and the lazy flags it held in
/// `CpuState` before the call and reloads them after. `adj` is the number
/// of the block's instructions not retired yet, this one included: compiled
/// code counted the whole block at entry, so the helper first restores the
/// true `icount`/`budget` (a device, the budget of a REP and a fault all see
/// the exact values).
///
/// Returns [`CONTINUE`] (counts put back into the block's convention), or a
/// block status with `CpuState` complete and exact: [`super::status::LEFT`]
/// (retired; `exit_req` asks to leave), [`super::status::FAULT`] (not
/// retired, RIP on it; REP iterations done before the fault are counted, as
/// in the interpreter), [`super::status::RESTART`] (a REP stopped at the
/// budget or after a device access, RIP still on it) or
/// [`super::status::PANIC`].
///
/// # Safety
/// Called only by compiled code with the context it was given; `j` indexes
/// the block's helper table.
pub unsafe extern "C" fn exec_insn(ctx: *mut JitCtx, j: u64, adj: u64) -> u64 {
    let c = &mut *ctx;
    let cx = &mut *c.interp;
    let insn = &*c.helpers.add(j as usize);
    let bitness = c.bitness;
    cx.cpu.icount = cx.cpu.icount.wrapping_sub(adj);
    cx.cpu.budget = cx.cpu.budget.wrapping_add(adj);
    // The interpreter's loop leaves RIP on the instruction it runs.
    cx.cpu.rip = mask_ip(insn.i.ip(), bitness);
    // The block was entered with a budget covering it, as the interpreter's
    // `whole_block`.
    let r = panic::catch_unwind(AssertUnwindSafe(|| cx.step(insn, bitness, true)));
    match r {
        Ok(Ok(())) if cx.cpu.exit_req == 0 => {
            let rest = adj - 1;
            cx.cpu.icount = cx.cpu.icount.wrapping_add(rest);
            cx.cpu.budget = cx.cpu.budget.wrapping_sub(rest);
            CONTINUE
        }
        Ok(Ok(())) => super::status::LEFT,
        Ok(Err(Stop::Fault(ex))) => {
            c.fault = Some(ex);
            super::status::FAULT
        }
        Ok(Err(Stop::Restart)) => super::status::RESTART,
        Err(p) => {
            c.panic = Some(p);
            super::status::PANIC
        }
    }
}
