//! Legacy integer instructions of 16- and 32-bit code: PUSHA/PUSHAD,
//! POPA/POPAD, the BCD adjustments (AAA, AAS, DAA, DAS, AAM, AAD), BOUND,
//! INTO, SALC, ARPL; and XLAT (valid in every mode).
//!
//! Apart from XLAT they do not exist in 64-bit mode: iced decodes their
//! opcodes as invalid there (or as other instructions: 63 is MOVSXD, 62 an
//! EVEX prefix), so they raise #UD without reaching this file.
//!
//! Where the manual leaves flags undefined (AAA/AAS: OF SF ZF PF; DAA/DAS:
//! OF; AAM/AAD: OF AF CF) a fixed choice is made so both engines agree:
//! SF/ZF/PF from the final AL, OF clear; AAD's flags are those of the
//! 8-bit addition it performs, AAM's those of a logical result in AL.

use super::operand::{self, get, linear, opnd, read_reg, reg_view, seg_of, set, stack_width};
use super::Sem;
use crate::block::{Insn, InterpFn};
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::{CcKind, CcOp, Cond, FlagSet};
use crate::interp::Interp;
use crate::state::{cr0, Gpr, Seg};
use iced_x86::{Code, Instruction, Mnemonic};

/// The eight registers PUSHA pushes, in push order (SP is its value
/// before the instruction): encoding order, RAX through RDI.
const PUSHA_ORDER: &[Gpr] = Gpr::ALL.split_at(8).0;

/// Operand size of PUSHA/POPA: the opcode is the same, iced tells the
/// operand size by the code.
fn pusha_width(i: &Instruction) -> Width {
    match i.code() {
        Code::Pushaw | Code::Popaw => Width::W,
        _ => Width::D,
    }
}

/// PUSHA/PUSHAD: all eight stores happen before SP changes, so a fault
/// leaves the registers as they were.
fn pusha<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = pusha_width(&insn.i);
    let sw = stack_width(e);
    let sp = get(e, Gpr::Rsp, sw);
    // Lowest address (the last push) first: when the stack runs into a
    // bad page below, nothing is written before the fault.
    for (k, &r) in PUSHA_ORDER.iter().enumerate().rev() {
        let v = get(e, r, w);
        let off = e.add_imm(sp, (w.bytes() as u64 * (k as u64 + 1)).wrapping_neg());
        let off = e.zext(off, sw);
        let a = linear(e, Seg::Ss, off);
        e.store(a, w, v)?;
    }
    let nsp = e.add_imm(sp, (w.bytes() as u64 * 8).wrapping_neg());
    set(e, Gpr::Rsp, sw, nsp);
    Ok(())
}

/// POPA/POPAD: eight loads (the SP slot is skipped), then the writes.
fn popa<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = pusha_width(&insn.i);
    let sw = stack_width(e);
    let sp = get(e, Gpr::Rsp, sw);
    let mut vals = Vec::with_capacity(8);
    // The lowest address holds DI (pushed last).
    for (k, &r) in PUSHA_ORDER.iter().rev().enumerate() {
        let off = e.add_imm(sp, w.bytes() as u64 * k as u64);
        let off = e.zext(off, sw);
        let a = linear(e, Seg::Ss, off);
        let v = e.load(a, w)?;
        if r != Gpr::Rsp {
            vals.push((r, v));
        }
    }
    for (r, v) in vals {
        set(e, r, w, v);
    }
    let nsp = e.add_imm(sp, w.bytes() as u64 * 8);
    set(e, Gpr::Rsp, sw, nsp);
    Ok(())
}

/// Flag bit `bit` from a 0/1 value.
fn flag_at<E: Emitter>(e: &mut E, v01: E::V, bit: u32) -> E::V {
    let s = e.imm(bit as u64);
    e.shl(v01, s)
}

/// SF, ZF and PF of an 8-bit (zero-extended) result, in place.
fn szp8<E: Emitter>(e: &mut E, r: E::V) -> E::V {
    let sf = e.and_imm(r, FlagSet::SF.bits());
    let z = e.is_zero(r);
    let zf = flag_at(e, z, 6);
    let n = e.popcnt(r);
    let odd = e.and_imm(n, 1);
    let one = e.imm(1);
    let even = e.xor(odd, one);
    let pf = flag_at(e, even, 2);
    let t = e.or(sf, zf);
    e.or(t, pf)
}

