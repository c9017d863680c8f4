//! System instructions: descriptor-table registers (LGDT LIDT LLDT LTR SGDT
//! SIDT SLDT STR), CR0 via SMSW/LMSW/CLTS, MOV to/from CR0/2/3/4/8 and
//! DR0–7, RDMSR/WRMSR, SWAPGS, INVLPG, WBINVD/INVD and the software
//! interrupts INT n, INT3, INTO and INT1 (ICEBP).
//!
//! Privileged instructions raise #GP(0) at CPL > 0 (and in virtual-8086
//! mode, where CPL is 3). Debug registers are storage only: breakpoints
//! and DR7.GD are not implemented.

use super::operand::{self, ea, opnd, read, write};
use super::Sem;
use crate::block::{Insn, InterpFn};
use crate::descriptor::{self as dt, sel_err, sys_type};
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::{Cond, FlagSet};
use crate::interp::Interp;
use crate::interrupt::{self, Event, EventKind};
use crate::mmu::{self, is_canonical};
use crate::state::{cr0, cr4, efer, exit_req, seg_attr, DescriptorTable, Gpr, Seg, Segment};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

fn fault<T>(e: Exception) -> SemResult<T> {
    Err(Stop::Fault(e))
}

/// #GP(0) unless at CPL 0.
fn require_cpl0(cx: &Interp) -> SemResult {
    if cx.cpu.cpl != 0 {
        return fault(Exception::gp(0));
    }
    Ok(())
}

/// #UD outside protected mode (real and virtual-8086 mode).
fn require_protected(cx: &Interp) -> SemResult {
    if !dt::protected(cx) {
        return fault(Exception::ud());
    }
    Ok(())
}

/// The paging or mode state changed: the block must end so the next one is
/// looked up (and decoded) under the new state.
fn mode_changed(cx: &mut Interp) {
    cx.cpu.exit_req |= exit_req::END_BLOCK | exit_req::MODE_CHANGE;
}

// ---- descriptor-table registers -------------------------------------------

/// LGDT / LIDT m16&base: the base is 8 bytes in 64-bit mode, else 4 bytes
/// (only 24 bits used with a 16-bit operand size).
fn lgdt_lidt(cx: &mut Interp, insn: &Insn) -> SemResult {
    require_cpl0(cx)?;
    let a = ea(cx, &insn.i);
    let limit = cx.load(a, Width::W)? as u16;
    let base_a = a.wrapping_add(2);
    let base = if cx.bitness() == 64 {
        cx.load(base_a, Width::Q)?
    } else {
        let b = cx.load(base_a, Width::D)?;
        if matches!(insn.i.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
            b & 0xff_ffff
        } else {
            b
        }
    };
    if cx.bitness() == 64 && !is_canonical(base) {
        return fault(Exception::gp(0));
    }
    let t = DescriptorTable::new(base, limit);
    if insn.i.mnemonic() == Mnemonic::Lgdt {
        cx.cpu.gdtr = t;
    } else {
        cx.cpu.idtr = t;
    }
    Ok(())
}

/// SGDT / SIDT: limit, then the base (8 bytes in 64-bit mode, else 4).
/// Not privileged (no UMIP).
fn sgdt_sidt(cx: &mut Interp, insn: &Insn) -> SemResult {
    let t = if insn.i.mnemonic() == Mnemonic::Sgdt {
        cx.cpu.gdtr
    } else {
        cx.cpu.idtr
    };
    let a = ea(cx, &insn.i);
    let bw = if cx.bitness() == 64 {
        Width::Q
    } else {
        Width::D
    };
    mmu::probe_write(&mut cx.cpu, &mut cx.mem, a, Width::W).map_err(Stop::Fault)?;
    mmu::probe_write(&mut cx.cpu, &mut cx.mem, a.wrapping_add(2), bw).map_err(Stop::Fault)?;
    cx.store(a, Width::W, t.limit as u64)?;
    cx.store(a.wrapping_add(2), bw, t.base & bw.mask())
}

/// Write a selector-sized result: zero-extended into a 32/64-bit register,
/// 16 bits to memory (SLDT, STR, SMSW).
fn store_r_m16(cx: &mut Interp, insn: &Insn, v: u64) -> SemResult {
    let mut o = opnd(cx, insn, 0);
    if o.is_mem() {
        o.w = Width::W;
    }
    write(cx, &o, v & o.w.mask())
}

