//! SSE2 integer SIMD on XMM registers: logic, add/subtract (wrapping and
//! saturating), compares, min/max, unpacks and packs, shuffles, shifts,
//! multiplies, averages, PSADBW, PEXTRW/PINSRW.
//!
//! Every operation is a pure function of the two 128-bit operands (the
//! destination is also the first source); [`binop`] does the checks and
//! operand access.

use super::operand::{opnd, read, write};
use super::sse::{check, imm8, read128, xreg};
use crate::block::{Insn, InterpFn};
use crate::emit::SemResult;
use crate::interp::Interp;
use crate::sse::vec::{hi, join, lane, lane_mask, lo, map1, map2, set_lane, sext};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// `dst = f(dst, src)` with `src` an XMM register or aligned m128.
fn binop(cx: &mut Interp, insn: &Insn, f: impl Fn(u128, u128) -> u128) -> SemResult {
    check(cx)?;
    let b = read128(cx, insn, 1)?;
    let d = xreg(insn, 0);
    cx.cpu.xmm[d] = f(cx.cpu.xmm[d], b);
    Ok(())
}

/// `dst = f(src, imm8)` (the shuffles).
fn unop_imm(cx: &mut Interp, insn: &Insn, f: impl Fn(u128, u8) -> u128) -> SemResult {
    check(cx)?;
    let b = read128(cx, insn, 1)?;
    cx.cpu.xmm[xreg(insn, 0)] = f(b, imm8(insn));
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

fn pxor(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| a ^ b)
}
fn pand(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| a & b)
}
fn por(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| a | b)
}
fn pandn(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| !a & b)
}

fn padd<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, B, |x, y| x.wrapping_add(y)))
}
fn psub<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, B, |x, y| x.wrapping_sub(y)))
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
fn pcmpeq<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, B, |x, y| all_ones_if(x == y)))
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

/// Interleave the low (or high) halves' lanes: a0 b0 a1 b1 …
fn interleave(a: u128, b: u128, bits: u32, high: bool) -> u128 {
    let n = 128 / bits;
    let base = if high { n / 2 } else { 0 };
    let mut r = 0u128;
    for i in 0..n / 2 {
        r = set_lane(r, bits, 2 * i, lane(a, bits, base + i));
        r = set_lane(r, bits, 2 * i + 1, lane(b, bits, base + i));
    }
    r
}

fn punpckl<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| interleave(a, b, B, false))
}
fn punpckh<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| interleave(a, b, B, true))
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

fn pshufd(cx: &mut Interp, insn: &Insn) -> SemResult {
    unop_imm(cx, insn, |s, k| {
        let mut r = 0;
        for i in 0..4 {
            r = set_lane(r, 32, i, lane(s, 32, (k as u32 >> (2 * i)) & 3));
        }
        r
    })
}

/// Shuffle the four words of one 64-bit half.
fn shuf_words(h: u64, k: u8) -> u64 {
    let mut r = 0u64;
    for i in 0..4 {
        let sel = (k >> (2 * i)) & 3;
        r |= ((h >> (16 * sel as u32)) & 0xffff) << (16 * i);
    }
    r
}