/// Replace the six status flags with `status` (other bits of it zero).
fn put_status<E: Emitter>(e: &mut E, status: E::V) {
    let f = e.rflags();
    let keep = e.and_imm(f, !FlagSet::ARITH.bits());
    let v = e.or(keep, status);
    e.set_rflags(v);
}

/// AF as 0/1.
fn af<E: Emitter>(e: &mut E) -> E::V {
    let f = e.rflags();
    e.bit(f, 4)
}

/// "Low nibble of AL above 9, or AF": the condition of every BCD fix-up.
fn low_nibble_adjust<E: Emitter>(e: &mut E, al: E::V) -> E::V {
    let lo = e.and_imm(al, 0xf);
    let nine = e.imm(9);
    let big = e.ult(nine, lo);
    let a = af(e);
    e.or(big, a)
}

/// AAA (`add = true`) and AAS: adjust AX after an unpacked-BCD addition
/// or subtraction. The whole of AX moves by 0x106 (so AL's carry or
/// borrow reaches AH), then AL keeps its low nibble.
fn aaa_aas<E: Emitter>(e: &mut E, add: bool) {
    let ax = get(e, Gpr::Rax, Width::W);
    let al = e.zext(ax, Width::B);
    let adj = low_nibble_adjust(e, al);
    let moved = e.add_imm(ax, if add { 0x106 } else { 0x106u64.wrapping_neg() });
    let ax = e.select(adj, moved, ax);
    let ax = e.and_imm(ax, 0xff0f);
    set(e, Gpr::Rax, Width::W, ax);
    let al = e.zext(ax, Width::B);
    let s = szp8(e, al);
    let cf = e.or(adj, s);
    let af = flag_at(e, adj, 4);
    let st = e.or(cf, af);
    put_status(e, st);
}

fn aaa<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    aaa_aas(e, true);
    Ok(())
}

fn aas<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    aaa_aas(e, false);
    Ok(())
}

/// DAA (`add = true`) and DAS: adjust AL after a packed-BCD addition or
/// subtraction (SDM pseudo-code: the low-nibble step, then the high one
/// decided on the original AL and CF).
fn daa_das<E: Emitter>(e: &mut E, add: bool) {
    let al = get(e, Gpr::Rax, Width::B);
    let old_cf = e.cond(Cond::B);
    let c1 = low_nibble_adjust(e, al);
    let six = e.imm(6);
    let stepped = if add { e.add(al, six) } else { e.sub(al, six) };
    // Carry out of AL + 6, or borrow of AL - 6.
    let carry = if add {
        let lim = e.imm(0xff);
        e.ult(lim, stepped)
    } else {
        e.ult(al, six)
    };
    let al1 = e.select(c1, stepped, al);
    let al1 = e.zext(al1, Width::B);
    let nn = e.imm(0x99);
    let high = e.ult(nn, al);
    let c2 = e.or(high, old_cf);
    let k = e.imm(0x60);
    let stepped2 = if add { e.add(al1, k) } else { e.sub(al1, k) };
    let al2 = e.select(c2, stepped2, al1);
    let al2 = e.zext(al2, Width::B);
    // DAA clears CF when the high step is not taken; DAS keeps what the
    // low step left (old CF or its borrow).
    let cf = if add {
        c2
    } else {
        let low = e.or(old_cf, carry);
        let low = e.and(c1, low);
        e.or(c2, low)
    };
    set(e, Gpr::Rax, Width::B, al2);
    let s = szp8(e, al2);
    let af = flag_at(e, c1, 4);
    let st = e.or(s, af);
    let st = e.or(st, cf);
    put_status(e, st);
}

fn daa<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    daa_das(e, true);
    Ok(())
}

fn das<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    daa_das(e, false);
    Ok(())
}

/// AAM imm8: AH = AL / imm, AL = AL % imm; #DE for a zero base. A helper:
/// the emitter has no division.
fn aam(cx: &mut Interp, insn: &Insn) -> SemResult {
    let base = u64::from(insn.i.immediate8());
    if base == 0 {
        return Err(Stop::Fault(Exception::de()));
    }
    let al = cx.cpu.reg(Gpr::Rax) & 0xff;
    let ax = ((al / base) << 8) | (al % base);
    set(cx, Gpr::Rax, Width::W, ax);
    cx.set_cc(CcOp::new(CcKind::Logic, Width::B), al % base, 0, 0);
    Ok(())
}

