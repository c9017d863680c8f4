//! 80-bit extended-precision arithmetic in software, with the x87's
//! rounding control, precision control and exception flags.
//!
//! Values are kept in their register encoding ([`F80`]: sign+exponent word
//! and a 64-bit significand with an explicit integer bit). Operations work
//! on exact intermediate results (a `u128` significand with a sticky bit)
//! which [`round`] turns into a representable result, so every result is
//! the correctly rounded one and the same on any host.
//!
//! x87 specifics handled here: pseudo-denormals (exponent 0, integer bit
//! set: read as exponent 1), unnormals, pseudo-NaNs and pseudo-infinities
//! (unsupported: invalid operation, result the "real indefinite"),
//! NaN propagation (the larger significand wins, SNaNs are quieted),
//! precision control (24/53/64 significand bits, 15-bit exponent range),
//! tininess detected after rounding, and the exponent bias adjustment of
//! results delivered with unmasked overflow/underflow.

/// Exception flags, in the bit positions of the status and control words.
pub mod flag {
    /// Invalid operation.
    pub const IE: u8 = 1 << 0;
    /// Denormal operand.
    pub const DE: u8 = 1 << 1;
    /// Zero divide.
    pub const ZE: u8 = 1 << 2;
    /// Overflow.
    pub const OE: u8 = 1 << 3;
    /// Underflow.
    pub const UE: u8 = 1 << 4;
    /// Precision (inexact result).
    pub const PE: u8 = 1 << 5;
}
use flag::*;

/// Exponent bias of the extended format.
pub const BIAS: i32 = 16383;
/// Bias adjustment applied to results delivered with an unmasked overflow
/// or underflow exception (3 × 2^13 for the extended format).
const WRAP: i32 = 24576;

/// An 80-bit extended-precision value as stored in a register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct F80 {
    /// Sign (bit 15) and biased exponent (bits 14–0).
    pub se: u16,
    /// Significand, integer bit in bit 63.
    pub sig: u64,
}

/// Operand classes as the x87 sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Zero,
    Normal,
    /// Exponent 0 and a non-zero significand (including pseudo-denormals).
    Denormal,
    Inf,
    QNaN,
    SNaN,
    /// Unnormals, pseudo-NaNs, pseudo-infinities.
    Unsupported,
}

const INT_BIT: u64 = 1 << 63;
const QUIET_BIT: u64 = 1 << 62;

impl F80 {
    pub const ZERO: F80 = F80 { se: 0, sig: 0 };
    pub const ONE: F80 = F80 {
        se: 0x3fff,
        sig: INT_BIT,
    };
    /// The QNaN "real indefinite" produced by masked invalid operations.
    pub const INDEFINITE: F80 = F80 {
        se: 0xffff,
        sig: 0xc000_0000_0000_0000,
    };

    pub const fn new(sign: bool, exp: u16, sig: u64) -> F80 {
        F80 {
            se: ((sign as u16) << 15) | (exp & 0x7fff),
            sig,
        }
    }

    /// From the 10-byte little-endian memory/register image.
    pub fn from_bytes(b: &[u8]) -> F80 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        F80 {
            sig: u64::from_le_bytes(s),
            se: u16::from_le_bytes([b[8], b[9]]),
        }
    }

    /// The 10-byte little-endian image.
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    pub const fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }

    pub const fn exp(self) -> u16 {
        self.se & 0x7fff
    }

    pub const fn neg(self) -> F80 {
        F80 {
            se: self.se ^ 0x8000,
            sig: self.sig,
        }
    }

    pub const fn abs(self) -> F80 {
        F80 {
            se: self.se & 0x7fff,
            sig: self.sig,
        }
    }

    /// A signed zero.
    pub const fn zero(sign: bool) -> F80 {
        F80::new(sign, 0, 0)
    }

    /// A signed infinity.
    pub const fn inf(sign: bool) -> F80 {
        F80::new(sign, 0x7fff, INT_BIT)
    }

    /// The class of the value.
    pub fn class(self) -> Class {
        let e = self.exp();
        let int = self.sig & INT_BIT != 0;
        match e {
            0 if self.sig == 0 => Class::Zero,
            0 => Class::Denormal,
            0x7fff if !int => Class::Unsupported,
            0x7fff if self.sig << 1 == 0 => Class::Inf,
            0x7fff if self.sig & QUIET_BIT != 0 => Class::QNaN,
            0x7fff => Class::SNaN,
            _ if !int => Class::Unsupported,
            _ => Class::Normal,
        }
    }

    pub fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }

    /// The quiet form of a NaN.
    pub const fn quiet(self) -> F80 {
        F80 {
            se: self.se,
            sig: self.sig | QUIET_BIT,
        }
    }

    /// The tag (00 valid, 01 zero, 10 special) of a non-empty register.
    pub fn tag(self) -> u16 {
        match self.class() {
            Class::Zero => 1,
            Class::Normal => 0,
            _ => 2,
        }
    }
}

