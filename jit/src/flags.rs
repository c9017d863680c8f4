//! RFLAGS and lazy arithmetic flags.
//!
//! Flag-setting instructions record *what they did* (`CcOp` plus up to three
//! operands) instead of computing CF PF AF ZF SF OF. The flags are computed
//! only when something reads them. The computation is written once, generic
//! over [`Ops`], so the interpreter evaluates it on numbers and the JIT emits
//! it as IR (where the operation is usually known at compile time, so a
//! `cmp; jl` becomes one signed compare).
//!
//! Operand conventions per kind (`dst` = result, all values zero-extended):
//!
//! | kind | src | src2 |
//! |---|---|---|
//! | `Add`, `Sub` | second operand | – |
//! | `Adc`, `Sbb` | second operand | carry/borrow in (0/1) |
//! | `Logic` | – | – |
//! | `Inc`, `Dec` | – | CF before the instruction (0/1) |
//! | `Shl` | value << (count-1), 64-bit | – |
//! | `Shr` | value >> (count-1) | original value |
//! | `Sar` | sext(value) >> (count-1) | – |
//! | `Mul` | non-zero iff CF=OF=1 | – |
//! | `Blsi` | source operand | – |
//! | `Blsr` | source operand | – |
//! | `Eflags` | flags are in `rflags` | – |

use crate::emit::{Ops, Width};
use crate::state::CpuState;

bitflags::bitflags! {
    /// A set of RFLAGS bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct FlagSet: u64 {
        const CF = 1 << 0;
        const PF = 1 << 2;
        const AF = 1 << 4;
        const ZF = 1 << 6;
        const SF = 1 << 7;
        const TF = 1 << 8;
        const IF = 1 << 9;
        const DF = 1 << 10;
        const OF = 1 << 11;
        const IOPL = 3 << 12;
        const NT = 1 << 14;
        const RF = 1 << 16;
        const VM = 1 << 17;
        const AC = 1 << 18;
        const VIF = 1 << 19;
        const VIP = 1 << 20;
        const ID = 1 << 21;
    }
}

impl FlagSet {
    /// The six arithmetic flags the lazy machinery covers.
    pub const ARITH: FlagSet = FlagSet::CF
        .union(FlagSet::PF)
        .union(FlagSet::AF)
        .union(FlagSet::ZF)
        .union(FlagSet::SF)
        .union(FlagSet::OF);

    /// From iced-x86's `RflagsBits` encoding (OF=1 SF=2 ZF=4 AF=8 CF=0x10
    /// PF=0x20 DF=0x40 IF=0x80 AC=0x100 …).
    pub fn from_iced(bits: u32) -> FlagSet {
        let map: [(u32, FlagSet); 8] = [
            (0x01, FlagSet::OF),
            (0x02, FlagSet::SF),
            (0x04, FlagSet::ZF),
            (0x08, FlagSet::AF),
            (0x10, FlagSet::CF),
            (0x20, FlagSet::PF),
            (0x40, FlagSet::DF),
            (0x80, FlagSet::IF),
        ];
        let mut out = FlagSet::empty();
        for (b, f) in map {
            if bits & b != 0 {
                out |= f;
            }
        }
        if bits & !0xff != 0 {
            // AC, UIF and the rest: rarely involved; treat as "all system
            // flags" so liveness stays conservative.
            out |= FlagSet::AC | FlagSet::TF | FlagSet::NT | FlagSet::RF | FlagSet::ID;
        }
        out
    }
}

/// RFLAGS bit 1 is always set.
pub const RFLAGS_FIXED: u64 = 0x2;
/// Bits of RFLAGS that exist (POPF and friends cannot set others).
pub const RFLAGS_WRITABLE: u64 = 0x3f_7fd5;

