//! SSE/SSE2 conversions between integers, binary32 and binary64: CVTSI2SS/
//! SD, CVT(T)SS2SI/SD2SI, CVTSS2SD/CVTSD2SS, CVTPS2PD/CVTPD2PS, CVTDQ2PS/
//! CVT(T)PS2DQ, CVTDQ2PD/CVT(T)PD2DQ. Float→integer overflow and NaN give
//! the integer indefinite (0x80000000 / 0x8000000000000000) with IE.

use super::operand::{opnd, read, write};
use super::sse::{check, commit_flags, env, read128, read64, read_scalar, xreg};
use crate::block::{Insn, InterpFn};
use crate::emit::{SemResult, Width};
use crate::interp::Interp;
use crate::sse::float::{self as fp, Env, F32, F64};
use crate::sse::vec::{join, lane, lo, set_lane, sext};
use iced_x86::{Instruction, Mnemonic};

/// CVTSI2SS/CVTSI2SD: a signed 32- or 64-bit GPR or memory integer into
/// the low lane.
fn cvtsi2s<const D: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let s = opnd(cx, insn, 1);
    let v = read(cx, &s)?;
    let v = sext(v, s.w.bits());
    let f = if D { F64 } else { F32 };
    let d = xreg(insn, 0);
    let mut e = env(cx);
    let r = fp::from_int(f, v, &mut e);
    commit_flags(cx, &e)?;
    cx.cpu.xmm[d] = set_lane(cx.cpu.xmm[d], f.bits(), 0, r);
    Ok(())
}

/// CVT(T)SS2SI/CVT(T)SD2SI into a 32- or 64-bit GPR.
fn cvts2si<const D: bool, const TRUNC: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let (f, w) = if D { (F64, Width::Q) } else { (F32, Width::D) };
    let a = read_scalar(cx, insn, 1, w)?;
    let dst = opnd(cx, insn, 0);
    let mut e = env(cx);
    let r = fp::to_int(f, a, dst.w.bits(), TRUNC, &mut e);
    commit_flags(cx, &e)?;
    write(cx, &dst, r)
}

/// CVTSS2SD (`D`: from single) and CVTSD2SS on the low lane.
fn cvt_scalar<const TO_DOUBLE: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let (from, to) = if TO_DOUBLE { (F32, F64) } else { (F64, F32) };
    let w = if TO_DOUBLE { Width::D } else { Width::Q };
    let a = read_scalar(cx, insn, 1, w)?;
    let d = xreg(insn, 0);
    let mut e = env(cx);
    let r = fp::convert(from, to, a, &mut e);
    commit_flags(cx, &e)?;
    cx.cpu.xmm[d] = set_lane(cx.cpu.xmm[d], to.bits(), 0, r);
    Ok(())
}

/// Run a whole-register conversion: `f` maps the source (XMM, or m64 when
/// `half`, else aligned m128) to the result under one environment.
fn cvt_packed(
    cx: &mut Interp,
    insn: &Insn,
    half: bool,
    f: impl Fn(u128, &mut Env) -> u128,
) -> SemResult {
    check(cx)?;
    let s = if half {
        read64(cx, insn, 1)? as u128
    } else {
        read128(cx, insn, 1)?
    };
    let mut e = env(cx);
    let r = f(s, &mut e);
    commit_flags(cx, &e)?;
    cx.cpu.xmm[xreg(insn, 0)] = r;
    Ok(())
}

fn cvtps2pd(cx: &mut Interp, insn: &Insn) -> SemResult {
    cvt_packed(cx, insn, true, |s, e| {
        let x = fp::convert(F32, F64, lane(s, 32, 0), e);
        let y = fp::convert(F32, F64, lane(s, 32, 1), e);
        join(x, y)
    })
}

fn cvtpd2ps(cx: &mut Interp, insn: &Insn) -> SemResult {
    cvt_packed(cx, insn, false, |s, e| {
        let x = fp::convert(F64, F32, lane(s, 64, 0), e);
        let y = fp::convert(F64, F32, lane(s, 64, 1), e);
        (y << 32 | x) as u128
    })
}

fn cvtdq2ps(cx: &mut Interp, insn: &Insn) -> SemResult {
    cvt_packed(cx, insn, false, |s, e| {
        let mut r = 0;
        for i in 0..4 {
            let v = sext(lane(s, 32, i), 32);
            r = set_lane(r, 32, i, fp::from_int(F32, v, e));
        }
        r
    })
}

fn cvtps2dq<const TRUNC: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    cvt_packed(cx, insn, false, |s, e| {
        let mut r = 0;
        for i in 0..4 {
            r = set_lane(r, 32, i, fp::to_int(F32, lane(s, 32, i), 32, TRUNC, e));
        }
        r
    })
}

fn cvtdq2pd(cx: &mut Interp, insn: &Insn) -> SemResult {
    cvt_packed(cx, insn, true, |s, e| {
        let x = fp::from_int(F64, sext(lane(s, 32, 0), 32), e);
        let y = fp::from_int(F64, sext(lane(s, 32, 1), 32), e);
        join(x, y)
    })
}

fn cvtpd2dq<const TRUNC: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    cvt_packed(cx, insn, false, |s, e| {
        let x = fp::to_int(F64, lo(s), 32, TRUNC, e);
        let y = fp::to_int(F64, lane(s, 64, 1), 32, TRUNC, e);
        (y << 32 | x) as u128
    })
}

/// The helper for `i`, if it is a conversion of this family.
pub fn lookup(i: &Instruction) -> Option<InterpFn> {
    use Mnemonic as M;
    Some(match i.mnemonic() {
        M::Cvtsi2ss => cvtsi2s::<false>,
        M::Cvtsi2sd => cvtsi2s::<true>,
        M::Cvtss2si => cvts2si::<false, false>,
        M::Cvttss2si => cvts2si::<false, true>,
        M::Cvtsd2si => cvts2si::<true, false>,
        M::Cvttsd2si => cvts2si::<true, true>,
        M::Cvtss2sd => cvt_scalar::<true>,
        M::Cvtsd2ss => cvt_scalar::<false>,
        M::Cvtps2pd => cvtps2pd,
        M::Cvtpd2ps => cvtpd2ps,
        M::Cvtdq2ps => cvtdq2ps,
        M::Cvtps2dq => cvtps2dq::<false>,
        M::Cvttps2dq => cvtps2dq::<true>,
        M::Cvtdq2pd => cvtdq2pd,
        M::Cvtpd2dq => cvtpd2dq::<false>,
        M::Cvttpd2dq => cvtpd2dq::<true>,
        _ => return None,
    })
}
