//! SSE/SSE2 in the engine, compared with the host CPU.
//!
//! Each differential case is one instruction written twice: as Intel-syntax
//! text that the host executes in-process (`core::arch::asm!`) and as an
//! iced `CodeAssembler` call the guest executes in flat 64-bit mode. Both
//! start from the same XMM0, XMM1, RAX and MXCSR; XMM0, RAX, MXCSR and the
//! arithmetic flags must come out bit-identical. Inputs are random with a
//! heavy share of special values (NaNs of both kinds and signs, infinities,
//! zeros, denormals, values at the overflow/underflow edges), under all four
//! rounding modes with DAZ and FTZ on and off (exceptions masked: an
//! unmasked one would trap the test process; those are checked in the
//! engine only, against the SDM).
//!
//! The host is an AMD EPYC. Where AMD and Intel may differ (RCPPS/RSQRTPS
//! tables) the test checks the documented accuracy instead of bits.

#![cfg(target_arch = "x86_64")]

mod common;
use common::Rng;

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{Accel, Engine, Exception, Exit, Gpr};
use core::arch::asm;
use iced_x86::code_asm::*;

const CODE: u64 = 0x1000;
const TABLES: u64 = 0x3000;
const DATA: u64 = 0x8000;
const STACK: u64 = 0x10_0000;
const ARITH: u64 = 0x8d5;

/// The state both sides start from and end with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct St {
    x0: u128,
    x1: u128,
    rax: u64,
    mxcsr: u32,
    saved: u32,
    flags: u64,
    _pad: u64,
}

type Host = fn(&mut St);
type Guest = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// A host function running `$text` on XMM0/XMM1/RAX under the given MXCSR.
macro_rules! host {
    ($text:expr) => {{
        fn h(s: &mut St) {
            // SAFETY: reads and writes only `*s`; the host MXCSR is saved
            // and restored around the instruction; clobbers are declared.
            unsafe {
                asm!(
                    "stmxcsr [{p} + 44]",
                    "ldmxcsr [{p} + 40]",
                    "movdqu xmm0, [{p}]",
                    "movdqu xmm1, [{p} + 16]",
                    "mov rax, [{p} + 32]",
                    "push 2",
                    "popfq",
                    $text,
                    "pushfq",
                    "pop rcx",
                    "mov [{p} + 48], rcx",
                    "movdqu [{p}], xmm0",
                    "mov [{p} + 32], rax",
                    "stmxcsr [{p} + 40]",
                    "ldmxcsr [{p} + 44]",
                    p = in(reg) s as *mut St,
                    out("rax") _, out("rcx") _, out("xmm0") _, out("xmm1") _,
                );
            }
        }
        h as Host
    }};
}

/// `op xmm0, xmm1` on both sides.
macro_rules! rr {
    ($m:ident) => {
        (
            stringify!($m),
            host!(concat!(stringify!($m), " xmm0, xmm1")),
            (|a: &mut CodeAssembler| a.$m(xmm0, xmm1)) as Guest,
        )
    };
}

/// `op xmm0, xmm1, imm8` on both sides.
macro_rules! rri {
    ($m:ident, $k:literal) => {
        (
            concat!(stringify!($m), " ", $k),
            host!(concat!(stringify!($m), " xmm0, xmm1, ", $k)),
            (|a: &mut CodeAssembler| a.$m(xmm0, xmm1, $k)) as Guest,
        )
    };
}

/// `op xmm0, xmm1, imm8` where the assembler method has another name.
macro_rules! rri_as {
    ($m:ident, $g:ident, $k:literal) => {
        (
            concat!(stringify!($m), " ", $k),
            host!(concat!(stringify!($m), " xmm0, xmm1, ", $k)),
            (|a: &mut CodeAssembler| a.$g(xmm0, xmm1, $k)) as Guest,
        )
    };
}

/// `op $d, $s, imm8` with explicit registers.
macro_rules! gpi {
    ($m:ident, $d:ident, $s:ident, $k:literal) => {
        (
            concat!(
                stringify!($m),
                " ",
                stringify!($d),
                ",",
                stringify!($s),
                ",",
                $k
            ),
            host!(concat!(
                stringify!($m),
                " ",
                stringify!($d),
                ", ",
                stringify!($s),
                ", ",
                $k
            )),
            (|a: &mut CodeAssembler| a.$m($d, $s, $k)) as Guest,
        )
    };
}

/// `op xmm0, imm8` on both sides.
macro_rules! ri {
    ($m:ident, $k:literal) => {
        (
            concat!(stringify!($m), " ", $k),
            host!(concat!(stringify!($m), " xmm0, ", $k)),
            (|a: &mut CodeAssembler| a.$m(xmm0, $k)) as Guest,
        )
    };
}

/// `op $d, $s` with explicit register names (GPR forms).
macro_rules! gp {
    ($m:ident, $d:ident, $s:ident) => {
        (
            concat!(stringify!($m), " ", stringify!($d), ",", stringify!($s)),
            host!(concat!(
                stringify!($m),
                " ",
                stringify!($d),
                ", ",
                stringify!($s)
            )),
            (|a: &mut CodeAssembler| a.$m($d, $s)) as Guest,
        )
    };
}