/// A finite non-zero value unpacked: `sig` (integer bit set) × 2^(e - 63).
#[derive(Clone, Copy, Debug)]
struct Unp {
    sign: bool,
    /// Unbiased exponent of the integer bit.
    e: i32,
    sig: u64,
}

/// Unpack a finite non-zero value (normal, denormal or pseudo-denormal).
fn unpack(x: F80) -> Unp {
    let lz = x.sig.leading_zeros();
    Unp {
        sign: x.sign(),
        e: (x.exp() as i32).max(1) - BIAS - lz as i32,
        sig: x.sig << lz,
    }
}

/// Rounding control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rc {
    Nearest,
    Down,
    Up,
    Zero,
}

impl Rc {
    pub fn from_bits(b: u16) -> Rc {
        match b & 3 {
            0 => Rc::Nearest,
            1 => Rc::Down,
            2 => Rc::Up,
            _ => Rc::Zero,
        }
    }
}

/// The rounding environment of one operation and the flags it raised.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub rc: Rc,
    /// Significand precision of arithmetic results: 24, 53 or 64.
    pub pc: u32,
    /// Exception masks (FCW bits 0–5).
    pub masks: u8,
    /// Exceptions raised.
    pub flags: u8,
    /// The result was rounded up in magnitude (C1).
    pub c1: bool,
    /// An operand was converted from a single/double denormal: DE is
    /// raised when the operation gets past its NaN checks.
    pub denormal_src: bool,
}

impl Env {
    /// The environment the control word describes. The reserved precision
    /// setting 01 behaves like 64 bits.
    pub fn from_fcw(fcw: u16) -> Env {
        Env {
            rc: Rc::from_bits(fcw >> 10),
            pc: match (fcw >> 8) & 3 {
                0 => 24,
                2 => 53,
                _ => 64,
            },
            masks: (fcw & 0x3f) as u8,
            flags: 0,
            c1: false,
            denormal_src: false,
        }
    }

    fn raise(&mut self, f: u8) {
        self.flags |= f;
    }

    /// Raise DE for denormal operands; true when DE is unmasked (the
    /// operation stops there).
    pub fn denormal(&mut self, any: bool) -> bool {
        if any || self.denormal_src {
            self.raise(DE);
            return self.unmasked(DE);
        }
        false
    }

    fn unmasked(&self, f: u8) -> bool {
        self.masks & f == 0
    }

    /// Invalid operation: the real indefinite.
    fn invalid(&mut self) -> F80 {
        self.raise(IE);
        F80::INDEFINITE
    }
}

/// A destination format for rounding.
#[derive(Clone, Copy, Debug)]
pub struct Fmt {
    /// Significand bits (with the integer bit).
    pub p: u32,
    /// Smallest normal unbiased exponent.
    pub emin: i32,
    /// Largest unbiased exponent.
    pub emax: i32,
}

pub const EXT: Fmt = Fmt {
    p: 64,
    emin: 1 - BIAS,
    emax: BIAS,
};
pub const F64: Fmt = Fmt {
    p: 53,
    emin: -1022,
    emax: 1023,
};
pub const F32: Fmt = Fmt {
    p: 24,
    emin: -126,
    emax: 127,
};

/// The extended format at precision `p` (precision control keeps the
/// 15-bit exponent range).
pub const fn ext(p: u32) -> Fmt {
    Fmt {
        p,
        emin: 1 - BIAS,
        emax: BIAS,
    }
}

