//! The emitter traits every instruction's semantics are written against.
//!
//! [`Ops`] is pure value arithmetic on 64-bit values; [`Emitter`] adds the
//! CPU state, guest memory, lazy flags and control flow. The interpreter
//! implements both on concrete `u64`s (so a call *is* the operation), the JIT
//! implements them on Cranelift values (so a call *emits* the operation). A
//! semantic function `fn add<E: Emitter>(e: &mut E, insn: &Insn)` is therefore
//! the single definition of ADD for both engines.
//!
//! Rules for semantic code:
//! - All values are 64 bits wide; narrower operands are zero-extended and the
//!   width is passed where it matters ([`Width`]).
//! - Do every fallible step (loads, stores, `raise_if`) before the first
//!   write to registers or flags, so a faulting instruction leaves no trace.
//! - Use `when` only for effects that really are conditional (a shift by a
//!   zero count leaves the flags alone); prefer `select` for values.

use crate::exception::Exception;
use crate::flags::{CcOp, Cond, FlagSet};
use crate::state::{Gpr, Seg};

/// Operand width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Width {
    B = 1,
    W = 2,
    D = 4,
    Q = 8,
}

impl Width {
    /// Width in bytes.
    #[inline(always)]
    pub const fn bytes(self) -> u32 {
        self as u32
    }

    /// Width in bits.
    #[inline(always)]
    pub const fn bits(self) -> u32 {
        self as u32 * 8
    }

    /// All-ones mask of this width.
    #[inline(always)]
    pub const fn mask(self) -> u64 {
        match self {
            Width::B => 0xff,
            Width::W => 0xffff,
            Width::D => 0xffff_ffff,
            Width::Q => u64::MAX,
        }
    }

    /// The sign bit of this width.
    #[inline(always)]
    pub const fn sign_bit(self) -> u64 {
        1 << (self.bits() - 1)
    }

    /// Index 0–3 (B, W, D, Q), used to pack widths into small codes.
    #[inline(always)]
    pub const fn index(self) -> u8 {
        match self {
            Width::B => 0,
            Width::W => 1,
            Width::D => 2,
            Width::Q => 3,
        }
    }

    /// Inverse of [`Width::index`].
    #[inline(always)]
    pub const fn from_index(i: u8) -> Width {
        match i & 3 {
            0 => Width::B,
            1 => Width::W,
            2 => Width::D,
            _ => Width::Q,
        }
    }

    /// Width of `n` bytes (1, 2, 4, 8).
    pub const fn from_bytes(n: u32) -> Option<Width> {
        match n {
            1 => Some(Width::B),
            2 => Some(Width::W),
            4 => Some(Width::D),
            8 => Some(Width::Q),
            _ => None,
        }
    }
}

/// Why a semantic function stopped before retiring its instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The instruction faulted; it did not retire and changed nothing.
    Fault(Exception),
    /// A REP string instruction ran out of budget between iterations: the
    /// iterations done are counted, RCX/RSI/RDI are updated and RIP stays on
    /// the instruction so it resumes later.
    Restart,
}

impl From<Exception> for Stop {
    fn from(e: Exception) -> Stop {
        Stop::Fault(e)
    }
}

/// Result type of semantic functions.
pub type SemResult<T = ()> = Result<T, Stop>;

/// Pure arithmetic on 64-bit values. Comparisons return 0 or 1.
pub trait Ops {
    /// A 64-bit value (a `u64` in the interpreter, an SSA value in the JIT).
    type V: Copy;

