//! Data movement between general-purpose registers, memory and immediates:
//! MOV, MOVZX, MOVSX, MOVSXD, LEA, XCHG, and the instructions that do
//! nothing architecturally (NOP forms, ENDBR, PAUSE, fences).

use super::operand::{self, opnd, read, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult};
use iced_x86::{Instruction, Mnemonic, OpKind};

fn mov<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let d = opnd(e, insn, 0);
    write(e, &d, v)
}

fn movzx<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let d = opnd(e, insn, 0);
    write(e, &d, v)
}

/// MOVSX and MOVSXD: sign-extend the source to the destination width.
fn movsx<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let s = opnd(e, insn, 1);
    let v = read(e, &s)?;
    let v = e.sext(v, s.w);
    let d = opnd(e, insn, 0);
    write(e, &d, v)
}

/// LEA stores the effective address (no segment base), truncated to the
/// destination width.
fn lea<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let a = operand::mem_offset(e, &insn.mem);
    let d = opnd(e, insn, 0);
    write(e, &d, a)
}

/// XCHG: both values are read before either is written; a memory operand
/// is written first so a fault leaves the register alone.
fn xchg<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let a = opnd(e, insn, 0);
    let b = opnd(e, insn, 1);
    let va = read(e, &a)?;
    let vb = read(e, &b)?;
    if b.is_mem() {
        write(e, &b, va)?;
        write(e, &a, vb)
    } else {
        write(e, &a, vb)?;
        write(e, &b, va)
    }
}

fn nop<E: Emitter>(_: &mut E, _: &Insn) -> SemResult {
    Ok(())
}

/// True when every operand is a general-purpose register, memory or an
/// immediate (not a segment, control or debug register).
fn gpr_operands(i: &Instruction) -> bool {
    (0..i.op_count()).all(|n| match i.op_kind(n) {
        OpKind::Register => operand::reg_view(i.op_register(n)).is_some(),
        _ => true,
    })
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Mov if gpr_operands(i) => mov,
        M::Movzx => movzx,
        M::Movsx | M::Movsxd => movsx,
        M::Lea => lea,
        M::Xchg => xchg,
        M::Nop | M::Endbr64 | M::Endbr32 | M::Lfence | M::Mfence | M::Sfence => nop,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