/// `sig >> shift` rounded by `rc`; also whether bits were lost and whether
/// the magnitude was incremented.
fn round_bits(sig: u128, shift: u32, rc: Rc, sign: bool) -> (u128, bool, bool) {
    let (q, rem, half) = if shift == 0 {
        (sig, 0, 0)
    } else if shift < 128 {
        (
            sig >> shift,
            sig & ((1u128 << shift) - 1),
            1u128 << (shift - 1),
        )
    } else if shift == 128 {
        (0, sig, 1u128 << 127)
    } else {
        // Below half an ulp (unless zero).
        (0, sig, u128::MAX)
    };
    let inexact = rem != 0;
    let inc = match rc {
        Rc::Nearest => rem > half || (rem == half && shift <= 128 && inexact && q & 1 == 1),
        Rc::Down => inexact && sign,
        Rc::Up => inexact && !sign,
        Rc::Zero => false,
    };
    (q + inc as u128, inexact, inc)
}

/// A rounded result: `m` left-aligned (bit 63 has weight 2^e), with bit 63
/// clear for denormals (then `e == emin`); `m == 0` for zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounded {
    Finite { sign: bool, e: i32, m: u64 },
    Inf(bool),
}

/// Round the exact value `sig` × 2^(e - 127) (bit 127 of `sig` set, lost
/// bits ORed into bit 0) to `fmt`. Raises PE/UE/OE; with OE or UE unmasked
/// the result carries the exponent wrapped by `WRAP` (meaningful for the
/// extended format only; memory stores are suppressed by the caller).
pub fn round(env: &mut Env, sign: bool, e: i32, sig: u128, fmt: Fmt) -> Rounded {
    debug_assert!(sig >> 127 == 1);
    let p = fmt.p;
    let (mut q, inexact, up) = round_bits(sig, 128 - p, env.rc, sign);
    let mut e1 = e;
    if q >> p != 0 {
        q >>= 1;
        e1 += 1;
    }
    let left = |q: u128| (q as u64) << (64 - p);
    if e1 < fmt.emin {
        if env.unmasked(UE) {
            env.raise(UE);
            if e1 + WRAP < fmt.emin {
                // Too small even for the wrapped exponent: zero.
                env.raise(PE);
                env.c1 = false;
                return Rounded::Finite { sign, e: 0, m: 0 };
            }
            if inexact {
                env.raise(PE);
            }
            env.c1 = up;
            return Rounded::Finite {
                sign,
                e: e1 + WRAP,
                m: left(q),
            };
        }
        // Denormalise: round at the fixed position of the smallest exponent.
        let shift = (128 - p).saturating_add((fmt.emin - e) as u32);
        let (q, inexact, up) = round_bits(sig, shift, env.rc, sign);
        if inexact {
            env.raise(UE | PE);
        }
        env.c1 = up;
        return Rounded::Finite {
            sign,
            e: fmt.emin,
            m: left(q),
        };
    }
    if e1 > fmt.emax {
        env.raise(OE);
        if env.unmasked(OE) {
            if e1 - WRAP > fmt.emax {
                // Too large even for the wrapped exponent: infinity.
                env.raise(PE);
                env.c1 = true;
                return Rounded::Inf(sign);
            }
            if inexact {
                env.raise(PE);
            }
            env.c1 = up;
            return Rounded::Finite {
                sign,
                e: e1 - WRAP,
                m: left(q),
            };
        }
        env.raise(PE);
        let to_inf = match env.rc {
            Rc::Nearest => true,
            Rc::Down => sign,
            Rc::Up => !sign,
            Rc::Zero => false,
        };
        env.c1 = to_inf;
        if to_inf {
            return Rounded::Inf(sign);
        }
        return Rounded::Finite {
            sign,
            e: fmt.emax,
            m: !0u64 << (64 - p),
        };
    }
    if inexact {
        env.raise(PE);
    }
    env.c1 = up;
    Rounded::Finite {
        sign,
        e: e1,
        m: left(q),
    }
}