fn sldt_str(cx: &mut Interp, insn: &Insn) -> SemResult {
    require_protected(cx)?;
    let sel = if insn.i.mnemonic() == Mnemonic::Sldt {
        cx.cpu.ldtr.selector
    } else {
        cx.cpu.tr.selector
    };
    store_r_m16(cx, insn, sel as u64)
}

/// The 16-bit selector operand of LLDT/LTR/LMSW (register or memory).
fn r_m16(cx: &mut Interp, insn: &Insn) -> SemResult<u64> {
    let mut o = opnd(cx, insn, 0);
    if o.is_mem() {
        o.w = Width::W;
    }
    Ok(read(cx, &o)? & 0xffff)
}

/// A system descriptor for LLDT/LTR (16 bytes in long mode): checked for
/// GDT, type and presence; returns it and its hidden segment part.
fn system_segment(
    cx: &mut Interp,
    sel: u16,
    type_ok: impl Fn(u8) -> bool,
) -> SemResult<(dt::Desc, Segment)> {
    let err = Exception::gp(sel_err(sel));
    if sel & 4 != 0 {
        return fault(err);
    }
    let long = cx.cpu.efer & efer::LMA != 0;
    let (d, hi) = if long {
        dt::fetch16(cx, sel)?
    } else {
        (dt::fetch(cx, sel)?, 0)
    };
    if d.is_seg() || !type_ok(d.typ()) {
        return fault(err);
    }
    if long && (hi >> 8) & 0x1f != 0 {
        return fault(err);
    }
    if !d.present() {
        return fault(Exception::np(sel_err(sel)));
    }
    let mut seg = d.segment(sel);
    if long {
        seg.base |= hi << 32;
        if !is_canonical(seg.base) {
            return fault(err);
        }
    }
    Ok((d, seg))
}

fn lldt(cx: &mut Interp, insn: &Insn) -> SemResult {
    require_protected(cx)?;
    require_cpl0(cx)?;
    let sel = r_m16(cx, insn)? as u16;
    if dt::is_null(sel) {
        cx.cpu.ldtr = dt::null_segment(sel);
        return Ok(());
    }
    let (_, seg) = system_segment(cx, sel, |t| t == sys_type::LDT)?;
    cx.cpu.ldtr = seg;
    Ok(())
}

/// LTR: an available TSS (only the 64-bit one in long mode); it is marked
/// busy in the GDT.
fn ltr(cx: &mut Interp, insn: &Insn) -> SemResult {
    require_protected(cx)?;
    require_cpl0(cx)?;
    let sel = r_m16(cx, insn)? as u16;
    if dt::is_null(sel) {
        return fault(Exception::gp(0));
    }
    let long = cx.cpu.efer & efer::LMA != 0;
    let (d, mut seg) = system_segment(cx, sel, |t| {
        t == sys_type::TSS_AVAIL || (!long && t == sys_type::TSS16_AVAIL)
    })?;
    let a = cx.cpu.gdtr.base.wrapping_add((sel & !7) as u64 + 5);
    let busy = ((d.0 >> 40) & 0xff) | 2;
    dt::sys_write(cx, a, Width::B, busy, false)?;
    seg.attrs |= 2;
    cx.cpu.tr = seg;
    Ok(())
}

// ---- CR0 via SMSW / LMSW / CLTS -------------------------------------------

/// SMSW: all of CR0 into a register of the operand size, 16 bits to memory.
fn smsw(cx: &mut Interp, insn: &Insn) -> SemResult {
    let v = cx.cpu.cr0;
    store_r_m16(cx, insn, v)
}

/// LMSW: loads PE, MP, EM, TS; it can set PE but never clear it.
fn lmsw(cx: &mut Interp, insn: &Insn) -> SemResult {
    require_cpl0(cx)?;
    let v = r_m16(cx, insn)?;
    let old = cx.cpu.cr0;
    cx.cpu.cr0 = (old & !0xe) | (v & 0xf) | (old & cr0::PE);
    mode_changed(cx);
    Ok(())
}

fn clts(cx: &mut Interp, _: &Insn) -> SemResult {
    require_cpl0(cx)?;
    cx.cpu.cr0 &= !cr0::TS;
    Ok(())
}

