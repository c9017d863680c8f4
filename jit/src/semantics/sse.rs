//! SSE and SSE2 (legacy encodings, no MMX-register forms): dispatch and the
//! operand plumbing every SSE helper shares.
//!
//! All SSE instructions are [`Sem::Helper`]s on the concrete [`Interp`],
//! working on `cpu.xmm[n]: u128` and on memory through the `Emitter`
//! `load`/`store` methods. A 128-bit memory access is two 64-bit accesses;
//! every access that can fault (including the alignment check of the
//! aligned forms, #GP(0)) happens before any register or MXCSR write, and a
//! 128-bit store is probed for writability first so it never lands half.
//!
//! The families live in `sse_move.rs`, `sse_int.rs`, `sse_float.rs`,
//! `sse_cvt.rs` and `sse_state.rs`; the IEEE core is `crate::sse::float`.

use super::operand::ea;
use super::{sse_cvt, sse_float, sse_int, sse_move, sse_state, Sem};
use crate::block::{Insn, InterpFn};
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::interp::Interp;
use crate::mmu;
use crate::sse::float::{mx, Env};
use crate::state::{cr0, cr4};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    if uses_mmx(i) {
        // MMX is not implemented: its register forms stay #UD.
        return None;
    }
    let f: InterpFn = sse_move::lookup(i)
        .or_else(|| sse_int::lookup(i))
        .or_else(|| sse_float::lookup(i))
        .or_else(|| sse_cvt::lookup(i))
        .or_else(|| sse_state::lookup(i))?;
    Some(Sem::Helper(f))
}

/// True when an operand is an MMX register.
fn uses_mmx(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| {
        let r = i.op_register(n) as u32;
        i.op_kind(n) == OpKind::Register
            && (Register::MM0 as u32..=Register::MM7 as u32).contains(&r)
    })
}

/// The XMM register number of an iced register.
pub fn xmm_of(r: Register) -> Option<usize> {
    let n = (r as u32).wrapping_sub(Register::XMM0 as u32);
    (n < 16).then_some(n as usize)
}

/// The checks every SSE instruction makes first: #UD when CR0.EM is set or
/// CR4.OSFXSR is clear, then #NM when CR0.TS is set.
pub fn check(cx: &Interp) -> SemResult {
    let c = &cx.cpu;
    if c.cr0 & cr0::EM != 0 || c.cr4 & cr4::OSFXSR == 0 {
        return Err(Stop::Fault(Exception::ud()));
    }
    if c.cr0 & cr0::TS != 0 {
        return Err(Stop::Fault(Exception::nm()));
    }
    Ok(())
}

/// True when operand `n` is an XMM register.
pub fn is_xmm(insn: &Insn, n: u32) -> bool {
    insn.i.op_kind(n) == OpKind::Register && xmm_of(insn.i.op_register(n)).is_some()
}

/// The XMM register of operand `n` (the decoder guarantees the kind).
pub fn xreg(insn: &Insn, n: u32) -> usize {
    xmm_of(insn.i.op_register(n)).unwrap_or(0)
}

/// Forms whose 128-bit memory operand may be misaligned.
fn unaligned_form(m: Mnemonic) -> bool {
    matches!(m, Mnemonic::Movups | Mnemonic::Movupd | Mnemonic::Movdqu)
}

/// Does the memory operand of `insn` have to be 16-byte aligned?
fn must_align(insn: &Insn) -> bool {
    insn.i.memory_size().size() == 16 && !unaligned_form(insn.i.mnemonic())
}

