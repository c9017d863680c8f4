//! IEEE-754 binary32/binary64 arithmetic in software, with the x86 SSE rules.
//!
//! Every operation works on raw bit patterns (`u64`, the low 32 bits for
//! binary32) and an [`Env`] that holds the MXCSR controls (rounding mode,
//! DAZ, FTZ, the underflow mask) and collects the exception flags the
//! operation raises. Results are exact in every rounding mode: a finite
//! value is carried as an integer significand times a power of two, the
//! operation is done exactly (or with a sticky bit standing for the lost
//! low part) and [`round_pack`] rounds once.
//!
//! x86 specifics: a NaN result is the first source's NaN if it has one, else
//! the second's, quieted; invalid operations give the negative default NaN;
//! tininess is detected after rounding (SDM vol. 1 §4.9.1.5); with FTZ and
//! underflow masked a tiny result becomes a signed zero with UE and PE;
//! with DAZ denormal inputs count as signed zeros and do not raise DE.

/// MXCSR bits.
pub mod mx {
    /// Invalid operation.
    pub const IE: u32 = 1 << 0;
    /// Denormal operand.
    pub const DE: u32 = 1 << 1;
    /// Divide by zero.
    pub const ZE: u32 = 1 << 2;
    /// Overflow.
    pub const OE: u32 = 1 << 3;
    /// Underflow.
    pub const UE: u32 = 1 << 4;
    /// Precision (inexact).
    pub const PE: u32 = 1 << 5;
    /// All six exception flags.
    pub const FLAGS: u32 = 0x3f;
    /// Exceptions detected before computing (they suppress the others).
    pub const PRE: u32 = IE | DE | ZE;
    /// Denormals are zeros.
    pub const DAZ: u32 = 1 << 6;
    /// The exception masks are the flags shifted by this.
    pub const MASK_SHIFT: u32 = 7;
    /// Underflow mask.
    pub const UM: u32 = UE << MASK_SHIFT;
    /// Rounding control field shift (2 bits).
    pub const RC_SHIFT: u32 = 13;
    /// Flush to zero.
    pub const FTZ: u32 = 1 << 15;
    /// Bits LDMXCSR/FXRSTOR accept (everything above 15 is reserved).
    pub const MASK: u32 = 0xffff;
    /// Power-on value: all exceptions masked, round to nearest.
    pub const DEFAULT: u32 = 0x1f80;
}

/// Rounding direction (MXCSR.RC encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    Nearest = 0,
    Down = 1,
    Up = 2,
    Zero = 3,
}

impl Round {
    /// Decode a 2-bit RC field.
    pub fn from_rc(rc: u32) -> Round {
        match rc & 3 {
            0 => Round::Nearest,
            1 => Round::Down,
            2 => Round::Up,
            _ => Round::Zero,
        }
    }
}

/// A binary floating-point format: fraction and exponent field widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    /// Stored fraction bits (23 or 52).
    pub man: u32,
    /// Exponent field bits (8 or 11).
    pub exp: u32,
}

/// binary32.
pub const F32: Fmt = Fmt { man: 23, exp: 8 };
/// binary64.
pub const F64: Fmt = Fmt { man: 52, exp: 11 };