// ---- control registers ----------------------------------------------------

/// CR0 bits that exist (the others read as 0).
const CR0_BITS: u64 = cr0::PE
    | cr0::MP
    | cr0::EM
    | cr0::TS
    | cr0::ET
    | cr0::NE
    | cr0::WP
    | cr0::AM
    | cr0::NW
    | cr0::CD
    | cr0::PG;

/// CR4 bits the guest may set: TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR,
/// OSXMMEXCPT. Everything else (VME, PVI, UMIP, LA57, FSGSBASE, PCIDE,
/// OSXSAVE, SMEP, SMAP, PKE, …) is not advertised and so reserved.
const CR4_ALLOWED: u64 = (1 << 2)
    | (1 << 3)
    | cr4::PSE
    | cr4::PAE
    | (1 << 6)
    | cr4::PGE
    | (1 << 8)
    | cr4::OSFXSR
    | cr4::OSXMMEXCPT;

/// Physical-address width of CR3 (CPUID 0x80000008: 40 bits).
const CR3_LONG_ALLOWED: u64 = (1 << 40) - 1;

/// MOV CR0: reserved-bit and consistency checks, long-mode activation
/// (LMA = 1 when PG is set with LME = 1, which needs PAE and not a 64-bit
/// CS) and deactivation, TLB flushes for PG/WP changes.
pub fn write_cr0(cx: &mut Interp, v: u64) -> Result<(), Exception> {
    let gp = Exception::gp(0);
    if v >> 32 != 0 {
        return Err(gp);
    }
    let v = (v & CR0_BITS) | cr0::ET;
    if (v & cr0::PG != 0 && v & cr0::PE == 0) || (v & cr0::NW != 0 && v & cr0::CD == 0) {
        return Err(gp);
    }
    let old = cx.cpu.cr0;
    let mut efer_v = cx.cpu.efer;
    if old & cr0::PG == 0 && v & cr0::PG != 0 && efer_v & efer::LME != 0 {
        if cx.cpu.cr4 & cr4::PAE == 0 || cx.cpu.seg[Seg::Cs as usize].attrs & seg_attr::L != 0 {
            return Err(gp);
        }
        efer_v |= efer::LMA;
    }
    if old & cr0::PG != 0 && v & cr0::PG == 0 && efer_v & efer::LMA != 0 {
        if cx.cpu.in_64bit_mode() {
            return Err(gp);
        }
        efer_v &= !efer::LMA;
    }
    if (old ^ v) & (cr0::PG | cr0::WP | cr0::PE) != 0 {
        cx.cpu.tlb.flush_all();
    }
    cx.cpu.cr0 = v;
    cx.cpu.efer = efer_v;
    mode_changed(cx);
    Ok(())
}

/// MOV CR3: flushes the non-global TLB entries.
pub fn write_cr3(cx: &mut Interp, v: u64) -> Result<(), Exception> {
    if cx.cpu.efer & efer::LMA != 0 && v & !CR3_LONG_ALLOWED != 0 {
        return Err(Exception::gp(0));
    }
    cx.cpu.cr3 = v;
    cx.cpu.tlb.flush_non_global();
    mode_changed(cx);
    Ok(())
}

/// MOV CR4: reserved bits, PAE cannot be cleared in long mode; a change of
/// PGE, PAE or PSE flushes everything (including global entries).
pub fn write_cr4(cx: &mut Interp, v: u64) -> Result<(), Exception> {
    if v & !CR4_ALLOWED != 0 {
        return Err(Exception::gp(0));
    }
    if cx.cpu.efer & efer::LMA != 0 && v & cr4::PAE == 0 {
        return Err(Exception::gp(0));
    }
    let old = cx.cpu.cr4;
    if (old ^ v) & (cr4::PGE | cr4::PAE | cr4::PSE) != 0 {
        cx.cpu.tlb.flush_all();
    }
    cx.cpu.cr4 = v;
    mode_changed(cx);
    Ok(())
}

/// The control/debug register number of an iced register.
fn cr_number(r: Register) -> Option<u32> {
    if r.is_cr() {
        Some(r as u32 - Register::CR0 as u32)
    } else if r.is_dr() {
        Some(r as u32 - Register::DR0 as u32)
    } else {
        None
    }
}

