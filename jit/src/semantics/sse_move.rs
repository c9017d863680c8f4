//! SSE/SSE2 data movement: MOVD/MOVQ, the 128-bit moves (aligned,
//! unaligned, non-temporal), MOVSS/MOVSD, the half moves (MOVLPS … MOVLHPS),
//! MOVNTI, MASKMOVDQU and the sign-mask extractions (MOVMSKPS/PD,
//! PMOVMSKB).

use super::operand::{ea, get, linear, opnd, read, seg_of, write};
use super::sse::{check, is_xmm, mem_addr, probe_store, read128, store128, xreg};
use crate::block::{Insn, InterpFn};
use crate::emit::{Emitter, SemResult, Width};
use crate::interp::Interp;
use crate::sse::vec::{hi, join, lane, lo};
use crate::state::{Gpr, Seg};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// MOVD/MOVQ between an XMM register and a GPR, memory or another XMM
/// register. Writes to an XMM register zero the rest of it.
fn movdq(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let w = if insn.i.mnemonic() == Mnemonic::Movd {
        Width::D
    } else {
        Width::Q
    };
    if is_xmm(insn, 0) {
        let v = if is_xmm(insn, 1) {
            cx.cpu.xmm[xreg(insn, 1)] as u64
        } else {
            let o = opnd(cx, insn, 1);
            read(cx, &o)?
        };
        cx.cpu.xmm[xreg(insn, 0)] = (v & w.mask()) as u128;
        return Ok(());
    }
    let v = cx.cpu.xmm[xreg(insn, 1)] as u64 & w.mask();
    let o = opnd(cx, insn, 0);
    write(cx, &o, v)
}

/// 128-bit moves: MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVAPD/MOVUPD and the
/// non-temporal stores (cache hints have no effect here).
fn mov128(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    if is_xmm(insn, 0) {
        let v = read128(cx, insn, 1)?;
        cx.cpu.xmm[xreg(insn, 0)] = v;
        return Ok(());
    }
    let lin = mem_addr(cx, insn)?;
    store128(cx, lin, cx.cpu.xmm[xreg(insn, 1)])
}

/// MOVSS/MOVSD: register to register merges the low lane; a load zeroes
/// the rest of the register; a store writes the low lane.
fn movs_scalar(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let w = if insn.i.mnemonic() == Mnemonic::Movss {
        Width::D
    } else {
        Width::Q
    };
    let m = w.mask() as u128;
    if is_xmm(insn, 0) && is_xmm(insn, 1) {
        let s = cx.cpu.xmm[xreg(insn, 1)] & m;
        let d = &mut cx.cpu.xmm[xreg(insn, 0)];
        *d = (*d & !m) | s;
    } else if is_xmm(insn, 0) {
        let lin = ea(cx, &insn.i);
        let v = cx.load(lin, w)?;
        cx.cpu.xmm[xreg(insn, 0)] = v as u128;
    } else {
        let lin = ea(cx, &insn.i);
        let v = cx.cpu.xmm[xreg(insn, 1)] as u64 & w.mask();
        cx.store(lin, w, v)?;
    }
    Ok(())
}

/// MOVLPS/MOVLPD (`high == false`) and MOVHPS/MOVHPD: load one half of the
/// register from m64, or store it.
fn mov_half(cx: &mut Interp, insn: &Insn, high: bool) -> SemResult {
    check(cx)?;
    let lin = ea(cx, &insn.i);
    if is_xmm(insn, 0) {
        let v = cx.load(lin, Width::Q)?;
        let d = &mut cx.cpu.xmm[xreg(insn, 0)];
        *d = if high {
            join(lo(*d), v)
        } else {
            join(v, hi(*d))
        };
        return Ok(());
    }
    let s = cx.cpu.xmm[xreg(insn, 1)];
    cx.store(lin, Width::Q, if high { hi(s) } else { lo(s) })
}

fn movlp(cx: &mut Interp, insn: &Insn) -> SemResult {
    mov_half(cx, insn, false)
}

fn movhp(cx: &mut Interp, insn: &Insn) -> SemResult {
    mov_half(cx, insn, true)
}