impl Fmt {
    /// Total width in bits.
    pub const fn bits(self) -> u32 {
        1 + self.exp + self.man
    }
    /// Mask of the whole value.
    pub const fn mask(self) -> u64 {
        u64::MAX >> (64 - self.bits())
    }
    /// The sign bit.
    pub const fn sign_bit(self) -> u64 {
        1 << (self.bits() - 1)
    }
    const fn bias(self) -> i32 {
        (1 << (self.exp - 1)) - 1
    }
    /// Exponent of the smallest normal number.
    const fn emin(self) -> i32 {
        1 - self.bias()
    }
    /// Exponent of the largest finite number.
    const fn emax(self) -> i32 {
        self.bias()
    }
    const fn exp_mask(self) -> u64 {
        ((1u64 << self.exp) - 1) << self.man
    }
    const fn frac_mask(self) -> u64 {
        (1u64 << self.man) - 1
    }
    /// The quiet bit of a NaN.
    pub const fn quiet_bit(self) -> u64 {
        1 << (self.man - 1)
    }
    /// The x86 default NaN (negative quiet NaN, zero payload).
    pub const fn default_nan(self) -> u64 {
        self.sign_bit() | self.exp_mask() | self.quiet_bit()
    }
    /// Signed zero.
    pub const fn zero(self, sign: bool) -> u64 {
        if sign {
            self.sign_bit()
        } else {
            0
        }
    }
    /// Signed infinity.
    pub const fn inf(self, sign: bool) -> u64 {
        self.zero(sign) | self.exp_mask()
    }
    /// Signed largest finite number.
    const fn max_finite(self, sign: bool) -> u64 {
        self.zero(sign) | (self.exp_mask() - (1 << self.man)) | self.frac_mask()
    }
    /// True for any NaN.
    pub fn is_nan(self, x: u64) -> bool {
        x & self.exp_mask() == self.exp_mask() && x & self.frac_mask() != 0
    }
    /// True for a signalling NaN.
    pub fn is_snan(self, x: u64) -> bool {
        self.is_nan(x) && x & self.quiet_bit() == 0
    }
    /// True for a denormal (subnormal) number.
    pub fn is_denormal(self, x: u64) -> bool {
        x & self.exp_mask() == 0 && x & self.frac_mask() != 0
    }
    /// The sign.
    pub fn sign(self, x: u64) -> bool {
        x & self.sign_bit() != 0
    }
    /// A NaN made quiet.
    pub fn quiet(self, x: u64) -> u64 {
        x | self.quiet_bit()
    }
}

/// The MXCSR controls an operation runs under and the flags it raised.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    /// MXCSR at the start of the instruction (only the controls are read).
    pub mxcsr: u32,
    /// Exception flags raised so far (MXCSR bits 0–5).
    pub flags: u32,
}

impl Env {
    /// An environment with the controls of `mxcsr` and no flags raised.
    pub fn new(mxcsr: u32) -> Env {
        Env { mxcsr, flags: 0 }
    }
    /// The rounding mode.
    pub fn round(&self) -> Round {
        Round::from_rc(self.mxcsr >> mx::RC_SHIFT)
    }
    fn daz(&self) -> bool {
        self.mxcsr & mx::DAZ != 0
    }
    fn ftz(&self) -> bool {
        self.mxcsr & mx::FTZ != 0
    }
    fn overflow_masked(&self) -> bool {
        self.mxcsr & (mx::OE << mx::MASK_SHIFT) != 0
    }
    fn underflow_masked(&self) -> bool {
        self.mxcsr & mx::UM != 0
    }
    fn raise(&mut self, f: u32) {
        self.flags |= f;
    }
}

/// A finite non-zero number: `(-1)^sign * sig * 2^exp`, with `sig`
/// normalised so its top bit is bit `man` of the format.
#[derive(Clone, Copy, Debug)]
struct Num {
    sign: bool,
    exp: i32,
    sig: u64,
}

/// A non-NaN operand.
#[derive(Clone, Copy, Debug)]
enum Val {
    Zero(bool),
    Inf(bool),
    Num(Num),
}

/// Decode a non-NaN value. Returns it and whether it is a denormal that
/// counts (DAZ off); with DAZ a denormal is read as a signed zero.
fn decode(f: Fmt, x: u64, env: &Env) -> (Val, bool) {
    let sign = f.sign(x);
    let e = ((x & f.exp_mask()) >> f.man) as i32;
    let frac = x & f.frac_mask();
    if e == (1 << f.exp) - 1 {
        return (Val::Inf(sign), false);
    }
    if e == 0 {
        if frac == 0 {
            return (Val::Zero(sign), false);
        }
        if env.daz() {
            return (Val::Zero(sign), false);
        }
        // Denormal: normalise the significand.
        let shift = frac.leading_zeros() - (63 - f.man);
        let n = Num {
            sign,
            exp: f.emin() - f.man as i32 - shift as i32,
            sig: frac << shift,
        };
        return (Val::Num(n), true);
    }
    let n = Num {
        sign,
        exp: e - f.bias() - f.man as i32,
        sig: frac | 1 << f.man,
    };
    (Val::Num(n), false)
}

