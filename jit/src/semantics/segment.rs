//! Segment-register loads and far control transfers: MOV/POP/PUSH Sreg,
//! LDS/LES/LFS/LGS/LSS, far JMP/CALL/RET through code-segment descriptors,
//! IRET (real mode; protected mode to the same or an outer privilege level;
//! 64-bit mode and compatibility mode), SYSCALL/SYSRET, SYSENTER/SYSEXIT,
//! and LAR/LSL/VERR/VERW.
//!
//! Not implemented (raise #GP and log): call gates, task gates and task
//! switches (far JMP/CALL to a TSS, IRET with NT = 1), virtual-8086 mode
//! (IRET to VM = 1). Segment-limit checks of ordinary data accesses are not
//! done anywhere.

use super::operand::{self, ea, opnd, read, stack_width, write};
use super::Sem;
use crate::block::{Insn, InterpFn};
use crate::descriptor::{self as dt, CodeEntry};
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::FlagSet;
use crate::interp::Interp;
use crate::mmu::is_canonical;
use crate::state::{efer, seg_attr, Gpr, Seg, Segment};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

fn fault<T>(e: Exception) -> SemResult<T> {
    Err(Stop::Fault(e))
}

/// Check `sel` for segment register `s` (not CS) and return what it loads.
fn load_sreg(cx: &mut Interp, s: Seg, sel: u16) -> Result<Segment, Exception> {
    match s {
        Seg::Ss => {
            let long = cx.cpu.in_64bit_mode();
            dt::load_ss(cx, sel, cx.cpu.cpl, long)
        }
        Seg::Cs => Err(Exception::ud()),
        _ => dt::load_data_seg(cx, s, sel),
    }
}

fn commit_sreg(cx: &mut Interp, s: Seg, seg: Segment) {
    dt::commit_seg(cx, s, seg);
    if s == Seg::Ss {
        // Interrupts (and debug traps) are inhibited until the next
        // instruction has run, so that MOV SS; MOV ESP is atomic.
        cx.cpu.interrupt_shadow = 1;
    }
}

/// MOV Sreg, r/m16.
fn mov_to_sreg(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = operand::seg_of(insn.i.op0_register()).ok_or(Stop::Fault(Exception::ud()))?;
    if s == Seg::Cs {
        return fault(Exception::ud());
    }
    let sel = if insn.i.op1_kind() == OpKind::Memory {
        let a = ea(cx, &insn.i);
        cx.load(a, Width::W)? as u16
    } else {
        let v = operand::reg_view(insn.i.op1_register()).ok_or(Stop::Fault(Exception::ud()))?;
        operand::read_reg(cx, v) as u16
    };
    let seg = load_sreg(cx, s, sel)?;
    commit_sreg(cx, s, seg);
    Ok(())
}

/// MOV r/m, Sreg: a register destination of 32 or 64 bits gets the
/// selector zero-extended; memory gets 16 bits.
fn mov_from_sreg(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = operand::seg_of(insn.i.op1_register()).ok_or(Stop::Fault(Exception::ud()))?;
    let sel = cx.cpu.seg[s as usize].selector as u64;
    let o = opnd(cx, insn, 0);
    let o = if o.is_mem() {
        operand::Opnd { w: Width::W, ..o }
    } else {
        o
    };
    write(cx, &o, sel)
}

/// POP DS/ES/SS/FS/GS: the value is popped at the operand size; only its
/// low 16 bits are the selector.
fn pop_sreg(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = operand::seg_of(insn.i.op0_register()).ok_or(Stop::Fault(Exception::ud()))?;
    let w = Width::from_bytes(insn.i.stack_pointer_increment() as u32).unwrap_or(Width::W);
    let (v, nsp) = operand::pop_value(cx, w)?;
    let seg = load_sreg(cx, s, v as u16)?;
    operand::set_sp(cx, nsp);
    commit_sreg(cx, s, seg);
    Ok(())
}