/// Kind of the last flag-setting operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CcKind {
    Eflags = 0,
    Add,
    Adc,
    Sub,
    Sbb,
    Logic,
    Inc,
    Dec,
    Shl,
    Shr,
    Sar,
    Mul,
    Blsi,
    Blsr,
}

impl CcKind {
    const ALL: [CcKind; 14] = [
        CcKind::Eflags,
        CcKind::Add,
        CcKind::Adc,
        CcKind::Sub,
        CcKind::Sbb,
        CcKind::Logic,
        CcKind::Inc,
        CcKind::Dec,
        CcKind::Shl,
        CcKind::Shr,
        CcKind::Sar,
        CcKind::Mul,
        CcKind::Blsi,
        CcKind::Blsr,
    ];
}

/// A lazy-flags operation: kind and operand width, packed in one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CcOp(u8);

impl CcOp {
    /// Flags live in `rflags`.
    pub const EFLAGS: CcOp = CcOp(0);

    /// The operation `kind` on operands of width `w`.
    #[inline(always)]
    pub const fn new(kind: CcKind, w: Width) -> CcOp {
        CcOp(((kind as u8) << 2) | w.index())
    }
    /// Kind of operation.
    #[inline(always)]
    pub fn kind(self) -> CcKind {
        CcKind::ALL
            .get((self.0 >> 2) as usize)
            .copied()
            .unwrap_or(CcKind::Eflags)
    }
    /// Operand width.
    #[inline(always)]
    pub fn width(self) -> Width {
        Width::from_index(self.0)
    }
    /// The packed byte (stored in `CpuState::cc_op`).
    #[inline(always)]
    pub const fn raw(self) -> u8 {
        self.0
    }
    /// Inverse of [`CcOp::raw`]; unknown values mean `EFLAGS`.
    #[inline(always)]
    pub fn from_raw(v: u64) -> CcOp {
        if (v >> 2) < CcKind::ALL.len() as u64 {
            CcOp(v as u8)
        } else {
            CcOp::EFLAGS
        }
    }
}

/// x86 condition codes in encoding order (the low nibble of Jcc/SETcc/CMOVcc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    O = 0,
    No,
    B,
    Ae,
    E,
    Ne,
    Be,
    A,
    S,
    Ns,
    P,
    Np,
    L,
    Ge,
    Le,
    G,
}

impl Cond {
    /// The condition with encoding `n` (0–15).
    pub fn from_index(n: u8) -> Cond {
        const ALL: [Cond; 16] = [
            Cond::O,
            Cond::No,
            Cond::B,
            Cond::Ae,
            Cond::E,
            Cond::Ne,
            Cond::Be,
            Cond::A,
            Cond::S,
            Cond::Ns,
            Cond::P,
            Cond::Np,
            Cond::L,
            Cond::Ge,
            Cond::Le,
            Cond::G,
        ];
        ALL[(n & 15) as usize]
    }

    /// From iced-x86's `ConditionCode` (None → `None`).
    pub fn from_iced(cc: iced_x86::ConditionCode) -> Option<Cond> {
        use iced_x86::ConditionCode as C;
        Some(match cc {
            C::None => return None,
            C::o => Cond::O,
            C::no => Cond::No,
            C::b => Cond::B,
            C::ae => Cond::Ae,
            C::e => Cond::E,
            C::ne => Cond::Ne,
            C::be => Cond::Be,
            C::a => Cond::A,
            C::s => Cond::S,
            C::ns => Cond::Ns,
            C::p => Cond::P,
            C::np => Cond::Np,
            C::l => Cond::L,
            C::ge => Cond::Ge,
            C::le => Cond::Le,
            C::g => Cond::G,
        })
    }

    /// Flags this condition reads.
    pub fn reads(self) -> FlagSet {
        match self as u8 >> 1 {
            0 => FlagSet::OF,
            1 => FlagSet::CF,
            2 => FlagSet::ZF,
            3 => FlagSet::CF | FlagSet::ZF,
            4 => FlagSet::SF,
            5 => FlagSet::PF,
            6 => FlagSet::SF | FlagSet::OF,
            _ => FlagSet::SF | FlagSet::OF | FlagSet::ZF,
        }
    }
}