/// AAD imm8: AL = AL + AH * imm (8 bits), AH = 0; the flags of that add.
fn aad<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let ax = get(e, Gpr::Rax, Width::W);
    let al = e.zext(ax, Width::B);
    let eight = e.imm(8);
    let ah = e.shr(ax, eight);
    let base = e.imm(u64::from(insn.i.immediate8()));
    let prod = e.mul(ah, base);
    let prod = e.zext(prod, Width::B);
    let sum = e.add(al, prod);
    let sum = e.zext(sum, Width::B);
    set(e, Gpr::Rax, Width::W, sum);
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Add, Width::B), sum, prod, zero);
    Ok(())
}

/// BOUND r, m: #BR unless lower <= index <= upper (signed), the bounds
/// being two consecutive operand-size words at m.
fn bound<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let r = match reg_view(insn.i.op0_register()) {
        Some(v) => v,
        None => return Err(Stop::Fault(Exception::ud())),
    };
    let w = r.w;
    let m = opnd(e, insn, 1);
    let a = match m.loc {
        operand::Loc::Mem(a) => a,
        // The register form does not exist (#UD).
        _ => return Err(Stop::Fault(Exception::ud())),
    };
    let lo = e.load(a, w)?;
    let a2 = e.add_imm(a, w.bytes() as u64);
    let a2 = e.zext(a2, Width::D);
    let hi = e.load(a2, w)?;
    let idx = read_reg(e, r);
    let idx = e.sext(idx, w);
    let lo = e.sext(lo, w);
    let hi = e.sext(hi, w);
    let below = e.slt(idx, lo);
    let above = e.slt(hi, idx);
    let out = e.or(below, above);
    e.raise_if(out, Exception::br())
}

/// SALC (undocumented, D6): AL = CF ? 0xff : 0; no flag changes.
fn salc<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    let cf = e.cond(Cond::B);
    let ones = e.imm(0xff);
    let zero = e.imm(0);
    let v = e.select(cf, ones, zero);
    set(e, Gpr::Rax, Width::B, v);
    Ok(())
}

/// XLAT: AL = [seg:(rBX + AL)], the sum wrapping at the address size
/// (iced describes the operand as base rBX, index AL).
fn xlat<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let i = &insn.i;
    let aw = reg_view(i.memory_base()).map(|v| v.w).unwrap_or(Width::Q);
    let bx = get(e, Gpr::Rbx, aw);
    let al = get(e, Gpr::Rax, Width::B);
    let off = e.add(bx, al);
    let off = e.zext(off, aw);
    let seg = seg_of(i.memory_segment()).unwrap_or(Seg::Ds);
    let a = linear(e, seg, off);
    let v = e.load(a, Width::B)?;
    set(e, Gpr::Rax, Width::B, v);
    Ok(())
}

/// ARPL r/m16, r16 (protected mode only): raise the destination
/// selector's RPL to the source's; ZF says whether it changed. Only the
/// low 16 bits of a register destination are written.
fn arpl(cx: &mut Interp, insn: &Insn) -> SemResult {
    let v86 = cx.cpu.rflags() & FlagSet::VM.bits() != 0;
    if cx.cpu.cr0 & cr0::PE == 0 || v86 {
        return Err(Stop::Fault(Exception::ud()));
    }
    let mut d = opnd(cx, insn, 0);
    d.w = Width::W;
    if let operand::Loc::Reg(r) = &mut d.loc {
        r.w = Width::W;
    }
    let dst = operand::read(cx, &d)?;
    let src = get(
        cx,
        reg_view(insn.i.op1_register()).map_or(Gpr::Rax, |v| v.gpr),
        Width::W,
    );
    let raise = dst & 3 < src & 3;
    if raise {
        operand::write(cx, &d, (dst & !3) | (src & 3))?;
    }
    let f = cx.cpu.rflags() & !FlagSet::ZF.bits();
    cx.cpu
        .set_rflags(f | if raise { FlagSet::ZF.bits() } else { 0 });
    Ok(())
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let h: InterpFn = match i.mnemonic() {
        M::Aam => aam,
        M::Arpl => arpl,
        _ => {
            let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
                M::Pusha | M::Pushad => pusha,
                M::Popa | M::Popad => popa,
                M::Aaa => aaa,
                M::Aas => aas,
                M::Daa => daa,
                M::Das => das,
                M::Aad => aad,
                M::Bound => bound,
                M::Salc => salc,
                M::Xlatb => xlat,
                _ => return None,
            };
            return Some(Sem::Emit(f));
        }
    };
    Some(Sem::Helper(h))
}