/// Round `sig` right by `shift` bits in direction `rc` (`sticky`: the true
/// value has more non-zero bits below `sig`). Returns the kept part and
/// whether anything was lost. `shift <= 0` is an exact left shift.
fn round_bits(sig: u128, sticky: bool, shift: i32, sign: bool, rc: Round) -> (u128, bool) {
    if shift <= 0 {
        debug_assert!(!sticky, "sticky bits below an exact value");
        return (sig << (-shift) as u32, sticky);
    }
    // Far below the kept part: only "non-zero" matters (the value is less
    // than half a unit).
    let (sig, shift) = if shift > 128 {
        ((sig != 0) as u128, 128)
    } else {
        (sig, shift as u32)
    };
    let kept = if shift >= 128 { 0 } else { sig >> shift };
    let rem = if shift >= 128 {
        sig
    } else {
        sig & ((1u128 << shift) - 1)
    };
    let half = 1u128 << (shift - 1);
    let inexact = rem != 0 || sticky;
    let up = match rc {
        Round::Nearest => rem > half || (rem == half && (sticky || kept & 1 == 1)),
        Round::Down => inexact && sign,
        Round::Up => inexact && !sign,
        Round::Zero => false,
    };
    (kept + up as u128, inexact)
}

/// Round the exact value `(-1)^sign * (sig + s) * 2^exp` to format `f`,
/// where `s` is in (0, 1) when `sticky` and 0 otherwise, raising OE UE PE
/// and applying FTZ. `sig == 0` without sticky gives a signed zero.
fn round_pack(f: Fmt, sign: bool, exp: i32, sig: u128, sticky: bool, env: &mut Env) -> u64 {
    if sig == 0 {
        debug_assert!(!sticky);
        return f.zero(sign);
    }
    let rc = env.round();
    let p = f.man as i32 + 1;
    let n = 128 - sig.leading_zeros() as i32;
    // Round to p bits with an unbounded exponent first: that decides
    // overflow and (after-rounding) tininess.
    let (r, inexact) = round_bits(sig, sticky, n - p, sign, rc);
    let mut top = exp + n - 1;
    let mut r = r;
    if r >> p != 0 {
        top += 1;
        r >>= 1;
    }
    if top > f.emax() {
        // A masked overflow delivers an inexact infinity or MAX. An unmasked
        // one traps; PE then tells whether the significand rounded with an
        // unbounded exponent was inexact (as the host CPU reports it).
        env.raise(if env.overflow_masked() || inexact {
            mx::OE | mx::PE
        } else {
            mx::OE
        });
        let to_inf = match rc {
            Round::Nearest => true,
            Round::Zero => false,
            Round::Down => sign,
            Round::Up => !sign,
        };
        return if to_inf {
            f.inf(sign)
        } else {
            f.max_finite(sign)
        };
    }
    if top < f.emin() {
        return round_tiny(f, sign, exp, sig, sticky, inexact, env);
    }
    if inexact {
        env.raise(mx::PE);
    }
    // r has exactly p bits here.
    let r = r as u64;
    f.zero(sign) | (((top + f.bias()) as u64) << f.man) | (r & f.frac_mask())
}

/// The tiny case of [`round_pack`]: flush (FTZ with underflow masked) or
/// round to the denormal grid.
/// `inexact_unbounded`: rounding to the format's precision with an
/// unbounded exponent lost bits (reported as PE when an unmasked underflow
/// traps).
fn round_tiny(
    f: Fmt,
    sign: bool,
    exp: i32,
    sig: u128,
    sticky: bool,
    inexact_unbounded: bool,
    env: &mut Env,
) -> u64 {
    if env.ftz() && env.underflow_masked() {
        env.raise(mx::UE | mx::PE);
        return f.zero(sign);
    }
    if !env.underflow_masked() {
        // Unmasked: every tiny result traps, exact or not.
        env.raise(if inexact_unbounded {
            mx::UE | mx::PE
        } else {
            mx::UE
        });
        return f.zero(sign);
    }
    let shift = (f.emin() - f.man as i32) - exp;
    let (r, inexact) = round_bits(sig, sticky, shift, sign, env.round());
    if inexact {
        env.raise(mx::UE | mx::PE);
    }
    // r <= 2^man: a carry into bit man encodes the smallest normal.
    f.zero(sign) | r as u64
}