/// Pack a rounded result in the extended format.
fn pack(r: Rounded) -> F80 {
    match r {
        Rounded::Inf(s) => F80::inf(s),
        Rounded::Finite { sign, m: 0, .. } => F80::zero(sign),
        Rounded::Finite { sign, e, m } => {
            let exp = if m & INT_BIT == 0 { 0 } else { e + BIAS };
            F80::new(sign, exp.clamp(0, 0x7fff) as u16, m)
        }
    }
}

/// Round an exact value given as a non-zero `u128` × 2^(e - 127) (not
/// necessarily normalised) to the extended format at precision `p`.
fn round_ext(env: &mut Env, sign: bool, e: i32, sig: u128, p: u32) -> F80 {
    let lz = sig.leading_zeros();
    pack(round(env, sign, e - lz as i32, sig << lz, ext(p)))
}

/// The NaN result of an operation with NaN operand(s): invalid for an SNaN;
/// of two NaNs the one with the larger significand (the first on a tie).
fn propagate(env: &mut Env, a: F80, b: F80) -> F80 {
    let (an, bn) = (a.is_nan(), b.is_nan());
    if a.class() == Class::SNaN || b.class() == Class::SNaN {
        env.raise(IE);
    }
    let r = match (an, bn) {
        (true, true) => {
            if b.sig > a.sig || (b.sig == a.sig && !b.sign() && a.sign()) {
                b
            } else {
                a
            }
        }
        (true, false) => a,
        _ => b,
    };
    r.quiet()
}

/// Common handling of two operands: unsupported → indefinite, NaNs
/// propagate, denormals raise DE. `None` when the operation proceeds.
fn specials2(env: &mut Env, a: F80, b: F80) -> Option<F80> {
    if let Some(r) = nan_checks(env, a, b) {
        return Some(r);
    }
    let (ca, cb) = (a.class(), b.class());
    if env.denormal(ca == Class::Denormal || cb == Class::Denormal) {
        return Some(a);
    }
    None
}

/// Unsupported operands and NaNs.
fn nan_checks(env: &mut Env, a: F80, b: F80) -> Option<F80> {
    if a.class() == Class::Unsupported || b.class() == Class::Unsupported {
        return Some(env.invalid());
    }
    if a.is_nan() || b.is_nan() {
        return Some(propagate(env, a, b));
    }
    None
}

/// One-operand version of [`specials2`].
fn specials1(env: &mut Env, a: F80) -> Option<F80> {
    match a.class() {
        Class::Unsupported => Some(env.invalid()),
        Class::SNaN => {
            env.raise(IE);
            Some(a.quiet())
        }
        Class::QNaN => Some(a),
        c => {
            if env.denormal(c == Class::Denormal) {
                Some(a)
            } else {
                None
            }
        }
    }
}

/// The sign of an exact zero sum: negative only when rounding down.
fn zero_sum_sign(env: &Env) -> bool {
    env.rc == Rc::Down
}

/// a + b, or a - b when `sub`.
pub fn add(env: &mut Env, a: F80, b: F80, sub: bool) -> F80 {
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    let b = if sub { b.neg() } else { b };
    let (ca, cb) = (a.class(), b.class());
    match (ca, cb) {
        (Class::Inf, Class::Inf) if a.sign() != b.sign() => return env.invalid(),
        (Class::Inf, _) => return a,
        (_, Class::Inf) => return b,
        (Class::Zero, Class::Zero) => {
            let s = if a.sign() == b.sign() {
                a.sign()
            } else {
                zero_sum_sign(env)
            };
            return F80::zero(s);
        }
        _ => {}
    }
    let p = env.pc;
    if cb == Class::Zero {
        let u = unpack(a);
        return round_ext(env, u.sign, u.e, (u.sig as u128) << 64, p);
    }
    if ca == Class::Zero {
        let u = unpack(b);
        return round_ext(env, u.sign, u.e, (u.sig as u128) << 64, p);
    }
    let (mut x, mut y) = (unpack(a), unpack(b));
    if (y.e, y.sig) > (x.e, x.sig) {
        core::mem::swap(&mut x, &mut y);
    }
    let d = (x.e - y.e) as u32;
    // Integer bits at bit 126: one bit of headroom for the carry.
    let xs = (x.sig as u128) << 63;
    let ys = (y.sig as u128) << 63;
    let ys = if d == 0 {
        ys
    } else if d < 127 {
        (ys >> d) | ((ys & ((1u128 << d) - 1) != 0) as u128)
    } else {
        1
    };
    let s = if x.sign == y.sign { xs + ys } else { xs - ys };
    if s == 0 {
        return F80::zero(zero_sum_sign(env));
    }
    // s × 2^(x.e - 126).
    round_ext(env, x.sign, x.e + 1, s, p)
}

