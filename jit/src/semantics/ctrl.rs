//! Near control transfers: JMP, Jcc, CALL, RET, LOOP/LOOPcc, JrCXZ; and HLT.

use super::operand::{self, get, opnd, pop_value, push, read, set, set_sp};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::Cond;
use crate::interp::Interp;
use crate::state::{exit_req, Gpr};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// Width of the return address a near CALL pushes / RET pops.
fn branch_width<E: Emitter>(e: &E, i: &Instruction) -> Width {
    if e.bitness() == 64 {
        return Width::Q;
    }
    // RET without an operand reports op0_kind() == Register (kind 0):
    // only look at operand 0 when there is one.
    let kind = if i.op_count() > 0 {
        Some(i.op0_kind())
    } else {
        None
    };
    match kind {
        Some(OpKind::NearBranch16) => Width::W,
        Some(OpKind::NearBranch32) => Width::D,
        Some(OpKind::Register | OpKind::Memory) => operand::op_width(i, 0),
        // RET / RET imm16: operand size of the code.
        _ => {
            if i.code_size() == iced_x86::CodeSize::Code16 {
                Width::W
            } else {
                Width::D
            }
        }
    }
}

/// The target of a direct or indirect near branch.
fn target<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult<E::V> {
    let i = &insn.i;
    match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Ok(e.imm(i.near_branch_target()))
        }
        _ => {
            let o = opnd(e, insn, 0);
            read(e, &o)
        }
    }
}

fn jmp<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let t = target(e, insn)?;
    e.jump(t);
    Ok(())
}

fn jcc<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let cc = Cond::from_iced(insn.i.condition_code()).expect("Jcc has a condition");
    let c = e.cond(cc);
    let taken = e.imm(insn.i.near_branch_target());
    let next = e.imm(insn.next_ip());
    let t = e.select(c, taken, next);
    e.jump(t);
    Ok(())
}

fn call<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let t = target(e, insn)?;
    let w = branch_width(e, &insn.i);
    let ret = e.imm(insn.next_ip());
    push(e, w, ret)?;
    e.jump(t);
    Ok(())
}

fn ret<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = branch_width(e, &insn.i);
    let (t, nsp) = pop_value(e, w)?;
    let nsp = if insn.i.op_count() > 0 {
        e.add_imm(nsp, insn.i.immediate(0) & 0xffff)
    } else {
        nsp
    };
    set_sp(e, nsp);
    e.jump(t);
    Ok(())
}

/// The count register LOOP and JrCXZ use, by address size.
fn count_width(i: &Instruction) -> Width {
    use iced_x86::Code as C;
    match i.code() {
        C::Loop_rel8_16_CX
        | C::Loop_rel8_32_CX
        | C::Loope_rel8_16_CX
        | C::Loope_rel8_32_CX
        | C::Loopne_rel8_16_CX
        | C::Loopne_rel8_32_CX
        | C::Jcxz_rel8_16
        | C::Jcxz_rel8_32 => Width::W,
        C::Loop_rel8_16_ECX
        | C::Loop_rel8_32_ECX
        | C::Loop_rel8_64_ECX
        | C::Loope_rel8_16_ECX
        | C::Loope_rel8_32_ECX
        | C::Loope_rel8_64_ECX
        | C::Loopne_rel8_16_ECX
        | C::Loopne_rel8_32_ECX
        | C::Loopne_rel8_64_ECX
        | C::Jecxz_rel8_16
        | C::Jecxz_rel8_32
        | C::Jecxz_rel8_64 => Width::D,
        _ => Width::Q,
    }
}

/// LOOP, LOOPE, LOOPNE: decrement the count (no flags) and branch.
fn loop_cc<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = count_width(&insn.i);
    let c = get(e, Gpr::Rcx, w);
    let c = e.add_imm(c, u64::MAX);
    let c = e.zext(c, w);
    let zero = e.imm(0);
    let mut go = e.ne(c, zero);
    match insn.i.mnemonic() {
        Mnemonic::Loope => {
            let z = e.cond(Cond::E);
            go = e.and(go, z);
        }
        Mnemonic::Loopne => {
            let z = e.cond(Cond::Ne);
            go = e.and(go, z);
        }
        _ => {}
    }
    let taken = e.imm(insn.i.near_branch_target());
    let next = e.imm(insn.next_ip());
    let t = e.select(go, taken, next);
    set(e, Gpr::Rcx, w, c);
    e.jump(t);
    Ok(())
}

/// JCXZ, JECXZ, JRCXZ.
fn jrcxz<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = count_width(&insn.i);
    let c = get(e, Gpr::Rcx, w);
    let z = e.is_zero(c);
    let taken = e.imm(insn.i.near_branch_target());
    let next = e.imm(insn.next_ip());
    let t = e.select(z, taken, next);
    e.jump(t);
    Ok(())
}

/// HLT: privileged; the CPU stops until an interrupt (the run loop decides
/// what that means). It retires, so RIP points after it.
fn hlt(cx: &mut Interp, _: &Insn) -> SemResult {
    if cx.cpu.cpl != 0 {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    cx.cpu.halted = 1;
    cx.cpu.exit_req |= exit_req::HALT | exit_req::END_BLOCK;
    Ok(())
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Jmp if !i.is_jmp_far() && !i.is_jmp_far_indirect() => jmp,
        M::Call if !i.is_call_far() && !i.is_call_far_indirect() => call,
        M::Ret => ret,
        M::Loop | M::Loope | M::Loopne => loop_cc,
        M::Jcxz | M::Jecxz | M::Jrcxz => jrcxz,
        M::Hlt => return Some(Sem::Helper(hlt)),
        _ if i.is_jcc_short_or_near() => jcc,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
