//! Shifts and rotates: SHL/SAL SHR SAR, ROL ROR RCL RCR, SHLD SHRD.
//!
//! The count is masked to 5 bits (6 for 64-bit operands). The destination
//! is always written back, even for a masked count of 0: the host CPU
//! zero-extends a 32-bit register and faults on a read-only page in that
//! case. The flags change only for a non-zero masked count.
//!
//! Results for counts at or above the operand width (8/16-bit SHL/SHR/SAR,
//! 16-bit SHLD/SHRD) follow the host (AMD): SHL/SHR give 0, SAR the sign,
//! and 16-bit SHLD/SHRD by 17–31 rotate the source by `count - 16`.

use super::operand::{opnd, read, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::flags::{CcKind, CcOp, Cond, FlagSet};
use iced_x86::{Instruction, Mnemonic};

/// Read count operand `n`, masked to 5 bits (6 for a 64-bit operation).
fn count<E: Emitter>(e: &mut E, insn: &Insn, n: u32, w: Width) -> SemResult<E::V> {
    let c = opnd(e, insn, n);
    let v = read(e, &c)?;
    Ok(e.and_imm(v, if w == Width::Q { 63 } else { 31 }))
}

/// `c != 0` as 0/1.
fn nonzero<E: Emitter>(e: &mut E, c: E::V) -> E::V {
    let z = e.imm(0);
    e.ne(c, z)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shift {
    Shl,
    Shr,
    Sar,
}

/// SHL/SHR/SAR with lazy flags (see flags.rs for the operand conventions).
fn shift<E: Emitter>(e: &mut E, insn: &Insn, op: Shift) -> SemResult {
    let d = opnd(e, insn, 0);
    let w = d.w;
    let v = read(e, &d)?;
    let c = count(e, insn, 1, w)?;
    let r = match op {
        Shift::Shl => e.shl(v, c),
        Shift::Shr => e.shr(v, c),
        Shift::Sar => {
            let s = e.sext(v, w);
            e.sar(s, c)
        }
    };
    let r = e.zext(r, w);
    write(e, &d, r)?;
    if e.flags_live().is_empty() {
        return Ok(());
    }
    let nz = nonzero(e, c);
    e.when(nz, |e| {
        // The value shifted by one less than the count: its edge bit is
        // the last bit shifted out (CF).
        let c1 = e.add_imm(c, u64::MAX);
        let zero = e.imm(0);
        let (kind, src, src2) = match op {
            Shift::Shl => (CcKind::Shl, e.shl(v, c1), zero),
            Shift::Shr => (CcKind::Shr, e.shr(v, c1), v),
            Shift::Sar => {
                let s = e.sext(v, w);
                (CcKind::Sar, e.sar(s, c1), zero)
            }
        };
        e.set_cc(CcOp::new(kind, w), r, src, src2);
        Ok(())
    })
}

fn shl<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    shift(e, insn, Shift::Shl)
}

fn shr<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    shift(e, insn, Shift::Shr)
}

fn sar<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    shift(e, insn, Shift::Sar)
}

/// Replace CF and OF (0/1 values), keeping every other flag.
fn set_cf_of<E: Emitter>(e: &mut E, cf: E::V, of: E::V) {
    let f = e.rflags();
    let f = e.and_imm(f, !(FlagSet::CF | FlagSet::OF).bits());
    let f = e.or(f, cf);
    let sh = e.imm(FlagSet::OF.bits().trailing_zeros() as u64);
    let o = e.shl(of, sh);
    let f = e.or(f, o);
    e.set_rflags(f);
}

/// True when a later instruction may read CF or OF.
fn cf_of_live<E: Emitter>(e: &E) -> bool {
    e.flags_live().intersects(FlagSet::CF | FlagSet::OF)
}

/// `v` (zero-extended, `w` wide) repeated across all 64 bits, so a 64-bit
/// rotate by any count leaves the `w`-bit rotate in the low bits.
fn replicate<E: Emitter>(e: &mut E, v: E::V, w: Width) -> E::V {
    let k = match w {
        Width::B => 0x0101_0101_0101_0101,
        Width::W => 0x0001_0001_0001_0001,
        Width::D => 0x0000_0001_0000_0001,
        Width::Q => return v,
    };
    let k = e.imm(k);
    e.mul(v, k)
}

