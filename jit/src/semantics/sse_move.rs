//! SSE/SSE2 data movement: MOVD/MOVQ, the 128-bit moves (aligned,
//! unaligned, non-temporal), MOVSS/MOVSD, the half moves (MOVLPS … MOVLHPS),
//! MOVNTI, MASKMOVDQU and the sign-mask extractions (MOVMSKPS/PD,
//! PMOVMSKB).

use super::operand::{ea, get, linear, opnd, read, seg_of, write};
use super::sse::{
    avail, check, is_xmm, mem_lin, probe_store, read_x, store_x, xget, xreg, xset, X,
};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::interp::Interp;
use crate::sse::vec::lane;
use crate::state::{Gpr, Seg};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// MOVD/MOVQ between an XMM register and a GPR, memory or another XMM
/// register. Writes to an XMM register zero the rest of it.
fn movdq<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let w = if insn.i.mnemonic() == Mnemonic::Movd {
        Width::D
    } else {
        Width::Q
    };
    if is_xmm(insn, 0) {
        let v = if is_xmm(insn, 1) {
            e.xmm(xreg(insn, 1), false)
        } else {
            let o = opnd(e, insn, 1);
            read(e, &o)?
        };
        let lo = e.zext(v, w);
        let hi = e.imm(0);
        xset(e, xreg(insn, 0), X { lo, hi });
        return Ok(());
    }
    let v = e.xmm(xreg(insn, 1), false);
    let v = e.zext(v, w);
    let o = opnd(e, insn, 0);
    write(e, &o, v)
}

/// 128-bit moves: MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVAPD/MOVUPD and the
/// non-temporal stores (cache hints have no effect here).
fn mov128<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    if is_xmm(insn, 0) {
        let v = read_x(e, insn, 1)?;
        xset(e, xreg(insn, 0), v);
        return Ok(());
    }
    let lin = mem_lin(e, insn)?;
    let v = xget(e, xreg(insn, 1));
    let aligned = !matches!(
        insn.i.mnemonic(),
        Mnemonic::Movdqu | Mnemonic::Movups | Mnemonic::Movupd
    );
    store_x(e, lin, v, !aligned)
}

/// MOVSS/MOVSD: register to register merges the low lane; a load zeroes
/// the rest of the register; a store writes the low lane.
fn movs_scalar<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let w = if insn.i.mnemonic() == Mnemonic::Movss {
        Width::D
    } else {
        Width::Q
    };
    if is_xmm(insn, 0) && is_xmm(insn, 1) {
        let s = e.xmm(xreg(insn, 1), false);
        let s = e.zext(s, w);
        let d = e.xmm(xreg(insn, 0), false);
        let keep = e.and_imm(d, !w.mask());
        let v = e.or(keep, s);
        e.set_xmm(xreg(insn, 0), false, v);
    } else if is_xmm(insn, 0) {
        let lin = ea(e, &insn.i);
        let lo = e.load(lin, w)?;
        let hi = e.imm(0);
        xset(e, xreg(insn, 0), X { lo, hi });
    } else {
        let lin = ea(e, &insn.i);
        let v = e.xmm(xreg(insn, 1), false);
        e.store(lin, w, v)?;
    }
    Ok(())
}

/// MOVLPS/MOVLPD (`high == false`) and MOVHPS/MOVHPD: load one half of the
/// register from m64, or store it.
fn mov_half<E: Emitter>(e: &mut E, insn: &Insn, high: bool) -> SemResult {
    avail(e)?;
    let lin = ea(e, &insn.i);
    if is_xmm(insn, 0) {
        let v = e.load(lin, Width::Q)?;
        e.set_xmm(xreg(insn, 0), high, v);
        return Ok(());
    }
    let v = e.xmm(xreg(insn, 1), high);
    e.store(lin, Width::Q, v)
}

fn movlp<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    mov_half(e, insn, false)
}

fn movhp<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    mov_half(e, insn, true)
}

/// MOVHLPS: low half of the destination = high half of the source.
fn movhlps<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let v = e.xmm(xreg(insn, 1), true);
    e.set_xmm(xreg(insn, 0), false, v);
    Ok(())
}

/// MOVLHPS: high half of the destination = low half of the source.
fn movlhps<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let v = e.xmm(xreg(insn, 1), false);
    e.set_xmm(xreg(insn, 0), true, v);
    Ok(())
}

/// MOVNTI: a plain GPR store (the hint changes nothing observable). It is
/// an integer instruction: no CR0/CR4 checks.
fn movnti<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let d = opnd(e, insn, 0);
    write(e, &d, v)
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

/// The semantics of `i`, if it is a move of this family.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    use Sem::{Emit, Helper};
    let xmm_op =
        |n: u32| i.op_kind(n) == OpKind::Register && super::sse::xmm_of(i.op_register(n)).is_some();
    Some(match i.mnemonic() {
        M::Movd | M::Movq if xmm_op(0) || xmm_op(1) => Emit(movdq),
        M::Movdqa
        | M::Movdqu
        | M::Movaps
        | M::Movups
        | M::Movapd
        | M::Movupd
        | M::Movntdq
        | M::Movntps
        | M::Movntpd => Emit(mov128),
        M::Movss => Emit(movs_scalar),
        M::Movsd if xmm_op(0) || xmm_op(1) => Emit(movs_scalar),
        M::Movlps | M::Movlpd => Emit(movlp),
        M::Movhps | M::Movhpd => Emit(movhp),
        M::Movhlps => Emit(movhlps),
        M::Movlhps => Emit(movlhps),
        M::Movnti => Emit(movnti),
        M::Movmskps => Helper(movmskps),
        M::Movmskpd => Helper(movmskpd),
        M::Pmovmskb => Helper(pmovmskb),
        M::Maskmovdqu => Helper(maskmovdqu),
        _ => return None,
    })
}