/// The lazy flag state as values of some backend.
#[derive(Clone, Copy, Debug)]
pub struct Lazy<V> {
    pub op: CcOp,
    pub dst: V,
    pub src: V,
    pub src2: V,
    /// RFLAGS (meaningful for the arithmetic bits only when `op` is EFLAGS).
    pub rflags: V,
}

/// One arithmetic flag of the lazy state, as 0 or 1.
pub fn flag<O: Ops>(o: &mut O, f: FlagSet, l: &Lazy<O::V>) -> O::V {
    let w = l.op.width();
    let kind = l.op.kind();
    if kind == CcKind::Eflags {
        let pos = f.bits().trailing_zeros();
        return o.bit(l.rflags, pos);
    }
    match f {
        FlagSet::ZF => {
            let d = o.zext(l.dst, w);
            o.is_zero(d)
        }
        FlagSet::SF => o.bit(l.dst, w.bits() - 1),
        FlagSet::PF => {
            let b = o.and_imm(l.dst, 0xff);
            let n = o.popcnt(b);
            let odd = o.and_imm(n, 1);
            let one = o.imm(1);
            o.xor(odd, one)
        }
        FlagSet::CF => carry(o, kind, w, l),
        FlagSet::OF => overflow(o, kind, w, l),
        FlagSet::AF => aux_carry(o, kind, l),
        _ => o.imm(0),
    }
}

/// The first operand of an add/sub recovered from result and second operand.
fn first_operand<O: Ops>(o: &mut O, kind: CcKind, l: &Lazy<O::V>) -> O::V {
    match kind {
        CcKind::Add => o.sub(l.dst, l.src),
        CcKind::Adc => {
            let t = o.sub(l.dst, l.src);
            o.sub(t, l.src2)
        }
        CcKind::Sub => o.add(l.dst, l.src),
        CcKind::Sbb => {
            let t = o.add(l.dst, l.src);
            o.add(t, l.src2)
        }
        CcKind::Inc => o.add_imm(l.dst, u64::MAX),
        CcKind::Dec => o.add_imm(l.dst, 1),
        _ => o.imm(0),
    }
}

fn carry<O: Ops>(o: &mut O, kind: CcKind, w: Width, l: &Lazy<O::V>) -> O::V {
    match kind {
        CcKind::Add => {
            let d = o.zext(l.dst, w);
            let s = o.zext(l.src, w);
            o.ult(d, s)
        }
        CcKind::Adc => {
            // With a carry in, res == src also means a carry out.
            let d = o.zext(l.dst, w);
            let s = o.zext(l.src, w);
            let lt = o.ult(d, s);
            let le = o.ule(d, s);
            o.select(l.src2, le, lt)
        }
        CcKind::Sub | CcKind::Sbb => {
            let a = first_operand(o, kind, l);
            let a = o.zext(a, w);
            let s = o.zext(l.src, w);
            let lt = o.ult(a, s);
            if kind == CcKind::Sub {
                lt
            } else {
                let le = o.ule(a, s);
                o.select(l.src2, le, lt)
            }
        }
        CcKind::Inc | CcKind::Dec => l.src2,
        CcKind::Shl => o.bit(l.src, w.bits() - 1),
        CcKind::Shr | CcKind::Sar => o.and_imm(l.src, 1),
        CcKind::Mul => {
            let z = o.imm(0);
            o.ne(l.src, z)
        }
        CcKind::Blsi => {
            let s = o.zext(l.src, w);
            let z = o.imm(0);
            o.ne(s, z)
        }
        CcKind::Blsr => {
            let s = o.zext(l.src, w);
            o.is_zero(s)
        }
        CcKind::Logic | CcKind::Eflags => o.imm(0),
    }
}

