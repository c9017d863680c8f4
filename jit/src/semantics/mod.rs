//! Instruction semantics, written once for every backend.
//!
//! Each family file has a `lookup` that maps a mnemonic to its semantic
//! function. Most are generic over [`Emitter`] ([`Sem::Emit`]): the
//! interpreter runs them on numbers, the JIT emits IR from them. A few
//! instructions are too involved to inline (CPUID, DIV, REP string
//! operations, …); they are ordinary Rust functions on the concrete
//! interpreter state ([`Sem::Helper`]), which the JIT calls.
//!
//! Editing rules: read and check everything that can fault before the first
//! write (see `emit.rs`); a new mnemonic goes in exactly one family's
//! `lookup`.

pub mod arith;
pub mod atomic;
pub mod bits;
pub mod cond;
pub mod convert;
pub mod ctrl;
pub mod data;
pub mod flagops;
pub mod io;
pub mod legacy;
pub mod misc;
pub mod muldiv;
pub mod operand;
pub mod segment;
pub mod shift;
pub mod sse;
pub mod sse_cvt;
pub mod sse_float;
pub mod sse_int;
pub mod sse_move;
pub mod sse_state;
pub mod stack;
pub mod string;
pub mod system;
pub mod x87;

use crate::block::{Insn, InterpFn};
use crate::cpuid::Features;
use crate::emit::{Emitter, SemResult, Stop};
use crate::exception::Exception;
use crate::interp::Interp;
use iced_x86::{Instruction, Mnemonic, OpKind};

/// How an instruction is executed.
pub enum Sem<E: Emitter> {
    /// Generic semantics any backend can run or compile inline.
    Emit(fn(&mut E, &Insn) -> SemResult),
    /// A Rust function on the concrete state; compiled code calls it.
    Helper(InterpFn),
}

/// The semantics of `i` for backend `E`, or `None` if the engine does not
/// implement the instruction.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    arith::lookup(i)
        .or_else(|| data::lookup(i))
        .or_else(|| ctrl::lookup(i))
        .or_else(|| stack::lookup(i))
        .or_else(|| shift::lookup(i))
        .or_else(|| bits::lookup(i))
        .or_else(|| muldiv::lookup(i))
        .or_else(|| cond::lookup(i))
        .or_else(|| convert::lookup(i))
        .or_else(|| flagops::lookup(i))
        .or_else(|| atomic::lookup(i))
        .or_else(|| string::lookup(i))
        .or_else(|| io::lookup(i))
        .or_else(|| misc::lookup(i))
        .or_else(|| system::lookup(i))
        .or_else(|| segment::lookup(i))
        .or_else(|| legacy::lookup(i))
        .or_else(|| x87::lookup(i))
        .or_else(|| sse::lookup(i))
}

/// Raise #UD (invalid or unsupported encodings, bad LOCK prefixes).
pub fn raise_ud(_: &mut Interp, _: &Insn) -> SemResult {
    Err(Stop::Fault(Exception::ud()))
}

fn unimplemented(cx: &mut Interp, insn: &Insn) -> SemResult {
    log::warn!(
        "unimplemented instruction at {:#x}: {} (raising #UD)",
        cx.cpu.rip,
        insn.i
    );
    Err(Stop::Fault(Exception::ud()))
}

/// Instructions that accept a LOCK prefix (with a memory destination).
fn lockable(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Add
            | M::Adc
            | M::And
            | M::Btc
            | M::Btr
            | M::Bts
            | M::Cmpxchg
            | M::Cmpxchg8b
            | M::Cmpxchg16b
            | M::Dec
            | M::Inc
            | M::Neg
            | M::Not
            | M::Or
            | M::Sbb
            | M::Sub
            | M::Xor
            | M::Xadd
            | M::Xchg
    )
}

/// True when the LOCK prefix on `i` is not allowed (→ #UD).
pub fn bad_lock(i: &Instruction) -> bool {
    i.has_lock_prefix() && !(lockable(i.mnemonic()) && i.op0_kind() == OpKind::Memory)
}

/// The interpreter's handler for a decoded instruction.
pub fn interp_handler(i: &Instruction, _f: &Features) -> InterpFn {
    if i.is_invalid() || bad_lock(i) {
        return raise_ud;
    }
    match lookup::<Interp>(i) {
        Some(Sem::Emit(f)) => f,
        Some(Sem::Helper(f)) => f,
        None => unimplemented,
    }
}

/// True when the engine implements `i` (for tests and statistics).
pub fn is_implemented(i: &Instruction) -> bool {
    lookup::<Interp>(i).is_some()
}
