//! SSE2 integer SIMD on XMM registers: logic, add/subtract (wrapping and
//! saturating), compares, min/max, unpacks and packs, shuffles, shifts,
//! multiplies, averages, PSADBW, PEXTRW/PINSRW.
//!
//! Every operation is a pure function of the two 128-bit operands (the
//! destination is also the first source); [`binop`] does the checks and
//! operand access.

use super::operand::{opnd, read, write};
use super::sse::{avail, check, imm8, read128, read_x, xget, xreg, xset, X};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::interp::Interp;
use crate::sse::vec::{lane, lane_mask, map2, set_lane, sext};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// `dst = f(dst, src)` with `src` an XMM register or aligned m128.
fn binop(cx: &mut Interp, insn: &Insn, f: impl Fn(u128, u128) -> u128) -> SemResult {
    check(cx)?;
    let b = read128(cx, insn, 1)?;
    let d = xreg(insn, 0);
    cx.cpu.xmm[d] = f(cx.cpu.xmm[d], b);
    Ok(())
}

/// Saturate a signed value to `bits` bits (as a lane value).
fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    v.clamp(-max - 1, max) as u64 & lane_mask(bits)
}

/// Saturate a signed value to an unsigned `bits`-bit lane.
fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, lane_mask(bits) as i64) as u64
}

fn all_ones_if(c: bool) -> u64 {
    if c {
        u64::MAX
    } else {
        0
    }
}

fn padds<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, B, |x, y| sat_s(sext(x, B) + sext(y, B), B))
    })
}
fn psubs<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, B, |x, y| sat_s(sext(x, B) - sext(y, B), B))
    })
}
fn paddus<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, B, |x, y| (x + y).min(lane_mask(B)))
    })
}
fn psubus<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, B, |x, y| x.saturating_sub(y)))
}
fn pcmpgt<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, B, |x, y| all_ones_if(sext(x, B) > sext(y, B)))
    })
}
fn pminub(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, 8, |x, y| x.min(y)))
}
fn pmaxub(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, 8, |x, y| x.max(y)))
}
fn pminsw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, 16, |x, y| sext(x, 16).min(sext(y, 16)) as u64)
    })
}
fn pmaxsw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, 16, |x, y| sext(x, 16).max(sext(y, 16)) as u64)
    })
}

/// Narrow the `2*bits` lanes of a then b into `bits` lanes with `sat`.
fn pack(a: u128, b: u128, bits: u32, sat: fn(i64, u32) -> u64) -> u128 {
    let wide = 2 * bits;
    let n = 128 / wide;
    let mut r = 0u128;
    for i in 0..n {
        r = set_lane(r, bits, i, sat(sext(lane(a, wide, i), wide), bits));
        r = set_lane(r, bits, n + i, sat(sext(lane(b, wide, i), wide), bits));
    }
    r
}

fn packsswb(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| pack(a, b, 8, sat_s))
}
fn packssdw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| pack(a, b, 16, sat_s))
}
fn packuswb(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| pack(a, b, 8, sat_u))
}

fn pmulhw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, 16, |x, y| ((sext(x, 16) * sext(y, 16)) >> 16) as u64)
    })
}
fn pmulhuw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, 16, |x, y| (x * y) >> 16))
}

/// PMADDWD: each dword is the wrapped sum of two signed word products.
fn pmaddwd(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, 32, |x, y| {
            let p = |s: u32| sext((x >> s) & 0xffff, 16) * sext((y >> s) & 0xffff, 16);
            (p(0) + p(16)) as u64
        })
    })
}

fn pavg<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, B, |x, y| (x + y + 1) >> 1))
}

/// PSADBW: per 64-bit half, the sum of absolute byte differences in the
/// low word, the rest zero.
fn psadbw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, 64, |x, y| {
            (0..8)
                .map(|i| {
                    let (p, q) = ((x >> (8 * i)) & 0xff, (y >> (8 * i)) & 0xff);
                    p.abs_diff(q)
                })
                .sum()
        })
    })
}

