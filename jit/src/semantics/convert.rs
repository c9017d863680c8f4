//! Sign extensions within rAX/rDX (CBW CWDE CDQE, CWD CDQ CQO) and BSWAP.

use super::operand::{get, opnd, read, set, write};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::state::Gpr;
use iced_x86::{Instruction, Mnemonic};

/// rAX (width `to`) = sign extension of its low half.
fn widen_ax<E: Emitter>(e: &mut E, from: Width, to: Width) -> SemResult {
    let v = get(e, Gpr::Rax, from);
    let v = e.sext(v, from);
    set(e, Gpr::Rax, to, v);
    Ok(())
}

fn cbw<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    widen_ax(e, Width::B, Width::W)
}

fn cwde<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    widen_ax(e, Width::W, Width::D)
}

fn cdqe<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    widen_ax(e, Width::D, Width::Q)
}

/// rDX (width `w`) = copies of rAX's sign bit.
fn sign_to_dx<E: Emitter>(e: &mut E, w: Width) -> SemResult {
    let v = get(e, Gpr::Rax, w);
    let v = e.sext(v, w);
    let k = e.imm(63);
    let s = e.sar(v, k);
    set(e, Gpr::Rdx, w, s);
    Ok(())
}

fn cwd<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    sign_to_dx(e, Width::W)
}

fn cdq<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    sign_to_dx(e, Width::D)
}

fn cqo<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    sign_to_dx(e, Width::Q)
}

/// BSWAP. The 16-bit form is undefined; the host writes 0 to the low 16
/// bits and keeps the rest of the register.
fn bswap<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let d = opnd(e, insn, 0);
    let v = read(e, &d)?;
    let r = match d.w {
        Width::W => e.imm(0),
        Width::D => {
            let s = e.bswap(v);
            let k = e.imm(32);
            e.shr(s, k)
        }
        _ => e.bswap(v),
    };
    write(e, &d, r)
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Cbw => cbw,
        M::Cwde => cwde,
        M::Cdqe => cdqe,
        M::Cwd => cwd,
        M::Cdq => cdq,
        M::Cqo => cqo,
        M::Bswap => bswap,
        _ => return None,
    };
    Some(Sem::Emit(f))
}