/// PUSH Sreg: the selector zero-extended to the operand size (as AMD
/// hosts and QEMU do; recent Intel CPUs write only 16 bits).
fn push_sreg(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = operand::seg_of(insn.i.op0_register()).ok_or(Stop::Fault(Exception::ud()))?;
    let w = Width::from_bytes(insn.i.stack_pointer_increment().unsigned_abs()).unwrap_or(Width::W);
    let sel = cx.cpu.seg[s as usize].selector as u64;
    operand::push(cx, w, sel)
}

/// Width of the offset part of a far pointer in memory (m16:16/32/64).
fn far_ptr_width(i: &Instruction) -> Width {
    Width::from_bytes(i.memory_size().size() as u32 - 2).unwrap_or(Width::D)
}

/// LDS, LES, LFS, LGS, LSS r, m16:off.
fn load_far_pointer(cx: &mut Interp, insn: &Insn) -> SemResult {
    let s = match insn.i.mnemonic() {
        Mnemonic::Lds => Seg::Ds,
        Mnemonic::Les => Seg::Es,
        Mnemonic::Lfs => Seg::Fs,
        Mnemonic::Lgs => Seg::Gs,
        _ => Seg::Ss,
    };
    let w = far_ptr_width(&insn.i);
    let a = ea(cx, &insn.i);
    let off = cx.load(a, w)?;
    let sel = cx.load(a.wrapping_add(w.bytes() as u64), Width::W)? as u16;
    let seg = load_sreg(cx, s, sel)?;
    let r = operand::reg_view(insn.i.op0_register()).ok_or(Stop::Fault(Exception::ud()))?;
    // LSS does not inhibit interrupts (only MOV SS and POP SS do).
    dt::commit_seg(cx, s, seg);
    operand::write_reg(cx, r, off);
    Ok(())
}

/// Stack accesses of a far transfer, at the current SS and stack width.
struct Stack {
    sp: u64,
    w: Width,
}

impl Stack {
    fn current(cx: &Interp) -> Stack {
        let w = stack_width(cx);
        Stack {
            sp: cx.cpu.gpr[4] & w.mask(),
            w,
        }
    }

    fn lin(&self, cx: &mut Interp, off: u64) -> u64 {
        let sp = self.sp.wrapping_add(off) & self.w.mask();
        operand::linear(cx, Seg::Ss, sp)
    }

    /// Read `w` bytes at SP + `off`.
    fn peek(&self, cx: &mut Interp, off: u64, w: Width) -> SemResult<u64> {
        let a = self.lin(cx, off);
        cx.load(a, w)
    }

    /// Store `w` bytes at SP - `off`.
    fn poke_below(&self, cx: &mut Interp, off: u64, w: Width, v: u64) -> SemResult {
        let a = self.lin(cx, off.wrapping_neg());
        cx.store(a, w, v)
    }

    /// The new RSP after moving SP by `delta`, keeping the bits above the
    /// stack width.
    fn moved(&self, cx: &Interp, delta: u64) -> u64 {
        let m = self.w.mask();
        (cx.cpu.gpr[4] & !m) | (self.sp.wrapping_add(delta) & m)
    }
}

/// Real mode (or a 16-bit protected-mode transfer decoded the same way):
/// CS = sel, base = sel * 16.
fn real_cs(cx: &Interp, sel: u16) -> Segment {
    Segment {
        base: (sel as u64) << 4,
        selector: sel,
        ..cx.cpu.seg[Seg::Cs as usize]
    }
}

/// The far target of JMP/CALL ptr16:xx or m16:xx: (selector, offset, size).
fn far_target(cx: &mut Interp, insn: &Insn) -> SemResult<(u16, u64, Width)> {
    let i = &insn.i;
    match i.op0_kind() {
        OpKind::FarBranch16 => Ok((i.far_branch_selector(), i.far_branch16() as u64, Width::W)),
        OpKind::FarBranch32 => Ok((i.far_branch_selector(), i.far_branch32() as u64, Width::D)),
        _ => {
            let w = far_ptr_width(i);
            let a = ea(cx, i);
            let off = cx.load(a, w)?;
            let sel = cx.load(a.wrapping_add(w.bytes() as u64), Width::W)? as u16;
            Ok((sel, off, w))
        }
    }
}