fn overflow<O: Ops>(o: &mut O, kind: CcKind, w: Width, l: &Lazy<O::V>) -> O::V {
    let top = w.bits() - 1;
    match kind {
        CcKind::Add | CcKind::Adc => {
            let a = first_operand(o, kind, l);
            let x = o.xor(a, l.dst);
            let y = o.xor(l.src, l.dst);
            let t = o.and(x, y);
            o.bit(t, top)
        }
        CcKind::Sub | CcKind::Sbb => {
            let a = first_operand(o, kind, l);
            let x = o.xor(a, l.src);
            let y = o.xor(a, l.dst);
            let t = o.and(x, y);
            o.bit(t, top)
        }
        CcKind::Inc => {
            let d = o.zext(l.dst, w);
            let m = o.imm(w.sign_bit());
            o.eq(d, m)
        }
        CcKind::Dec => {
            let d = o.zext(l.dst, w);
            let m = o.imm(w.sign_bit() - 1);
            o.eq(d, m)
        }
        CcKind::Shl => {
            let c = o.bit(l.src, top);
            let s = o.bit(l.dst, top);
            o.xor(c, s)
        }
        CcKind::Shr => o.bit(l.src2, top),
        CcKind::Mul => {
            let z = o.imm(0);
            o.ne(l.src, z)
        }
        CcKind::Sar | CcKind::Logic | CcKind::Blsi | CcKind::Blsr | CcKind::Eflags => o.imm(0),
    }
}

fn aux_carry<O: Ops>(o: &mut O, kind: CcKind, l: &Lazy<O::V>) -> O::V {
    match kind {
        CcKind::Add | CcKind::Adc | CcKind::Sub | CcKind::Sbb => {
            let a = first_operand(o, kind, l);
            let x = o.xor(a, l.src);
            let x = o.xor(x, l.dst);
            o.bit(x, 4)
        }
        CcKind::Inc => {
            let d = o.and_imm(l.dst, 0xf);
            o.is_zero(d)
        }
        CcKind::Dec => {
            let d = o.and_imm(l.dst, 0xf);
            let f = o.imm(0xf);
            o.eq(d, f)
        }
        _ => o.imm(0),
    }
}

/// Evaluate a condition code (0 or 1). Common pairs take a direct path
/// (`cmp` followed by `jb`/`jl`/`jle` is one compare).
pub fn cond<O: Ops>(o: &mut O, cc: Cond, l: &Lazy<O::V>) -> O::V {
    let base = base_cond(o, cc, l);
    if (cc as u8) & 1 != 0 {
        let one = o.imm(1);
        o.xor(base, one)
    } else {
        base
    }
}

fn base_cond<O: Ops>(o: &mut O, cc: Cond, l: &Lazy<O::V>) -> O::V {
    let kind = l.op.kind();
    let w = l.op.width();
    if kind == CcKind::Sub {
        // a = dst + src; compare a with src directly.
        match cc as u8 >> 1 {
            1 | 3 | 6 | 7 => {
                let a = o.add(l.dst, l.src);
                return match cc as u8 >> 1 {
                    1 => {
                        let a = o.zext(a, w);
                        let b = o.zext(l.src, w);
                        o.ult(a, b)
                    }
                    3 => {
                        let a = o.zext(a, w);
                        let b = o.zext(l.src, w);
                        o.ule(a, b)
                    }
                    6 => {
                        let a = o.sext(a, w);
                        let b = o.sext(l.src, w);
                        o.slt(a, b)
                    }
                    _ => {
                        let a = o.sext(a, w);
                        let b = o.sext(l.src, w);
                        o.sle(a, b)
                    }
                };
            }
            _ => {}
        }
    }
    match cc as u8 >> 1 {
        0 => flag(o, FlagSet::OF, l),
        1 => flag(o, FlagSet::CF, l),
        2 => flag(o, FlagSet::ZF, l),
        3 => {
            let c = flag(o, FlagSet::CF, l);
            let z = flag(o, FlagSet::ZF, l);
            o.or(c, z)
        }
        4 => flag(o, FlagSet::SF, l),
        5 => flag(o, FlagSet::PF, l),
        6 => {
            let s = flag(o, FlagSet::SF, l);
            let v = flag(o, FlagSet::OF, l);
            o.xor(s, v)
        }
        _ => {
            let s = flag(o, FlagSet::SF, l);
            let v = flag(o, FlagSet::OF, l);
            let lt = o.xor(s, v);
            let z = flag(o, FlagSet::ZF, l);
            o.or(lt, z)
        }
    }
}