/// NaN operands of a two-operand operation: the first source's NaN wins,
/// quieted; an SNaN raises IE.
fn nan2(f: Fmt, a: u64, b: u64, env: &mut Env) -> Option<u64> {
    let (na, nb) = (f.is_nan(a), f.is_nan(b));
    if !na && !nb {
        return None;
    }
    if f.is_snan(a) || f.is_snan(b) {
        env.raise(mx::IE);
    }
    Some(f.quiet(if na { a } else { b }))
}

fn invalid(f: Fmt, env: &mut Env) -> u64 {
    env.raise(mx::IE);
    f.default_nan()
}

/// Addition (`negate_b`: subtraction). NaN selection uses the operands as
/// given, not the negated second one.
pub fn add(f: Fmt, a: u64, b: u64, negate_b: bool, env: &mut Env) -> u64 {
    if let Some(n) = nan2(f, a, b, env) {
        return n;
    }
    let (va, da) = decode(f, a, env);
    let (vb, db) = decode(f, b, env);
    let vb = if negate_b { negate(vb) } else { vb };
    if let (Val::Inf(x), Val::Inf(y)) = (va, vb) {
        if x != y {
            return invalid(f, env);
        }
    }
    if da || db {
        env.raise(mx::DE);
    }
    match (va, vb) {
        (Val::Inf(s), _) | (_, Val::Inf(s)) => f.inf(s),
        (Val::Zero(x), Val::Zero(y)) => {
            if x == y {
                f.zero(x)
            } else {
                f.zero(env.round() == Round::Down)
            }
        }
        (Val::Zero(_), Val::Num(n)) | (Val::Num(n), Val::Zero(_)) => {
            round_pack(f, n.sign, n.exp, n.sig as u128, false, env)
        }
        (Val::Num(x), Val::Num(y)) => add_num(f, x, y, env),
    }
}

fn negate(v: Val) -> Val {
    match v {
        Val::Zero(s) => Val::Zero(!s),
        Val::Inf(s) => Val::Inf(!s),
        Val::Num(n) => Val::Num(Num { sign: !n.sign, ..n }),
    }
}

/// Exact sum of two finite non-zero numbers, rounded once.
fn add_num(f: Fmt, x: Num, y: Num, env: &mut Env) -> u64 {
    let (big, small) = if x.exp >= y.exp { (x, y) } else { (y, x) };
    let d = (big.exp - small.exp) as u32;
    let (a, b, exp, sticky) = if d <= 64 {
        ((big.sig as u128) << d, small.sig as u128, small.exp, false)
    } else {
        // The small operand is below one unit of `big << 3`: it only
        // matters as a sticky bit (and as a borrow when subtracting).
        ((big.sig as u128) << 3, 0, big.exp - 3, true)
    };
    if big.sign == small.sign {
        return round_pack(f, big.sign, exp, a + b, sticky, env);
    }
    if sticky {
        return round_pack(f, big.sign, exp, a - 1, true, env);
    }
    if a == b {
        return f.zero(env.round() == Round::Down);
    }
    if a > b {
        round_pack(f, big.sign, exp, a - b, false, env)
    } else {
        round_pack(f, small.sign, exp, b - a, false, env)
    }
}

/// Multiplication.
pub fn mul(f: Fmt, a: u64, b: u64, env: &mut Env) -> u64 {
    if let Some(n) = nan2(f, a, b, env) {
        return n;
    }
    let (va, da) = decode(f, a, env);
    let (vb, db) = decode(f, b, env);
    let sign = f.sign(a) != f.sign(b);
    match (va, vb) {
        (Val::Inf(_), Val::Zero(_)) | (Val::Zero(_), Val::Inf(_)) => return invalid(f, env),
        _ => {}
    }
    if da || db {
        env.raise(mx::DE);
    }
    match (va, vb) {
        (Val::Inf(_), _) | (_, Val::Inf(_)) => f.inf(sign),
        (Val::Zero(_), _) | (_, Val::Zero(_)) => f.zero(sign),
        (Val::Num(x), Val::Num(y)) => {
            let p = x.sig as u128 * y.sig as u128;
            round_pack(f, sign, x.exp + y.exp, p, false, env)
        }
    }
}