/// The code segment a far JMP/CALL enters, and the new RIP.
fn far_entry(cx: &mut Interp, sel: u16, off: u64) -> SemResult<(Segment, u8)> {
    if !dt::protected(cx) {
        if cx.cpu.cr0 & crate::state::cr0::PE != 0 {
            log::warn!("far transfer in virtual-8086 mode is not implemented");
            return fault(Exception::gp(0));
        }
        return Ok((real_cs(cx, sel), 0));
    }
    let (cs, cpl) = dt::load_cs(cx, sel, CodeEntry::JmpCall)?;
    dt::check_ip(cx, &cs, off)?;
    Ok((cs, cpl))
}

fn far_jmp(cx: &mut Interp, insn: &Insn) -> SemResult {
    let (sel, off, _) = far_target(cx, insn)?;
    let (cs, cpl) = far_entry(cx, sel, off)?;
    dt::commit_cs(cx, cs, cpl);
    cx.far_jump(off);
    Ok(())
}

fn far_call(cx: &mut Interp, insn: &Insn) -> SemResult {
    let (sel, off, w) = far_target(cx, insn)?;
    let (cs, cpl) = far_entry(cx, sel, off)?;
    let st = Stack::current(cx);
    let n = w.bytes() as u64;
    let old_cs = cx.cpu.seg[Seg::Cs as usize].selector as u64;
    st.poke_below(cx, n, w, old_cs)?;
    st.poke_below(cx, 2 * n, w, insn.next_ip() & w.mask())?;
    let nsp = st.moved(cx, (2 * n).wrapping_neg());
    cx.cpu.gpr[4] = nsp;
    dt::commit_cs(cx, cs, cpl);
    cx.far_jump(off);
    Ok(())
}

/// Operand size of RET far / IRET from their encoding.
fn return_width(i: &Instruction) -> Width {
    match i.code() {
        Code::Retfw | Code::Retfw_imm16 | Code::Iretw => Width::W,
        Code::Retfq | Code::Retfq_imm16 | Code::Iretq => Width::Q,
        _ => Width::D,
    }
}

/// RET far [imm16]: to the same privilege level, or to an outer one
/// (popping SS:SP too, which are checked at the new CPL).
fn far_ret(cx: &mut Interp, insn: &Insn) -> SemResult {
    let w = return_width(&insn.i);
    let n = w.bytes() as u64;
    let imm = if insn.i.op_count() > 0 {
        insn.i.immediate16() as u64
    } else {
        0
    };
    let st = Stack::current(cx);
    let ip = st.peek(cx, 0, w)?;
    let sel = st.peek(cx, n, Width::W)? as u16;
    if !dt::protected(cx) {
        if cx.cpu.cr0 & crate::state::cr0::PE != 0 {
            return fault(Exception::gp(0));
        }
        cx.cpu.gpr[4] = st.moved(cx, 2 * n + imm);
        let cs = real_cs(cx, sel);
        dt::commit_cs(cx, cs, 0);
        cx.far_jump(ip);
        return Ok(());
    }
    let (cs, new_cpl) = dt::load_cs(cx, sel, CodeEntry::Return)?;
    if new_cpl == cx.cpu.cpl {
        dt::check_ip(cx, &cs, ip)?;
        cx.cpu.gpr[4] = st.moved(cx, 2 * n + imm);
        dt::commit_cs(cx, cs, new_cpl);
        cx.far_jump(ip);
        return Ok(());
    }
    // Return to an outer privilege level.
    let sp = st.peek(cx, 2 * n + imm, w)?;
    let ss_sel = st.peek(cx, 3 * n + imm, Width::W)? as u16;
    let long64 = dt::is_64bit_cs(cx, &cs);
    let ss = dt::load_ss(cx, ss_sel, new_cpl, long64)?;
    dt::check_ip(cx, &cs, ip)?;
    outer_return(cx, cs, new_cpl, ss, sp.wrapping_add(imm), ip);
    Ok(())
}