/// a × b.
pub fn mul(env: &mut Env, a: F80, b: F80) -> F80 {
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    let sign = a.sign() != b.sign();
    match (a.class(), b.class()) {
        (Class::Inf, Class::Zero) | (Class::Zero, Class::Inf) => return env.invalid(),
        (Class::Inf, _) | (_, Class::Inf) => return F80::inf(sign),
        (Class::Zero, _) | (_, Class::Zero) => return F80::zero(sign),
        _ => {}
    }
    let (x, y) = (unpack(a), unpack(b));
    let prod = x.sig as u128 * y.sig as u128;
    // prod × 2^(x.e + y.e - 126).
    round_ext(env, sign, x.e + y.e + 1, prod, env.pc)
}

/// a ÷ b.
pub fn div(env: &mut Env, a: F80, b: F80) -> F80 {
    let sign = a.sign() != b.sign();
    // A zero divisor is checked before denormal operands (no DE).
    if let Some(r) = nan_checks(env, a, b) {
        return r;
    }
    match (a.class(), b.class()) {
        (Class::Zero, Class::Zero) => return env.invalid(),
        (Class::Inf, Class::Zero) => return F80::inf(sign),
        (_, Class::Zero) => {
            env.raise(ZE);
            return F80::inf(sign);
        }
        _ => {}
    }
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    match (a.class(), b.class()) {
        (Class::Inf, Class::Inf) => return env.invalid(),
        (Class::Inf, _) => return F80::inf(sign),
        (_, Class::Inf) | (Class::Zero, _) => return F80::zero(sign),
        _ => {}
    }
    let (x, y) = (unpack(a), unpack(b));
    let (n, e) = if x.sig >= y.sig {
        ((x.sig as u128) << 63, x.e - y.e)
    } else {
        ((x.sig as u128) << 64, x.e - y.e - 1)
    };
    let d = y.sig as u128;
    let (q1, r1) = (n / d, n % d);
    let n2 = r1 << 64;
    let (q2, r2) = (n2 / d, n2 % d);
    let q = (q1 << 64) | q2 | (r2 != 0) as u128;
    round_ext(env, sign, e, q, env.pc)
}