fn gpr_operand(i: &Instruction, n: u32) -> SemResult<operand::RegView> {
    operand::reg_view(i.op_register(n)).ok_or(Stop::Fault(Exception::ud()))
}

/// MOV r, CRn / MOV CRn, r (the GPR is 64-bit in 64-bit mode, else 32-bit).
fn mov_cr(cx: &mut Interp, insn: &Insn) -> SemResult {
    if cx.cpu.rflags & FlagSet::VM.bits() != 0 {
        return fault(Exception::gp(0));
    }
    require_cpl0(cx)?;
    let i = &insn.i;
    let to_cr = i.op0_register().is_cr();
    let (crr, g) = if to_cr {
        (i.op0_register(), gpr_operand(i, 1)?)
    } else {
        (i.op1_register(), gpr_operand(i, 0)?)
    };
    let n = cr_number(crr).unwrap_or(1);
    if to_cr {
        let v = operand::read_reg(cx, g);
        let r = match n {
            0 => write_cr0(cx, v),
            2 => {
                cx.cpu.cr2 = v;
                Ok(())
            }
            3 => write_cr3(cx, v),
            4 => write_cr4(cx, v),
            8 if v & !0xf == 0 => {
                cx.cpu.cr8 = v;
                Ok(())
            }
            8 => Err(Exception::gp(0)),
            _ => Err(Exception::ud()),
        };
        return r.map_err(Stop::Fault);
    }
    let v = match n {
        0 => cx.cpu.cr0,
        2 => cx.cpu.cr2,
        3 => cx.cpu.cr3,
        4 => cx.cpu.cr4,
        8 => cx.cpu.cr8,
        _ => return fault(Exception::ud()),
    };
    operand::write_reg(cx, g, v & g.w.mask());
    Ok(())
}

/// MOV r, DRn / MOV DRn, r. DR4/DR5 alias DR6/DR7 unless CR4.DE (then
/// #UD). DR6 and DR7 keep their fixed bits.
fn mov_dr(cx: &mut Interp, insn: &Insn) -> SemResult {
    if cx.cpu.rflags & FlagSet::VM.bits() != 0 {
        return fault(Exception::gp(0));
    }
    require_cpl0(cx)?;
    let i = &insn.i;
    let to_dr = i.op0_register().is_dr();
    let (drr, g) = if to_dr {
        (i.op0_register(), gpr_operand(i, 1)?)
    } else {
        (i.op1_register(), gpr_operand(i, 0)?)
    };
    let mut n = cr_number(drr).unwrap_or(8) as usize;
    if n == 4 || n == 5 {
        if cx.cpu.cr4 & (1 << 3) != 0 {
            return fault(Exception::ud());
        }
        n += 2;
    }
    if n > 7 {
        return fault(Exception::ud());
    }
    if !to_dr {
        let v = cx.cpu.dr[n];
        operand::write_reg(cx, g, v & g.w.mask());
        return Ok(());
    }
    let v = operand::read_reg(cx, g);
    if n >= 6 && v >> 32 != 0 {
        return fault(Exception::gp(0));
    }
    cx.cpu.dr[n] = match n {
        6 => (v & 0xe00f) | 0xffff_0ff0,
        7 => (v & 0xffff_23ff) | 0x400,
        _ => v,
    };
    Ok(())
}

// ---- MSRs, SWAPGS, caches, TLB --------------------------------------------

fn rdmsr(cx: &mut Interp, _: &Insn) -> SemResult {
    require_cpl0(cx)?;
    let idx = cx.cpu.reg(Gpr::Rcx) as u32;
    let v = crate::msr::read(cx, idx).map_err(Stop::Fault)?;
    cx.cpu.set_reg(Gpr::Rax, v & 0xffff_ffff);
    cx.cpu.set_reg(Gpr::Rdx, v >> 32);
    Ok(())
}

fn wrmsr(cx: &mut Interp, _: &Insn) -> SemResult {
    require_cpl0(cx)?;
    let idx = cx.cpu.reg(Gpr::Rcx) as u32;
    let v = (cx.cpu.reg(Gpr::Rdx) << 32) | (cx.cpu.reg(Gpr::Rax) & 0xffff_ffff);
    crate::msr::write(cx, idx, v).map_err(Stop::Fault)?;
    mode_changed(cx);
    Ok(())
}

