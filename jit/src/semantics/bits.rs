//! Bit instructions: BT BTS BTR BTC, BSF BSR, TZCNT LZCNT POPCNT, and the
//! BMI1 group ANDN BEXTR BLSI BLSMSK BLSR.

use super::operand::{self, opnd, read, write, Loc, Opnd};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::flags::{CcKind, CcOp, FlagSet};
use crate::state::Seg;
use iced_x86::{Instruction, Mnemonic, OpKind};

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    Test,
    Set,
    Reset,
    Complement,
}

/// The BT-family destination. With a memory operand and a register bit
/// offset, the offset is a signed index into a bit string starting at the
/// operand: the address moves by `(offset >> log2(bits)) * bytes`.
fn bit_base<E: Emitter>(e: &mut E, insn: &Insn, off: E::V, w: Width) -> Opnd<E::V> {
    let i = &insn.i;
    if i.op0_kind() != OpKind::Memory || i.op1_kind() != OpKind::Register {
        return opnd(e, insn, 0);
    }
    let so = e.sext(off, w);
    let k = e.imm(w.bits().trailing_zeros() as u64);
    let units = e.sar(so, k);
    let k = e.imm(w.bytes().trailing_zeros() as u64);
    let delta = e.shl(units, k);
    let base = operand::offset(e, i);
    let o = e.add(base, delta);
    let o = e.zext(o, operand::addr_width(i, e.bitness()));
    let seg = operand::seg_of(i.memory_segment()).unwrap_or(Seg::Ds);
    Opnd {
        loc: Loc::Mem(operand::linear(e, seg, o)),
        w,
    }
}

/// Replace CF (a 0/1 value), keeping every other flag.
fn set_cf<E: Emitter>(e: &mut E, cf: E::V) {
    if !e.flags_live().contains(FlagSet::CF) {
        return;
    }
    let f = e.rflags();
    let f = e.and_imm(f, !FlagSet::CF.bits());
    let f = e.or(f, cf);
    e.set_rflags(f);
}

/// BT/BTS/BTR/BTC: CF = the selected bit; the other flags are kept (OF SF
/// AF PF are undefined, ZF is unchanged).
fn bit_op<E: Emitter>(e: &mut E, insn: &Insn, op: BitOp) -> SemResult {
    let w = operand::op_width(&insn.i, 0);
    let s = opnd(e, insn, 1);
    let off = read(e, &s)?;
    let d = bit_base(e, insn, off, w);
    let v = read(e, &d)?;
    let pos = e.and_imm(off, w.bits() as u64 - 1);
    let t = e.shr(v, pos);
    let bit = e.and_imm(t, 1);
    let one = e.imm(1);
    let m = e.shl(one, pos);
    let nv = match op {
        BitOp::Test => None,
        BitOp::Set => Some(e.or(v, m)),
        BitOp::Reset => {
            let nm = e.not(m);
            Some(e.and(v, nm))
        }
        BitOp::Complement => Some(e.xor(v, m)),
    };
    if let Some(nv) = nv {
        write(e, &d, nv)?;
    }
    set_cf(e, bit);
    Ok(())
}

fn bt<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bit_op(e, insn, BitOp::Test)
}

fn bts<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bit_op(e, insn, BitOp::Set)
}

fn btr<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bit_op(e, insn, BitOp::Reset)
}

fn btc<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bit_op(e, insn, BitOp::Complement)
}

/// BSF/BSR. A zero source sets ZF and leaves the destination entirely
/// unchanged (the host keeps even the upper half of a 32-bit register);
/// otherwise ZF=0. The other flags are undefined: `Logic` on the source.
fn bit_scan<E: Emitter>(e: &mut E, insn: &Insn, reverse: bool) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let d = opnd(e, insn, 0);
    let idx = if reverse {
        let z = e.clz(v);
        let k63 = e.imm(63);
        e.sub(k63, z)
    } else {
        e.ctz(v)
    };
    let zero = e.imm(0);
    let found = e.ne(v, zero);
    e.when(found, |e| write(e, &d, idx))?;
    e.set_cc(CcOp::new(CcKind::Logic, s.w), v, zero, zero);
    Ok(())
}

fn bsf<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bit_scan(e, insn, false)
}

fn bsr<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bit_scan(e, insn, true)
}

/// TZCNT/LZCNT: the width for a zero source. CF = source is zero, ZF =
/// result is zero (`Blsr` gives exactly these; the rest is undefined).
fn count_zeros<E: Emitter>(e: &mut E, insn: &Insn, leading: bool) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let w = s.w;
    let bits = e.imm(w.bits() as u64);
    let r = if leading {
        // v is zero-extended: 64-bit clz counts 64 - bits extra zeros.
        let z = e.clz(v);
        let extra = e.imm(64 - w.bits() as u64);
        e.sub(z, extra)
    } else {
        let z = e.ctz(v);
        let none = e.is_zero(v);
        e.select(none, bits, z)
    };
    let d = opnd(e, insn, 0);
    write(e, &d, r)?;
    e.set_cc(CcOp::new(CcKind::Blsr, w), r, v, v);
    Ok(())
}

