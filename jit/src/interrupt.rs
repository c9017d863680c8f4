//! Delivery of exceptions (and later interrupts) through the IDT, with the
//! double-fault and triple-fault escalation rules (SDM vol. 3, 6.15).
//!
//! Implemented: 64-bit mode (interrupt and trap gates, privilege change via
//! TSS.RSPn, IST stacks) and real mode (IVT). 32-bit protected-mode delivery
//! is not implemented yet and escalates to a triple fault with a warning.

use crate::emit::Width;
use crate::exception::{vector, Exception};
use crate::flags::FlagSet;
use crate::interp::Interp;
use crate::memory::{GuestPhysAddr, PhysTarget};
use crate::mmu::{self, Access};
use crate::state::{cr0, seg_attr, Seg, Segment};

/// Outcome of delivering an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The guest's handler is about to run.
    Delivered,
    /// Delivery failed even as a double fault: the CPU shuts down.
    TripleFault,
}

/// Read `w` bytes at a linear address as a supervisor-mode system access.
fn sys_read(cx: &mut Interp, lin: u64, w: Width) -> Result<u64, Exception> {
    let t = mmu::translate(&cx.cpu, &mut cx.mem, lin, Access::Read, false)?;
    match cx.mem.target(GuestPhysAddr(t.phys)) {
        PhysTarget::Ram(off) => Ok(cx.mem.read_ram(off, w)),
        _ => Ok(w.mask()),
    }
}

/// Write at a linear address as a system access at the current CPL.
fn stack_write(cx: &mut Interp, lin: u64, w: Width, v: u64) -> Result<(), Exception> {
    let user = cx.cpu.cpl == 3;
    let t = mmu::translate(&cx.cpu, &mut cx.mem, lin, Access::Write, user)?;
    if let PhysTarget::Ram(off) = cx.mem.target(GuestPhysAddr(t.phys)) {
        cx.mem.write_ram(off, w, v);
    }
    Ok(())
}

/// Does a fault while delivering `first` turn into a double fault?
fn is_double_fault(first: &Exception, second: &Exception) -> bool {
    let pf = |e: &Exception| e.vector == vector::PF;
    (first.is_contributory() && second.is_contributory())
        || (pf(first) && (second.is_contributory() || pf(second)))
}

/// Deliver `ex`, escalating as the architecture requires.
pub fn deliver_exception(cx: &mut Interp, ex: Exception) -> Delivery {
    let mut cur = ex;
    loop {
        match deliver_once(cx, cur) {
            Ok(()) => return Delivery::Delivered,
            Err(second) => {
                log::debug!("fault {second:?} while delivering {cur:?}");
                if cur.vector == vector::DF {
                    return Delivery::TripleFault;
                }
                cur = if is_double_fault(&cur, &second) {
                    Exception::df()
                } else {
                    second
                };
            }
        }
    }
}

fn deliver_once(cx: &mut Interp, ex: Exception) -> Result<(), Exception> {
    if cx.cpu.cr0 & cr0::PE == 0 {
        return deliver_real_mode(cx, ex);
    }
    if !cx.cpu.in_64bit_mode() {
        log::warn!("exception {ex:?} in 32-bit protected mode: delivery not implemented yet");
        return Err(Exception::df());
    }
    deliver_long_mode(cx, ex)
}

fn deliver_real_mode(cx: &mut Interp, ex: Exception) -> Result<(), Exception> {
    let v = ex.vector as u64;
    if v * 4 + 3 > cx.cpu.idtr.limit as u64 {
        return Err(Exception::gp(0));
    }
    let ent = sys_read(cx, cx.cpu.idtr.base + v * 4, Width::D)?;
    let flags = cx.cpu.rflags();
    let ss_base = cx.cpu.seg(Seg::Ss).base;
    let mut sp = cx.cpu.gpr[4] as u16;
    for val in [flags, cx.cpu.seg(Seg::Cs).selector as u64, cx.cpu.rip] {
        sp = sp.wrapping_sub(2);
        stack_write(cx, ss_base + sp as u64, Width::W, val)?;
    }
    cx.cpu.gpr[4] = (cx.cpu.gpr[4] & !0xffff) | sp as u64;
    let cs = (ent >> 16) as u16;
    let c = &mut cx.cpu.seg[Seg::Cs as usize];
    c.selector = cs;
    c.base = (cs as u64) << 4;
    cx.cpu.rip = ent & 0xffff;
    let clear = FlagSet::IF | FlagSet::TF | FlagSet::AC | FlagSet::RF;
    cx.cpu.set_rflags(flags & !clear.bits());
    Ok(())
}

