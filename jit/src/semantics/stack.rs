//! Stack instructions: PUSH, POP (general-purpose register, memory and
//! immediate forms), PUSHF, POPF, ENTER, LEAVE.

use super::operand::{self, get, opnd, pop_value, push, read, set, set_sp, stack_width, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::exception::Exception;
use crate::flags::{FlagSet, RFLAGS_FIXED, RFLAGS_WRITABLE};
use crate::interp::Interp;
use crate::state::{Gpr, Seg};
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

/// Virtual-8086 mode with IOPL < 3: PUSHF/POPF fault (no VME support).
fn v86_iopl_fault<E: Emitter>(e: &mut E, flags: E::V) -> SemResult {
    let vm = e.bit(flags, 17);
    let iopl = e.and_imm(flags, FlagSet::IOPL.bits());
    let three = e.imm(FlagSet::IOPL.bits());
    let low = e.ne(iopl, three);
    let bad = e.and(vm, low);
    e.raise_if(bad, Exception::gp(0))
}

/// PUSHF/PUSHFD/PUSHFQ: the materialised flags with VM and RF read as 0.
fn pushf<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = stack_op_width(&insn.i);
    let f = e.rflags();
    v86_iopl_fault(e, f)?;
    let v = e.and_imm(f, !(FlagSet::VM | FlagSet::RF).bits());
    let v = e.zext(v, w);
    push(e, w, v)
}

/// The RFLAGS bits POPF may change at privilege `cpl` with the current
/// flags `cur`, for an operand of width `w`. VM, VIP and VIF are never
/// changed; RF is cleared separately; IOPL only at CPL 0; IF only when
/// CPL <= IOPL. In virtual-8086 mode (IOPL 3 by then) IOPL stays.
fn popf_mask(cpl: u8, cur: u64, w: Width) -> u64 {
    let iopl = (cur & FlagSet::IOPL.bits()) >> 12;
    let mut m = RFLAGS_WRITABLE
        & !(FlagSet::VM | FlagSet::VIP | FlagSet::VIF | FlagSet::RF | FlagSet::IOPL | FlagSet::IF)
            .bits();
    let v86 = cur & FlagSet::VM.bits() != 0;
    if cpl == 0 && !v86 {
        m |= FlagSet::IOPL.bits();
    }
    if u64::from(cpl) <= iopl {
        m |= FlagSet::IF.bits();
    }
    m & w.mask()
}

/// POPF/POPFD/POPFQ: which bits change depends on CPL and IOPL, so this
/// runs on the concrete state. It ends its block (interrupt acceptability
/// may change).
fn popf(cx: &mut Interp, insn: &Insn) -> SemResult {
    let w = stack_op_width(&insn.i);
    let cur = cx.cpu.rflags();
    v86_iopl_fault(cx, cur)?;
    let (v, nsp) = pop_value(cx, w)?;
    let m = popf_mask(cx.cpu.cpl, cur, w);
    let new = ((cur & !m) | (v & m) | RFLAGS_FIXED) & !FlagSet::RF.bits();
    set_sp(cx, nsp);
    cx.cpu.set_rflags(new);
    Ok(())
}

/// Operand size of ENTER/LEAVE: 16 with a 66 prefix, else the default
/// (64 in 64-bit mode, 32 or 16 by the code size elsewhere).
fn frame_width<E: Emitter>(e: &E, i: &Instruction) -> Width {
    use iced_x86::Code as C;
    match i.code() {
        C::Enterw_imm16_imm8 | C::Leavew => Width::W,
        C::Enterd_imm16_imm8 | C::Leaved => Width::D,
        C::Enterq_imm16_imm8 | C::Leaveq => Width::Q,
        _ if e.bitness() == 64 => Width::Q,
        _ => Width::D,
    }
}

/// ENTER size, level: push RBP, copy `level - 1` frame pointers from the
/// enclosing frame, push the new frame pointer, then allocate `size`
/// bytes. Every store happens before RSP/RBP change, so a fault leaves
/// them as they were. Addresses wrap at the stack width, and RBP gets the
/// new frame pointer at the stack width (checked on the host: a 16-bit
/// ENTER in 64-bit mode sets all of RBP).
fn enter<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = frame_width(e, &insn.i);
    let sw = stack_width(e);
    let size = insn.i.immediate16() as u64;
    let level = u64::from(insn.i.immediate8_2nd()) % 32;
    let step = w.bytes() as u64;
    let mut sp = get(e, Gpr::Rsp, sw);
    let bp = get(e, Gpr::Rbp, sw);
    // One push at the stack width: store below `sp`, return the new `sp`.
    let push_at = |e: &mut E, sp: E::V, v: E::V| -> SemResult<E::V> {
        let nsp = e.add_imm(sp, step.wrapping_neg());
        let nsp = e.zext(nsp, sw);
        let a = operand::linear(e, Seg::Ss, nsp);
        e.store(a, w, v)?;
        Ok(nsp)
    };
    let old_bp = get(e, Gpr::Rbp, w);
    sp = push_at(e, sp, old_bp)?;
    let frame = sp;
    if level > 0 {
        for n in 1..level {
            let off = e.add_imm(bp, (n * step).wrapping_neg());
            let off = e.zext(off, sw);
            let a = operand::linear(e, Seg::Ss, off);
            let v = e.load(a, w)?;
            sp = push_at(e, sp, v)?;
        }
        sp = push_at(e, sp, frame)?;
    }
    let sp = e.add_imm(sp, size.wrapping_neg());
    let sp = e.zext(sp, sw);
    set(e, Gpr::Rbp, sw, frame);
    set(e, Gpr::Rsp, sw, sp);
    Ok(())
}

/// LEAVE: RSP = RBP (stack width), then pop RBP (operand size). The load
/// comes first, so a fault changes nothing.
fn leave<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let w = frame_width(e, &insn.i);
    let sw = stack_width(e);
    let bp = get(e, Gpr::Rbp, sw);
    let a = operand::linear(e, Seg::Ss, bp);
    let v = e.load(a, w)?;
    let nsp = e.add_imm(bp, w.bytes() as u64);
    let nsp = e.zext(nsp, sw);
    set(e, Gpr::Rsp, sw, nsp);
    set(e, Gpr::Rbp, w, v);
    Ok(())
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
        M::Pushf | M::Pushfd | M::Pushfq => pushf,
        M::Popf | M::Popfd | M::Popfq => return Some(Sem::Helper(popf)),
        M::Enter => enter,
        M::Leave => leave,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
