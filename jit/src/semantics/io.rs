//! Port I/O: IN, OUT, INS, OUTS (8/16/32-bit, immediate and DX forms, with
//! and without REP).
//!
//! All are helpers on the concrete interpreter: they reach a device through
//! `Interp::port_read` / `port_write`, which hand the device the exact count
//! of instructions retired before this one and make the engine return to the
//! run loop after the instruction. A REP INS/OUTS therefore does one
//! iteration per slice: it retires the iteration (one count, as in
//! `string.rs`) and restarts itself, so the run loop sees every access at
//! its exact count.
//!
//! Permission (SDM vol. 1 §19.5): in protected mode with CPL > IOPL, and in
//! virtual-8086 mode, every port the access touches must be cleared in the
//! I/O permission bitmap of the current 32/64-bit TSS, or the instruction
//! raises #GP(0) before touching anything. Real mode never checks.

use super::operand::{get, linear, seg_of, set};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::FlagSet;
use crate::interp::Interp;
use crate::memory::{GuestPhysAddr, PhysTarget};
use crate::mmu::{self, Access};
use crate::state::{cr0, seg_attr, Gpr, Seg};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

/// Offset of the I/O map base field in a 32-bit or 64-bit TSS.
const TSS_IOMAP_BASE: u64 = 0x66;
/// Smallest limit of a TSS that has the I/O map base field.
const TSS_MIN_LIMIT: u32 = 0x67;
/// System-descriptor types of an available / busy 32-bit (or 64-bit) TSS.
const TSS_AVAILABLE: u16 = 9;
const TSS_BUSY: u16 = 11;

/// Read one byte of linear memory as an implicit supervisor access (the TSS
/// is read at CPL 0 whatever the current CPL). Non-RAM reads all-ones,
/// which denies access.
fn supervisor_byte(cx: &mut Interp, lin: u64) -> Result<u8, Exception> {
    let t = mmu::translate(&cx.cpu, &mut cx.mem, lin, Access::Read, false)?;
    Ok(match cx.mem.target(GuestPhysAddr(t.phys)) {
        PhysTarget::Ram(off) => cx.mem.read_ram(off, Width::B) as u8,
        _ => 0xff,
    })
}

/// True when the TSS I/O permission bitmap allows `w` bytes at `port`.
fn bitmap_allows(cx: &mut Interp, port: u16, w: Width) -> Result<bool, Exception> {
    let tr = cx.cpu.tr;
    let kind = tr.attrs & seg_attr::TYPE;
    if tr.attrs & seg_attr::S != 0
        || !(kind == TSS_AVAILABLE || kind == TSS_BUSY)
        || tr.limit < TSS_MIN_LIMIT
    {
        return Ok(false);
    }
    let lo = supervisor_byte(cx, tr.base.wrapping_add(TSS_IOMAP_BASE))? as u64;
    let hi = supervisor_byte(cx, tr.base.wrapping_add(TSS_IOMAP_BASE + 1))? as u64;
    let map = lo | hi << 8;
    // The ports' bits may span two bytes; both must lie inside the limit.
    let first = map + port as u64 / 8;
    if first + 1 > tr.limit as u64 {
        return Ok(false);
    }
    let b0 = supervisor_byte(cx, tr.base.wrapping_add(first))? as u16;
    let b1 = supervisor_byte(cx, tr.base.wrapping_add(first + 1))? as u16;
    let bits = b0 | b1 << 8;
    let mask = ((1u16 << w.bytes()) - 1) << (port & 7);
    Ok(bits & mask == 0)
}

/// Raise #GP(0) unless the current privilege may access `w` bytes at `port`.
fn check_port(cx: &mut Interp, port: u16, w: Width) -> SemResult {
    if cx.cpu.cr0 & cr0::PE == 0 {
        return Ok(());
    }
    let flags = cx.cpu.rflags;
    let iopl = ((flags & FlagSet::IOPL.bits()) >> 12) as u8;
    let v86 = flags & FlagSet::VM.bits() != 0;
    if !v86 && cx.cpu.cpl <= iopl {
        return Ok(());
    }
    match bitmap_allows(cx, port, w) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::Fault(Exception::gp(0))),
        Err(ex) => Err(Stop::Fault(ex)),
    }
}

/// Width of a register operand (AL, AX, EAX).
fn reg_width(r: Register) -> Width {
    match r.size() {
        1 => Width::B,
        2 => Width::W,
        _ => Width::D,
    }
}

/// The port operand: an 8-bit immediate or DX.
fn port_of(cx: &mut Interp, i: &Instruction, n: u32) -> u16 {
    if i.op_kind(n) == OpKind::Register {
        get(cx, Gpr::Rdx, Width::W) as u16
    } else {
        i.immediate8() as u16
    }
}