/// ROL/ROR. CF is the bit that wrapped around; OF is computed by the SDM's
/// count-1 formula for every non-zero count (as the host does).
fn rotate<E: Emitter>(e: &mut E, insn: &Insn, left: bool) -> SemResult {
    let d = opnd(e, insn, 0);
    let w = d.w;
    let v = read(e, &d)?;
    let c = count(e, insn, 1, w)?;
    let rep = replicate(e, v, w);
    let r = if left { e.rotl(rep, c) } else { e.rotr(rep, c) };
    let r = e.zext(r, w);
    write(e, &d, r)?;
    // CF is the bit that wrapped around: the new LSB (left) or MSB (right).
    let cf = if left {
        e.and_imm(r, 1)
    } else {
        e.bit(r, w.bits() - 1)
    };
    rotate_flags(e, c, r, w, left, cf)
}

/// CF and OF after a rotate by a masked count `c` giving `r`: nothing
/// changes for a zero count; OF is the SDM's count-1 formula (MSB xor CF
/// to the left, the two top bits to the right) for every other count.
fn rotate_flags<E: Emitter>(
    e: &mut E,
    c: E::V,
    r: E::V,
    w: Width,
    left: bool,
    cf: E::V,
) -> SemResult {
    if !cf_of_live(e) {
        return Ok(());
    }
    let nz = nonzero(e, c);
    e.when(nz, |e| {
        let msb = e.bit(r, w.bits() - 1);
        let other = if left { cf } else { e.bit(r, w.bits() - 2) };
        let of = e.xor(msb, other);
        set_cf_of(e, cf, of);
        Ok(())
    })
}

fn rol<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    rotate(e, insn, true)
}

fn ror<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    rotate(e, insn, false)
}

/// The RCL/RCR rotate count: the masked count modulo width + 1 (9 or 17)
/// for 8/16-bit operands. `c` is at most 31 there.
fn carry_count<E: Emitter>(e: &mut E, c: E::V, w: Width) -> E::V {
    let reduce = |e: &mut E, c: E::V, k: u64| {
        let kk = e.imm(k);
        let ge = e.ule(kk, c);
        let less = e.sub(c, kk);
        e.select(ge, less, c)
    };
    match w {
        Width::B => {
            let c = reduce(e, c, 18);
            reduce(e, c, 9)
        }
        Width::W => reduce(e, c, 17),
        _ => c,
    }
}

/// RCL/RCR: rotate the (width + 1)-bit value CF:dest. For a rotate count
/// `n` in 1..=width (`W` = width in bits):
/// RCL: `v << n | CF << (n-1) | v >> (W+1-n)`, CF = bit `W-n` of v;
/// RCR: `v >> n | CF << (W-n) | v << (W+1-n)`, CF = bit `n-1` of v.
/// The `W+1-n` shifts are split in two so none reaches 64. A masked count
/// whose rotate count is 0 (RCL r8 by 9) still rewrites OF, as the host does.
fn rotate_carry<E: Emitter>(e: &mut E, insn: &Insn, left: bool) -> SemResult {
    let d = opnd(e, insn, 0);
    let w = d.w;
    let v = read(e, &d)?;
    let c = count(e, insn, 1, w)?;
    let n = carry_count(e, c, w);
    let cf = e.cond(Cond::B);
    let bits = e.imm(w.bits() as u64);
    let wn = e.sub(bits, n);
    let one = e.imm(1);
    let n1 = e.sub(n, one);
    let (r, new_cf) = if left {
        let a = e.shl(v, n);
        let b = e.shl(cf, n1);
        let t = e.shr(v, one);
        let t = e.shr(t, wn);
        let r = e.or(a, b);
        let r = e.or(r, t);
        let out = e.shr(v, wn);
        (r, e.and(out, one))
    } else {
        let a = e.shr(v, n);
        let b = e.shl(cf, wn);
        let t = e.shl(v, one);
        let t = e.shl(t, wn);
        let r = e.or(a, b);
        let r = e.or(r, t);
        let out = e.shr(v, n1);
        (r, e.and(out, one))
    };
    let r = e.zext(r, w);
    let moved = nonzero(e, n);
    let r = e.select(moved, r, v);
    let new_cf = e.select(moved, new_cf, cf);
    write(e, &d, r)?;
    rotate_flags(e, c, r, w, left, new_cf)
}

