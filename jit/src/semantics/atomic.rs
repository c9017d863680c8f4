//! Read-modify-write instructions meant for LOCK: XADD, CMPXCHG,
//! CMPXCHG8B, CMPXCHG16B. The guest has one CPU, so LOCK needs nothing
//! beyond doing the memory write before any register write.

use super::operand::{get, opnd, read, set, write, Loc};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::exception::Exception;
use crate::flags::{CcKind, CcOp, FlagSet};
use crate::state::Gpr;
use iced_x86::{Instruction, Mnemonic};

/// XADD dst, src: tmp = dst + src; src = dst; dst = tmp; flags of ADD.
/// A memory destination is written first so a fault changes nothing; for
/// two registers the destination is written last (XADD r, r keeps the sum).
fn xadd<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let s = opnd(e, insn, 1);
    let a = read(e, &d)?;
    let b = read(e, &s)?;
    let sum = e.add(a, b);
    if d.is_mem() {
        write(e, &d, sum)?;
        write(e, &s, a)?;
    } else {
        write(e, &s, a)?;
        write(e, &d, sum)?;
    }
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Add, d.w), sum, b, zero);
    Ok(())
}

/// CMPXCHG dst, src: compare the accumulator with dst (flags of CMP).
/// Equal: dst = src and the accumulator is not written. Different: the
/// accumulator gets dst; a memory dst is written back with its own value
/// (so a read-only page faults either way), a register dst is left alone.
/// (Checked on the host: a 32-bit CMPXCHG in 64-bit mode keeps RAX[63:32]
/// on success, zero-extends EAX on failure, and keeps a register
/// destination's upper half on failure.)
fn cmpxchg<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let s = opnd(e, insn, 1);
    let w = d.w;
    let dv = read(e, &d)?;
    let sv = read(e, &s)?;
    let acc = get(e, Gpr::Rax, w);
    let eq = e.eq(acc, dv);
    match d.loc {
        Loc::Mem(_) => {
            let nv = e.select(eq, sv, dv);
            write(e, &d, nv)?;
        }
        _ => e.when(eq, |e| write(e, &d, sv))?,
    }
    let ne = e.is_zero(eq);
    e.when(ne, |e| {
        set(e, Gpr::Rax, w, dv);
        Ok(())
    })?;
    let diff = e.sub(acc, dv);
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Sub, w), diff, dv, zero);
    Ok(())
}

/// Replace ZF in RFLAGS with `zf` (0/1); the other flags stay.
fn set_zf<E: Emitter>(e: &mut E, zf: E::V) {
    let f = e.rflags();
    let f = e.and_imm(f, !FlagSet::ZF.bits());
    let s = e.imm(FlagSet::ZF.bits().trailing_zeros() as u64);
    let z = e.shl(zf, s);
    let f = e.or(f, z);
    e.set_rflags(f);
}

/// CMPXCHG8B m64: compare EDX:EAX with m64. Equal: m64 = ECX:EBX.
/// Different: EDX:EAX = m64 (32-bit writes, zero-extending). Memory is
/// written in both cases; only ZF changes.
fn cmpxchg8b<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let m = opnd(e, insn, 0);
    let Loc::Mem(a) = m.loc else {
        return Err(Exception::ud().into());
    };
    let old = e.load(a, Width::Q)?;
    let thirty_two = e.imm(32);
    let eax = get(e, Gpr::Rax, Width::D);
    let edx = get(e, Gpr::Rdx, Width::D);
    let hi = e.shl(edx, thirty_two);
    let cmp = e.or(hi, eax);
    let ebx = get(e, Gpr::Rbx, Width::D);
    let ecx = get(e, Gpr::Rcx, Width::D);
    let hi = e.shl(ecx, thirty_two);
    let new = e.or(hi, ebx);
    let eq = e.eq(cmp, old);
    let v = e.select(eq, new, old);
    e.store(a, Width::Q, v)?;
    let ne = e.is_zero(eq);
    e.when(ne, |e| {
        let lo = e.zext(old, Width::D);
        let t = e.imm(32);
        let hi = e.shr(old, t);
        set(e, Gpr::Rax, Width::D, lo);
        set(e, Gpr::Rdx, Width::D, hi);
        Ok(())
    })?;
    set_zf(e, eq);
    Ok(())
}

/// CMPXCHG16B m128: as CMPXCHG8B with RDX:RAX and RCX:RBX. The operand
/// must be 16-byte aligned (#GP(0)); both halves are then in one page, so
/// the two stores fault together or not at all.
fn cmpxchg16b<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let m = opnd(e, insn, 0);
    let Loc::Mem(a) = m.loc else {
        return Err(Exception::ud().into());
    };
    let mis = e.and_imm(a, 15);
    let zero = e.imm(0);
    let mis = e.ne(mis, zero);
    e.raise_if(mis, Exception::gp(0))?;
    let a_hi = e.add_imm(a, 8);
    let lo = e.load(a, Width::Q)?;
    let hi = e.load(a_hi, Width::Q)?;
    let rax = e.reg(Gpr::Rax);
    let rdx = e.reg(Gpr::Rdx);
    let eq_lo = e.eq(rax, lo);
    let eq_hi = e.eq(rdx, hi);
    let eq = e.and(eq_lo, eq_hi);
    let rbx = e.reg(Gpr::Rbx);
    let rcx = e.reg(Gpr::Rcx);
    let new_lo = e.select(eq, rbx, lo);
    let new_hi = e.select(eq, rcx, hi);
    e.store(a, Width::Q, new_lo)?;
    e.store(a_hi, Width::Q, new_hi)?;
    let ne = e.is_zero(eq);
    e.when(ne, |e| {
        e.set_reg(Gpr::Rax, lo);
        e.set_reg(Gpr::Rdx, hi);
        Ok(())
    })?;
    set_zf(e, eq);
    Ok(())
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Xadd => xadd,
        M::Cmpxchg => cmpxchg,
        M::Cmpxchg8b => cmpxchg8b,
        M::Cmpxchg16b => cmpxchg16b,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
