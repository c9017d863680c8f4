//! Instructions that move or set single flags: LAHF, SAHF, CLC, STC, CMC,
//! CLD, STD, CLI, STI.

use super::operand::{read_reg, reg_view, write_reg};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop};
use crate::exception::Exception;
use crate::flags::FlagSet;
use crate::interp::Interp;
use iced_x86::{Instruction, Mnemonic, Register};

/// The flags LAHF and SAHF move between AH and RFLAGS.
const AH_FLAGS: u64 = FlagSet::SF
    .union(FlagSet::ZF)
    .union(FlagSet::AF)
    .union(FlagSet::PF)
    .union(FlagSet::CF)
    .bits();

/// AH ← SF:ZF:0:AF:0:PF:1:CF.
fn lahf<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    let f = e.rflags();
    let v = e.and_imm(f, AH_FLAGS);
    let two = e.imm(2);
    let v = e.or(v, two);
    let ah = reg_view(Register::AH).expect("AH is a GPR view");
    write_reg(e, ah, v);
    Ok(())
}

/// SF ZF AF PF CF ← AH; OF and the system flags are kept.
fn sahf<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    let ah = reg_view(Register::AH).expect("AH is a GPR view");
    let v = read_reg(e, ah);
    let v = e.and_imm(v, AH_FLAGS);
    let f = e.rflags();
    let keep = e.and_imm(f, !AH_FLAGS);
    let f = e.or(keep, v);
    e.set_rflags(f);
    Ok(())
}

/// RFLAGS ← (RFLAGS & !clear) | set, then flip `toggle`.
#[inline(always)]
fn change<E: Emitter>(e: &mut E, clear: FlagSet, set: FlagSet, toggle: FlagSet) {
    let f = e.rflags();
    let f = e.and_imm(f, !clear.bits());
    let s = e.imm(set.bits());
    let f = e.or(f, s);
    let t = e.imm(toggle.bits());
    let f = e.xor(f, t);
    e.set_rflags(f);
}

fn clc<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    change(e, FlagSet::CF, FlagSet::empty(), FlagSet::empty());
    Ok(())
}

fn stc<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    change(e, FlagSet::empty(), FlagSet::CF, FlagSet::empty());
    Ok(())
}

fn cmc<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    change(e, FlagSet::empty(), FlagSet::empty(), FlagSet::CF);
    Ok(())
}

fn cld<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    change(e, FlagSet::DF, FlagSet::empty(), FlagSet::empty());
    Ok(())
}

fn std<E: Emitter>(e: &mut E, _: &Insn) -> SemResult {
    change(e, FlagSet::empty(), FlagSet::DF, FlagSet::empty());
    Ok(())
}

/// CLI/STI are allowed when CPL <= IOPL (no VME/PVI: in virtual-8086 mode
/// CPL is 3, so IOPL must be 3 too).
fn check_iopl(cx: &Interp) -> SemResult {
    let iopl = (cx.cpu.rflags & FlagSet::IOPL.bits()) >> 12;
    if u64::from(cx.cpu.cpl) > iopl {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    Ok(())
}

/// IF is a system flag: it lives in `cpu.rflags` whatever the lazy state,
/// so it can be changed in place.
fn cli(cx: &mut Interp, _: &Insn) -> SemResult {
    check_iopl(cx)?;
    cx.cpu.rflags &= !FlagSet::IF.bits();
    Ok(())
}

/// STI: interrupts become acceptable only after the next instruction, and
/// only if they were blocked before (STI; STI does not extend the shadow).
fn sti(cx: &mut Interp, _: &Insn) -> SemResult {
    check_iopl(cx)?;
    if cx.cpu.rflags & FlagSet::IF.bits() == 0 {
        cx.cpu.interrupt_shadow = 1;
    }
    cx.cpu.rflags |= FlagSet::IF.bits();
    Ok(())
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let f: fn(&mut E, &Insn) -> SemResult = match i.mnemonic() {
        M::Lahf => lahf,
        M::Sahf => sahf,
        M::Clc => clc,
        M::Stc => stc,
        M::Cmc => cmc,
        M::Cld => cld,
        M::Std => std,
        M::Cli => return Some(Sem::Helper(cli)),
        M::Sti => return Some(Sem::Helper(sti)),
        _ => return None,
    };
    Some(Sem::Emit(f))
}
