//! Multiplication and division: MUL, IMUL (one, two and three operands),
//! DIV, IDIV.
//!
//! MUL/IMUL record `CcKind::Mul`: CF = OF = "the result did not fit the
//! destination", SF/ZF/PF (architecturally undefined) follow the low half.
//! DIV/IDIV are helpers on the concrete interpreter (128-bit arithmetic);
//! they raise #DE before writing anything and leave the (undefined) flags
//! unchanged.

use super::operand::{get, opnd, read, set, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::{CcKind, CcOp};
use crate::interp::Interp;
use crate::state::Gpr;
use iced_x86::{Instruction, Mnemonic};

/// A widening product: low half, high half (both `w` wide, zero-extended)
/// and an overflow indicator, non-zero iff the product does not fit `w`
/// bits (unsigned) or is not the sign extension of its low half (signed).
struct Product<V> {
    lo: V,
    hi: V,
    overflow: V,
}

fn widen_mul<E: Emitter>(e: &mut E, a: E::V, b: E::V, w: Width, signed: bool) -> Product<E::V> {
    if w == Width::Q {
        let lo = e.mul(a, b);
        if signed {
            let hi = e.smulhi(a, b);
            let k63 = e.imm(63);
            let sign = e.sar(lo, k63);
            let overflow = e.xor(hi, sign);
            return Product { lo, hi, overflow };
        }
        let hi = e.umulhi(a, b);
        return Product {
            lo,
            hi,
            overflow: hi,
        };
    }
    // Up to 32×32 bits: the full product fits 64 bits.
    let bits = e.imm(w.bits() as u64);
    if signed {
        let sa = e.sext(a, w);
        let sb = e.sext(b, w);
        let p = e.mul(sa, sb);
        let lo = e.zext(p, w);
        let h = e.sar(p, bits);
        let hi = e.zext(h, w);
        let back = e.sext(p, w);
        let overflow = e.xor(back, p);
        Product { lo, hi, overflow }
    } else {
        let p = e.mul(a, b);
        let lo = e.zext(p, w);
        let h = e.shr(p, bits);
        let hi = e.zext(h, w);
        Product {
            lo,
            hi,
            overflow: hi,
        }
    }
}

/// One-operand MUL/IMUL: AX = AL * src, or rDX:rAX = rAX * src.
fn mul_wide<E: Emitter>(e: &mut E, insn: &Insn, signed: bool) -> SemResult {
    let s = opnd(e, insn, 0);
    let w = s.w;
    let b = read(e, &s)?;
    let a = get(e, Gpr::Rax, w);
    let p = widen_mul(e, a, b, w, signed);
    if w == Width::B {
        let k8 = e.imm(8);
        let h = e.shl(p.hi, k8);
        let ax = e.or(h, p.lo);
        set(e, Gpr::Rax, Width::W, ax);
    } else {
        set(e, Gpr::Rax, w, p.lo);
        set(e, Gpr::Rdx, w, p.hi);
    }
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Mul, w), p.lo, p.overflow, zero);
    Ok(())
}

fn mul<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    mul_wide(e, insn, false)
}

/// IMUL in all three forms; the two- and three-operand forms keep only the
/// low half.
fn imul<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    if insn.i.op_count() == 1 {
        return mul_wide(e, insn, true);
    }
    let d = opnd(e, insn, 0);
    let w = d.w;
    let (x, y) = if insn.i.op_count() == 3 {
        let a = opnd(e, insn, 1);
        let b = opnd(e, insn, 2);
        (read(e, &a)?, read(e, &b)?)
    } else {
        let b = opnd(e, insn, 1);
        (read(e, &d)?, read(e, &b)?)
    };
    let p = widen_mul(e, x, y, w, true);
    write(e, &d, p.lo)?;
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Mul, w), p.lo, p.overflow, zero);
    Ok(())
}

fn divide_error() -> Stop {
    Stop::Fault(Exception::de())
}

/// The dividend: AX for a byte divisor, else rDX:rAX.
fn dividend(cx: &mut Interp, w: Width) -> u128 {
    if w == Width::B {
        return get(cx, Gpr::Rax, Width::W) as u128;
    }
    let hi = get(cx, Gpr::Rdx, w) as u128;
    let lo = get(cx, Gpr::Rax, w) as u128;
    (hi << w.bits()) | lo
}

/// Store quotient and remainder: AL/AH for a byte divisor, else rAX/rDX.
fn store_div(cx: &mut Interp, w: Width, q: u64, r: u64) {
    if w == Width::B {
        set(cx, Gpr::Rax, Width::W, ((r & 0xff) << 8) | (q & 0xff));
    } else {
        set(cx, Gpr::Rax, w, q);
        set(cx, Gpr::Rdx, w, r);
    }
}

/// Unsigned divide; #DE for a zero divisor or a quotient wider than `w`.
fn div(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = opnd(cx, insn, 0);
    let w = s.w;
    let d = read(cx, &s)? as u128;
    if d == 0 {
        return Err(divide_error());
    }
    let n = dividend(cx, w);
    let q = n / d;
    if q > w.mask() as u128 {
        return Err(divide_error());
    }
    store_div(cx, w, q as u64, (n % d) as u64);
    Ok(())
}

/// Sign-extend the low `bits` bits of `v` (1..=128).
fn sext128(v: u128, bits: u32) -> i128 {
    let sh = 128 - bits;
    ((v << sh) as i128) >> sh
}

/// Signed divide (quotient rounds toward zero, the remainder has the
/// dividend's sign); #DE for a zero divisor or a quotient outside the
/// signed range of `w` (including the most negative dividend over -1).
fn idiv(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = opnd(cx, insn, 0);
    let w = s.w;
    let bits = w.bits();
    let d = sext128(read(cx, &s)? as u128, bits);
    let n = sext128(dividend(cx, w), 2 * bits);
    let (Some(q), Some(r)) = (n.checked_div(d), n.checked_rem(d)) else {
        return Err(divide_error());
    };
    let limit = 1i128 << (bits - 1);
    if q < -limit || q >= limit {
        return Err(divide_error());
    }
    store_div(cx, w, q as u64 & w.mask(), r as u64 & w.mask());
    Ok(())
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    Some(match i.mnemonic() {
        M::Mul => Sem::Emit(mul),
        M::Imul => Sem::Emit(imul),
        M::Div => Sem::Helper(div),
        M::Idiv => Sem::Helper(idiv),
        _ => return None,
    })
}