// ---- Generic forms (both engines; the JIT inlines them) -------------------

/// `dst = f(dst, src)` half by half, `src` an XMM register or aligned m128.
fn halves<E: Emitter>(e: &mut E, insn: &Insn, f: impl Fn(&mut E, E::V, E::V) -> E::V) -> SemResult {
    avail(e)?;
    let b = read_x(e, insn, 1)?;
    let d = xreg(insn, 0);
    let a = xget(e, d);
    let lo = f(e, a.lo, b.lo);
    let hi = f(e, a.hi, b.hi);
    xset(e, d, X { lo, hi });
    Ok(())
}

/// `dst = f(dst, src)` on whole registers (the unpacks).
fn whole<E: Emitter>(
    e: &mut E,
    insn: &Insn,
    f: impl Fn(&mut E, X<E::V>, X<E::V>) -> X<E::V>,
) -> SemResult {
    avail(e)?;
    let b = read_x(e, insn, 1)?;
    let d = xreg(insn, 0);
    let a = xget(e, d);
    let r = f(e, a, b);
    xset(e, d, r);
    Ok(())
}

/// `B`-bit lanes replicated: `k` in every lane of a 64-bit half.
const fn rep(k: u64, bits: u32) -> u64 {
    let mut r = 0u64;
    let mut i = 0;
    while i < 64 / bits {
        r |= (k & lane_mask(bits)) << (i * bits);
        i += 1;
    }
    r
}

/// The top bit of each `bits`-bit lane.
const fn top_bits(bits: u32) -> u64 {
    rep(1 << (bits - 1), bits)
}

/// Lane `i` of a 64-bit half, zero-extended.
fn lane_of<E: Emitter>(e: &mut E, h: E::V, bits: u32, i: u32) -> E::V {
    let s = e.imm((i * bits) as u64);
    let v = e.shr(h, s);
    if bits == 64 {
        v
    } else {
        e.and_imm(v, lane_mask(bits))
    }
}

/// A 64-bit half from lane values (each already within its lane).
fn from_lanes<E: Emitter>(e: &mut E, lanes: &[E::V], bits: u32) -> E::V {
    let mut r = lanes[0];
    for (i, &l) in lanes.iter().enumerate().skip(1) {
        let s = e.imm(i as u64 * bits as u64);
        let t = e.shl(l, s);
        r = e.or(r, t);
    }
    r
}

fn pxor<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| e.xor(a, b))
}
fn pand<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| e.and(a, b))
}
fn por<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| e.or(a, b))
}
fn pandn<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| {
        let na = e.not(a);
        e.and(na, b)
    })
}

/// Lane-wise wrapping add of 64-bit halves (SWAR): add without the lanes'
/// top bits (no carry can cross a lane), then put the top bits back as
/// their carry-less sum.
fn swar_add<E: Emitter>(e: &mut E, a: E::V, b: E::V, bits: u32) -> E::V {
    if bits == 64 {
        return e.add(a, b);
    }
    let h = top_bits(bits);
    let a7 = e.and_imm(a, !h);
    let b7 = e.and_imm(b, !h);
    let sum = e.add(a7, b7);
    let x = e.xor(a, b);
    let top = e.and_imm(x, h);
    e.xor(sum, top)
}

/// Lane-wise wrapping subtract (SWAR): subtract with every lane's top bit
/// forced on in `a` and off in `b` (no borrow can cross a lane), then fix
/// the top bits.
fn swar_sub<E: Emitter>(e: &mut E, a: E::V, b: E::V, bits: u32) -> E::V {
    if bits == 64 {
        return e.sub(a, b);
    }
    let h = top_bits(bits);
    let hv = e.imm(h);
    let a1 = e.or(a, hv);
    let b7 = e.and_imm(b, !h);
    let diff = e.sub(a1, b7);
    let nb = e.not(b);
    let x = e.xor(a, nb);
    let top = e.and_imm(x, h);
    e.xor(diff, top)
}

