//! Integer ALU instructions: ADD ADC SUB SBB CMP AND OR XOR TEST, INC DEC
//! NEG NOT.

use super::operand::{opnd, read, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult};
use crate::flags::{CcKind, CcOp, Cond, FlagSet};
use iced_x86::{Instruction, Mnemonic};

/// Which two-operand ALU operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alu {
    Add,
    Adc,
    Sub,
    Sbb,
    And,
    Or,
    Xor,
    Cmp,
    Test,
}

/// `dst = dst OP src` with the flags of OP (CMP and TEST write nothing).
#[inline(always)]
fn alu<E: Emitter>(e: &mut E, insn: &Insn, op: Alu) -> SemResult {
    let d = opnd(e, insn, 0);
    let s = opnd(e, insn, 1);
    let a = read(e, &d)?;
    let b = read(e, &s)?;
    let w = d.w;
    let zero = e.imm(0);
    let (r, kind, src, src2) = match op {
        Alu::Add => (e.add(a, b), CcKind::Add, b, zero),
        Alu::Sub | Alu::Cmp => (e.sub(a, b), CcKind::Sub, b, zero),
        Alu::Adc => {
            let c = e.cond(Cond::B);
            let t = e.add(a, b);
            (e.add(t, c), CcKind::Adc, b, c)
        }
        Alu::Sbb => {
            let c = e.cond(Cond::B);
            let t = e.sub(a, b);
            (e.sub(t, c), CcKind::Sbb, b, c)
        }
        Alu::And | Alu::Test => (e.and(a, b), CcKind::Logic, zero, zero),
        Alu::Or => (e.or(a, b), CcKind::Logic, zero, zero),
        Alu::Xor => (e.xor(a, b), CcKind::Logic, zero, zero),
    };
    if !matches!(op, Alu::Cmp | Alu::Test) {
        write(e, &d, r)?;
    }
    e.set_cc(CcOp::new(kind, w), r, src, src2);
    Ok(())
}

macro_rules! alu_fn {
    ($name:ident, $op:expr) => {
        fn $name<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
            alu(e, insn, $op)
        }
    };
}
alu_fn!(add, Alu::Add);
alu_fn!(adc, Alu::Adc);
alu_fn!(sub, Alu::Sub);
alu_fn!(sbb, Alu::Sbb);
alu_fn!(and, Alu::And);
alu_fn!(or, Alu::Or);
alu_fn!(xor, Alu::Xor);
alu_fn!(cmp, Alu::Cmp);
alu_fn!(test, Alu::Test);

/// INC/DEC keep CF: it is carried in the lazy state (read only if live).
fn inc_dec<E: Emitter>(e: &mut E, insn: &Insn, kind: CcKind) -> SemResult {
    let d = opnd(e, insn, 0);
    let a = read(e, &d)?;
    let r = if kind == CcKind::Inc {
        e.add_imm(a, 1)
    } else {
        e.add_imm(a, u64::MAX)
    };
    let cf = if e.flags_live().contains(FlagSet::CF) {
        e.cond(Cond::B)
    } else {
        e.imm(0)
    };
    write(e, &d, r)?;
    let zero = e.imm(0);
    e.set_cc(CcOp::new(kind, d.w), r, zero, cf);
    Ok(())
}

fn inc<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    inc_dec(e, insn, CcKind::Inc)
}

fn dec<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    inc_dec(e, insn, CcKind::Dec)
}

/// NEG is `0 - x` with SUB's flags (CF = x != 0).
fn neg<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let a = read(e, &d)?;
    let r = e.neg(a);
    write(e, &d, r)?;
    let zero = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Sub, d.w), r, a, zero);
    Ok(())
}

fn not<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let a = read(e, &d)?;
    let r = e.not(a);
    write(e, &d, r)
}

/// The semantic function for `m`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Add => add,
        M::Adc => adc,
        M::Sub => sub,
        M::Sbb => sbb,
        M::And => and,
        M::Or => or,
        M::Xor => xor,
        M::Cmp => cmp,
        M::Test => test,
        M::Inc => inc,
        M::Dec => dec,
        M::Neg => neg,
        M::Not => not,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