/// Integer square root of `n` and the remainder `n - root²`.
fn isqrt(n: u128) -> (u128, u128) {
    let mut x = n;
    let mut res: u128 = 0;
    let mut bit: u128 = 1 << 126;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if x >= res + bit {
            x -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    (res, x)
}

/// √a.
pub fn sqrt(env: &mut Env, a: F80) -> F80 {
    // A negative operand is invalid before it is a denormal.
    let c = a.class();
    if a.sign() && matches!(c, Class::Normal | Class::Denormal | Class::Inf) {
        return env.invalid();
    }
    if let Some(r) = specials1(env, a) {
        return r;
    }
    if matches!(c, Class::Zero | Class::Inf) {
        return a;
    }
    let x = unpack(a);
    // Radicand with an even exponent, root with 64 bits.
    // sig/2^63 × 2^e = N/2^126 × 2^(2E): N = sig << 63 (e even) or
    // sig << 64 (e odd), root r = √N has 64 bits, √a = r × 2^(E - 63).
    let (n, e) = if x.e & 1 == 0 {
        ((x.sig as u128) << 63, x.e / 2)
    } else {
        ((x.sig as u128) << 64, (x.e - 1) / 2)
    };
    let (r, rem) = isqrt(n);
    // Half-way bit: (r + 1/2)² <= n ⇔ rem > r (a root is never r + 1/2).
    let guard = (rem > r) as u128;
    let sticky = (rem != 0) as u128;
    let s = (r << 64) | (guard << 63) | sticky;
    round_ext(env, false, e, s, env.pc)
}

/// Round to an integer value (FRNDINT).
pub fn round_int(env: &mut Env, a: F80) -> F80 {
    if let Some(r) = specials1(env, a) {
        return r;
    }
    match a.class() {
        Class::Zero | Class::Inf => return a,
        _ => {}
    }
    let x = unpack(a);
    if x.e >= 63 {
        return a;
    }
    // Bits below the binary point: 63 - e of the significand.
    let shift = (63 - x.e) as u32;
    let (q, inexact, up) = round_bits(x.sig as u128, shift.min(129), env.rc, x.sign);
    if inexact {
        env.raise(PE);
    }
    env.c1 = up;
    if q == 0 {
        return F80::zero(x.sign);
    }
    let mut env2 = *env;
    round_ext(&mut env2, x.sign, 127, q, 64)
}

/// Convert to a signed integer of `bits` bits; `trunc` rounds toward zero
/// (FISTTP), else by the rounding control. `None` is the invalid case
/// (NaN, infinity, out of range): the caller stores the integer indefinite
/// when IE is masked.
pub fn to_int(env: &mut Env, a: F80, bits: u32, trunc: bool) -> Option<i64> {
    match a.class() {
        Class::Zero => return Some(0),
        Class::Normal | Class::Denormal => {}
        _ => {
            env.raise(IE);
            return None;
        }
    }
    let x = unpack(a);
    let rc = if trunc { Rc::Zero } else { env.rc };
    let shift = (63 - x.e.min(63)).min(129) as u32;
    if x.e > 63 {
        env.raise(IE);
        return None;
    }
    let (q, inexact, up) = round_bits(x.sig as u128, shift, rc, x.sign);
    let limit = 1u128 << (bits - 1);
    if q > limit || (q == limit && !x.sign) {
        env.raise(IE);
        return None;
    }
    if inexact {
        env.raise(PE);
    }
    env.c1 = up;
    let v = q as i128;
    Some(if x.sign { -v } else { v } as i64)
}

/// An integer, exactly.
pub fn from_int(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let m = v.unsigned_abs();
    let lz = m.leading_zeros();
    F80::new(v < 0, (63 - lz as i32 + BIAS) as u16, m << lz)
}

/// Widen an IEEE single/double (`bits` of format `fmt`, `fbits` fraction
/// bits) exactly; SNaN → IE, a denormal is noted for DE.
fn from_ieee(env: &mut Env, v: u64, ebits: u32, fbits: u32) -> F80 {
    let sign = v >> (ebits + fbits) & 1 != 0;
    let emask = (1u64 << ebits) - 1;
    let exp = (v >> fbits) & emask;
    let frac = v & ((1u64 << fbits) - 1);
    let bias = (emask >> 1) as i32;
    let top = frac << (63 - fbits);
    if exp == emask {
        if frac == 0 {
            return F80::inf(sign);
        }
        // Kept signalling: NaN propagation tells SNaN from QNaN (the
        // loads quiet it).
        let n = F80::new(sign, 0x7fff, INT_BIT | top);
        if n.class() == Class::SNaN {
            env.raise(IE);
        }
        return n;
    }
    if exp == 0 {
        if frac == 0 {
            return F80::zero(sign);
        }
        env.denormal_src = true;
        let lz = top.leading_zeros();
        let e = 1 - bias - lz as i32;
        return F80::new(sign, (e + BIAS) as u16, top << lz);
    }
    F80::new(sign, (exp as i32 - bias + BIAS) as u16, INT_BIT | top)
}

/// FLD m32.
pub fn from_f32(env: &mut Env, v: u32) -> F80 {
    from_ieee(env, v as u64, 8, 23)
}

/// FLD m64.
pub fn from_f64(env: &mut Env, v: u64) -> F80 {
    from_ieee(env, v, 11, 52)
}

/// Narrow to an IEEE format (`ebits`, `fbits`) by the rounding control.
/// `None` when an unmasked overflow/underflow suppresses the store.
fn to_ieee(env: &mut Env, a: F80, fmt: Fmt, ebits: u32, fbits: u32) -> Option<u64> {
    let sbit = 1u64 << (ebits + fbits);
    let emask = (1u64 << ebits) - 1;
    let bias = (emask >> 1) as i32;
    let s = if a.sign() { sbit } else { 0 };
    let inf = s | (emask << fbits);
    match a.class() {
        Class::Unsupported => {
            env.raise(IE);
            return Some(sbit | inf | (1u64 << (fbits - 1)));
        }
        Class::SNaN | Class::QNaN => {
            if a.class() == Class::SNaN {
                env.raise(IE);
            }
            let frac = (a.sig | QUIET_BIT) << 1 >> (64 - fbits);
            return Some(inf | frac);
        }
        Class::Inf => return Some(inf),
        Class::Zero => return Some(s),
        _ => {}
    }
    let x = unpack(a);
    let before = env.flags;
    let r = round(env, x.sign, x.e, (x.sig as u128) << 64, fmt);
    let unmasked = (env.flags & !before) & (OE | UE) & !env.masks;
    if unmasked != 0 {
        // The store is suppressed: only the OE/UE itself is reported.
        env.flags = before | unmasked;
        env.c1 = false;
        return None;
    }
    Some(match r {
        Rounded::Inf(_) => inf,
        Rounded::Finite { m, e, .. } => {
            let exp = if m & INT_BIT == 0 {
                0
            } else {
                (e + bias) as u64
            };
            s | (exp << fbits) | ((m << 1) >> (64 - fbits))
        }
    })
}

/// FST m32.
pub fn to_f32(env: &mut Env, a: F80) -> Option<u32> {
    to_ieee(env, a, F32, 8, 23).map(|v| v as u32)
}

/// FST m64.
pub fn to_f64(env: &mut Env, a: F80) -> Option<u64> {
    to_ieee(env, a, F64, 11, 52)
}

/// Result of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Less,
    Equal,
    Greater,
    Unordered,
}