fn padd<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| swar_add(e, a, b, B))
}
fn psub<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| swar_sub(e, a, b, B))
}

/// PCMPEQ (SWAR): a lane of `a ^ b` is zero iff the lanes are equal. Its
/// low bits plus all-ones-but-top carry into the top bit iff they are not
/// all zero; with the top bit itself that tells a non-zero lane. The
/// equal lanes' marks times the lane's all-ones fill them.
fn pcmpeq<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| {
        let x = e.xor(a, b);
        if B == 64 {
            let z = e.is_zero(x);
            return e.neg(z);
        }
        let h = top_bits(B);
        let low = e.and_imm(x, !h);
        let c = e.add_imm(low, !h);
        let nz = e.or(c, x);
        let nz = e.and_imm(nz, h);
        let hv = e.imm(h);
        let eq = e.xor(nz, hv);
        let s = e.imm(B as u64 - 1);
        let ones = e.shr(eq, s);
        let fill = e.imm(lane_mask(B));
        e.mul(ones, fill)
    })
}

/// Spread the `bits`-bit lanes of a 32-bit value over 64 bits, one lane
/// every other lane (lane i moves to lane 2i), by halving steps.
fn spread<E: Emitter>(e: &mut E, x: E::V, bits: u32) -> E::V {
    let mut x = x;
    for (step, mask) in [(16, 0x0000_ffff_0000_ffff), (8, 0x00ff_00ff_00ff_00ff)] {
        if step < bits {
            break;
        }
        let k = e.imm(step as u64);
        let t = e.shl(x, k);
        let t = e.or(x, t);
        x = e.and_imm(t, mask);
    }
    x
}

/// Interleave the lanes of the low (or high) halves: a0 b0 a1 b1 … The
/// low 32 bits of the two sources make the result's low half, their high
/// 32 bits its high half.
fn interleave<E: Emitter>(e: &mut E, a: X<E::V>, b: X<E::V>, bits: u32, high: bool) -> X<E::V> {
    let (sa, sb) = if high { (a.hi, b.hi) } else { (a.lo, b.lo) };
    if bits == 64 {
        return X { lo: sa, hi: sb };
    }
    let k32 = e.imm(32);
    let kb = e.imm(bits as u64);
    let mut out = [sa; 2];
    for (n, slot) in out.iter_mut().enumerate() {
        let (x, y) = if n == 0 {
            (e.zext(sa, Width::D), e.zext(sb, Width::D))
        } else {
            (e.shr(sa, k32), e.shr(sb, k32))
        };
        let x = spread(e, x, bits);
        let y = spread(e, y, bits);
        let y = e.shl(y, kb);
        *slot = e.or(x, y);
    }
    X {
        lo: out[0],
        hi: out[1],
    }
}

fn punpckl<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    whole(e, insn, |e, a, b| interleave(e, a, b, B, false))
}
fn punpckh<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    whole(e, insn, |e, a, b| interleave(e, a, b, B, true))
}

/// PSHUFD: dword i of the result is dword imm8[2i+1:2i] of the source.
fn pshufd<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let s = read_x(e, insn, 1)?;
    let k = imm8(insn) as u32;
    let zero = e.imm(0);
    let mut d = [zero; 4];
    for (i, slot) in d.iter_mut().enumerate() {
        let j = (k >> (2 * i)) & 3;
        let h = if j >= 2 { s.hi } else { s.lo };
        *slot = lane_of(e, h, 32, j & 1);
    }
    let lo = from_lanes(e, &d[..2], 32);
    let hi = from_lanes(e, &d[2..], 32);
    xset(e, xreg(insn, 0), X { lo, hi });
    Ok(())
}