/// MOVHLPS: low half of the destination = high half of the source.
fn movhlps(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let s = cx.cpu.xmm[xreg(insn, 1)];
    let d = &mut cx.cpu.xmm[xreg(insn, 0)];
    *d = join(hi(s), hi(*d));
    Ok(())
}

/// MOVLHPS: high half of the destination = low half of the source.
fn movlhps(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let s = cx.cpu.xmm[xreg(insn, 1)];
    let d = &mut cx.cpu.xmm[xreg(insn, 0)];
    *d = join(lo(*d), lo(s));
    Ok(())
}

/// MOVNTI: a plain GPR store (the hint changes nothing observable). It is
/// an integer instruction: no CR0/CR4 checks.
fn movnti(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = opnd(cx, insn, 1);
    let v = read(cx, &s)?;
    let d = opnd(cx, insn, 0);
    write(cx, &d, v)
}

/// Gather the sign bit of each `bits`-wide lane of the source into a GPR
/// (zero-extended).
fn movmsk(cx: &mut Interp, insn: &Insn, bits: u32) -> SemResult {
    check(cx)?;
    let s = cx.cpu.xmm[xreg(insn, 1)];
    let mut m = 0u64;
    for i in 0..128 / bits {
        m |= (lane(s, bits, i) >> (bits - 1)) << i;
    }
    let d = opnd(cx, insn, 0);
    write(cx, &d, m)
}

fn movmskps(cx: &mut Interp, insn: &Insn) -> SemResult {
    movmsk(cx, insn, 32)
}

fn movmskpd(cx: &mut Interp, insn: &Insn) -> SemResult {
    movmsk(cx, insn, 64)
}

fn pmovmskb(cx: &mut Interp, insn: &Insn) -> SemResult {
    movmsk(cx, insn, 8)
}

/// MASKMOVDQU: store the bytes of the first register whose mask byte (in
/// the second) has its top bit set, at DS:rDI (segment overridable). The
/// whole 16-byte range is checked for writability first (the SDM allows
/// faults on masked-off bytes); an all-zero mask touches nothing.
fn maskmovdqu(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let aw = match insn.i.op0_kind() {
        OpKind::MemorySegDI => Width::W,
        OpKind::MemorySegEDI => Width::D,
        _ => Width::Q,
    };
    let off = get(cx, Gpr::Rdi, aw);
    let seg = seg_of(insn.i.memory_segment()).unwrap_or(Seg::Ds);
    let lin = linear(cx, seg, off);
    let data = cx.cpu.xmm[xreg(insn, 1)];
    let mask = cx.cpu.xmm[xreg(insn, 2)];
    if mask & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0 {
        return Ok(());
    }
    probe_store(cx, lin, 16)?;
    for i in 0..16 {
        if lane(mask, 8, i) & 0x80 != 0 {
            cx.store(lin.wrapping_add(i as u64), Width::B, lane(data, 8, i))?;
        }
    }
    Ok(())
}

/// The helper for `i`, if it is a move of this family.
pub fn lookup(i: &Instruction) -> Option<InterpFn> {
    use Mnemonic as M;
    let xmm_op =
        |n: u32| i.op_kind(n) == OpKind::Register && super::sse::xmm_of(i.op_register(n)).is_some();
    Some(match i.mnemonic() {
        M::Movd | M::Movq if xmm_op(0) || xmm_op(1) => movdq,
        M::Movdqa
        | M::Movdqu
        | M::Movaps
        | M::Movups
        | M::Movapd
        | M::Movupd
        | M::Movntdq
        | M::Movntps
        | M::Movntpd => mov128,
        M::Movss => movs_scalar,
        M::Movsd if xmm_op(0) || xmm_op(1) => movs_scalar,
        M::Movlps | M::Movlpd => movlp,
        M::Movhps | M::Movhpd => movhp,
        M::Movhlps => movhlps,
        M::Movlhps => movlhps,
        M::Movnti => movnti,
        M::Movmskps => movmskps,
        M::Movmskpd => movmskpd,
        M::Pmovmskb => pmovmskb,
        M::Maskmovdqu => maskmovdqu,
        _ => return None,
    })
}