/// Compare a with b. `quiet` (FUCOM*) raises IE only for SNaNs and
/// unsupported operands, otherwise any NaN is invalid.
pub fn compare(env: &mut Env, a: F80, b: F80, quiet: bool) -> Cmp {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        env.raise(IE);
        return Cmp::Unordered;
    }
    if a.is_nan() || b.is_nan() {
        if !quiet || ca == Class::SNaN || cb == Class::SNaN {
            env.raise(IE);
        }
        return Cmp::Unordered;
    }
    env.denormal(ca == Class::Denormal || cb == Class::Denormal);
    let key = |x: F80, c: Class| -> (bool, i32, u64) {
        match c {
            Class::Zero => (false, i32::MIN, 0),
            Class::Inf => (x.sign(), i32::MAX, 0),
            _ => {
                let u = unpack(x);
                (u.sign, u.e, u.sig)
            }
        }
    };
    let (ka, kb) = (key(a, ca), key(b, cb));
    let (sa, sb) = (ka.0 && ca != Class::Zero, kb.0 && cb != Class::Zero);
    let ord = if ca == Class::Zero && cb == Class::Zero {
        core::cmp::Ordering::Equal
    } else if sa != sb {
        if sa {
            core::cmp::Ordering::Less
        } else {
            core::cmp::Ordering::Greater
        }
    } else {
        let m = (ka.1, ka.2).cmp(&(kb.1, kb.2));
        // A zero has the smallest magnitude key.
        if sa {
            m.reverse()
        } else {
            m
        }
    };
    match ord {
        core::cmp::Ordering::Less => Cmp::Less,
        core::cmp::Ordering::Equal => Cmp::Equal,
        core::cmp::Ordering::Greater => Cmp::Greater,
    }
}

/// FSCALE: a × 2^trunc(b).
pub fn scale(env: &mut Env, a: F80, b: F80) -> F80 {
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    let (ca, cb) = (a.class(), b.class());
    match (ca, cb) {
        (Class::Zero, Class::Inf) if !b.sign() => return env.invalid(),
        (Class::Inf, Class::Inf) if b.sign() => return env.invalid(),
        (Class::Zero, _) | (Class::Inf, _) => return a,
        (_, Class::Inf) => {
            return if b.sign() {
                F80::zero(a.sign())
            } else {
                F80::inf(a.sign())
            }
        }
        _ => {}
    }
    let n: i32 = if cb == Class::Zero {
        0
    } else {
        let y = unpack(b);
        // Anything beyond ±2^20 over- or underflows the same way.
        let m = if y.e < 0 {
            0
        } else if y.e > 20 {
            1 << 21
        } else {
            (y.sig >> (63 - y.e)) as i32
        };
        if y.sign {
            -m
        } else {
            m
        }
    };
    let x = unpack(a);
    round_ext(env, x.sign, x.e + n, (x.sig as u128) << 64, 64)
}