type Case = (&'static str, Host, Guest);

/// Interesting binary32/binary64 values: `man`/`exp` are the field widths.
fn special(r: &mut Rng, man: u32, exp: u32) -> u64 {
    let sign = (r.next() & 1) << (man + exp);
    let emax = (1u64 << exp) - 1;
    let fmask = (1u64 << man) - 1;
    let frac = r.next() & fmask;
    let e = |v: u64| v << man;
    sign | match r.below(18) {
        0 => 0,
        1 => e(emax),
        2 => e(emax) | (1 << (man - 1)) | (frac >> 1),
        3 => e(emax) | (frac >> 1).max(1),
        4 => frac.max(1),
        5 => frac >> r.below(man as u64),
        6 => e(1) | (frac >> r.below(man as u64)),
        7 => e(emax - 1) | frac,
        8 => e(emax - 1 - r.below(3)) | (fmask - r.below(3)),
        9 => e(1 + r.below(man as u64 + 4)) | frac,
        10 | 11 => e((emax >> 1) - 2 + r.below(5)) | frac,
        12 => e((emax >> 1) + r.below(man as u64 + 12)) | (frac & !(fmask >> 3)),
        13 => e(emax - 1 - r.below(man as u64 + 4)) | frac,
        14 => e((emax >> 1) + r.below(4)) | (fmask >> r.below(4)),
        _ => r.next() & (e(emax) | fmask),
    }
}

/// A second operand related to the first (equal, a few ulps away, the
/// same exponent) or independent.
fn partner(r: &mut Rng, a: u64, man: u32, exp: u32) -> u64 {
    let bits = 1 + man + exp;
    let mask = u64::MAX >> (64 - bits);
    match r.below(6) {
        0 => a,
        1 => a.wrapping_add(r.below(5)).wrapping_sub(2) & mask,
        2 => (a ^ (1 << (bits - 1))).wrapping_add(r.below(3)) & mask,
        3 => (a & !((1u64 << man) - 1)) | (r.next() & ((1u64 << man) - 1)),
        _ => special(r, man, exp),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    F32,
    F64,
    /// Random integer vectors.
    Int,
    /// Binary32 lanes as integer-conversion sources.
    CvtF32,
    CvtF64,
}

fn fvec(r: &mut Rng, man: u32, exp: u32) -> (u128, u128) {
    let bits = 1 + man + exp;
    let (mut a, mut b) = (0u128, 0u128);
    for i in 0..128 / bits {
        let x = special(r, man, exp);
        let y = partner(r, x, man, exp);
        a |= (x as u128) << (i * bits);
        b |= (y as u128) << (i * bits);
    }
    (a, b)
}

/// Values near integer boundaries for float→int conversions.
fn cvt_value(r: &mut Rng, double: bool) -> u64 {
    let k = match r.below(4) {
        0 => r.below(1 << 34) as f64,
        1 => (1u64 << 31) as f64 - r.below(4) as f64,
        2 => (1u64 << 63) as f64 * (1.0 - r.below(3) as f64 * f64::EPSILON),
        _ => r.below(100) as f64,
    };
    let frac = [0.0, 0.25, 0.5, 0.75, 1.5][r.below(5) as usize];
    let v = (k + frac) * if r.below(2) == 0 { 1.0 } else { -1.0 };
    if double {
        v.to_bits()
    } else {
        (v as f32).to_bits() as u64
    }
}

fn ivec(r: &mut Rng) -> u128 {
    let mut v = 0u128;
    for i in 0..16 {
        let b = match r.below(4) {
            0 | 1 => r.next() & 0xff,
            _ => [0u64, 1, 0x7f, 0x80, 0xff, 0xfe, 0x81][r.below(7) as usize],
        };
        v |= (b as u128) << (8 * i);
    }
    v
}

fn inputs(r: &mut Rng, kind: Kind) -> St {
    let (x0, x1) = match kind {
        Kind::F32 => fvec(r, 23, 8),
        Kind::F64 => fvec(r, 52, 11),
        Kind::Int => (ivec(r), ivec(r)),
        Kind::CvtF32 | Kind::CvtF64 => {
            let double = matches!(kind, Kind::CvtF64);
            let mut v = [0u128; 2];
            for x in &mut v {
                for i in 0..4 {
                    let l = if r.below(3) == 0 {
                        if double {
                            special(r, 52, 11)
                        } else {
                            special(r, 23, 8)
                        }
                    } else {
                        cvt_value(r, double)
                    };
                    *x |= (l as u128) << if double { 64 * (i & 1) } else { 32 * i };
                }
            }
            (v[0], v[1])
        }
    };
    // Rounding mode, DAZ and FTZ random; all exceptions masked.
    let mxcsr =
        0x1f80 | (r.below(4) as u32) << 13 | (r.below(2) as u32) << 6 | (r.below(2) as u32) << 15;
    let rax_v = match r.below(3) {
        0 => r.next(),
        1 => r.next() >> r.below(64),
        _ => (r.next() as i32 >> r.below(32)) as i64 as u64,
    };
    St {
        x0,
        x1,
        rax: rax_v,
        mxcsr,
        ..St::default()
    }
}

fn assemble(body: Guest) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    body(&mut a).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE).unwrap()
}

fn machine(code: &[u8]) -> Engine {
    common::flat_engine(code, CODE, TABLES, STACK)
}

/// Both tiers: the interpreter, and the JIT compiling at first sight (the
/// generic SSE forms are inlined there, the helpers called).
const TIERS: [Accel; 2] = [Accel::Interp, Accel::Jit { threshold: 0 }];

fn machine_on(code: &[u8], accel: Accel) -> Engine {
    let mut e = machine(code);
    e.config.accel = accel;
    e
}

/// Run the guest code from `s`; returns the final state or the exception.
fn guest(e: &mut Engine, s: &St) -> Result<St, Exception> {
    let c = e.cpu_mut();
    c.xmm[0] = s.x0;
    c.xmm[1] = s.x1;
    c.set_reg(Gpr::Rax, s.rax);
    c.mxcsr = s.mxcsr;
    c.rip = CODE;
    c.halted = 0;
    c.set_rflags(2);
    match e.run(100) {
        Exit::Halted => {}
        Exit::Exception(x) => return Err(x),
        other => panic!("unexpected exit {other:?}"),
    }
    let c = e.cpu();
    Ok(St {
        x0: c.xmm[0],
        x1: c.xmm[1],
        rax: c.reg(Gpr::Rax),
        mxcsr: c.mxcsr,
        flags: c.rflags() & ARITH,
        ..St::default()
    })
}

fn host_run(h: Host, s: &St) -> St {
    let mut t = *s;
    h(&mut t);
    St {
        x0: t.x0,
        x1: s.x1,
        rax: t.rax,
        mxcsr: t.mxcsr,
        flags: t.flags & ARITH,
        ..St::default()
    }
}