/// Division.
pub fn div(f: Fmt, a: u64, b: u64, env: &mut Env) -> u64 {
    if let Some(n) = nan2(f, a, b, env) {
        return n;
    }
    let (va, da) = decode(f, a, env);
    let (vb, db) = decode(f, b, env);
    let sign = f.sign(a) != f.sign(b);
    match (va, vb) {
        (Val::Inf(_), Val::Inf(_)) | (Val::Zero(_), Val::Zero(_)) => return invalid(f, env),
        (Val::Num(_), Val::Zero(_)) => {
            // Divide-by-zero outranks the denormal-operand exception.
            env.raise(mx::ZE);
            return f.inf(sign);
        }
        _ => {}
    }
    if da || db {
        env.raise(mx::DE);
    }
    match (va, vb) {
        (Val::Inf(_), _) => f.inf(sign),
        (_, Val::Inf(_)) | (Val::Zero(_), _) => f.zero(sign),
        (Val::Num(x), Val::Num(y)) => {
            const SH: u32 = 64;
            let n = (x.sig as u128) << SH;
            let d = y.sig as u128;
            let (q, r) = (n / d, n % d);
            round_pack(f, sign, x.exp - y.exp - SH as i32, q, r != 0, env)
        }
        (Val::Num(_), Val::Zero(_)) => f.inf(sign),
    }
}

/// Square root.
pub fn sqrt(f: Fmt, a: u64, env: &mut Env) -> u64 {
    if f.is_nan(a) {
        if f.is_snan(a) {
            env.raise(mx::IE);
        }
        return f.quiet(a);
    }
    let (va, da) = decode(f, a, env);
    match va {
        Val::Zero(s) => return f.zero(s),
        Val::Inf(false) => return f.inf(false),
        Val::Inf(true) => return invalid(f, env),
        Val::Num(n) if n.sign => return invalid(f, env),
        Val::Num(_) => {}
    }
    if da {
        env.raise(mx::DE);
    }
    let Val::Num(n) = va else { unreachable!() };
    // sqrt(sig * 2^exp) with an even exponent and ~60 result bits.
    let (sig, exp) = if n.exp & 1 != 0 {
        ((n.sig as u128) << 1, n.exp - 1)
    } else {
        (n.sig as u128, n.exp)
    };
    const SH: i32 = 66;
    let m = sig << SH;
    let r = m.isqrt();
    round_pack(f, false, (exp - SH) / 2, r, r * r != m, env)
}

/// MIN (`max == false`) or MAX: `a op b ? a : b`. A NaN in either operand
/// (quiet ones included) raises IE and returns `b` as it is; so do two
/// zeros of any signs (without IE).
pub fn minmax(f: Fmt, a: u64, b: u64, max: bool, env: &mut Env) -> u64 {
    let pick = if f.is_nan(a) || f.is_nan(b) {
        env.raise(mx::IE);
        b
    } else {
        let (va, da) = decode(f, a, env);
        let (vb, db) = decode(f, b, env);
        if da || db {
            env.raise(mx::DE);
        }
        let a_wins = if max { less(vb, va) } else { less(va, vb) };
        if a_wins {
            a
        } else {
            b
        }
    };
    // With DAZ a denormal operand is a zero, also as the result (even the
    // second operand returned because of a NaN).
    if env.daz() && f.is_denormal(pick) {
        pick & f.sign_bit()
    } else {
        pick
    }
}

/// Ordered comparison key of a non-NaN value.
fn less(a: Val, b: Val) -> bool {
    key(a) < key(b)
}

/// A total order on non-NaN values consistent with IEEE `<` (zeros equal).
fn key(v: Val) -> (i8, i64, i128) {
    match v {
        Val::Zero(_) => (0, 0, 0),
        Val::Inf(s) => (if s { -2 } else { 2 }, 0, 0),
        Val::Num(n) => {
            let (e, m) = (n.exp as i64, n.sig as i128);
            if n.sign {
                (-1, -e, -m)
            } else {
                (1, e, m)
            }
        }
    }
}