/// Commit a return to an outer privilege level (RET far, IRET).
fn outer_return(cx: &mut Interp, cs: Segment, cpl: u8, ss: Segment, sp: u64, ip: u64) {
    dt::commit_cs(cx, cs, cpl);
    set_ss_sp(cx, ss, sp);
    dt::invalidate_inner_segments(cx, cpl);
    cx.far_jump(ip);
}

/// Load SS and the stack pointer at the new stack's width.
fn set_ss_sp(cx: &mut Interp, ss: Segment, sp: u64) {
    let long64 = cx.cpu.in_64bit_mode();
    cx.cpu.seg[Seg::Ss as usize] = ss;
    cx.cpu.gpr[4] = if long64 {
        sp
    } else if ss.attrs & seg_attr::DB != 0 {
        sp & 0xffff_ffff
    } else {
        (cx.cpu.gpr[4] & !0xffff) | (sp & 0xffff)
    };
}

/// The EFLAGS bits IRET may change (SDM IRET operation): the status and
/// control flags always, IF only when CPL <= IOPL, IOPL, VIF and VIP only
/// at CPL 0; never VM here (virtual-8086 returns are refused earlier).
fn iret_mask(cpl: u8, cur: u64, w: Width) -> u64 {
    let mut m = FlagSet::ARITH.bits()
        | (FlagSet::TF | FlagSet::DF | FlagSet::NT | FlagSet::RF | FlagSet::AC | FlagSet::ID)
            .bits();
    let iopl = (cur >> 12) & 3;
    if cpl as u64 <= iopl {
        m |= FlagSet::IF.bits();
    }
    if cpl == 0 {
        m |= FlagSet::IOPL.bits() | (1 << 19) | (1 << 20);
    }
    m & w.mask()
}

fn iret_real(cx: &mut Interp, w: Width) -> SemResult {
    let n = w.bytes() as u64;
    let st = Stack::current(cx);
    let ip = st.peek(cx, 0, w)?;
    let sel = st.peek(cx, n, Width::W)? as u16;
    let fl = st.peek(cx, 2 * n, w)?;
    let cur = cx.cpu.rflags();
    // Real mode: VM, VIF, VIP and IOPL... only what the size covers; VM,
    // VIF and VIP are kept (SDM: AND 257FD5H, OR old AND 1A0000H).
    let m = 0x257fd5 & w.mask();
    let new = (cur & !m) | (fl & m);
    cx.cpu.gpr[4] = st.moved(cx, 3 * n);
    let cs = real_cs(cx, sel);
    dt::commit_cs(cx, cs, 0);
    cx.cpu.set_rflags(new);
    cx.far_jump(ip & w.mask());
    Ok(())
}