/// Compare `n` random inputs of `kind` for every case. Returns how often
/// the host raised each MXCSR flag (IE DE ZE OE UE PE), so callers can
/// check that the inputs reached the interesting cases.
fn differential(cases: &[Case], kind: Kind, n: usize, seed: u64) -> [usize; 6] {
    let mut seen = [0usize; 6];
    let mut failures = Vec::new();
    for (k, &(name, h, g)) in cases.iter().enumerate() {
        let code = assemble(g);
        let mut engines = TIERS.map(|t| machine_on(&code, t));
        let mut r = Rng(seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut bad = 0;
        for _ in 0..n {
            let s = inputs(&mut r, kind);
            let want = host_run(h, &s);
            for (b, c) in seen.iter_mut().enumerate() {
                *c += (want.mxcsr >> b & 1) as usize;
            }
            for (e, tier) in engines.iter_mut().zip(TIERS) {
                let got = guest(e, &s).unwrap_or_else(|x| panic!("{name}: {x:?} for {s:x?}"));
                if got != want {
                    if bad < 3 {
                        failures.push(format!(
                            "{name} ({tier:?}): in x0={:#034x} x1={:#034x} rax={:#x} mxcsr={:#x}\n  host  x0={:#034x} rax={:#x} mxcsr={:#x} fl={:#x}\n  guest x0={:#034x} rax={:#x} mxcsr={:#x} fl={:#x}",
                            s.x0, s.x1, s.rax, s.mxcsr, want.x0, want.rax, want.mxcsr, want.flags,
                            got.x0, got.rax, got.mxcsr, got.flags
                        ));
                    }
                    bad += 1;
                }
            }
        }
        if bad > 0 {
            failures.push(format!("{name}: {bad}/{n} mismatches"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    seen
}

/// Every flag in `flags` (MXCSR bit numbers) was raised at least `min` times.
fn assert_reached(seen: [usize; 6], flags: &[usize], min: usize) {
    for &f in flags {
        assert!(
            seen[f] >= min,
            "flag {f} raised only {} times: {seen:?}",
            seen[f]
        );
    }
}

const N: usize = 20000;

#[test]
fn float_arith_single_matches_host() {
    let cases: Vec<Case> = vec![
        rr!(addps),
        rr!(addss),
        rr!(subps),
        rr!(subss),
        rr!(mulps),
        rr!(mulss),
        rr!(divps),
        rr!(divss),
        rr!(sqrtps),
        rr!(sqrtss),
        rr!(minps),
        rr!(minss),
        rr!(maxps),
        rr!(maxss),
    ];
    let seen = differential(&cases, Kind::F32, N, 1);
    assert_reached(seen, &[0, 1, 2, 3, 4, 5], 100);
}

#[test]
fn float_arith_double_matches_host() {
    let cases: Vec<Case> = vec![
        rr!(addpd),
        rr!(addsd),
        rr!(subpd),
        rr!(subsd),
        rr!(mulpd),
        rr!(mulsd),
        rr!(divpd),
        rr!(divsd),
        rr!(sqrtpd),
        rr!(sqrtsd),
        rr!(minpd),
        rr!(minsd),
        rr!(maxpd),
        rr!(maxsd),
    ];
    let seen = differential(&cases, Kind::F64, N, 2);
    assert_reached(seen, &[0, 1, 2, 3, 4, 5], 100);
}

#[test]
fn float_compares_match_host() {
    let single: Vec<Case> = vec![
        rri!(cmpps, 0),
        rri!(cmpps, 1),
        rri!(cmpps, 2),
        rri!(cmpps, 3),
        rri!(cmpps, 4),
        rri!(cmpps, 5),
        rri!(cmpps, 6),
        rri!(cmpps, 7),
        rri!(cmpss, 1),
        rri!(cmpss, 4),
        rr!(comiss),
        rr!(ucomiss),
    ];
    let seen = differential(&single, Kind::F32, N / 2, 3);
    assert_reached(seen, &[0, 1], 100);
    let double: Vec<Case> = vec![
        rri!(cmppd, 0),
        rri!(cmppd, 2),
        rri!(cmppd, 3),
        rri!(cmppd, 5),
        rri_as!(cmpsd, cmpsd_3, 6),
        rri_as!(cmpsd, cmpsd_3, 7),
        rr!(comisd),
        rr!(ucomisd),
    ];
    let seen = differential(&double, Kind::F64, N / 2, 4);
    assert_reached(seen, &[0, 1], 100);
}

#[test]
fn float_logic_and_shuffles_match_host() {
    let cases: Vec<Case> = vec![
        rr!(andps),
        rr!(andpd),
        rr!(andnps),
        rr!(andnpd),
        rr!(orps),
        rr!(orpd),
        rr!(xorps),
        rr!(xorpd),
        rri!(shufps, 0x1b),
        rri!(shufps, 0xe4),
        rri!(shufpd, 1),
        rri!(shufpd, 2),
        rr!(unpcklps),
        rr!(unpckhps),
        rr!(unpcklpd),
        rr!(unpckhpd),
        rr!(movss),
        (
            "movsd",
            host!("movsd xmm0, xmm1"),
            (|a: &mut CodeAssembler| a.movsd_2(xmm0, xmm1)) as Guest,
        ),
        rr!(movhlps),
        rr!(movlhps),
        rr!(movaps),
        rr!(movq),
        gp!(movmskps, eax, xmm1),
        gp!(movmskpd, rax, xmm1),
        gp!(pmovmskb, eax, xmm1),
        gp!(movd, xmm0, eax),
        gp!(movq, xmm0, rax),
        gp!(movd, eax, xmm1),
        gp!(movq, rax, xmm1),
    ];
    differential(&cases, Kind::F32, 200, 5);
}

#[test]
fn conversions_match_host() {
    let from_single: Vec<Case> = vec![
        rr!(cvtss2sd),
        rr!(cvtps2pd),
        rr!(cvtps2dq),
        rr!(cvttps2dq),
        gp!(cvtss2si, eax, xmm1),
        gp!(cvtss2si, rax, xmm1),
        gp!(cvttss2si, eax, xmm1),
        gp!(cvttss2si, rax, xmm1),
    ];
    let seen = differential(&from_single, Kind::CvtF32, N, 6);
    assert_reached(seen, &[0, 5], 100);
    let from_double: Vec<Case> = vec![
        rr!(cvtsd2ss),
        rr!(cvtpd2ps),
        rr!(cvtpd2dq),
        rr!(cvttpd2dq),
        gp!(cvtsd2si, eax, xmm1),
        gp!(cvtsd2si, rax, xmm1),
        gp!(cvttsd2si, eax, xmm1),
        gp!(cvttsd2si, rax, xmm1),
    ];
    let seen = differential(&from_double, Kind::CvtF64, N, 7);
    assert_reached(seen, &[0, 5], 100);
    // The same conversions on general special values (NaNs, denormals,
    // extremes) rather than integer-like ones.
    let seen = differential(&from_double, Kind::F64, N / 2, 9);
    assert_reached(seen, &[0, 1, 4, 5], 20);
    differential(&from_single, Kind::F32, N / 2, 8);
    let from_int: Vec<Case> = vec![
        rr!(cvtdq2ps),
        rr!(cvtdq2pd),
        gp!(cvtsi2ss, xmm0, eax),
        gp!(cvtsi2ss, xmm0, rax),
        gp!(cvtsi2sd, xmm0, eax),
        gp!(cvtsi2sd, xmm0, rax),
    ];
    let seen = differential(&from_int, Kind::Int, N, 10);
    assert_reached(seen, &[5], 100);
}

#[test]
fn integer_simd_matches_host() {
    let cases: Vec<Case> = vec![
        rr!(pxor),
        rr!(pand),
        rr!(por),
        rr!(pandn),
        rr!(paddb),
        rr!(paddw),
        rr!(paddd),
        rr!(paddq),
        rr!(psubb),
        rr!(psubw),
        rr!(psubd),
        rr!(psubq),
        rr!(paddsb),
        rr!(paddsw),
        rr!(paddusb),
        rr!(paddusw),
        rr!(psubsb),
        rr!(psubsw),
        rr!(psubusb),
        rr!(psubusw),
        rr!(pcmpeqb),
        rr!(pcmpeqw),
        rr!(pcmpeqd),
        rr!(pcmpgtb),
        rr!(pcmpgtw),
        rr!(pcmpgtd),
        rr!(pminub),
        rr!(pmaxub),
        rr!(pminsw),
        rr!(pmaxsw),
        rr!(punpcklbw),
        rr!(punpcklwd),
        rr!(punpckldq),
        rr!(punpcklqdq),
        rr!(punpckhbw),
        rr!(punpckhwd),
        rr!(punpckhdq),
        rr!(punpckhqdq),
        rr!(packsswb),
        rr!(packssdw),
        rr!(packuswb),
        rri!(pshufd, 0x1b),
        rri!(pshufd, 0x4e),
        rri!(pshuflw, 0xb1),
        rri!(pshufhw, 0x72),
        rr!(pmuludq),
        rr!(pmullw),
        rr!(pmulhw),
        rr!(pmulhuw),
        rr!(pmaddwd),
        rr!(pavgb),
        rr!(pavgw),
        rr!(psadbw),
        gpi!(pextrw, eax, xmm1, 5),
        gpi!(pinsrw, xmm0, eax, 3),
        gpi!(pextrw, eax, xmm1, 2),
        gpi!(pinsrw, xmm0, eax, 6),
        rr!(movdqa),
        rr!(movdqu),
    ];
    differential(&cases, Kind::Int, 3000, 11);
}

#[test]
fn integer_shifts_match_host() {
    let cases: Vec<Case> = vec![
        ri!(psllw, 0),
        ri!(psllw, 3),
        ri!(psllw, 15),
        ri!(psllw, 16),
        ri!(pslld, 7),
        ri!(pslld, 32),
        ri!(psllq, 33),
        ri!(psllq, 64),
        ri!(psrlw, 9),
        ri!(psrld, 31),
        ri!(psrlq, 1),
        ri!(psrlq, 200),
        ri!(psraw, 4),
        ri!(psraw, 16),
        ri!(psrad, 31),
        ri!(psrad, 255),
        ri!(pslldq, 3),
        ri!(pslldq, 16),
        ri!(psrldq, 15),
        ri!(psrldq, 1),
        ri!(pslldq, 8),
        ri!(pslldq, 11),
        ri!(psrldq, 8),
        ri!(psrldq, 13),
        ri!(psrldq, 0),
        ri!(psraw, 0),
        ri!(psrlw, 16),
        rr!(psllw),
        rr!(pslld),
        rr!(psllq),
        rr!(psrlw),
        rr!(psrld),
        rr!(psrlq),
        rr!(psraw),
        rr!(psrad),
    ];
    // Shift counts in XMM1: small ones mostly, sometimes huge.
    let mut failures = 0;
    for (k, &(name, h, g)) in cases.iter().enumerate() {
        let code = assemble(g);
        let mut engines = TIERS.map(|t| machine_on(&code, t));
        let mut r = Rng(77 + k as u64);
        for _ in 0..200 {
            let mut s = inputs(&mut r, Kind::Int);
            s.x1 = match r.below(4) {
                0 => r.next() as u128,
                _ => (r.below(70) as u128) | (r.below(2) as u128) << 100,
            };
            let want = host_run(h, &s);
            for (e, tier) in engines.iter_mut().zip(TIERS) {
                let got = guest(e, &s).unwrap();
                if got != want {
                    failures += 1;
                    eprintln!("{name} ({tier:?}): {s:x?}: host {want:x?} guest {got:x?}");
                }
            }
        }
    }
    assert_eq!(failures, 0);
}

/// RCPPS/RSQRTPS are approximations whose tables differ between CPU
/// makers: the special cases must match the host and the rest must be
/// within the SDM's 1.5 * 2^-12 relative error of the exact value.
#[test]
fn approximations_are_within_sdm_bounds() {
    let cases: Vec<Case> = vec![rr!(rcpps), rr!(rsqrtps), rr!(rcpss), rr!(rsqrtss)];
    for (k, &(name, h, g)) in cases.iter().enumerate() {
        let rsqrt = name.starts_with("rsqrt");
        let mut e = machine(&assemble(g));
        let mut r = Rng(500 + k as u64);
        for _ in 0..500 {
            let mut s = inputs(&mut r, Kind::F32);
            s.mxcsr = 0x1f80;
            let want = host_run(h, &s);
            let got = guest(&mut e, &s).unwrap();
            assert_eq!(got.mxcsr, 0x1f80, "{name}: no flags");
            let lanes = if name.ends_with("ss") { 1 } else { 4 };
            for i in 0..lanes {
                let x = f32::from_bits((s.x1 >> (32 * i)) as u32);
                let hv = f32::from_bits((want.x0 >> (32 * i)) as u32);
                let gv = f32::from_bits((got.x0 >> (32 * i)) as u32);
                let exact = if rsqrt {
                    1.0 / (x as f64).sqrt()
                } else {
                    1.0 / x as f64
                };
                let normal_result = exact.is_finite()
                    && exact.abs() >= f32::MIN_POSITIVE as f64 * 2.0
                    && x.is_normal();
                let edge = exact.abs() < f32::MIN_POSITIVE as f64 * 2.0
                    && exact.abs() >= f32::MIN_POSITIVE as f64 * 0.5;
                if edge && x.is_normal() {
                    // At the bottom of the normal range an approximation
                    // just below 2^-126 is flushed: zero or close are fine.
                    let err = ((gv as f64 - exact) / exact).abs();
                    assert!(gv == 0.0 || err <= 1.5 / 4096.0, "{name} {x:e}: {gv:e}");
                } else if normal_result {
                    let err = ((gv as f64 - exact) / exact).abs();
                    assert!(err <= 1.5 / 4096.0, "{name} {x:e}: {gv:e} vs {exact:e}");
                } else {
                    // Specials: same class and sign as the host.
                    let class = |v: f32| {
                        (
                            v.is_nan(),
                            v.is_infinite(),
                            v == 0.0,
                            v.is_sign_negative() && !v.is_nan(),
                        )
                    };
                    assert_eq!(
                        class(gv),
                        class(hv),
                        "{name} {x:e} ({:#x}): {gv:e} vs host {hv:e}",
                        x.to_bits()
                    );
                }
            }
            if name.ends_with("ss") {
                assert_eq!(got.x0 >> 32, want.x0 >> 32, "{name}: upper lanes kept");
            }
        }
    }
}

// ---- engine-only checks of faults and state ----

/// Run `body` from the state `setup` makes, under the interpreter and
/// under the JIT; both must end alike (exit, registers, counts, the data
/// pages). Returns the interpreter's run.
fn run_code(body: Guest, setup: impl Fn(&mut Engine)) -> (Engine, Exit) {
    run_bytes(&assemble(body), setup)
}

/// [`run_code`] on assembled bytes.
fn run_bytes(code: &[u8], setup: impl Fn(&mut Engine)) -> (Engine, Exit) {
    let mut runs = TIERS.map(|t| {
        let mut e = machine_on(code, t);
        setup(&mut e);
        let x = e.run(100);
        (e, x)
    });
    let [(i, ix), (j, jx)] = &mut runs;
    assert_eq!(ix, jx, "exit, interpreter vs JIT");
    let (a, b) = (i.cpu(), j.cpu());
    assert_eq!(a.xmm, b.xmm, "XMM registers, interpreter vs JIT");
    assert_eq!(a.gpr, b.gpr, "GPRs, interpreter vs JIT");
    assert_eq!(
        (a.rip, a.icount, a.mxcsr),
        (b.rip, b.icount, b.mxcsr),
        "RIP, icount, MXCSR, interpreter vs JIT"
    );
    for page in [DATA, 0x20000, 0x21000] {
        let mut m = [0u8; 0x1000];
        let mut n = [0u8; 0x1000];
        i.mem().read_phys(GuestPhysAddr(page), &mut m).unwrap();
        j.mem().read_phys(GuestPhysAddr(page), &mut n).unwrap();
        assert!(m == n, "memory at {page:#x}, interpreter vs JIT");
    }
    let [first, _] = runs;
    first
}

#[test]
fn aligned_forms_fault_on_misaligned_memory() {
    let at = |off: u64| move |e: &mut Engine| e.cpu_mut().set_reg(Gpr::Rbx, DATA + off);
    let gp = Exit::Exception(Exception::gp(0));
    let (_, x) = run_code(|a| a.movaps(xmm0, xmmword_ptr(rbx)), at(8));
    assert_eq!(x, gp);
    let (_, x) = run_code(|a| a.movdqa(xmmword_ptr(rbx), xmm0), at(4));
    assert_eq!(x, gp);
    let (_, x) = run_code(|a| a.addps(xmm0, xmmword_ptr(rbx)), at(1));
    assert_eq!(x, gp);
    let (_, x) = run_code(|a| a.paddb(xmm0, xmmword_ptr(rbx)), at(2));
    assert_eq!(x, gp);
    // Unaligned forms and scalar operands do not care.
    let (_, x) = run_code(|a| a.movups(xmm0, xmmword_ptr(rbx)), at(8));
    assert_eq!(x, Exit::Halted);
    let (_, x) = run_code(|a| a.movdqu(xmmword_ptr(rbx), xmm0), at(3));
    assert_eq!(x, Exit::Halted);
    let (_, x) = run_code(|a| a.addss(xmm0, dword_ptr(rbx)), at(1));
    assert_eq!(x, Exit::Halted);
    let (_, x) = run_code(|a| a.movsd_2(xmm0, qword_ptr(rbx)), at(5));
    assert_eq!(x, Exit::Halted);
    let (_, x) = run_code(|a| a.fxsave64(ptr(rbx)), at(8));
    assert_eq!(x, gp);
}

#[test]
fn memory_forms_load_and_store_16_bytes() {
    let (e, x) = run_code(
        |a| {
            a.movdqu(xmm0, xmmword_ptr(rbx + 3))?;
            a.movaps(xmmword_ptr(rbx + 32), xmm0)?;
            a.movss(xmm2, dword_ptr(rbx + 32))?;
            a.movhps(xmm2, qword_ptr(rbx + 40))?;
            a.movlps(qword_ptr(rbx + 64), xmm0)?;
            a.pinsrw(xmm3, word_ptr(rbx + 1), 7)
        },
        |e| {
            let bytes: Vec<u8> = (0u8..48).collect();
            e.mem_mut().write_phys(GuestPhysAddr(DATA), &bytes).unwrap();
            e.cpu_mut().set_reg(Gpr::Rbx, DATA);
            e.cpu_mut().xmm[2] = u128::MAX;
        },
    );
    assert_eq!(x, Exit::Halted);
    let want = u128::from_le_bytes(core::array::from_fn(|i| i as u8 + 3));
    assert_eq!(e.cpu().xmm[0], want);
    let mut m = [0u8; 16];
    e.mem().read_phys(GuestPhysAddr(DATA + 32), &mut m).unwrap();
    assert_eq!(u128::from_le_bytes(m), want);
    // MOVSS load zeroes bits 32..127; MOVHPS then fills 64..127.
    assert_eq!(e.cpu().xmm[2] as u64, want as u32 as u64);
    assert_eq!((e.cpu().xmm[2] >> 64) as u64, (want >> 64) as u64);
    let mut q = [0u8; 8];
    e.mem().read_phys(GuestPhysAddr(DATA + 64), &mut q).unwrap();
    assert_eq!(u64::from_le_bytes(q), want as u64);
    assert_eq!(e.cpu().xmm[3] >> 112, 0x0201);
}

#[test]
fn sse_needs_osfxsr_and_honours_em_and_ts() {
    let body: Guest = |a| a.addps(xmm0, xmm1);
    let (_, x) = run_code(body, |e| e.cpu_mut().cr4 &= !(1 << 9));
    assert_eq!(x, Exit::Exception(Exception::ud()));
    let (_, x) = run_code(body, |e| e.cpu_mut().cr0 |= 1 << 2);
    assert_eq!(x, Exit::Exception(Exception::ud()));
    let (_, x) = run_code(body, |e| e.cpu_mut().cr0 |= 1 << 3);
    assert_eq!(x, Exit::Exception(Exception::nm()));
    let (_, x) = run_code(|a| a.movd(xmm0, eax), |e| e.cpu_mut().cr0 |= 1 << 3);
    assert_eq!(x, Exit::Exception(Exception::nm()));
    // FXSAVE: #NM for TS and for EM; it works without OSFXSR.
    let fx: Guest = |a| a.fxsave64(ptr(rbx));
    let set_rbx = |e: &mut Engine| e.cpu_mut().set_reg(Gpr::Rbx, DATA);
    let (_, x) = run_code(fx, |e| {
        set_rbx(e);
        e.cpu_mut().cr0 |= 1 << 3
    });
    assert_eq!(x, Exit::Exception(Exception::nm()));
    let (_, x) = run_code(fx, |e| {
        set_rbx(e);
        e.cpu_mut().cr0 |= 1 << 2
    });
    assert_eq!(x, Exit::Exception(Exception::nm()));
    let (_, x) = run_code(fx, |e| {
        set_rbx(e);
        e.cpu_mut().cr4 &= !(1 << 9)
    });
    assert_eq!(x, Exit::Halted);
    // The SSE feature bits are advertised.
    let f = cjemu_jit::cpuid::Features::implemented();
    assert_eq!(f.cpuid(1, 0)[3] & (7 << 24), 7 << 24);
}

#[test]
fn unmasked_exceptions_raise_xm_or_ud_and_keep_the_destination() {
    let snan = 0x7f80_0001u128;
    let body: Guest = |a| a.addps(xmm0, xmm1);
    let setup = |osxmm: bool| {
        move |e: &mut Engine| {
            let c = e.cpu_mut();
            c.xmm[0] = 0x1234_5678_9abc_def0;
            c.xmm[1] = snan;
            c.mxcsr = 0x1f80 & !(1 << 7); // IE unmasked
            if !osxmm {
                c.cr4 &= !(1 << 10);
            }
        }
    };
    let (e, x) = run_code(body, setup(true));
    assert_eq!(x, Exit::Exception(Exception::xm()));
    assert_eq!(e.cpu().xmm[0], 0x1234_5678_9abc_def0);
    assert_eq!(e.cpu().mxcsr & 0x3f, 1, "IE set");
    assert_eq!(e.cpu().rip, CODE, "fault: RIP on the instruction");
    let (_, x) = run_code(body, setup(false));
    assert_eq!(x, Exit::Exception(Exception::ud()));
    // An unmasked precision exception: 1/3 is inexact.
    let (e, x) = run_code(
        |a| a.divss(xmm0, xmm1),
        |e| {
            let c = e.cpu_mut();
            c.xmm[0] = 1.0f32.to_bits() as u128;
            c.xmm[1] = 3.0f32.to_bits() as u128;
            c.mxcsr = 0x1f80 & !(1 << 12); // PM unmasked
        },
    );
    assert_eq!(x, Exit::Exception(Exception::xm()));
    assert_eq!(e.cpu().xmm[0], 1.0f32.to_bits() as u128);
    assert_eq!(e.cpu().mxcsr & 0x3f, 0x20);
    // Masked: the flags are sticky, nothing traps.
    let (e, x) = run_code(
        |a| {
            a.divss(xmm0, xmm1)?;
            a.addss(xmm2, xmm2)
        },
        |e| {
            let c = e.cpu_mut();
            c.xmm[0] = 1.0f32.to_bits() as u128;
            c.xmm[1] = 3.0f32.to_bits() as u128;
        },
    );
    assert_eq!(x, Exit::Halted);
    assert_eq!(e.cpu().mxcsr, 0x1fa0);
}

#[test]
fn ldmxcsr_stmxcsr_and_reserved_bits() {
    let (e, x) = run_code(
        |a| {
            a.ldmxcsr(dword_ptr(rbx))?;
            a.stmxcsr(dword_ptr(rbx + 4))
        },
        |e| {
            e.mem_mut()
                .write_phys(GuestPhysAddr(DATA), &0xffffu32.to_le_bytes())
                .unwrap();
            e.cpu_mut().set_reg(Gpr::Rbx, DATA);
        },
    );
    assert_eq!(x, Exit::Halted);
    assert_eq!(e.cpu().mxcsr, 0xffff);
    let mut b = [0u8; 4];
    e.mem().read_phys(GuestPhysAddr(DATA + 4), &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0xffff);
    let (e, x) = run_code(
        |a| a.ldmxcsr(dword_ptr(rbx)),
        |e| {
            e.mem_mut()
                .write_phys(GuestPhysAddr(DATA), &0x1_1f80u32.to_le_bytes())
                .unwrap();
            e.cpu_mut().set_reg(Gpr::Rbx, DATA);
        },
    );
    assert_eq!(x, Exit::Exception(Exception::gp(0)));
    assert_eq!(e.cpu().mxcsr, 0x1f80);
}

/// Put a recognisable x87/SSE state in the CPU: TOP = 5, three registers
/// in use (ST0 = R5 valid, ST1 = R6 zero, ST2 = R7 infinity).
fn x87_state(e: &mut Engine) {
    let c = e.cpu_mut();
    let x = &mut c.x87;
    x.fcw = 0x027f;
    x.fsw = (5 << 11) | 0x0041;
    for (i, r) in x.regs.iter_mut().enumerate() {
        *r = [0; 16];
        r[0] = 0x10 + i as u8;
    }
    // R5 = 1.0, R6 = +0, R7 = +inf.
    x.regs[5][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
    x.regs[6] = [0; 16];
    x.regs[7][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x7f]);
    // Tags: R5 valid 00, R6 zero 01, R7 special 10, others empty.
    x.ftw = 0x03ff | (1 << 12) | (2 << 14);
    x.fop = 0x05d9;
    x.fip = 0x1122_3344_5566_7788;
    x.fdp = 0x99aa_bbcc_ddee_ff00;
    c.mxcsr = 0x3f80 | 0x21;
    for i in 0..16 {
        c.xmm[i] = 0x0101_0101_0101_0101_0101_0101_0101_0101u128 * (i as u128 + 1);
    }
    c.set_reg(Gpr::Rbx, DATA);
}

fn read_image(e: &Engine) -> [u8; 512] {
    let mut m = [0u8; 512];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut m).unwrap();
    m
}

#[test]
fn fxsave64_layout_and_round_trip() {
    let (e, x) = run_code(|a| a.fxsave64(ptr(rbx)), x87_state);
    assert_eq!(x, Exit::Halted);
    let m = read_image(&e);
    let u16_at = |o: usize| u16::from_le_bytes([m[o], m[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(m[o..o + 8].try_into().unwrap());
    assert_eq!(u16_at(0), 0x027f);
    assert_eq!(u16_at(2), (5 << 11) | 0x41);
    assert_eq!(m[4], 0b1110_0000, "abridged tags: R5 R6 R7 in use");
    assert_eq!(u16_at(6), 0x05d9);
    assert_eq!(u64_at(8), 0x1122_3344_5566_7788);
    assert_eq!(u64_at(16), 0x99aa_bbcc_ddee_ff00);
    assert_eq!(u32_at(24), 0x3fa1);
    assert_eq!(u32_at(28), 0xffff);
    // ST0 = R5 (1.0), ST1 = R6, ST2 = R7, ST3 = R0 …
    assert_eq!(&m[32..42], &[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
    assert_eq!(m[64 + 7], 0x80);
    assert_eq!(m[80], 0x10, "ST3 is R0");
    assert_eq!(m[32 + 16 * 7], 0x14, "ST7 is R4");
    for i in 0..16 {
        let o = 160 + 16 * i;
        let v = u128::from_le_bytes(m[o..o + 16].try_into().unwrap());
        assert_eq!(
            v,
            0x0101_0101_0101_0101_0101_0101_0101_0101u128 * (i as u128 + 1)
        );
    }
    // Restore into a cleared state.
    let (e2, x) = run_code(
        |a| a.fxrstor64(ptr(rbx)),
        |e2| {
            e2.mem_mut().write_phys(GuestPhysAddr(DATA), &m).unwrap();
            e2.cpu_mut().set_reg(Gpr::Rbx, DATA);
        },
    );
    assert_eq!(x, Exit::Halted);
    assert_eq!(
        e2.cpu().x87,
        e.cpu().x87,
        "x87 state incl. the full tag word"
    );
    assert_eq!(e2.cpu().xmm, e.cpu().xmm);
    assert_eq!(e2.cpu().mxcsr, e.cpu().mxcsr);
}

#[test]
fn fxsave_legacy_layout_and_round_trip() {
    let (e, x) = run_code(|a| a.fxsave(ptr(rbx)), x87_state);
    assert_eq!(x, Exit::Halted);
    let m = read_image(&e);
    let u32_at = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap());
    assert_eq!(u32_at(8), 0x5566_7788, "FIP offset");
    assert_eq!(u32_at(12), 0, "FCS (not tracked)");
    assert_eq!(u32_at(16), 0xddee_ff00, "FDP offset");
    assert_eq!(u32_at(20), 0, "FDS (not tracked)");
    assert_eq!(u32_at(24), 0x3fa1);
    let (e2, x) = run_code(
        |a| a.fxrstor(ptr(rbx)),
        |e2| {
            e2.mem_mut().write_phys(GuestPhysAddr(DATA), &m).unwrap();
            e2.cpu_mut().set_reg(Gpr::Rbx, DATA);
        },
    );
    assert_eq!(x, Exit::Halted);
    let (a, b) = (&e2.cpu().x87, &e.cpu().x87);
    assert_eq!(
        (a.fcw, a.fsw, a.ftw, a.fop, a.regs),
        (b.fcw, b.fsw, b.ftw, b.fop, b.regs)
    );
    assert_eq!(a.fip, 0x5566_7788, "legacy FIP is 32 bits");
    assert_eq!(a.fdp, 0xddee_ff00);
    assert_eq!(e2.cpu().xmm, e.cpu().xmm);
    // A reserved MXCSR bit in the image: #GP(0), nothing restored.
    let mut bad = m;
    bad[26] = 1;
    let (e3, x) = run_code(
        |a| a.fxrstor(ptr(rbx)),
        |e3| {
            e3.mem_mut().write_phys(GuestPhysAddr(DATA), &bad).unwrap();
            e3.cpu_mut().set_reg(Gpr::Rbx, DATA);
        },
    );
    assert_eq!(x, Exit::Exception(Exception::gp(0)));
    assert_eq!(e3.cpu().xmm[5], 0);
}

/// The host's FXSAVE64 puts XMM registers and MXCSR where we do.
#[test]
fn fxsave_offsets_match_host() {
    #[repr(C, align(16))]
    struct Area([u8; 512]);
    let mut area = Area([0; 512]);
    let v: u128 = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100;
    // SAFETY: FXSAVE64 writes the 512-byte, 16-aligned area; XMM1 is
    // declared clobbered.
    unsafe {
        asm!(
            "movdqu xmm1, [{v}]",
            "fxsave64 [{a}]",
            v = in(reg) &v,
            a = in(reg) area.0.as_mut_ptr(),
            out("xmm1") _,
        );
    }
    let mut host_mxcsr = 0u32;
    // SAFETY: STMXCSR writes 4 bytes.
    unsafe { asm!("stmxcsr [{p}]", p = in(reg) &mut host_mxcsr) };
    assert_eq!(u128::from_le_bytes(area.0[176..192].try_into().unwrap()), v);
    assert_eq!(
        u32::from_le_bytes(area.0[24..28].try_into().unwrap()),
        host_mxcsr
    );
    let (e, _) = run_code(
        |a| a.fxsave64(ptr(rbx)),
        |e| {
            e.cpu_mut().xmm[1] = v;
            e.cpu_mut().set_reg(Gpr::Rbx, DATA);
        },
    );
    let m = read_image(&e);
    assert_eq!(&m[176..192], &area.0[176..192]);
}

#[test]
fn movntdq_and_movnti_store() {
    let (e, x) = run_code(
        |a| {
            a.movntdq(xmmword_ptr(rbx), xmm1)?;
            a.movnti(qword_ptr(rbx + 16), rcx)
        },
        |e| {
            e.cpu_mut().xmm[1] = 0xdead_beef_u128 << 64 | 7;
            e.cpu_mut().set_reg(Gpr::Rbx, DATA);
            e.cpu_mut().set_reg(Gpr::Rcx, 0x0102_0304_0506_0708);
        },
    );
    assert_eq!(x, Exit::Halted);
    let mut m = [0u8; 24];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut m).unwrap();
    assert_eq!(
        u128::from_le_bytes(m[..16].try_into().unwrap()),
        0xdead_beef_u128 << 64 | 7
    );
    assert_eq!(
        u64::from_le_bytes(m[16..].try_into().unwrap()),
        0x0102_0304_0506_0708
    );
}

/// Length of the faulting instruction the SIGFPE handler skips.
static SKIP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Set by the handler when a SIMD exception trapped.
static TRAPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigfpe(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: the kernel passes a valid ucontext; we only move RIP past the
    // faulting instruction (a #XM fault leaves RIP on it, registers and
    // MXCSR flags as the CPU left them).
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] += SKIP.load(SeqCst) as i64;
    }
    TRAPPED.store(true, SeqCst);
}

/// With exceptions unmasked at random, the host traps (#XM → SIGFPE) or
/// not exactly when the engine raises #XM, with the same MXCSR flags and
/// the destination unchanged.
#[test]
fn unmasked_exceptions_match_host() {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: installs a process-wide SIGFPE handler; only this test
    // triggers SIGFPE.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_sigfpe as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGFPE, &sa, core::ptr::null_mut()), 0);
    }
    let single: Vec<Case> = vec![
        rr!(addps),
        rr!(subss),
        rr!(mulps),
        rr!(divps),
        rr!(sqrtss),
        rr!(maxps),
        rri!(cmpps, 1),
        rr!(comiss),
        rr!(cvtps2dq),
        rr!(cvtps2pd),
    ];
    let double: Vec<Case> = vec![
        rr!(mulpd),
        rr!(divsd),
        rr!(addpd),
        rr!(cvtpd2ps),
        rr!(cvtsd2ss),
    ];
    let mut failures = Vec::new();
    for (cases, kind) in [(single, Kind::F32), (double, Kind::F64)] {
        for (k, &(name, h, g)) in cases.iter().enumerate() {
            let code = assemble(g);
            SKIP.store(code.len() as u64 - 1, SeqCst);
            let mut e = machine(&code);
            let mut r = Rng(900 + k as u64);
            let mut traps = 0;
            for _ in 0..3000 {
                let mut s = inputs(&mut r, kind);
                s.mxcsr &= !((r.next() as u32 & 0x3f) << 7);
                TRAPPED.store(false, SeqCst);
                let want = host_run(h, &s);
                let host_trapped = TRAPPED.load(SeqCst);
                traps += host_trapped as usize;
                let got = guest(&mut e, &s);
                let (g_trap, g_x0, g_mx) = match got {
                    Ok(t) => (false, t.x0, t.mxcsr),
                    Err(x) => {
                        assert_eq!(x, Exception::xm(), "{name}");
                        (true, e.cpu().xmm[0], e.cpu().mxcsr)
                    }
                };
                if (g_trap, g_x0, g_mx) != (host_trapped, want.x0, want.mxcsr)
                    && failures.len() < 20
                {
                    failures.push(format!(
                        "{name}: in x0={:#034x} x1={:#034x} mxcsr={:#x}: host trap={host_trapped} x0={:#034x} mxcsr={:#x}; guest trap={g_trap} x0={g_x0:#034x} mxcsr={g_mx:#x}",
                        s.x0, s.x1, s.mxcsr, want.x0, want.mxcsr
                    ));
                }
            }
            assert!(traps > 100, "{name}: only {traps} host traps");
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn maskmovdqu_stores_selected_bytes() {
    let (e, x) = run_code(
        |a| a.maskmovdqu(xmm1, xmm2),
        |e| {
            e.mem_mut()
                .write_phys(GuestPhysAddr(DATA), &[0xee; 16])
                .unwrap();
            let c = e.cpu_mut();
            c.set_reg(Gpr::Rdi, DATA);
            c.xmm[1] = u128::from_le_bytes(core::array::from_fn(|i| i as u8));
            // Select bytes 0, 3 and 15 (top bit set); 0x7f does not select.
            let mut m = [0x7fu8; 16];
            m[0] = 0x80;
            m[3] = 0xff;
            m[15] = 0x81;
            c.xmm[2] = u128::from_le_bytes(m);
        },
    );
    assert_eq!(x, Exit::Halted);
    let mut m = [0u8; 16];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut m).unwrap();
    let mut want = [0xeeu8; 16];
    want[0] = 0;
    want[3] = 3;
    want[15] = 15;
    assert_eq!(m, want);
}

/// Map linear 0x4000_0000 (4 KiB pages): the first page writable at
/// physical 0x20000, the next one read-only at 0x21000.
fn map_ro_after_rw(e: &mut Engine) {
    let w = |e: &mut Engine, a: u64, v: u64| {
        e.mem_mut()
            .write_phys(GuestPhysAddr(a), &v.to_le_bytes())
            .unwrap()
    };
    let pdpt = TABLES + 0x1000;
    w(e, pdpt + 8, 0x5000 | 7); // PDPT[1] → PD
    w(e, 0x5000, 0x6000 | 7); // PD[0] → PT
    w(e, 0x6000, 0x20000 | 7); // PT[0]: RW
    w(e, 0x6008, 0x21000 | 5); // PT[1]: read-only
    e.flush_tlb();
}

#[test]
fn stores_crossing_into_a_read_only_page_write_nothing() {
    let base = 0x4000_0000u64;
    let cases: [(Guest, u64); 6] = [
        (|a| a.movups(xmmword_ptr(rbx), xmm0), 0xff8),
        (|a| a.movdqu(xmmword_ptr(rbx), xmm0), 0xff1),
        (|a| a.movdqu(xmmword_ptr(rbx), xmm0), 0xffc),
        (|a| a.movupd(xmmword_ptr(rbx), xmm0), 0xff9),
        (|a| a.maskmovdqu(xmm0, xmm1), 0xff4),
        (|a| a.fxsave64(ptr(rbx)), 0xf00),
    ];
    for (body, off) in cases {
        let (e, x) = run_code(body, |e| {
            map_ro_after_rw(e);
            e.mem_mut()
                .write_phys(GuestPhysAddr(0x20000), &[0x5a; 0x1000])
                .unwrap();
            let c = e.cpu_mut();
            c.set_reg(Gpr::Rbx, base + off);
            c.set_reg(Gpr::Rdi, base + off);
            c.xmm[0] = u128::MAX;
            c.xmm[1] = u128::MAX;
        });
        match x {
            Exit::Exception(ex) => {
                assert_eq!(ex.vector, 14, "#PF");
                assert_eq!(ex.address, base + 0x1000);
            }
            other => panic!("expected #PF, got {other:?}"),
        }
        let mut m = [0u8; 0x1000];
        e.mem().read_phys(GuestPhysAddr(0x20000), &mut m).unwrap();
        assert!(
            m.iter().all(|&b| b == 0x5a),
            "nothing written before the fault"
        );
    }
}

#[test]
fn clts_in_the_block_lets_later_sse_run() {
    // CR0.TS set at entry: CLTS clears it, so the SSE forms after it in
    // the same block must not raise #NM (compiled code reads CR0 anew).
    let (e, x) = run_code(
        |a| {
            a.clts()?;
            a.movdqa(xmm0, xmm1)?;
            a.paddq(xmm0, xmm1)
        },
        |e| {
            let c = e.cpu_mut();
            c.cr0 |= 1 << 3;
            c.xmm[1] = 5 << 64 | 7;
        },
    );
    assert_eq!(x, Exit::Halted);
    assert_eq!(e.cpu().xmm[0], 10 << 64 | 14);
    assert_eq!(e.cpu().cr0 & (1 << 3), 0);
}

#[test]
fn nm_in_the_middle_of_a_block_keeps_the_work_before_it() {
    let (e, x) = run_code(
        |a| {
            a.mov(eax, 5)?;
            a.pxor(xmm0, xmm0)?;
            a.mov(eax, 6)
        },
        |e| {
            let c = e.cpu_mut();
            c.cr0 |= 1 << 3;
            c.xmm[0] = 0x1234;
        },
    );
    assert_eq!(x, Exit::Exception(Exception::nm()));
    let c = e.cpu();
    assert_eq!(c.reg(Gpr::Rax), 5);
    assert_eq!(c.xmm[0], 0x1234, "the destination is untouched");
    assert_eq!(c.rip, CODE + 5, "RIP on the faulting PXOR");
}

#[test]
fn faulting_128_bit_accesses_change_nothing() {
    let base = 0x4000_0000u64;
    // (code, RBX, expected exception vector, its address for a #PF)
    let cases: [(Guest, u64, u8, u64); 6] = [
        // Misaligned MOVDQA store and PADDQ source: #GP(0).
        (|a| a.movdqa(xmmword_ptr(rbx), xmm0), DATA + 8, 13, 0),
        (|a| a.paddq(xmm0, xmmword_ptr(rbx)), DATA + 4, 13, 0),
        // Non-canonical: #GP(0).
        (|a| a.movdqa(xmm0, xmmword_ptr(rbx)), 1 << 63, 13, 0),
        // A MOVDQU load whose second half is on a not-present page.
        (
            |a| a.movdqu(xmm0, xmmword_ptr(rbx)),
            base + 0x1ffc,
            14,
            base + 0x2000,
        ),
        // An aligned store to a read-only page.
        (
            |a| a.movntdq(xmmword_ptr(rbx), xmm1),
            base + 0x1000,
            14,
            base + 0x1000,
        ),
        // A MOVQ store crossing into it.
        (
            |a| a.movq(qword_ptr(rbx), xmm1),
            base + 0xffc,
            14,
            base + 0x1000,
        ),
    ];
    for (body, at, vector, address) in cases {
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(ecx, 1).unwrap();
        a.pcmpeqb(xmm2, xmm2).unwrap();
        body(&mut a).unwrap();
        a.mov(ecx, 2).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(CODE).unwrap();
        let (e, x) = run_bytes(&code, |e| {
            map_ro_after_rw(e);
            e.mem_mut()
                .write_phys(GuestPhysAddr(0x20000), &[0x5a; 0x1000])
                .unwrap();
            e.mem_mut()
                .write_phys(GuestPhysAddr(0x21000), &[0x5a; 0x1000])
                .unwrap();
            let c = e.cpu_mut();
            c.set_reg(Gpr::Rbx, at);
            c.xmm[0] = 0x1111;
            c.xmm[1] = u128::MAX;
        });
        match x {
            Exit::Exception(ex) => {
                assert_eq!(ex.vector, vector, "{at:#x}");
                if vector == 14 {
                    assert_eq!(ex.address, address);
                }
            }
            other => panic!("expected an exception, got {other:?}"),
        }
        let c = e.cpu();
        assert_eq!(c.reg(Gpr::Rcx), 1, "the instructions before it retired");
        assert_eq!(c.xmm[2], u128::MAX);
        assert_eq!(c.xmm[0], 0x1111, "destination untouched");
        assert_eq!(c.icount, 2);
        let mut m = [0u8; 0x2000];
        e.mem().read_phys(GuestPhysAddr(0x20000), &mut m).unwrap();
        assert!(m.iter().all(|&b| b == 0x5a), "nothing written");
    }
}
