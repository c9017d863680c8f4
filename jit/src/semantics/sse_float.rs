//! SSE/SSE2 floating-point arithmetic: ADD SUB MUL DIV SQRT MIN MAX in the
//! PS/PD/SS/SD forms, CMPccPS/PD/SS/SD, (U)COMISS/SD, SHUFPS/SHUFPD and the
//! approximations RCPPS/RCPSS/RSQRTPS/RSQRTSS.
//!
//! The arithmetic is `crate::sse::float` (exact IEEE with MXCSR); here are
//! only operand access and the commit rule of [`commit_flags`]: every lane
//! is computed first, then MXCSR is updated and either the destination is
//! written or #XM/#UD is raised with the destination unchanged.

use super::sse::{check, commit_flags, env, imm8, read128, read_scalar, xreg};
use crate::block::{Insn, InterpFn};
use crate::emit::{Emitter, SemResult, Width};
use crate::flags::FlagSet;
use crate::interp::Interp;
use crate::sse::float::{self as fp, Cmp, Env, Fmt, F32, F64};
use crate::sse::vec::{lane, map1, map2, set_lane};
use iced_x86::{Instruction, Mnemonic};

const ADD: u8 = 0;
const SUB: u8 = 1;
const MUL: u8 = 2;
const DIV: u8 = 3;
const MIN: u8 = 4;
const MAX: u8 = 5;
const SQRT: u8 = 6;

fn fmt(double: bool) -> Fmt {
    if double {
        F64
    } else {
        F32
    }
}

/// One lane of operation `op` (SQRT takes only `b`, the source).
fn arith(op: u8, f: Fmt, a: u64, b: u64, env: &mut Env) -> u64 {
    match op {
        ADD => fp::add(f, a, b, false, env),
        SUB => fp::add(f, a, b, true, env),
        MUL => fp::mul(f, a, b, env),
        DIV => fp::div(f, a, b, env),
        MIN => fp::minmax(f, a, b, false, env),
        MAX => fp::minmax(f, a, b, true, env),
        _ => fp::sqrt(f, b, env),
    }
}

/// Packed form: every lane, source XMM or aligned m128.
fn packed<const OP: u8, const D: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let f = fmt(D);
    let b = read128(cx, insn, 1)?;
    let d = xreg(insn, 0);
    let mut e = env(cx);
    let r = map2(cx.cpu.xmm[d], b, f.bits(), |x, y| {
        arith(OP, f, x, y, &mut e)
    });
    commit_flags(cx, &e)?;
    cx.cpu.xmm[d] = r;
    Ok(())
}

/// Scalar form: the low lane, source XMM or m32/m64; the other lanes of
/// the destination are kept.
fn scalar<const OP: u8, const D: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let f = fmt(D);
    let w = if D { Width::Q } else { Width::D };
    let b = read_scalar(cx, insn, 1, w)?;
    let d = xreg(insn, 0);
    let a = cx.cpu.xmm[d];
    let mut e = env(cx);
    let r = arith(OP, f, lane(a, f.bits(), 0), b, &mut e);
    commit_flags(cx, &e)?;
    cx.cpu.xmm[d] = set_lane(a, f.bits(), 0, r);
    Ok(())
}

fn mask_of(c: bool) -> u64 {
    if c {
        u64::MAX
    } else {
        0
    }
}

/// CMPPS/CMPPD: each lane all ones when predicate imm8[2:0] holds.
fn cmp_packed<const D: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let f = fmt(D);
    let b = read128(cx, insn, 1)?;
    let d = xreg(insn, 0);
    let pred = imm8(insn) & 7;
    let mut e = env(cx);
    let r = map2(cx.cpu.xmm[d], b, f.bits(), |x, y| {
        mask_of(fp::cmp_predicate(f, x, y, pred, &mut e))
    });
    commit_flags(cx, &e)?;
    cx.cpu.xmm[d] = r;
    Ok(())
}

/// CMPSS/CMPSD: the low lane only.
fn cmp_scalar<const D: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let f = fmt(D);
    let w = if D { Width::Q } else { Width::D };
    let b = read_scalar(cx, insn, 1, w)?;
    let d = xreg(insn, 0);
    let a = cx.cpu.xmm[d];
    let mut e = env(cx);
    let r = fp::cmp_predicate(f, lane(a, f.bits(), 0), b, imm8(insn) & 7, &mut e);
    commit_flags(cx, &e)?;
    cx.cpu.xmm[d] = set_lane(a, f.bits(), 0, mask_of(r));
    Ok(())
}