fn pshuflw(cx: &mut Interp, insn: &Insn) -> SemResult {
    unop_imm(cx, insn, |s, k| join(shuf_words(lo(s), k), hi(s)))
}
fn pshufhw(cx: &mut Interp, insn: &Insn) -> SemResult {
    unop_imm(cx, insn, |s, k| join(lo(s), shuf_words(hi(s), k)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shift {
    Left,
    Right,
    Arith,
}

/// PSLL/PSRL/PSRA by imm8 or by the low 64 bits of an XMM/m128 operand.
/// Counts beyond the lane width clear the lanes (fill with the sign for
/// arithmetic shifts).
fn shift(cx: &mut Interp, insn: &Insn, bits: u32, kind: Shift) -> SemResult {
    check(cx)?;
    let count = if insn.i.op_kind(1) == OpKind::Immediate8 {
        imm8(insn) as u64
    } else {
        lo(read128(cx, insn, 1)?)
    };
    let d = xreg(insn, 0);
    cx.cpu.xmm[d] = map1(cx.cpu.xmm[d], bits, |x| match kind {
        Shift::Left if count < bits as u64 => x << count,
        Shift::Right if count < bits as u64 => x >> count,
        Shift::Arith => (sext(x, bits) >> count.min(bits as u64 - 1)) as u64,
        _ => 0,
    });
    Ok(())
}

fn psll<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    shift(cx, insn, B, Shift::Left)
}
fn psrl<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    shift(cx, insn, B, Shift::Right)
}
fn psra<const B: u32>(cx: &mut Interp, insn: &Insn) -> SemResult {
    shift(cx, insn, B, Shift::Arith)
}

/// PSLLDQ/PSRLDQ: whole-register byte shifts by imm8 (above 15: zero).
fn byte_shift(cx: &mut Interp, insn: &Insn, left: bool) -> SemResult {
    check(cx)?;
    let n = imm8(insn) as u32;
    let d = xreg(insn, 0);
    let v = cx.cpu.xmm[d];
    cx.cpu.xmm[d] = match (n > 15, left) {
        (true, _) => 0,
        (false, true) => v << (8 * n),
        (false, false) => v >> (8 * n),
    };
    Ok(())
}

fn pslldq(cx: &mut Interp, insn: &Insn) -> SemResult {
    byte_shift(cx, insn, true)
}
fn psrldq(cx: &mut Interp, insn: &Insn) -> SemResult {
    byte_shift(cx, insn, false)
}

fn pmuludq(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| {
        map2(a, b, 64, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff))
    })
}
fn pmullw(cx: &mut Interp, insn: &Insn) -> SemResult {
    binop(cx, insn, |a, b| map2(a, b, 16, |x, y| x.wrapping_mul(y)))
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

/// PEXTRW: word imm8[2:0] of the XMM source, zero-extended into a GPR (or
/// stored as m16 for the SSE4.1 memory form).
fn pextrw(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let s = cx.cpu.xmm[xreg(insn, 1)];
    let v = lane(s, 16, imm8(insn) as u32 & 7);
    let d = opnd(cx, insn, 0);
    write(cx, &d, v)
}

/// PINSRW: word imm8[2:0] of the destination from r32/m16.
fn pinsrw(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let s = opnd(cx, insn, 1);
    let v = read(cx, &s)?;
    let d = xreg(insn, 0);
    cx.cpu.xmm[d] = set_lane(cx.cpu.xmm[d], 16, imm8(insn) as u32 & 7, v);
    Ok(())
}

/// The helper for `i`, if it is an integer SIMD instruction.
pub fn lookup(i: &Instruction) -> Option<InterpFn> {
    use Mnemonic as M;
    Some(match i.mnemonic() {
        // The float logic and unpack forms are the same bit operations.
        M::Pxor | M::Xorps | M::Xorpd => pxor,
        M::Pand | M::Andps | M::Andpd => pand,
        M::Por | M::Orps | M::Orpd => por,
        M::Pandn | M::Andnps | M::Andnpd => pandn,
        M::Unpcklps => punpckl::<32>,
        M::Unpckhps => punpckh::<32>,
        M::Unpcklpd => punpckl::<64>,
        M::Unpckhpd => punpckh::<64>,
        M::Paddb => padd::<8>,
        M::Paddw => padd::<16>,
        M::Paddd => padd::<32>,
        M::Paddq => padd::<64>,
        M::Psubb => psub::<8>,
        M::Psubw => psub::<16>,
        M::Psubd => psub::<32>,
        M::Psubq => psub::<64>,
        M::Paddsb => padds::<8>,
        M::Paddsw => padds::<16>,
        M::Paddusb => paddus::<8>,
        M::Paddusw => paddus::<16>,
        M::Psubsb => psubs::<8>,
        M::Psubsw => psubs::<16>,
        M::Psubusb => psubus::<8>,
        M::Psubusw => psubus::<16>,
        M::Pcmpeqb => pcmpeq::<8>,
        M::Pcmpeqw => pcmpeq::<16>,
        M::Pcmpeqd => pcmpeq::<32>,
        M::Pcmpgtb => pcmpgt::<8>,
        M::Pcmpgtw => pcmpgt::<16>,
        M::Pcmpgtd => pcmpgt::<32>,
        M::Pminub => pminub,
        M::Pmaxub => pmaxub,
        M::Pminsw => pminsw,
        M::Pmaxsw => pmaxsw,
        M::Punpcklbw => punpckl::<8>,
        M::Punpcklwd => punpckl::<16>,
        M::Punpckldq => punpckl::<32>,
        M::Punpcklqdq => punpckl::<64>,
        M::Punpckhbw => punpckh::<8>,
        M::Punpckhwd => punpckh::<16>,
        M::Punpckhdq => punpckh::<32>,
        M::Punpckhqdq => punpckh::<64>,
        M::Packsswb => packsswb,
        M::Packssdw => packssdw,
        M::Packuswb => packuswb,
        M::Pshufd => pshufd,
        M::Pshuflw => pshuflw,
        M::Pshufhw => pshufhw,
        M::Psllw => psll::<16>,
        M::Pslld => psll::<32>,
        M::Psllq => psll::<64>,
        M::Psrlw => psrl::<16>,
        M::Psrld => psrl::<32>,
        M::Psrlq => psrl::<64>,
        M::Psraw => psra::<16>,
        M::Psrad => psra::<32>,
        M::Pslldq => pslldq,
        M::Psrldq => psrldq,
        M::Pmuludq => pmuludq,
        M::Pmullw => pmullw,
        M::Pmulhw => pmulhw,
        M::Pmulhuw => pmulhuw,
        M::Pmaddwd => pmaddwd,
        M::Pavgb => pavg::<8>,
        M::Pavgw => pavg::<16>,
        M::Psadbw => psadbw,
        M::Pextrw => pextrw,
        M::Pinsrw => pinsrw,
        _ => return None,
    })
}