/// #GP(0) for a misaligned 16-byte operand.
pub fn check_align(lin: u64) -> SemResult {
    if lin & 15 != 0 {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    Ok(())
}

/// Load 16 bytes.
pub fn load128(cx: &mut Interp, lin: u64) -> SemResult<u128> {
    let lo = cx.load(lin, Width::Q)?;
    let hi = cx.load(lin.wrapping_add(8), Width::Q)?;
    Ok((hi as u128) << 64 | lo as u128)
}

/// Check that `len` bytes (at most a page) at `lin` can be written. A
/// range crossing into the next page is probed at that page's first byte,
/// the address a #PF there reports.
pub fn probe_store(cx: &mut Interp, lin: u64, len: u64) -> SemResult {
    mmu::probe_write(&mut cx.cpu, &mut cx.mem, lin, Width::B).map_err(Stop::Fault)?;
    let last = lin.wrapping_add(len - 1);
    if last >> 12 == lin >> 12 {
        return Ok(());
    }
    mmu::probe_write(&mut cx.cpu, &mut cx.mem, last & !0xfff, Width::B).map_err(Stop::Fault)
}

/// Store 16 bytes, all or nothing.
pub fn store128(cx: &mut Interp, lin: u64, v: u128) -> SemResult {
    if (lin & 0xfff) > 0xff0 {
        probe_store(cx, lin, 16)?;
    }
    cx.store(lin, Width::Q, v as u64)?;
    cx.store(lin.wrapping_add(8), Width::Q, (v >> 64) as u64)
}

/// Linear address of the memory operand, alignment-checked when the form
/// requires it.
pub fn mem_addr(cx: &mut Interp, insn: &Insn) -> SemResult<u64> {
    let lin = ea(cx, &insn.i);
    if must_align(insn) {
        check_align(lin)?;
    }
    Ok(lin)
}

/// Operand `n` as 128 bits: an XMM register or m128.
pub fn read128(cx: &mut Interp, insn: &Insn, n: u32) -> SemResult<u128> {
    if insn.i.op_kind(n) == OpKind::Memory {
        let lin = mem_addr(cx, insn)?;
        return load128(cx, lin);
    }
    Ok(cx.cpu.xmm[xreg(insn, n)])
}

/// Operand `n` as a `w`-byte scalar: the low lane of an XMM register, or
/// memory of that size (no alignment requirement).
pub fn read_scalar(cx: &mut Interp, insn: &Insn, n: u32, w: Width) -> SemResult<u64> {
    if insn.i.op_kind(n) == OpKind::Memory {
        let lin = ea(cx, &insn.i);
        return cx.load(lin, w);
    }
    Ok(cx.cpu.xmm[xreg(insn, n)] as u64 & w.mask())
}

/// Operand `n` as 64 bits: the low half of an XMM register or m64.
pub fn read64(cx: &mut Interp, insn: &Insn, n: u32) -> SemResult<u64> {
    read_scalar(cx, insn, n, Width::Q)
}

/// The imm8 operand (the last one).
pub fn imm8(insn: &Insn) -> u8 {
    insn.i.immediate8()
}

/// Fold the exception flags an arithmetic instruction raised into MXCSR.
/// An unmasked exception is raised as #XM (#UD when CR4.OSXMMEXCPT is
/// clear) with the destination unchanged; when it was detected before
/// computing (IE DE ZE) only those flags are set.
pub fn commit_flags(cx: &mut Interp, env: &Env) -> SemResult {
    let masks = (cx.cpu.mxcsr >> mx::MASK_SHIFT) & mx::FLAGS;
    let unmasked = env.flags & !masks;
    if unmasked == 0 {
        cx.cpu.mxcsr |= env.flags;
        return Ok(());
    }
    cx.cpu.mxcsr |= if unmasked & mx::PRE != 0 {
        env.flags & mx::PRE
    } else {
        env.flags
    };
    if cx.cpu.cr4 & cr4::OSXMMEXCPT != 0 {
        Err(Stop::Fault(Exception::xm()))
    } else {
        Err(Stop::Fault(Exception::ud()))
    }
}

/// A new float environment from the current MXCSR.
pub fn env(cx: &Interp) -> Env {
    Env::new(cx.cpu.mxcsr)
}