/// COMISS/COMISD (`SIGNAL`: a QNaN raises IE too) and UCOMISS/UCOMISD:
/// ZF PF CF = 111 unordered, 000 greater, 001 less, 100 equal; OF SF AF
/// are cleared.
fn comis<const D: bool, const SIGNAL: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let f = fmt(D);
    let w = if D { Width::Q } else { Width::D };
    let b = read_scalar(cx, insn, 1, w)?;
    let a = cx.cpu.xmm[xreg(insn, 0)] as u64 & w.mask();
    let mut e = env(cx);
    let c = fp::compare(f, a, b, SIGNAL, &mut e);
    commit_flags(cx, &e)?;
    let new = match c {
        Cmp::Unordered => FlagSet::ZF | FlagSet::PF | FlagSet::CF,
        Cmp::Less => FlagSet::CF,
        Cmp::Equal => FlagSet::ZF,
        Cmp::Greater => FlagSet::empty(),
    };
    let rf = cx.rflags() & !FlagSet::ARITH.bits();
    cx.set_rflags(rf | new.bits());
    Ok(())
}

/// SHUFPS: lanes 0–1 from the destination, 2–3 from the source, each
/// chosen by two bits of imm8.
fn shufps(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let b = read128(cx, insn, 1)?;
    let d = xreg(insn, 0);
    let a = cx.cpu.xmm[d];
    let k = imm8(insn) as u32;
    let mut r = 0;
    for i in 0..4 {
        let src = if i < 2 { a } else { b };
        r = set_lane(r, 32, i, lane(src, 32, (k >> (2 * i)) & 3));
    }
    cx.cpu.xmm[d] = r;
    Ok(())
}

/// SHUFPD: lane 0 from the destination (imm8 bit 0), lane 1 from the
/// source (bit 1).
fn shufpd(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let b = read128(cx, insn, 1)?;
    let d = xreg(insn, 0);
    let a = cx.cpu.xmm[d];
    let k = imm8(insn) as u32;
    let r = set_lane(0, 64, 0, lane(a, 64, k & 1));
    cx.cpu.xmm[d] = set_lane(r, 64, 1, lane(b, 64, (k >> 1) & 1));
    Ok(())
}

/// RCPPS/RSQRTPS: approximations (see `float::approx`), no flags.
fn approx_packed<const RSQRT: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let b = read128(cx, insn, 1)?;
    cx.cpu.xmm[xreg(insn, 0)] = map1(b, 32, |x| fp::approx(x, RSQRT));
    Ok(())
}

/// RCPSS/RSQRTSS: the low lane; the others are kept.
fn approx_scalar<const RSQRT: bool>(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let b = read_scalar(cx, insn, 1, Width::D)?;
    let d = xreg(insn, 0);
    cx.cpu.xmm[d] = set_lane(cx.cpu.xmm[d], 32, 0, fp::approx(b, RSQRT));
    Ok(())
}

/// The helper for `i`, if it is a float instruction of this family.
pub fn lookup(i: &Instruction) -> Option<InterpFn> {
    use Mnemonic as M;
    let xmm_op0 = super::sse::xmm_of(i.op0_register()).is_some();
    Some(match i.mnemonic() {
        M::Addps => packed::<ADD, false>,
        M::Addpd => packed::<ADD, true>,
        M::Addss => scalar::<ADD, false>,
        M::Addsd => scalar::<ADD, true>,
        M::Subps => packed::<SUB, false>,
        M::Subpd => packed::<SUB, true>,
        M::Subss => scalar::<SUB, false>,
        M::Subsd => scalar::<SUB, true>,
        M::Mulps => packed::<MUL, false>,
        M::Mulpd => packed::<MUL, true>,
        M::Mulss => scalar::<MUL, false>,
        M::Mulsd => scalar::<MUL, true>,
        M::Divps => packed::<DIV, false>,
        M::Divpd => packed::<DIV, true>,
        M::Divss => scalar::<DIV, false>,
        M::Divsd => scalar::<DIV, true>,
        M::Minps => packed::<MIN, false>,
        M::Minpd => packed::<MIN, true>,
        M::Minss => scalar::<MIN, false>,
        M::Minsd => scalar::<MIN, true>,
        M::Maxps => packed::<MAX, false>,
        M::Maxpd => packed::<MAX, true>,
        M::Maxss => scalar::<MAX, false>,
        M::Maxsd => scalar::<MAX, true>,
        M::Sqrtps => packed::<SQRT, false>,
        M::Sqrtpd => packed::<SQRT, true>,
        M::Sqrtss => scalar::<SQRT, false>,
        M::Sqrtsd => scalar::<SQRT, true>,
        M::Cmpps => cmp_packed::<false>,
        M::Cmppd => cmp_packed::<true>,
        M::Cmpss => cmp_scalar::<false>,
        // CMPSD is also the string compare; that one has no XMM operand.
        M::Cmpsd if xmm_op0 => cmp_scalar::<true>,
        M::Comiss => comis::<false, true>,
        M::Comisd => comis::<true, true>,
        M::Ucomiss => comis::<false, false>,
        M::Ucomisd => comis::<true, false>,
        M::Shufps => shufps,
        M::Shufpd => shufpd,
        M::Rcpps => approx_packed::<false>,
        M::Rsqrtps => approx_packed::<true>,
        M::Rcpss => approx_scalar::<false>,
        M::Rsqrtss => approx_scalar::<true>,
        _ => return None,
    })
}