/// IRET / IRETD / IRETQ.
fn iret(cx: &mut Interp, insn: &Insn) -> SemResult {
    let w = return_width(&insn.i);
    if !dt::protected(cx) {
        if cx.cpu.cr0 & crate::state::cr0::PE != 0 {
            log::warn!("IRET in virtual-8086 mode is not implemented");
            return fault(Exception::gp(0));
        }
        return iret_real(cx, w);
    }
    let cur = cx.cpu.rflags();
    let long_mode = cx.cpu.efer & efer::LMA != 0;
    if cur & FlagSet::NT.bits() != 0 {
        if !long_mode {
            log::warn!("IRET with NT = 1 (task return) is not implemented");
        }
        return fault(Exception::gp(0));
    }
    let n = w.bytes() as u64;
    let st = Stack::current(cx);
    let ip = st.peek(cx, 0, w)?;
    let sel = st.peek(cx, n, Width::W)? as u16;
    let fl = st.peek(cx, 2 * n, w)?;
    let cpl = cx.cpu.cpl;
    if !long_mode && fl & FlagSet::VM.bits() != 0 && cpl == 0 {
        log::warn!("IRET to virtual-8086 mode is not implemented");
        return fault(Exception::gp(0));
    }
    let (cs, new_cpl) = dt::load_cs(cx, sel, CodeEntry::Return)?;
    let new_flags = (cur & !iret_mask(cpl, cur, w)) | (fl & iret_mask(cpl, cur, w));
    if cx.cpu.in_64bit_mode() || new_cpl != cpl {
        // 64-bit mode always pops SS:RSP; elsewhere only on a privilege change.
        let sp = st.peek(cx, 3 * n, w)?;
        let ss_sel = st.peek(cx, 4 * n, Width::W)? as u16;
        let long64 = dt::is_64bit_cs(cx, &cs);
        let ss = dt::load_ss(cx, ss_sel, new_cpl, long64)?;
        dt::check_ip(cx, &cs, ip)?;
        cx.cpu.set_rflags(new_flags);
        if new_cpl != cpl {
            outer_return(cx, cs, new_cpl, ss, sp, ip);
        } else {
            dt::commit_cs(cx, cs, new_cpl);
            set_ss_sp(cx, ss, sp);
            cx.far_jump(ip);
        }
        return Ok(());
    }
    dt::check_ip(cx, &cs, ip)?;
    cx.cpu.gpr[4] = st.moved(cx, 3 * n);
    dt::commit_cs(cx, cs, new_cpl);
    cx.cpu.set_rflags(new_flags);
    cx.far_jump(ip);
    Ok(())
}

/// A flat code segment as SYSCALL/SYSRET/SYSENTER/SYSEXIT load it.
fn flat_code(sel: u16, dpl: u8, long: bool) -> Segment {
    let mut s = Segment::code64(sel);
    s.attrs |= (dpl as u16) << seg_attr::DPL_SHIFT;
    if !long {
        s.attrs = (s.attrs & !seg_attr::L) | seg_attr::DB;
    }
    s
}

/// A flat writable stack segment with DPL `dpl`.
fn flat_stack(sel: u16, dpl: u8) -> Segment {
    let mut s = Segment::data32(sel);
    s.attrs |= (dpl as u16) << seg_attr::DPL_SHIFT;
    s
}

/// SYSCALL (64-bit mode; Intel semantics: #UD elsewhere or without
/// EFER.SCE). RCX = return RIP, R11 = RFLAGS, flat ring-0 CS/SS from
/// STAR[47:32], RIP = LSTAR, RFLAGS &= ~SFMASK.
fn syscall(cx: &mut Interp, insn: &Insn) -> SemResult {
    if !cx.cpu.in_64bit_mode() || cx.cpu.efer & efer::SCE == 0 {
        return fault(Exception::ud());
    }
    let sel = ((cx.cpu.msr.star >> 32) as u16) & 0xfffc;
    let flags = cx.cpu.rflags() & !FlagSet::RF.bits();
    cx.cpu.set_reg(Gpr::Rcx, insn.next_ip());
    cx.cpu.set_reg(Gpr::R11, flags);
    dt::commit_cs(cx, flat_code(sel, 0, true), 0);
    cx.cpu.seg[Seg::Ss as usize] = flat_stack(sel.wrapping_add(8), 0);
    cx.cpu.set_rflags(flags & !cx.cpu.msr.sfmask);
    cx.far_jump(cx.cpu.msr.lstar);
    Ok(())
}