fn tzcnt<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    count_zeros(e, insn, false)
}

fn lzcnt<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    count_zeros(e, insn, true)
}

/// POPCNT: ZF = source is zero, OF SF AF CF PF cleared.
fn popcnt<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let r = e.popcnt(v);
    let d = opnd(e, insn, 0);
    write(e, &d, r)?;
    if e.flags_live().is_empty() {
        return Ok(());
    }
    let z = e.is_zero(v);
    let k = e.imm(FlagSet::ZF.bits().trailing_zeros() as u64);
    let zf = e.shl(z, k);
    let f = e.rflags();
    let f = e.and_imm(f, !FlagSet::ARITH.bits());
    let f = e.or(f, zf);
    e.set_rflags(f);
    Ok(())
}

/// ANDN: `!src1 & src2`; SF ZF from the result, CF OF cleared (`Logic`).
fn andn<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let a = opnd(e, insn, 1);
    let b = opnd(e, insn, 2);
    let x = read(e, &a)?;
    let y = read(e, &b)?;
    let nx = e.not(x);
    let r = e.and(nx, y);
    let r = e.zext(r, d.w);
    write(e, &d, r)?;
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Logic, d.w), r, zero, zero);
    Ok(())
}

/// BEXTR: `len` bits of src1 from bit `start` (control = src2: start in
/// bits 7:0, len in 15:8); a start past the width gives 0, a length past
/// it takes everything. ZF from the result, CF OF cleared (`Logic`).
fn bextr<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let a = opnd(e, insn, 1);
    let b = opnd(e, insn, 2);
    let src = read(e, &a)?;
    let ctl = read(e, &b)?;
    let w = d.w;
    let bits = e.imm(w.bits() as u64);
    let zero = e.imm(0);
    let start = e.and_imm(ctl, 0xff);
    let k8 = e.imm(8);
    let len = e.shr(ctl, k8);
    let len = e.and_imm(len, 0xff);
    let in_range = e.ult(start, bits);
    let shifted = e.shr(src, start);
    let shifted = e.select(in_range, shifted, zero);
    let one = e.imm(1);
    let short = e.ult(len, bits);
    let m = e.shl(one, len);
    let m = e.sub(m, one);
    let all = e.imm(w.mask());
    let m = e.select(short, m, all);
    let r = e.and(shifted, m);
    write(e, &d, r)?;
    e.set_cc(CcOp::new(CcKind::Logic, w), r, zero, zero);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bls {
    /// `src & -src`: isolate the lowest set bit.
    Isolate,
    /// `src ^ (src - 1)`: mask up to the lowest set bit.
    Mask,
    /// `src & (src - 1)`: reset the lowest set bit.
    Reset,
}

/// BLSI (CF = src != 0), BLSMSK and BLSR (CF = src == 0); ZF SF from the
/// result (never zero for BLSMSK), OF cleared: `Blsi`/`Blsr` kinds.
fn bls<E: Emitter>(e: &mut E, insn: &Insn, op: Bls) -> SemResult {
    let d = opnd(e, insn, 0);
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let w = d.w;
    let vm1 = e.add_imm(v, u64::MAX);
    let (r, kind) = match op {
        Bls::Isolate => {
            let n = e.neg(v);
            (e.and(v, n), CcKind::Blsi)
        }
        Bls::Mask => (e.xor(v, vm1), CcKind::Blsr),
        Bls::Reset => (e.and(v, vm1), CcKind::Blsr),
    };
    let r = e.zext(r, w);
    write(e, &d, r)?;
    let zero = e.imm(0);
    e.set_cc(CcOp::new(kind, w), r, v, zero);
    Ok(())
}

fn blsi<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bls(e, insn, Bls::Isolate)
}

fn blsmsk<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bls(e, insn, Bls::Mask)
}

fn blsr<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    bls(e, insn, Bls::Reset)
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Bt => bt,
        M::Bts => bts,
        M::Btr => btr,
        M::Btc => btc,
        M::Bsf => bsf,
        M::Bsr => bsr,
        M::Tzcnt => tzcnt,
        M::Lzcnt => lzcnt,
        M::Popcnt => popcnt,
        M::Andn => andn,
        M::Bextr => bextr,
        M::Blsi => blsi,
        M::Blsmsk => blsmsk,
        M::Blsr => blsr,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
