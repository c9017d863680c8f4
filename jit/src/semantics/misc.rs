//! Odds and ends: CPUID, RDTSC, UD0/UD1/UD2, PAUSE, the prefetch hints and
//! CLFLUSH.

use super::operand::ea;
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop};
use crate::exception::Exception;
use crate::interp::Interp;
use crate::mmu::{self, Access};
use crate::state::Gpr;
use iced_x86::{Instruction, Mnemonic};

/// CR4.TSD: RDTSC is privileged.
const CR4_TSD: u64 = 1 << 2;

/// CPUID: leaf in EAX, subleaf in ECX; results zero-extended into RAX,
/// RBX, RCX, RDX.
fn cpuid(cx: &mut Interp, _: &Insn) -> SemResult {
    let leaf = cx.cpu.reg(Gpr::Rax) as u32;
    let sub = cx.cpu.reg(Gpr::Rcx) as u32;
    let r = cx.features.cpuid(leaf, sub);
    for (g, v) in [Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx].into_iter().zip(r) {
        cx.cpu.set_reg(g, u64::from(v));
    }
    Ok(())
}

/// RDTSC: the TSC is virtual time, computed from the instructions retired
/// before this one, so it is the same on every run.
fn rdtsc(cx: &mut Interp, _: &Insn) -> SemResult {
    if cx.cpu.cr4 & CR4_TSD != 0 && cx.cpu.cpl > 0 {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    let tsc = crate::msr::tsc(cx);
    cx.cpu.set_reg(Gpr::Rax, tsc & 0xffff_ffff);
    cx.cpu.set_reg(Gpr::Rdx, tsc >> 32);
    Ok(())
}

/// UD0, UD1, UD2: the architecturally undefined instructions.
fn ud(_: &mut Interp, _: &Insn) -> SemResult {
    Err(Stop::Fault(Exception::ud()))
}

/// PAUSE and the prefetch hints do nothing architecturally (prefetches
/// never fault).
fn nop<E: Emitter>(_: &mut E, _: &Insn) -> SemResult {
    Ok(())
}

/// CLFLUSH has no cache to flush here, but it checks its address like a
/// one-byte read (#PF, #GP for a non-canonical address). It must not reach
/// a device, so it translates instead of loading.
fn clflush(cx: &mut Interp, insn: &Insn) -> SemResult {
    let lin = ea(cx, &insn.i);
    if !mmu::is_canonical(lin) {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    let user = cx.cpu.cpl == 3;
    mmu::translate(&cx.cpu, &mut cx.mem, lin, Access::Read, user).map_err(Stop::Fault)?;
    Ok(())
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let h: crate::block::InterpFn = match i.mnemonic() {
        M::Cpuid => cpuid,
        M::Rdtsc => rdtsc,
        M::Ud0 | M::Ud1 | M::Ud2 => ud,
        M::Clflush => clflush,
        M::Pause
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Prefetch => return Some(Sem::Emit(nop)),
        _ => return None,
    };
    Some(Sem::Helper(h))
}