/// Read a segment descriptor (8 bytes) for `sel` from the GDT or LDT.
fn read_descriptor(cx: &mut Interp, sel: u16) -> Result<u64, Exception> {
    let err = Exception::gp((sel & !3) as u32);
    let (base, limit) = if sel & 4 != 0 {
        (cx.cpu.ldtr.base, cx.cpu.ldtr.limit as u64)
    } else {
        (cx.cpu.gdtr.base, cx.cpu.gdtr.limit as u64)
    };
    let off = (sel & !7) as u64;
    if off + 7 > limit {
        return Err(err);
    }
    sys_read(cx, base + off, Width::Q)
}

/// Decode a code/data descriptor into the hidden segment part.
pub fn segment_from_descriptor(sel: u16, d: u64) -> Segment {
    let base = ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000);
    let mut limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
    let attrs = (((d >> 40) & 0xff) | ((d >> 44) & 0xf000)) as u16;
    if attrs & seg_attr::G != 0 {
        limit = (limit << 12) | 0xfff;
    }
    Segment {
        base,
        limit,
        selector: sel,
        attrs,
    }
}

fn deliver_long_mode(cx: &mut Interp, ex: Exception) -> Result<(), Exception> {
    let v = ex.vector as u64;
    // Error code for a bad IDT entry: index, IDT bit, external bit.
    let idt_err = Exception::gp((v as u32) << 3 | 2 | 1);
    if v * 16 + 15 > cx.cpu.idtr.limit as u64 {
        return Err(idt_err);
    }
    let base = cx.cpu.idtr.base + v * 16;
    let lo = sys_read(cx, base, Width::Q)?;
    let hi = sys_read(cx, base + 8, Width::Q)?;
    let gate_type = (lo >> 40) & 0xf;
    if (lo >> 47) & 1 == 0 {
        return Err(Exception::np((v as u32) << 3 | 2 | 1));
    }
    if gate_type != 0xe && gate_type != 0xf {
        return Err(idt_err);
    }
    let target = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
    let sel = (lo >> 16) as u16;
    let ist = (lo >> 32) & 7;
    let desc = read_descriptor(cx, sel)?;
    let cs = segment_from_descriptor(sel, desc);
    if cs.attrs & seg_attr::CODE == 0 || cs.attrs & seg_attr::S == 0 {
        return Err(Exception::gp((sel & !3) as u32));
    }
    if cs.attrs & seg_attr::P == 0 {
        return Err(Exception::np((sel & !3) as u32));
    }
    if cs.attrs & seg_attr::L == 0 {
        return Err(Exception::gp((sel & !3) as u32));
    }
    let old_cpl = cx.cpu.cpl;
    let new_cpl = if cs.attrs & (1 << 2) != 0 {
        old_cpl // conforming
    } else {
        cs.dpl()
    };
    let old_ss = cx.cpu.seg(Seg::Ss).selector as u64;
    let old_rsp = cx.cpu.gpr[4];
    let old_flags = cx.cpu.rflags();
    let old_cs = cx.cpu.seg(Seg::Cs).selector as u64;
    let tss = cx.cpu.tr.base;
    let mut rsp = if ist != 0 {
        sys_read(cx, tss + 36 + 8 * (ist - 1), Width::Q)?
    } else if new_cpl < old_cpl {
        sys_read(cx, tss + 4 + 8 * new_cpl as u64, Width::Q)?
    } else {
        old_rsp
    };
    rsp &= !0xf;
    if (new_cpl == 3) != (old_cpl == 3) {
        cx.cpu.tlb.flush_all();
    }
    cx.cpu.cpl = new_cpl;
    let mut frame = vec![old_ss, old_rsp, old_flags, old_cs, cx.cpu.rip];
    if ex.has_error_code {
        frame.push(ex.error_code as u64);
    }
    for val in frame {
        rsp = rsp.wrapping_sub(8);
        if let Err(e) = stack_write(cx, rsp, Width::Q, val) {
            if (new_cpl == 3) != (old_cpl == 3) {
                cx.cpu.tlb.flush_all();
            }
            cx.cpu.cpl = old_cpl;
            return Err(e);
        }
    }
    if ex.vector == vector::PF {
        cx.cpu.cr2 = ex.address;
    }
    if new_cpl != old_cpl {
        let ss = &mut cx.cpu.seg[Seg::Ss as usize];
        ss.selector = new_cpl as u16;
        ss.base = 0;
        ss.attrs = seg_attr::P
            | seg_attr::S
            | seg_attr::RW
            | seg_attr::DB
            | seg_attr::G
            | ((new_cpl as u16) << seg_attr::DPL_SHIFT);
        ss.limit = 0xffff_ffff;
    }
    let mut cs = cs;
    cs.selector = (sel & !3) | new_cpl as u16;
    cx.cpu.seg[Seg::Cs as usize] = cs;
    cx.cpu.gpr[4] = rsp;
    cx.cpu.rip = target;
    let mut clear = FlagSet::TF | FlagSet::NT | FlagSet::RF | FlagSet::VM;
    if gate_type == 0xe {
        clear |= FlagSet::IF;
    }
    cx.cpu.set_rflags(old_flags & !clear.bits());
    Ok(())
}