/// SYSRET to 64-bit (REX.W) or compatibility mode at ring 3.
fn sysret(cx: &mut Interp, insn: &Insn) -> SemResult {
    if !cx.cpu.in_64bit_mode() || cx.cpu.efer & efer::SCE == 0 {
        return fault(Exception::ud());
    }
    if cx.cpu.cpl != 0 {
        return fault(Exception::gp(0));
    }
    let base = (cx.cpu.msr.star >> 48) as u16;
    let rcx = cx.cpu.reg(Gpr::Rcx);
    let (cs, rip) = if insn.i.code() == Code::Sysretq {
        if !is_canonical(rcx) {
            return fault(Exception::gp(0));
        }
        (flat_code(base.wrapping_add(16) | 3, 3, true), rcx)
    } else {
        (flat_code(base | 3, 3, false), rcx & 0xffff_ffff)
    };
    let flags = (cx.cpu.reg(Gpr::R11) & 0x3c_7fd7) | 2;
    dt::commit_cs(cx, cs, 3);
    cx.cpu.seg[Seg::Ss as usize] = flat_stack(base.wrapping_add(8) | 3, 3);
    cx.cpu.set_rflags(flags);
    cx.far_jump(rip);
    Ok(())
}

/// SYSENTER: to ring 0 at SYSENTER_CS:SYSENTER_EIP with SYSENTER_ESP.
fn sysenter(cx: &mut Interp, _: &Insn) -> SemResult {
    let cs_sel = cx.cpu.msr.sysenter_cs as u16;
    if !dt::protected(cx) || dt::is_null(cs_sel) {
        return fault(Exception::gp(0));
    }
    let long = cx.cpu.efer & efer::LMA != 0;
    let cs = flat_code(cs_sel & 0xfffc, 0, long);
    let flags = cx.cpu.rflags() & !(FlagSet::VM | FlagSet::IF | FlagSet::RF).bits();
    dt::commit_cs(cx, cs, 0);
    cx.cpu.seg[Seg::Ss as usize] = flat_stack((cs_sel & 0xfffc).wrapping_add(8), 0);
    cx.cpu.set_rflags(flags);
    let (sp, ip) = (cx.cpu.msr.sysenter_esp, cx.cpu.msr.sysenter_eip);
    cx.cpu.gpr[4] = if long { sp } else { sp & 0xffff_ffff };
    cx.far_jump(if long { ip } else { ip & 0xffff_ffff });
    Ok(())
}

/// SYSEXIT (REX.W: to 64-bit code): ring 3, RIP = RDX, RSP = RCX.
fn sysexit(cx: &mut Interp, insn: &Insn) -> SemResult {
    let cs_sel = cx.cpu.msr.sysenter_cs as u16;
    if !dt::protected(cx) || cx.cpu.cpl != 0 || dt::is_null(cs_sel) {
        return fault(Exception::gp(0));
    }
    let q = insn.i.code() == Code::Sysexitq;
    let (rip, rsp) = (cx.cpu.reg(Gpr::Rdx), cx.cpu.reg(Gpr::Rcx));
    if q && !(is_canonical(rip) && is_canonical(rsp)) {
        return fault(Exception::gp(0));
    }
    let (cs, ss) = if q {
        (cs_sel.wrapping_add(32), cs_sel.wrapping_add(40))
    } else {
        (cs_sel.wrapping_add(16), cs_sel.wrapping_add(24))
    };
    dt::commit_cs(cx, flat_code(cs | 3, 3, q), 3);
    cx.cpu.seg[Seg::Ss as usize] = flat_stack(ss | 3, 3);
    let m = if q { u64::MAX } else { 0xffff_ffff };
    cx.cpu.gpr[4] = rsp & m;
    cx.far_jump(rip & m);
    Ok(())
}

/// The descriptor LAR/LSL/VERR/VERW look at, if it is visible at the
/// current CPL with the selector's RPL; `None` clears ZF.
fn visible_desc(cx: &mut Interp, sel: u16) -> SemResult<Option<dt::Desc>> {
    if dt::is_null(sel) {
        return Ok(None);
    }
    let d = match dt::fetch(cx, sel) {
        Ok(d) => d,
        Err(e) if e.vector == crate::exception::vector::GP => return Ok(None),
        Err(e) => return Err(Stop::Fault(e)),
    };
    let rpl = (sel & 3) as u8;
    let priv_ok = d.conforming() || (d.dpl() >= cx.cpu.cpl && d.dpl() >= rpl);
    Ok(priv_ok.then_some(d))
}