fn rcl<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    rotate_carry(e, insn, true)
}

fn rcr<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    rotate_carry(e, insn, false)
}

/// The 16/32-bit double shift's operands packed into one 64-bit value so a
/// single shift gives the result (and the host's 16-bit count > 16 rule):
/// SHLD: `dst:src` (32-bit) or `dst:src:src` (16-bit), result in bits
/// 63-c..32-c (`>> (32 - c)`);
/// SHRD: `src:dst` (32-bit) or `src:src:dst` (16-bit), result `>> c`.
fn pack<E: Emitter>(e: &mut E, dst: E::V, src: E::V, w: Width, left: bool) -> E::V {
    let k16 = e.imm(16);
    let k32 = e.imm(32);
    let src_hi = e.shl(src, k16);
    if left {
        let hi = e.shl(dst, k32);
        let lo = if w == Width::W {
            e.or(src_hi, src)
        } else {
            src
        };
        e.or(hi, lo)
    } else {
        let top = e.shl(src, k32);
        let hi = if w == Width::W {
            e.or(top, src_hi)
        } else {
            top
        };
        e.or(hi, dst)
    }
}

/// SHLD/SHRD. Flags as SHL/SHR of the destination (OF for a count of 1 is
/// "sign changed"; SHRD passes `old ^ result` as SHR's OF source).
fn double_shift<E: Emitter>(e: &mut E, insn: &Insn, left: bool) -> SemResult {
    let d = opnd(e, insn, 0);
    let w = d.w;
    let v = read(e, &d)?;
    let s = opnd(e, insn, 1);
    let sv = read(e, &s)?;
    let c = count(e, insn, 2, w)?;
    let one = e.imm(1);
    let c1 = e.sub(c, one);
    let (r, cc_src) = if w == Width::Q {
        let k63 = e.imm(63);
        let back = e.sub(k63, c);
        if left {
            let a = e.shl(v, c);
            let t = e.shr(sv, one);
            let t = e.shr(t, back);
            (e.or(a, t), e.shl(v, c1))
        } else {
            let a = e.shr(v, c);
            let t = e.shl(sv, one);
            let t = e.shl(t, back);
            (e.or(a, t), e.shr(v, c1))
        }
    } else {
        let z = pack(e, v, sv, w, left);
        if left {
            let k32 = e.imm(32);
            let sh = e.sub(k32, c);
            let k33 = e.imm(33);
            let sh1 = e.sub(k33, c);
            (e.shr(z, sh), e.shr(z, sh1))
        } else {
            (e.shr(z, c), e.shr(z, c1))
        }
    };
    let r = e.zext(r, w);
    write(e, &d, r)?;
    if e.flags_live().is_empty() {
        return Ok(());
    }
    let nz = nonzero(e, c);
    e.when(nz, |e| {
        if left {
            let zero = e.imm(0);
            e.set_cc(CcOp::new(CcKind::Shl, w), r, cc_src, zero);
        } else {
            let changed = e.xor(v, r);
            e.set_cc(CcOp::new(CcKind::Shr, w), r, cc_src, changed);
        }
        Ok(())
    })
}

fn shld<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    double_shift(e, insn, true)
}

fn shrd<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    double_shift(e, insn, false)
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Shl | M::Sal => shl,
        M::Shr => shr,
        M::Sar => sar,
        M::Rol => rol,
        M::Ror => ror,
        M::Rcl => rcl,
        M::Rcr => rcr,
        M::Shld => shld,
        M::Shrd => shrd,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
