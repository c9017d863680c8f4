//! Conditional data instructions: SETcc and CMOVcc.

use super::operand::{opnd, read, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop};
use crate::exception::Exception;
use crate::flags::Cond;
use iced_x86::{Instruction, Mnemonic};

/// The instruction's condition (`lookup` only admits instructions that
/// have one).
fn condition(insn: &Insn) -> SemResult<Cond> {
    Cond::from_iced(insn.i.condition_code()).ok_or(Stop::Fault(Exception::ud()))
}

/// SETcc: the byte operand becomes 0 or 1.
fn setcc<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let cc = condition(insn)?;
    let v = e.cond(cc);
    let d = opnd(e, insn, 0);
    write(e, &d, v)
}

/// CMOVcc: the source is read (and may fault) whatever the condition, and
/// the destination is always written, so a 32-bit destination has its
/// upper half cleared even when the condition is false (as on the host).
fn cmovcc<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let cc = condition(insn)?;
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let d = opnd(e, insn, 0);
    let old = read(e, &d)?;
    let c = e.cond(cc);
    let r = e.select(c, v, old);
    write(e, &d, r)
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Seto
        | M::Setno
        | M::Setb
        | M::Setae
        | M::Sete
        | M::Setne
        | M::Setbe
        | M::Seta
        | M::Sets
        | M::Setns
        | M::Setp
        | M::Setnp
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg => setcc,
        M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmove
        | M::Cmovne
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => cmovcc,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