/// Source selector of LAR/LSL/VERR/VERW (register or 16-bit memory).
fn selector_operand(cx: &mut Interp, insn: &Insn, n: u32) -> SemResult<u16> {
    let mut o = opnd(cx, insn, n);
    if o.is_mem() {
        o.w = Width::W;
    }
    Ok(read(cx, &o)? as u16)
}

/// Set ZF alone, keeping the other flags.
fn set_zf(cx: &mut Interp, z: bool) {
    let f = cx.cpu.rflags();
    let zf = FlagSet::ZF.bits();
    cx.cpu.set_rflags(if z { f | zf } else { f & !zf });
}

/// LAR and LSL: ZF = 1 and the access rights / limit when the descriptor
/// is valid for the instruction and visible at this CPL.
fn lar_lsl(cx: &mut Interp, insn: &Insn) -> SemResult {
    if !dt::protected(cx) {
        return fault(Exception::ud());
    }
    let sel = selector_operand(cx, insn, 1)?;
    let lsl = insn.i.mnemonic() == Mnemonic::Lsl;
    let long = cx.cpu.efer & efer::LMA != 0;
    let d = visible_desc(cx, sel)?.filter(|d| {
        d.is_seg() || {
            let t = d.typ();
            let mut ok = matches!(t, 2 | 9 | 11) || (!long && matches!(t, 1 | 3));
            if !lsl {
                ok |= t == 12 || (!long && matches!(t, 4 | 5));
            }
            ok
        }
    });
    let Some(d) = d else {
        set_zf(cx, false);
        return Ok(());
    };
    let v = if lsl {
        d.segment(sel).limit as u64
    } else {
        (d.0 >> 32) & 0x00f0_ff00
    };
    let r = operand::reg_view(insn.i.op0_register()).ok_or(Stop::Fault(Exception::ud()))?;
    operand::write_reg(cx, r, v);
    set_zf(cx, true);
    Ok(())
}

/// VERR / VERW: ZF = 1 when the segment is readable / writable from here.
fn verr_verw(cx: &mut Interp, insn: &Insn) -> SemResult {
    if !dt::protected(cx) {
        return fault(Exception::ud());
    }
    let sel = selector_operand(cx, insn, 0)?;
    let write = insn.i.mnemonic() == Mnemonic::Verw;
    let ok =
        visible_desc(cx, sel)?.is_some_and(|d| if write { d.writable() } else { d.readable() });
    set_zf(cx, ok);
    Ok(())
}

fn is_sreg(r: Register) -> bool {
    r.is_segment_register()
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    let reg0 = i.op_count() > 0 && i.op0_kind() == OpKind::Register;
    let reg1 = i.op_count() > 1 && i.op1_kind() == OpKind::Register;
    let h: InterpFn = match i.mnemonic() {
        M::Mov if reg0 && is_sreg(i.op0_register()) => mov_to_sreg,
        M::Mov if reg1 && is_sreg(i.op1_register()) => mov_from_sreg,
        M::Pop if reg0 && is_sreg(i.op0_register()) => pop_sreg,
        M::Push if reg0 && is_sreg(i.op0_register()) => push_sreg,
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => load_far_pointer,
        M::Jmp if i.is_jmp_far() || i.is_jmp_far_indirect() => far_jmp,
        M::Call if i.is_call_far() || i.is_call_far_indirect() => far_call,
        M::Retf => far_ret,
        M::Iret | M::Iretd | M::Iretq => iret,
        M::Syscall => syscall,
        M::Sysret | M::Sysretq => sysret,
        M::Sysenter => sysenter,
        M::Sysexit | M::Sysexitq => sysexit,
        M::Lar | M::Lsl => lar_lsl,
        M::Verr | M::Verw => verr_verw,
        _ => return None,
    };
    Some(Sem::Helper(h))
}