/// Shuffle the four words of one 64-bit half by imm8.
fn shuf_words<E: Emitter>(e: &mut E, h: E::V, k: u8) -> E::V {
    let zero = e.imm(0);
    let mut w = [zero; 4];
    for (i, slot) in w.iter_mut().enumerate() {
        *slot = lane_of(e, h, 16, (k as u32 >> (2 * i)) & 3);
    }
    from_lanes(e, &w, 16)
}

/// PSHUFLW (`high == false`) and PSHUFHW: shuffle the words of one half,
/// copy the other.
fn pshufw_half<E: Emitter>(e: &mut E, insn: &Insn, high: bool) -> SemResult {
    avail(e)?;
    let s = read_x(e, insn, 1)?;
    let k = imm8(insn);
    let r = if high {
        let hi = shuf_words(e, s.hi, k);
        X { lo: s.lo, hi }
    } else {
        let lo = shuf_words(e, s.lo, k);
        X { lo, hi: s.hi }
    };
    xset(e, xreg(insn, 0), r);
    Ok(())
}

fn pshuflw<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    pshufw_half(e, insn, false)
}
fn pshufhw<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    pshufw_half(e, insn, true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shift {
    Left,
    Right,
    Arith,
}

/// One half shifted lane by lane by `count` (SWAR: shift the whole half,
/// then clear the bits that crossed into a neighbouring lane). `count` is
/// below `bits` for arithmetic shifts (clamped by the caller); for logical
/// ones a larger count gives garbage the caller replaces by zero.
fn shift_half<E: Emitter>(e: &mut E, h: E::V, bits: u32, kind: Shift, count: E::V) -> E::V {
    if bits == 64 {
        return match kind {
            Shift::Left => e.shl(h, count),
            Shift::Right => e.shr(h, count),
            Shift::Arith => e.sar(h, count),
        };
    }
    let lane = e.imm(lane_mask(bits));
    let one_per_lane = e.imm(rep(1, bits));
    if kind == Shift::Left {
        // What stays of a lane: its mask shifted, cut at the lane's top.
        let m = e.shl(lane, count);
        let m = e.and(m, lane);
        let m = e.mul(m, one_per_lane);
        let r = e.shl(h, count);
        return e.and(r, m);
    }
    let m = e.shr(lane, count);
    let m = e.mul(m, one_per_lane);
    let r = e.shr(h, count);
    let r = e.and(r, m);
    if kind == Shift::Right {
        return r;
    }
    // Arithmetic: the lanes' sign bits t, and below each the `count` bits
    // the shift emptied: t - (t >> count) (no borrow leaves a lane).
    let t = e.and_imm(h, top_bits(bits));
    let u = e.shr(t, count);
    let fill = e.sub(t, u);
    let fill = e.or(fill, t);
    e.or(r, fill)
}

/// PSLL/PSRL/PSRA by imm8 or by the low 64 bits of an XMM/m128 operand.
/// Counts beyond the lane width clear the lanes (fill with the sign for
/// arithmetic shifts).
fn shift<E: Emitter>(e: &mut E, insn: &Insn, bits: u32, kind: Shift) -> SemResult {
    avail(e)?;
    let count = if insn.i.op_kind(1) == OpKind::Immediate8 {
        e.imm(imm8(insn) as u64)
    } else {
        read_x(e, insn, 1)?.lo
    };
    let d = xreg(insn, 0);
    let a = xget(e, d);
    let max = e.imm(bits as u64 - 1);
    let big = e.ult(max, count);
    let r = if kind == Shift::Arith {
        let c = e.select(big, max, count);
        let lo = shift_half(e, a.lo, bits, kind, c);
        let hi = shift_half(e, a.hi, bits, kind, c);
        X { lo, hi }
    } else {
        let lo = shift_half(e, a.lo, bits, kind, count);
        let hi = shift_half(e, a.hi, bits, kind, count);
        let zero = e.imm(0);
        let lo = e.select(big, zero, lo);
        let hi = e.select(big, zero, hi);
        X { lo, hi }
    };
    xset(e, d, r);
    Ok(())
}

fn psll<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    shift(e, insn, B, Shift::Left)
}
fn psrl<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    shift(e, insn, B, Shift::Right)
}
fn psra<E: Emitter, const B: u32>(e: &mut E, insn: &Insn) -> SemResult {
    shift(e, insn, B, Shift::Arith)
}