    fn imm(&mut self, v: u64) -> Self::V;
    fn add(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// High 64 bits of the unsigned 128-bit product.
    fn umulhi(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// High 64 bits of the signed 128-bit product.
    fn smulhi(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn and(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn or(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn xor(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn not(&mut self, a: Self::V) -> Self::V;
    fn neg(&mut self, a: Self::V) -> Self::V;
    /// Shift left by `n & 63`.
    fn shl(&mut self, a: Self::V, n: Self::V) -> Self::V;
    /// Logical shift right by `n & 63`.
    fn shr(&mut self, a: Self::V, n: Self::V) -> Self::V;
    /// Arithmetic shift right by `n & 63`.
    fn sar(&mut self, a: Self::V, n: Self::V) -> Self::V;
    /// Rotate left by `n & 63`.
    fn rotl(&mut self, a: Self::V, n: Self::V) -> Self::V;
    /// Rotate right by `n & 63`.
    fn rotr(&mut self, a: Self::V, n: Self::V) -> Self::V;
    fn eq(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn ne(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// Unsigned a < b.
    fn ult(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// Unsigned a <= b.
    fn ule(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// Signed (64-bit) a < b.
    fn slt(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// Signed (64-bit) a <= b.
    fn sle(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// `c != 0 ? a : b`.
    fn select(&mut self, c: Self::V, a: Self::V, b: Self::V) -> Self::V;
    fn popcnt(&mut self, a: Self::V) -> Self::V;
    /// Count trailing zeros; 64 for 0.
    fn ctz(&mut self, a: Self::V) -> Self::V;
    /// Count leading zeros; 64 for 0.
    fn clz(&mut self, a: Self::V) -> Self::V;
    /// Byte-swap all 64 bits.
    fn bswap(&mut self, a: Self::V) -> Self::V;

    /// Zero-extend the low `w` bits of `a`.
    #[inline(always)]
    fn zext(&mut self, a: Self::V, w: Width) -> Self::V {
        if w == Width::Q {
            a
        } else {
            let m = self.imm(w.mask());
            self.and(a, m)
        }
    }

    /// Sign-extend the low `w` bits of `a` to 64 bits.
    #[inline(always)]
    fn sext(&mut self, a: Self::V, w: Width) -> Self::V {
        if w == Width::Q {
            a
        } else {
            let s = self.imm(64 - w.bits() as u64);
            let t = self.shl(a, s);
            self.sar(t, s)
        }
    }

    /// Bit `bit` of `a` as 0 or 1.
    #[inline(always)]
    fn bit(&mut self, a: Self::V, bit: u32) -> Self::V {
        let s = self.imm(bit as u64);
        let t = self.shr(a, s);
        let one = self.imm(1);
        self.and(t, one)
    }

    /// `a + k` for a constant k.
    #[inline(always)]
    fn add_imm(&mut self, a: Self::V, k: u64) -> Self::V {
        let k = self.imm(k);
        self.add(a, k)
    }

    /// `a & k` for a constant k.
    #[inline(always)]
    fn and_imm(&mut self, a: Self::V, k: u64) -> Self::V {
        let k = self.imm(k);
        self.and(a, k)
    }

    /// `a == 0` as 0/1.
    #[inline(always)]
    fn is_zero(&mut self, a: Self::V) -> Self::V {
        let z = self.imm(0);
        self.eq(a, z)
    }
}

/// Implements [`Ops`] on plain `u64`s for a type; used by every concrete
/// (interpreting) backend so the arithmetic is written once.
#[macro_export]
macro_rules! impl_concrete_ops {
    ($t:ty) => {
        impl $crate::emit::Ops for $t {
            type V = u64;
            #[inline(always)]
            fn imm(&mut self, v: u64) -> u64 {
                v
            }
            #[inline(always)]
            fn add(&mut self, a: u64, b: u64) -> u64 {
                a.wrapping_add(b)
            }
            #[inline(always)]
            fn sub(&mut self, a: u64, b: u64) -> u64 {
                a.wrapping_sub(b)
            }
            #[inline(always)]
            fn mul(&mut self, a: u64, b: u64) -> u64 {
                a.wrapping_mul(b)
            }
            #[inline(always)]
            fn umulhi(&mut self, a: u64, b: u64) -> u64 {
                ((a as u128 * b as u128) >> 64) as u64
            }
            #[inline(always)]
            fn smulhi(&mut self, a: u64, b: u64) -> u64 {
                ((a as i64 as i128 * b as i64 as i128) >> 64) as u64
            }
            #[inline(always)]
            fn and(&mut self, a: u64, b: u64) -> u64 {
                a & b
            }
            #[inline(always)]
            fn or(&mut self, a: u64, b: u64) -> u64 {
                a | b
            }
            #[inline(always)]
            fn xor(&mut self, a: u64, b: u64) -> u64 {
                a ^ b
            }
            #[inline(always)]
            fn not(&mut self, a: u64) -> u64 {
                !a
            }
            #[inline(always)]
            fn neg(&mut self, a: u64) -> u64 {
                a.wrapping_neg()
            }
            #[inline(always)]
            fn shl(&mut self, a: u64, n: u64) -> u64 {
                a << (n & 63)
            }
            #[inline(always)]
            fn shr(&mut self, a: u64, n: u64) -> u64 {
                a >> (n & 63)
            }
            #[inline(always)]
            fn sar(&mut self, a: u64, n: u64) -> u64 {
                ((a as i64) >> (n & 63)) as u64
            }
            #[inline(always)]
            fn rotl(&mut self, a: u64, n: u64) -> u64 {
                a.rotate_left((n & 63) as u32)
            }
            #[inline(always)]
            fn rotr(&mut self, a: u64, n: u64) -> u64 {
                a.rotate_right((n & 63) as u32)
            }
            #[inline(always)]
            fn eq(&mut self, a: u64, b: u64) -> u64 {
                (a == b) as u64
            }
            #[inline(always)]
            fn ne(&mut self, a: u64, b: u64) -> u64 {
                (a != b) as u64
            }
            #[inline(always)]
            fn ult(&mut self, a: u64, b: u64) -> u64 {
                (a < b) as u64
            }
            #[inline(always)]
            fn ule(&mut self, a: u64, b: u64) -> u64 {
                (a <= b) as u64
            }
            #[inline(always)]
            fn slt(&mut self, a: u64, b: u64) -> u64 {
                ((a as i64) < (b as i64)) as u64
            }
            #[inline(always)]
            fn sle(&mut self, a: u64, b: u64) -> u64 {
                ((a as i64) <= (b as i64)) as u64
            }
            #[inline(always)]
            fn select(&mut self, c: u64, a: u64, b: u64) -> u64 {
                if c != 0 {
                    a
                } else {
                    b
                }
            }
            #[inline(always)]
            fn popcnt(&mut self, a: u64) -> u64 {
                a.count_ones() as u64
            }
            #[inline(always)]
            fn ctz(&mut self, a: u64) -> u64 {
                a.trailing_zeros() as u64
            }
            #[inline(always)]
            fn clz(&mut self, a: u64) -> u64 {
                a.leading_zeros() as u64
            }
            #[inline(always)]
            fn bswap(&mut self, a: u64) -> u64 {
                a.swap_bytes()
            }
        }
    };
}

/// Plain concrete arithmetic, for code that needs [`Ops`] without a CPU
/// (e.g. evaluating lazy flags from a saved state).
#[derive(Clone, Copy, Debug, Default)]
pub struct Concrete;
impl_concrete_ops!(Concrete);

/// What a backend must provide beyond arithmetic: state, memory, flags and
/// control flow. See the module documentation for the rules.
pub trait Emitter: Ops + Sized {
    /// Read all 64 bits of a general-purpose register.
    fn reg(&mut self, r: Gpr) -> Self::V;
    /// Write all 64 bits of a general-purpose register.
    fn set_reg(&mut self, r: Gpr, v: Self::V);
    /// Base address of a segment register (linear address of offset 0).
    fn seg_base(&mut self, s: Seg) -> Self::V;

    /// Load `w` bytes at a linear address, zero-extended.
    fn load(&mut self, lin: Self::V, w: Width) -> SemResult<Self::V>;
    /// Store the low `w` bytes of `v` at a linear address.
    fn store(&mut self, lin: Self::V, w: Width, v: Self::V) -> SemResult;

    /// Load 16 bytes at a linear address as (low 8 bytes, high 8 bytes):
    /// by definition the two 8-byte loads, low first (a backend may check
    /// both at once when it can tell neither faults).
    fn load16(&mut self, lin: Self::V) -> SemResult<(Self::V, Self::V)> {
        let lo = self.load(lin, Width::Q)?;
        let a = self.add_imm(lin, 8);
        let hi = self.load(a, Width::Q)?;
        Ok((lo, hi))
    }
    /// Store 16 bytes: by definition the two 8-byte stores, low first. A
    /// caller that needs all-or-nothing probes first ([`Emitter::probe_write`]).
    fn store16(&mut self, lin: Self::V, lo: Self::V, hi: Self::V) -> SemResult {
        self.store(lin, Width::Q, lo)?;
        let a = self.add_imm(lin, 8);
        self.store(a, Width::Q, hi)
    }

    /// Record the last flag-setting operation (lazy flags).
    fn set_cc(&mut self, op: CcOp, dst: Self::V, src: Self::V, src2: Self::V);
    /// Evaluate a condition code from the current flags (0 or 1).
    fn cond(&mut self, cc: Cond) -> Self::V;
    /// RFLAGS with every bit materialised.
    fn rflags(&mut self) -> Self::V;
    /// Replace RFLAGS. `v` must already have the reserved bits right
    /// (callers mask with what the instruction may change).
    fn set_rflags(&mut self, v: Self::V);
    /// Flags that some later instruction may read before they are
    /// overwritten; a backend may skip computing the others.
    fn flags_live(&self) -> FlagSet;

    /// The instruction transfers control: RIP after it is `target`.
    fn jump(&mut self, target: Self::V);
    /// Run `f` only when `c` is non-zero. Effects inside `f` are conditional.
    fn when<F>(&mut self, c: Self::V, f: F) -> SemResult
    where
        F: FnOnce(&mut Self) -> SemResult;
    /// Raise `ex` when `c` is non-zero (nothing of the instruction is done).
    fn raise_if(&mut self, c: Self::V, ex: Exception) -> SemResult;

    /// One 64-bit half (`high`: bits 127:64) of XMM register `n` (0–15).
    fn xmm(&mut self, n: usize, high: bool) -> Self::V;
    /// Replace one 64-bit half of XMM register `n`.
    fn set_xmm(&mut self, n: usize, high: bool, v: Self::V);
    /// CR0 (the SSE availability check reads EM and TS: CLTS can clear TS
    /// between two instructions of a block).
    fn cr0(&mut self) -> Self::V;
    /// CR4 (OSFXSR for the SSE availability check).
    fn cr4(&mut self) -> Self::V;
    /// True when the SSE availability check (`semantics::sse::avail`)
    /// already passed earlier in the same block with nothing in between
    /// that can change CR0 or CR4 (only helpers can), so it need not be
    /// emitted again. A backend that does not track it answers false.
    fn sse_checked(&mut self) -> bool {
        false
    }
    /// The SSE availability check has just been emitted and passed.
    fn set_sse_checked(&mut self) {}
    /// Make sure the `len` bytes (at most a page) at `lin` can all be
    /// written before a multi-part store writes any of them: when the range
    /// crosses into the next page both pages are checked (a #PF reports the
    /// first byte of the page that failed); a range inside one page needs
    /// no check (its first part faults before anything lands).
    fn probe_write(&mut self, lin: Self::V, len: u64) -> SemResult;

    /// Code size of the block being executed or compiled: 16, 32 or 64.
    fn bitness(&self) -> u32;
    /// Stack-pointer width: 64 in 64-bit mode, else 32 or 16 by SS.B.
    fn stack_bits(&self) -> u32;
}