/// RFLAGS with the six arithmetic flags computed from the lazy state.
pub fn materialize<O: Ops>(o: &mut O, l: &Lazy<O::V>) -> O::V {
    if l.op.kind() == CcKind::Eflags {
        return l.rflags;
    }
    let mut acc = o.and_imm(l.rflags, !FlagSet::ARITH.bits());
    for f in [
        FlagSet::CF,
        FlagSet::PF,
        FlagSet::AF,
        FlagSet::ZF,
        FlagSet::SF,
        FlagSet::OF,
    ] {
        let v = flag(o, f, l);
        let s = o.imm(f.bits().trailing_zeros() as u64);
        let v = o.shl(v, s);
        acc = o.or(acc, v);
    }
    acc
}

/// The lazy state of a concrete CPU.
#[inline(always)]
pub fn lazy_of(s: &CpuState) -> Lazy<u64> {
    Lazy {
        op: CcOp::from_raw(s.cc_op),
        dst: s.cc_dst,
        src: s.cc_src,
        src2: s.cc_src2,
        rflags: s.rflags,
    }
}

/// RFLAGS of a concrete CPU, all bits valid.
pub fn materialize_concrete(s: &CpuState) -> u64 {
    materialize(&mut crate::emit::Concrete, &lazy_of(s))
}

/// A condition evaluated on a concrete CPU.
#[inline]
pub fn cond_concrete(s: &CpuState, cc: Cond) -> bool {
    cond(&mut crate::emit::Concrete, cc, &lazy_of(s)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::Concrete;

    fn lazy(op: CcOp, dst: u64, src: u64, src2: u64) -> Lazy<u64> {
        Lazy {
            op,
            dst,
            src,
            src2,
            rflags: RFLAGS_FIXED,
        }
    }

    #[test]
    fn sub_flags_match_comparisons() {
        for (a, b) in [(5u64, 7u64), (7, 5), (0x80, 1), (0, 0), (0xff, 0x7f)] {
            let w = Width::B;
            let r = a.wrapping_sub(b) & 0xff;
            let l = lazy(CcOp::new(CcKind::Sub, w), r, b, 0);
            let f = materialize(&mut Concrete, &l);
            assert_eq!(f & 1 != 0, a < b, "CF {a} {b}");
            assert_eq!(f & 0x40 != 0, a == b);
            let (sa, sb) = (a as u8 as i8, b as u8 as i8);
            assert_eq!(cond(&mut Concrete, Cond::L, &l) != 0, sa < sb);
            assert_eq!(cond(&mut Concrete, Cond::Le, &l) != 0, sa <= sb);
            let sf = f & 0x80 != 0;
            let of = f & 0x800 != 0;
            assert_eq!(sf != of, sa < sb);
        }
    }

    #[test]
    fn cc_op_roundtrip() {
        let op = CcOp::new(CcKind::Sbb, Width::W);
        assert_eq!(CcOp::from_raw(op.raw() as u64), op);
        assert_eq!(op.kind(), CcKind::Sbb);
        assert_eq!(op.width(), Width::W);
        assert_eq!(CcOp::from_raw(0xff), CcOp::EFLAGS);
    }
}