/// FXTRACT: (exponent, significand) of a; `None` fields follow the
/// special cases of the caller (NaN/invalid results are returned for both).
pub fn extract(env: &mut Env, a: F80) -> (F80, F80) {
    if let Some(r) = specials1(env, a) {
        return (r, r);
    }
    match a.class() {
        Class::Zero => {
            env.raise(ZE);
            return (F80::inf(true), a);
        }
        Class::Inf => return (F80::inf(false), a),
        _ => {}
    }
    let x = unpack(a);
    (from_int(x.e as i64), F80::new(x.sign, BIAS as u16, x.sig))
}

/// The outcome of FPREM/FPREM1: the new ST(0) and the condition bits.
#[derive(Clone, Copy, Debug)]
pub struct Rem {
    pub value: F80,
    /// Incomplete reduction (C2).
    pub partial: bool,
    /// Low three quotient bits (C0 = Q2, C3 = Q1, C1 = Q0) when complete.
    pub q: u64,
}

/// FPREM (`ieee` false: quotient truncated) and FPREM1 (`ieee` true:
/// quotient rounded to nearest even). Reductions of more than 63 binary
/// orders are partial, like the hardware's.
pub fn rem(env: &mut Env, a: F80, b: F80, ieee: bool) -> Rem {
    let done = |value| Rem {
        value,
        partial: false,
        q: 0,
    };
    if let Some(r) = nan_checks(env, a, b) {
        return done(r);
    }
    let (ca, cb) = (a.class(), b.class());
    // Invalid before denormal.
    if ca == Class::Inf || cb == Class::Zero {
        return done(env.invalid());
    }
    if let Some(r) = specials2(env, a, b) {
        return done(r);
    }
    if ca == Class::Zero {
        return done(a);
    }
    let x = unpack(a);
    if cb == Class::Inf {
        return done(round_ext(env, x.sign, x.e, (x.sig as u128) << 64, 64));
    }
    let y = unpack(b);
    let d = x.e - y.e;
    if d < -1 || (d == -1 && !ieee) {
        // Unchanged, but normalised (pseudo-denormals get exponent 1).
        return done(round_ext(env, x.sign, x.e, (x.sig as u128) << 64, 64));
    }
    if d >= 64 {
        // Partial: reduce the exponent difference to between 32 and 63.
        let n = 32 + (d - 64) % 32;
        let k = d - n;
        let num = (x.sig as u128) << n;
        let q = num / y.sig as u128;
        let r = num - q * y.sig as u128;
        let value = if r == 0 {
            F80::zero(x.sign)
        } else {
            round_ext(env, x.sign, y.e + k + 64, r, 64)
        };
        return Rem {
            value,
            partial: true,
            q: q as u64,
        };
    }
    // Units of 2^(y.e - 64): a = num, b = den.
    let num = (x.sig as u128) << (d + 1);
    let den = (y.sig as u128) << 1;
    let mut q = num / den;
    let mut r = num % den;
    let mut sign = x.sign;
    if ieee && (2 * r > den || (2 * r == den && q & 1 == 1)) {
        r = den - r;
        q += 1;
        sign = !sign;
    }
    let value = if r == 0 {
        F80::zero(x.sign)
    } else {
        round_ext(env, sign, y.e - 64 + 127, r, 64)
    };
    Rem {
        value,
        partial: false,
        q: q as u64,
    }
}

/// A constant (FLDPI …): the 64-bit truncation of the exact value plus
/// whether the dropped bits exceed one half ulp (they are never zero or
/// exactly half), rounded by the rounding control.
pub fn constant(rc: Rc, se: u16, sig: u64, above_half: bool) -> F80 {
    let up = match rc {
        Rc::Nearest => above_half,
        Rc::Up => true,
        Rc::Down | Rc::Zero => false,
    };
    F80 {
        se,
        sig: sig + up as u64,
    }
}