/// Result of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Less,
    Equal,
    Greater,
    Unordered,
}

/// Compare `a` with `b`. IE for an SNaN, and for a QNaN when `signalling`
/// (COMIS*, the LT/LE/NLT/NLE predicates); DE for denormal operands.
pub fn compare(f: Fmt, a: u64, b: u64, signalling: bool, env: &mut Env) -> Cmp {
    if f.is_nan(a) || f.is_nan(b) {
        if signalling || f.is_snan(a) || f.is_snan(b) {
            env.raise(mx::IE);
        }
        return Cmp::Unordered;
    }
    let (va, da) = decode(f, a, env);
    let (vb, db) = decode(f, b, env);
    if da || db {
        env.raise(mx::DE);
    }
    let (ka, kb) = (key(va), key(vb));
    match ka.cmp(&kb) {
        core::cmp::Ordering::Less => Cmp::Less,
        core::cmp::Ordering::Equal => Cmp::Equal,
        core::cmp::Ordering::Greater => Cmp::Greater,
    }
}

/// CMPPS/CMPPD/CMPSS/CMPSD predicate `imm & 7`: true or false.
pub fn cmp_predicate(f: Fmt, a: u64, b: u64, pred: u8, env: &mut Env) -> bool {
    let signalling = matches!(pred & 3, 1 | 2);
    let c = compare(f, a, b, signalling, env);
    let r = match pred & 3 {
        0 => c == Cmp::Equal,
        1 => c == Cmp::Less,
        2 => c == Cmp::Less || c == Cmp::Equal,
        _ => c == Cmp::Unordered,
    };
    // Predicates 4–7 are the negations of 0–3 (unordered included).
    if pred & 4 != 0 {
        !r
    } else {
        r
    }
}

/// Convert between binary32 and binary64 (CVTSS2SD, CVTSD2SS, …).
pub fn convert(from: Fmt, to: Fmt, a: u64, env: &mut Env) -> u64 {
    if from.is_nan(a) {
        if from.is_snan(a) {
            env.raise(mx::IE);
        }
        // Keep the top fraction bits (the payload is left-aligned).
        let frac = a & from.frac_mask() | from.quiet_bit();
        let frac = if to.man >= from.man {
            frac << (to.man - from.man)
        } else {
            frac >> (from.man - to.man)
        };
        return to.zero(from.sign(a)) | to.exp_mask() | frac;
    }
    let (v, d) = decode(from, a, env);
    if d {
        env.raise(mx::DE);
    }
    match v {
        Val::Zero(s) => to.zero(s),
        Val::Inf(s) => to.inf(s),
        Val::Num(n) => round_pack(to, n.sign, n.exp, n.sig as u128, false, env),
    }
}

/// Signed integer to float (CVTSI2SS, CVTDQ2PD, …).
pub fn from_int(f: Fmt, v: i64, env: &mut Env) -> u64 {
    round_pack(f, v < 0, 0, v.unsigned_abs() as u128, false, env)
}

/// Float to signed integer of `bits` (32 or 64) bits, rounding by MXCSR.RC
/// or truncating. NaN, infinity and out-of-range values give the integer
/// indefinite (only the sign bit set) with IE.
pub fn to_int(f: Fmt, a: u64, bits: u32, truncate: bool, env: &mut Env) -> u64 {
    let indefinite = 1u64 << (bits - 1);
    if f.is_nan(a) {
        env.raise(mx::IE);
        return indefinite;
    }
    let (v, _) = decode(f, a, env);
    let n = match v {
        Val::Zero(_) => return 0,
        Val::Inf(_) => {
            env.raise(mx::IE);
            return indefinite;
        }
        Val::Num(n) => n,
    };
    let rc = if truncate { Round::Zero } else { env.round() };
    let (mag, inexact) = if n.exp >= 0 {
        if n.exp > 64 {
            env.raise(mx::IE);
            return indefinite;
        }
        ((n.sig as u128) << n.exp, false)
    } else {
        round_bits(n.sig as u128, false, -n.exp, n.sign, rc)
    };
    let limit = if n.sign {
        1u128 << (bits - 1)
    } else {
        (1u128 << (bits - 1)) - 1
    };
    if mag > limit {
        env.raise(mx::IE);
        return indefinite;
    }
    if inexact {
        env.raise(mx::PE);
    }
    let v = if n.sign {
        (mag as u64).wrapping_neg()
    } else {
        mag as u64
    };
    v & (u64::MAX >> (64 - bits))
}