/// PSLLDQ/PSRLDQ: whole-register byte shifts by imm8 (above 15: zero).
fn byte_shift<E: Emitter>(e: &mut E, insn: &Insn, left: bool) -> SemResult {
    avail(e)?;
    let n = imm8(insn) as u64;
    let d = xreg(insn, 0);
    let v = xget(e, d);
    let zero = e.imm(0);
    let s = 8 * n;
    let r = if n > 15 {
        X { lo: zero, hi: zero }
    } else if s == 0 {
        v
    } else if s >= 64 {
        let k = e.imm(s - 64);
        if left {
            let hi = e.shl(v.lo, k);
            X { lo: zero, hi }
        } else {
            let lo = e.shr(v.hi, k);
            X { lo, hi: zero }
        }
    } else {
        let k = e.imm(s);
        let rk = e.imm(64 - s);
        if left {
            let lo = e.shl(v.lo, k);
            let a = e.shl(v.hi, k);
            let b = e.shr(v.lo, rk);
            let hi = e.or(a, b);
            X { lo, hi }
        } else {
            let hi = e.shr(v.hi, k);
            let a = e.shr(v.lo, k);
            let b = e.shl(v.hi, rk);
            let lo = e.or(a, b);
            X { lo, hi }
        }
    };
    xset(e, d, r);
    Ok(())
}

fn pslldq<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    byte_shift(e, insn, true)
}
fn psrldq<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    byte_shift(e, insn, false)
}

/// PMULUDQ: the low dwords of each half, multiplied to 64 bits.
fn pmuludq<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| {
        let x = e.zext(a, Width::D);
        let y = e.zext(b, Width::D);
        e.mul(x, y)
    })
}

/// PMULLW: the low words of the word products.
fn pmullw<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    halves(e, insn, |e, a, b| {
        let zero = e.imm(0);
        let mut out = [zero; 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let x = lane_of(e, a, 16, i as u32);
            let y = lane_of(e, b, 16, i as u32);
            let p = e.mul(x, y);
            *slot = e.and_imm(p, 0xffff);
        }
        from_lanes(e, &out, 16)
    })
}

/// PEXTRW: word imm8[2:0] of the XMM source, zero-extended into a GPR (or
/// stored as m16 for the SSE4.1 memory form).
fn pextrw<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let k = imm8(insn) as u32 & 7;
    let h = e.xmm(xreg(insn, 1), k >= 4);
    let v = lane_of(e, h, 16, k & 3);
    let d = opnd(e, insn, 0);
    write(e, &d, v)
}

/// PINSRW: word imm8[2:0] of the destination from r32/m16.
fn pinsrw<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    avail(e)?;
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let k = imm8(insn) as u32 & 7;
    let d = xreg(insn, 0);
    let h = e.xmm(d, k >= 4);
    let sh = 16 * (k & 3) as u64;
    let keep = e.and_imm(h, !(0xffff << sh));
    let w = e.and_imm(v, 0xffff);
    let s = e.imm(sh);
    let w = e.shl(w, s);
    let r = e.or(keep, w);
    e.set_xmm(d, k >= 4, r);
    Ok(())
}