/// IN AL/AX/EAX, imm8 | DX.
fn in_(cx: &mut Interp, insn: &Insn) -> SemResult {
    let w = reg_width(insn.i.op0_register());
    let port = port_of(cx, &insn.i, 1);
    check_port(cx, port, w)?;
    let v = cx.port_read(port, w);
    set(cx, Gpr::Rax, w, v as u64);
    Ok(())
}

/// OUT imm8 | DX, AL/AX/EAX.
fn out(cx: &mut Interp, insn: &Insn) -> SemResult {
    let w = reg_width(insn.i.op1_register());
    let port = port_of(cx, &insn.i, 0);
    check_port(cx, port, w)?;
    let v = get(cx, Gpr::Rax, w);
    cx.port_write(port, w, v as u32);
    Ok(())
}

/// A decoded INS or OUTS.
#[derive(Clone, Copy, Debug)]
struct StrIo {
    /// INS (port to ES:DI) or OUTS (seg:SI to port).
    input: bool,
    /// Element size.
    w: Width,
    /// Address size: selects SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX.
    aw: Width,
    /// Source segment of OUTS (DS unless overridden).
    src: Seg,
    rep: bool,
}

impl StrIo {
    fn of(i: &Instruction) -> StrIo {
        use Mnemonic as M;
        let (input, w) = match i.mnemonic() {
            M::Insb => (true, Width::B),
            M::Insw => (true, Width::W),
            M::Insd => (true, Width::D),
            M::Outsb => (false, Width::B),
            M::Outsw => (false, Width::W),
            _ => (false, Width::D),
        };
        let mut aw = Width::Q;
        for n in 0..i.op_count() {
            match i.op_kind(n) {
                OpKind::MemorySegSI | OpKind::MemoryESDI => aw = Width::W,
                OpKind::MemorySegESI | OpKind::MemoryESEDI => aw = Width::D,
                OpKind::MemorySegRSI | OpKind::MemoryESRDI => aw = Width::Q,
                _ => {}
            }
        }
        let src = if input {
            Seg::Ds
        } else {
            seg_of(i.memory_segment()).unwrap_or(Seg::Ds)
        };
        StrIo {
            input,
            w,
            aw,
            src,
            // F2 and F3 both repeat INS/OUTS.
            rep: i.has_rep_prefix() || i.has_repne_prefix(),
        }
    }
}

/// Advance SI or DI by one element (backwards when DF is set), wrapping
/// at the address size.
fn advance(cx: &mut Interp, r: Gpr, op: &StrIo) {
    let step = op.w.bytes() as u64;
    let d = if cx.cpu.rflags & FlagSet::DF.bits() != 0 {
        step.wrapping_neg()
    } else {
        step
    };
    let v = get(cx, r, op.aw).wrapping_add(d) & op.aw.mask();
    set(cx, r, op.aw, v);
}

/// One element. Every check that can fault comes before the device is
/// touched: INS probes its destination first, OUTS loads its source first.
fn once(cx: &mut Interp, op: &StrIo, port: u16) -> SemResult {
    if op.input {
        let off = get(cx, Gpr::Rdi, op.aw);
        let dst = linear(cx, Seg::Es, off);
        mmu::probe_write(&mut cx.cpu, &mut cx.mem, dst, op.w).map_err(Stop::Fault)?;
        let v = cx.port_read(port, op.w);
        cx.store(dst, op.w, v as u64)?;
        advance(cx, Gpr::Rdi, op);
    } else {
        let off = get(cx, Gpr::Rsi, op.aw);
        let src = linear(cx, op.src, off);
        let v = cx.load(src, op.w)?;
        cx.port_write(port, op.w, v as u32);
        advance(cx, Gpr::Rsi, op);
    }
    Ok(())
}

/// INS / OUTS with or without REP. A REP form does one iteration per call:
/// the last one (or RCX = 0) retires through `step`; any earlier one is
/// retired here and the instruction restarts after the run loop has seen
/// the device access.
fn string_io(cx: &mut Interp, insn: &Insn) -> SemResult {
    let op = StrIo::of(&insn.i);
    let port = get(cx, Gpr::Rdx, Width::W) as u16;
    check_port(cx, port, op.w)?;
    if !op.rep {
        return once(cx, &op, port);
    }
    let count = get(cx, Gpr::Rcx, op.aw);
    if count == 0 {
        return Ok(());
    }
    once(cx, &op, port)?;
    set(cx, Gpr::Rcx, op.aw, count - 1);
    if count - 1 == 0 {
        return Ok(());
    }
    // `step` is only entered with budget left, so this iteration fits.
    cx.retire_extra(1);
    Err(Stop::Restart)
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    match i.mnemonic() {
        M::In => Some(Sem::Helper(in_)),
        M::Out => Some(Sem::Helper(out)),
        M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd => {
            Some(Sem::Helper(string_io))
        }
        _ => None,
    }
}