/// RCPPS/RCPSS and RSQRTPS/RSQRTSS on binary32: an approximation with a
/// relative error below 2^-12, raising no flags and ignoring MXCSR. Our
/// approximation is the exact value rounded to 12 fraction bits (nearest),
/// so it is deterministic but not bit-identical to any particular CPU.
/// Denormal inputs count as zeros; results below the normal range flush to
/// zero (as on Intel CPUs).
pub fn approx(a: u64, rsqrt: bool) -> u64 {
    let f = F32;
    let a = a & f.mask();
    if f.is_nan(a) {
        return f.quiet(a);
    }
    let env = Env::new(mx::DEFAULT | mx::DAZ);
    let (v, _) = decode(f, a, &env);
    match v {
        Val::Zero(s) => return f.inf(s),
        Val::Inf(s) if !rsqrt => return f.zero(s),
        Val::Inf(false) => return 0,
        Val::Inf(true) => return f.default_nan(),
        Val::Num(n) if rsqrt && n.sign => return f.default_nan(),
        Val::Num(_) => {}
    }
    let mut env = Env::new(mx::DEFAULT | mx::FTZ);
    let x = if rsqrt {
        let s = sqrt(f, a, &mut Env::new(mx::DEFAULT));
        // 1/sqrt(x) from a correctly rounded sqrt: the 2^-24 error is far
        // below the 12-bit truncation that follows.
        div(f, 0x3f80_0000, s, &mut env)
    } else {
        div(f, 0x3f80_0000, a, &mut env)
    };
    // Round to 12 fraction bits, to nearest.
    let drop = f.man - 11;
    let half = 1u64 << (drop - 1);
    let r = ((x + half) >> drop) << drop;
    if r & f.exp_mask() == f.exp_mask() {
        // Rounding up carried into the infinity encoding: stay finite.
        return x & !((1 << drop) - 1);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::new(mx::DEFAULT)
    }

    #[test]
    fn basic_arithmetic_matches_host_in_nearest() {
        let vals = [
            1.0f64,
            -2.5,
            3.0e-310,
            1.0e308,
            -7.25,
            0.1,
            1.0 / 3.0,
            5e-324,
        ];
        for &x in &vals {
            for &y in &vals {
                let (a, b) = (x.to_bits(), y.to_bits());
                assert_eq!(
                    add(F64, a, b, false, &mut env()),
                    (x + y).to_bits(),
                    "{x}+{y}"
                );
                assert_eq!(
                    add(F64, a, b, true, &mut env()),
                    (x - y).to_bits(),
                    "{x}-{y}"
                );
                assert_eq!(mul(F64, a, b, &mut env()), (x * y).to_bits(), "{x}*{y}");
                assert_eq!(div(F64, a, b, &mut env()), (x / y).to_bits(), "{x}/{y}");
            }
            if x >= 0.0 {
                assert_eq!(sqrt(F64, x.to_bits(), &mut env()), x.sqrt().to_bits());
            }
        }
    }

    #[test]
    fn invalid_gives_negative_default_nan() {
        let mut e = env();
        let inf = f32::INFINITY.to_bits() as u64;
        assert_eq!(add(F32, inf, inf, true, &mut e), 0xffc0_0000);
        assert_eq!(e.flags, mx::IE);
    }

    #[test]
    fn to_int_overflow_is_indefinite() {
        let mut e = env();
        assert_eq!(to_int(F64, 3e9f64.to_bits(), 32, true, &mut e), 0x8000_0000);
        assert_eq!(e.flags, mx::IE);
        let mut e = env();
        assert_eq!(
            to_int(F64, (-2.5f64).to_bits(), 32, false, &mut e),
            0xffff_fffe
        );
        assert_eq!(e.flags, mx::PE);
    }
}