/// The semantics of `i`, if it is an integer SIMD instruction.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    use Sem::{Emit, Helper};
    Some(match i.mnemonic() {
        // The float logic and unpack forms are the same bit operations.
        M::Pxor | M::Xorps | M::Xorpd => Emit(pxor),
        M::Pand | M::Andps | M::Andpd => Emit(pand),
        M::Por | M::Orps | M::Orpd => Emit(por),
        M::Pandn | M::Andnps | M::Andnpd => Emit(pandn),
        M::Unpcklps => Emit(punpckl::<E, 32>),
        M::Unpckhps => Emit(punpckh::<E, 32>),
        M::Unpcklpd => Emit(punpckl::<E, 64>),
        M::Unpckhpd => Emit(punpckh::<E, 64>),
        M::Paddb => Emit(padd::<E, 8>),
        M::Paddw => Emit(padd::<E, 16>),
        M::Paddd => Emit(padd::<E, 32>),
        M::Paddq => Emit(padd::<E, 64>),
        M::Psubb => Emit(psub::<E, 8>),
        M::Psubw => Emit(psub::<E, 16>),
        M::Psubd => Emit(psub::<E, 32>),
        M::Psubq => Emit(psub::<E, 64>),
        M::Paddsb => Helper(padds::<8>),
        M::Paddsw => Helper(padds::<16>),
        M::Paddusb => Helper(paddus::<8>),
        M::Paddusw => Helper(paddus::<16>),
        M::Psubsb => Helper(psubs::<8>),
        M::Psubsw => Helper(psubs::<16>),
        M::Psubusb => Helper(psubus::<8>),
        M::Psubusw => Helper(psubus::<16>),
        M::Pcmpeqb => Emit(pcmpeq::<E, 8>),
        M::Pcmpeqw => Emit(pcmpeq::<E, 16>),
        M::Pcmpeqd => Emit(pcmpeq::<E, 32>),
        M::Pcmpgtb => Helper(pcmpgt::<8>),
        M::Pcmpgtw => Helper(pcmpgt::<16>),
        M::Pcmpgtd => Helper(pcmpgt::<32>),
        M::Pminub => Helper(pminub),
        M::Pmaxub => Helper(pmaxub),
        M::Pminsw => Helper(pminsw),
        M::Pmaxsw => Helper(pmaxsw),
        M::Punpcklbw => Emit(punpckl::<E, 8>),
        M::Punpcklwd => Emit(punpckl::<E, 16>),
        M::Punpckldq => Emit(punpckl::<E, 32>),
        M::Punpcklqdq => Emit(punpckl::<E, 64>),
        M::Punpckhbw => Emit(punpckh::<E, 8>),
        M::Punpckhwd => Emit(punpckh::<E, 16>),
        M::Punpckhdq => Emit(punpckh::<E, 32>),
        M::Punpckhqdq => Emit(punpckh::<E, 64>),
        M::Packsswb => Helper(packsswb),
        M::Packssdw => Helper(packssdw),
        M::Packuswb => Helper(packuswb),
        M::Pshufd => Emit(pshufd),
        M::Pshuflw => Emit(pshuflw),
        M::Pshufhw => Emit(pshufhw),
        M::Psllw => Emit(psll::<E, 16>),
        M::Pslld => Emit(psll::<E, 32>),
        M::Psllq => Emit(psll::<E, 64>),
        M::Psrlw => Emit(psrl::<E, 16>),
        M::Psrld => Emit(psrl::<E, 32>),
        M::Psrlq => Emit(psrl::<E, 64>),
        M::Psraw => Emit(psra::<E, 16>),
        M::Psrad => Emit(psra::<E, 32>),
        M::Pslldq => Emit(pslldq),
        M::Psrldq => Emit(psrldq),
        M::Pmuludq => Emit(pmuludq),
        M::Pmullw => Emit(pmullw),
        M::Pmulhw => Helper(pmulhw),
        M::Pmulhuw => Helper(pmulhuw),
        M::Pmaddwd => Helper(pmaddwd),
        M::Pavgb => Helper(pavg::<8>),
        M::Pavgw => Helper(pavg::<16>),
        M::Psadbw => Helper(psadbw),
        M::Pextrw => Emit(pextrw),
        M::Pinsrw => Emit(pinsrw),
        _ => return None,
    })
}
