//! Stack instructions: PUSH, POP (general-purpose register, memory and
//! immediate forms).

use super::operand::{self, opnd, pop_value, push, read, set_sp, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult};
use iced_x86::{Instruction, Mnemonic};

fn push_op<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let s = opnd(e, insn, 0);
    let w = operand::op_width(&insn.i, 0);
    // PUSH imm: the immediate is sign-extended to the operand size.
    let w = match insn.i.op0_kind() {
        iced_x86::OpKind::Register | iced_x86::OpKind::Memory => w,
        _ => stack_op_width(&insn.i),
    };
    let v = read(e, &s)?;
    let v = if s.w < w { e.sext(v, s.w) } else { v };
    push(e, w, v)
}

/// Operand size of PUSH imm / POP by stack-pointer increment.
fn stack_op_width(i: &Instruction) -> crate::emit::Width {
    use crate::emit::Width;
    match i.stack_pointer_increment().unsigned_abs() {
        2 => Width::W,
        4 => Width::D,
        _ => Width::Q,
    }
}

/// POP: the destination address (a memory operand may use RSP) is
/// computed with the incremented RSP, as the architecture specifies.
fn pop_op<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = stack_op_width(&insn.i);
    let (v, nsp) = pop_value(e, w)?;
    if insn.i.op0_kind() == iced_x86::OpKind::Memory {
        let old = operand::get(e, crate::state::Gpr::Rsp, crate::emit::Width::Q);
        set_sp(e, nsp);
        let d = opnd(e, insn, 0);
        if let Err(x) = write(e, &d, v) {
            e.set_reg(crate::state::Gpr::Rsp, old);
            return Err(x);
        }
        Ok(())
    } else {
        set_sp(e, nsp);
        let d = opnd(e, insn, 0);
        write(e, &d, v)
    }
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let gpr_or_mem = |i: &Instruction| match i.op0_kind() {
        iced_x86::OpKind::Register => operand::reg_view(i.op0_register()).is_some(),
        _ => true,
    };
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Push if gpr_or_mem(i) => push_op,
        M::Pop if gpr_or_mem(i) => pop_op,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