/// SWAPGS: exchange GS.base and KERNEL_GS_BASE (64-bit mode, CPL 0).
fn swapgs(cx: &mut Interp, _: &Insn) -> SemResult {
    if !cx.cpu.in_64bit_mode() {
        return fault(Exception::ud());
    }
    require_cpl0(cx)?;
    let gs = &mut cx.cpu.seg[Seg::Gs as usize].base;
    std::mem::swap(gs, &mut cx.cpu.msr.kernel_gs_base);
    Ok(())
}

/// INVLPG m: drop the TLB entries of the page (never faults).
fn invlpg(cx: &mut Interp, insn: &Insn) -> SemResult {
    require_cpl0(cx)?;
    if insn.i.op0_kind() != OpKind::Memory {
        return fault(Exception::ud());
    }
    let lin = ea(cx, &insn.i);
    mmu::invlpg(&mut cx.cpu, &mut cx.mem, lin);
    Ok(())
}

/// WBINVD / INVD: no caches to write back.
fn wbinvd(cx: &mut Interp, _: &Insn) -> SemResult {
    require_cpl0(cx)
}

// ---- software interrupts --------------------------------------------------

/// Deliver a software interrupt that has retired: the saved RIP is the next
/// instruction. A fault while delivering is a fault of this instruction
/// (saved RIP = the INT itself, nothing retired).
fn soft_int(cx: &mut Interp, insn: &Insn, vector: u8, kind: EventKind) -> SemResult {
    if cx.cpu.rflags & FlagSet::VM.bits() != 0 && kind == EventKind::Software {
        log::warn!("INT n in virtual-8086 mode is not implemented");
        return fault(Exception::gp(0));
    }
    let ev = Event {
        vector,
        kind,
        error_code: None,
    };
    let next = insn.next_ip();
    if cx.exceptions_exit {
        // The embedder takes events itself: report the interrupt as a
        // trap (it retired, RIP after it) instead of delivering it.
        cx.cpu.rip = crate::interp::mask_ip(next, cx.bitness());
        cx.retire_extra(1);
        return fault(Exception {
            vector,
            has_error_code: false,
            error_code: 0,
            address: 0,
        });
    }
    interrupt::deliver(cx, ev, next).map_err(Stop::Fault)?;
    let rip = cx.cpu.rip;
    cx.far_jump(rip);
    Ok(())
}

fn int_n(cx: &mut Interp, insn: &Insn) -> SemResult {
    soft_int(cx, insn, insn.i.immediate8(), EventKind::Software)
}

fn int3(cx: &mut Interp, insn: &Insn) -> SemResult {
    soft_int(cx, insn, crate::exception::vector::BP, EventKind::Software)
}

fn int1(cx: &mut Interp, insn: &Insn) -> SemResult {
    soft_int(cx, insn, crate::exception::vector::DB, EventKind::Icebp)
}

/// INTO: #OF (as a trap) when OF is set, else nothing.
fn into(cx: &mut Interp, insn: &Insn) -> SemResult {
    if cx.cond(Cond::O) == 0 {
        return Ok(());
    }
    soft_int(cx, insn, crate::exception::vector::OF, EventKind::Software)
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let reg = |n: u32| i.op_count() > n && i.op_kind(n) == OpKind::Register;
    let is_cr = |n: u32| reg(n) && i.op_register(n).is_cr();
    let is_dr = |n: u32| reg(n) && i.op_register(n).is_dr();
    let h: InterpFn = match i.mnemonic() {
        M::Lgdt | M::Lidt => lgdt_lidt,
        M::Sgdt | M::Sidt => sgdt_sidt,
        M::Sldt | M::Str => sldt_str,
        M::Lldt => lldt,
        M::Ltr => ltr,
        M::Smsw => smsw,
        M::Lmsw => lmsw,
        M::Clts => clts,
        M::Mov if is_cr(0) || is_cr(1) => mov_cr,
        M::Mov if is_dr(0) || is_dr(1) => mov_dr,
        M::Rdmsr => rdmsr,
        M::Wrmsr => wrmsr,
        M::Swapgs => swapgs,
        M::Invlpg => invlpg,
        M::Wbinvd | M::Invd => wbinvd,
        M::Int => int_n,
        M::Int3 => int3,
        M::Int1 => int1,
        M::Into => into,
        _ => return None,
    };
    Some(Sem::Helper(h))
}
