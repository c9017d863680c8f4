//! Delivery of exceptions, software interrupts and (later) external
//! interrupts through the IDT, with the double-fault and triple-fault
//! escalation rules (SDM vol. 3, 6.12–6.15).
//!
//! Implemented: real mode (IVT), 32-bit protected mode (16- and 32-bit
//! interrupt/trap gates, stack switch through the 32-bit or 16-bit TSS) and
//! IA-32e mode (64-bit gates, TSS.RSPn, IST). Not implemented: task gates
//! (#GP on the IDT entry), delivery from virtual-8086 mode.
//!
//! One delivery attempt ([`deliver`]) is atomic: every check and every
//! stack write is tried before any register changes, so a fault during
//! delivery leaves the interrupted state as it was (only accessed/dirty
//! bits may have been set, as on hardware).

use crate::descriptor::{self, is_null, sel_err, sys_read, sys_write, Desc};
use crate::emit::Width;
use crate::exception::{vector, Exception};
use crate::flags::FlagSet;
use crate::interp::Interp;
use crate::mmu;
use crate::state::{cr0, efer, exit_req, seg_attr, Seg, Segment};

pub use crate::descriptor::segment_from_descriptor;

/// Outcome of delivering an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The guest's handler is about to run.
    Delivered,
    /// Delivery failed even as a double fault: the CPU shuts down.
    TripleFault,
}

/// Where an event comes from; decides the gate DPL check and the EXT bit of
/// error codes raised while delivering it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A hardware exception raised by an instruction (EXT = 1).
    Exception,
    /// INT n, INT3, INTO: subject to the gate DPL check (EXT = 0).
    Software,
    /// INT1 (ICEBP): a privileged software exception, no DPL check (EXT = 1).
    Icebp,
    /// An external interrupt or NMI (EXT = 1).
    External,
}

/// One event to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub vector: u8,
    pub kind: EventKind,
    /// Pushed on the stack in protected mode when present.
    pub error_code: Option<u32>,
}

impl Event {
    /// The event for a hardware exception.
    pub fn exception(ex: &Exception) -> Event {
        Event {
            vector: ex.vector,
            kind: EventKind::Exception,
            error_code: ex.has_error_code.then_some(ex.error_code),
        }
    }

    fn ext(&self) -> u32 {
        (self.kind != EventKind::Software) as u32
    }
}

/// Does a fault while delivering `first` turn into a double fault?
/// (SDM table 6-5: contributory then contributory, #PF then contributory
/// or #PF; a benign first exception is followed serially.)
fn is_double_fault(first: &Exception, second: &Exception) -> bool {
    let pf = |e: &Exception| e.vector == vector::PF;
    (first.is_contributory() && second.is_contributory())
        || (pf(first) && (second.is_contributory() || pf(second)))
}

/// Deliver an exception raised by the instruction at `cpu.rip`, escalating
/// as the architecture requires. CR2 is loaded whenever a page fault is
/// detected, including one during delivery that becomes a double fault.
pub fn deliver_exception(cx: &mut Interp, ex: Exception) -> Delivery {
    let mut cur = ex;
    if ex.vector == vector::PF {
        cx.cpu.cr2 = ex.address;
    }
    log::debug!(
        "exception {ex:?} at icount {} rip {:#x}",
        cx.cpu.icount,
        cx.cpu.rip
    );
    loop {
        let rip = cx.cpu.rip;
        match deliver(cx, Event::exception(&cur), rip) {
            Ok(()) => return Delivery::Delivered,
            Err(second) => {
                log::debug!("fault {second:?} while delivering {cur:?}");
                if second.vector == vector::PF {
                    cx.cpu.cr2 = second.address;
                }
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

/// Deliver an external interrupt (or NMI, vector 2) at the current
/// instruction boundary; a fault while doing so is delivered in its place.
/// `Err(first)`: even that failed (triple fault); `first` is the fault the
/// interrupt's delivery raised.
pub fn deliver_external(cx: &mut Interp, vector: u8) -> Result<(), Exception> {
    let ev = Event {
        vector,
        kind: EventKind::External,
        error_code: None,
    };
    let rip = cx.cpu.rip;
    log::debug!(
        "interrupt vector {vector:#04x} at icount {} rip {rip:#x}",
        cx.cpu.icount
    );
    let first = match deliver(cx, ev, rip) {
        Ok(()) => return Ok(()),
        Err(ex) => ex,
    };
    match deliver_exception(cx, first) {
        Delivery::Delivered => Ok(()),
        Delivery::TripleFault => Err(first),
    }
}

/// One delivery attempt of `ev` with `return_rip` as the saved instruction
/// pointer. On success the handler is about to run; on failure the fault
/// is returned and nothing architectural has changed.
pub fn deliver(cx: &mut Interp, ev: Event, return_rip: u64) -> Result<(), Exception> {
    if cx.cpu.cr0 & cr0::PE == 0 {
        deliver_real_mode(cx, ev, return_rip)?;
    } else if cx.cpu.rflags & FlagSet::VM.bits() != 0 {
        log::warn!("interrupt from virtual-8086 mode is not implemented");
        return Err(Exception::gp(0));
    } else {
        deliver_protected(cx, ev, return_rip)?;
    }
    cx.cpu.halted = 0;
    cx.cpu.interrupt_shadow = 0;
    cx.cpu.exit_req |= exit_req::END_BLOCK | exit_req::MODE_CHANGE;
    Ok(())
}

/// Writes of a stack frame, checked all together before any is done.
struct Frame {
    writes: Vec<(u64, Width, u64)>,
    user: bool,
}

impl Frame {
    fn commit(self, cx: &mut Interp) -> Result<(), Exception> {
        for &(lin, w, _) in &self.writes {
            descriptor::probe_write(cx, lin, w, self.user)?;
        }
        for (lin, w, v) in self.writes {
            sys_write(cx, lin, w, v, self.user)?;
        }
        Ok(())
    }
}

fn deliver_real_mode(cx: &mut Interp, ev: Event, return_rip: u64) -> Result<(), Exception> {
    let v = ev.vector as u64;
    if v * 4 + 3 > cx.cpu.idtr.limit as u64 {
        return Err(Exception::gp(0));
    }
    let ent = sys_read(cx, cx.cpu.idtr.base + v * 4, Width::D)?;
    let flags = cx.cpu.rflags();
    let ss_base = cx.cpu.seg(Seg::Ss).base;
    let mut sp = cx.cpu.gpr[4] as u16;
    let mut frame = Frame {
        writes: Vec::with_capacity(3),
        user: false,
    };
    for val in [flags, cx.cpu.seg(Seg::Cs).selector as u64, return_rip] {
        sp = sp.wrapping_sub(2);
        frame
            .writes
            .push(((ss_base + sp as u64) & 0xffff_ffff, Width::W, val));
    }
    frame.commit(cx)?;
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

/// Add the EXT bit to the error code of a fault raised while delivering.
fn with_ext(e: Exception, ext: u32) -> Exception {
    match e.vector {
        vector::TS | vector::NP | vector::SS | vector::GP => Exception {
            error_code: e.error_code | ext,
            ..e
        },
        _ => e,
    }
}

/// The checked gate: handler CS (hidden part), new CPL, target offset,
/// gate type and IST index.
struct Gate {
    cs: Segment,
    cpl: u8,
    target: u64,
    typ: u8,
    ist: u64,
}

/// Read and check the IDT entry for `ev` and the code segment it names.
fn read_gate(cx: &mut Interp, ev: &Event, long: bool) -> Result<Gate, Exception> {
    let v = ev.vector as u64;
    let ext = ev.ext();
    let idt_code = (v as u32) << 3 | 2 | ext;
    let size = if long { 16 } else { 8 };
    if v * size + size - 1 > cx.cpu.idtr.limit as u64 {
        return Err(Exception::gp(idt_code));
    }
    let base = cx.cpu.idtr.base.wrapping_add(v * size);
    let lo = Desc(sys_read(cx, base, Width::Q)?);
    let hi = if long {
        sys_read(cx, base + 8, Width::Q)?
    } else {
        0
    };
    let typ = lo.typ();
    let type_ok = if long {
        matches!(typ, 0xe | 0xf)
    } else {
        matches!(typ, 0x6 | 0x7 | 0xe | 0xf)
    };
    if lo.is_seg() || !type_ok {
        if typ == descriptor::sys_type::TASK_GATE && !long {
            log::warn!("task gate for vector {v}: task switches are not implemented (#GP)");
        }
        return Err(Exception::gp(idt_code));
    }
    if ev.kind == EventKind::Software && lo.dpl() < cx.cpu.cpl {
        return Err(Exception::gp(idt_code));
    }
    if !lo.present() {
        return Err(Exception::np(idt_code));
    }
    let sel = lo.gate_selector();
    if is_null(sel) {
        return Err(Exception::gp(ext));
    }
    let d = descriptor::fetch(cx, sel).map_err(|e| with_ext(e, ext))?;
    let sel_code = sel_err(sel) | ext;
    if !d.is_code() || d.dpl() > cx.cpu.cpl {
        return Err(Exception::gp(sel_code));
    }
    if !d.present() {
        return Err(Exception::np(sel_code));
    }
    if long && (!d.long() || d.db()) {
        return Err(Exception::gp(sel_code));
    }
    let cpl = if d.conforming() { cx.cpu.cpl } else { d.dpl() };
    let mut cs = d.segment((sel & !3) | cpl as u16);
    cs.attrs |= seg_attr::ACCESSED;
    let mut target = lo.gate_offset();
    if long {
        target |= hi << 32;
    } else if typ & 8 == 0 {
        target &= 0xffff;
    }
    if !long && target > cs.limit as u64 {
        return Err(Exception::gp(ext));
    }
    descriptor::set_accessed(cx, sel, d).map_err(|e| with_ext(e, ext))?;
    Ok(Gate {
        cs,
        cpl,
        target,
        typ,
        ist: (lo.0 >> 32) & 7,
    })
}

/// Read `w` bytes at offset `off` of the current TSS (#TS(TR) past its limit).
fn tss_read(cx: &mut Interp, off: u64, w: Width, ext: u32) -> Result<u64, Exception> {
    let tr = cx.cpu.tr;
    if off + w.bytes() as u64 - 1 > tr.limit as u64 {
        return Err(Exception::ts(sel_err(tr.selector) | ext));
    }
    sys_read(cx, tr.base.wrapping_add(off), w)
}

fn deliver_protected(cx: &mut Interp, ev: Event, return_rip: u64) -> Result<(), Exception> {
    let long = cx.cpu.efer & efer::LMA != 0;
    let gate = read_gate(cx, &ev, long)?;
    if long {
        deliver_long_mode(cx, &ev, gate, return_rip)
    } else {
        deliver_legacy(cx, &ev, gate, return_rip)
    }
}

/// Commit the register side of a delivery.
fn enter_handler(cx: &mut Interp, gate: &Gate, new_ss: Option<Segment>, sp: u64, flags: u64) {
    descriptor::commit_cs(cx, gate.cs, gate.cpl);
    if let Some(ss) = new_ss {
        cx.cpu.seg[Seg::Ss as usize] = ss;
    }
    cx.cpu.gpr[4] = sp;
    cx.cpu.rip = gate.target;
    let mut clear = FlagSet::TF | FlagSet::NT | FlagSet::RF | FlagSet::VM;
    if gate.typ & 1 == 0 {
        clear |= FlagSet::IF; // interrupt gate, not trap gate
    }
    cx.cpu.set_rflags(flags & !clear.bits());
}

fn deliver_long_mode(
    cx: &mut Interp,
    ev: &Event,
    gate: Gate,
    return_rip: u64,
) -> Result<(), Exception> {
    let ext = ev.ext();
    let old_cpl = cx.cpu.cpl;
    let old_rsp = cx.cpu.gpr[4];
    let mut rsp = if gate.ist != 0 {
        tss_read(cx, 36 + 8 * (gate.ist - 1), Width::Q, ext)?
    } else if gate.cpl < old_cpl {
        tss_read(cx, 4 + 8 * gate.cpl as u64, Width::Q, ext)?
    } else {
        old_rsp
    };
    rsp &= !0xf;
    let flags = cx.cpu.rflags();
    let mut vals = vec![
        cx.cpu.seg(Seg::Ss).selector as u64,
        old_rsp,
        flags,
        cx.cpu.seg(Seg::Cs).selector as u64,
        return_rip,
    ];
    vals.extend(ev.error_code.map(u64::from));
    let mut frame = Frame {
        writes: Vec::with_capacity(vals.len()),
        user: gate.cpl == 3,
    };
    for v in vals {
        rsp = rsp.wrapping_sub(8);
        if !mmu::is_canonical(rsp) {
            return Err(Exception::ss(ext));
        }
        frame.writes.push((rsp, Width::Q, v));
    }
    frame.commit(cx)?;
    let new_ss = (gate.cpl != old_cpl).then(|| descriptor::null_ss64(gate.cpl as u16, gate.cpl));
    enter_handler(cx, &gate, new_ss, rsp, flags);
    Ok(())
}

/// The new SS:ESP for a privilege change in legacy protected mode, from
/// the 32-bit (or 16-bit) TSS, with the checks of SDM 6.12.1.
fn legacy_stack(cx: &mut Interp, cpl: u8, ext: u32) -> Result<(Segment, u64), Exception> {
    let tss32 = cx.cpu.tr.attrs & 8 != 0;
    let (sp, sel) = if tss32 {
        let sp = tss_read(cx, 4 + 8 * cpl as u64, Width::D, ext)?;
        (sp, tss_read(cx, 8 + 8 * cpl as u64, Width::W, ext)? as u16)
    } else {
        let sp = tss_read(cx, 2 + 4 * cpl as u64, Width::W, ext)?;
        (sp, tss_read(cx, 4 + 4 * cpl as u64, Width::W, ext)? as u16)
    };
    let ts = Exception::ts(sel_err(sel) | ext);
    if is_null(sel) {
        return Err(Exception::ts(ext));
    }
    let d = descriptor::fetch(cx, sel).map_err(|_| ts)?;
    if (sel & 3) as u8 != cpl || d.dpl() != cpl || !d.writable() {
        return Err(ts);
    }
    if !d.present() {
        return Err(Exception::ss(sel_err(sel) | ext));
    }
    descriptor::set_accessed(cx, sel, d).map_err(|e| with_ext(e, ext))?;
    let mut ss = d.segment(sel);
    ss.attrs |= seg_attr::ACCESSED;
    Ok((ss, sp))
}

fn deliver_legacy(
    cx: &mut Interp,
    ev: &Event,
    gate: Gate,
    return_rip: u64,
) -> Result<(), Exception> {
    let ext = ev.ext();
    let old_cpl = cx.cpu.cpl;
    let w = if gate.typ & 8 != 0 {
        Width::D
    } else {
        Width::W
    };
    let old_ss = cx.cpu.seg[Seg::Ss as usize];
    let old_sp = cx.cpu.gpr[4];
    let flags = cx.cpu.rflags();
    let mut vals = Vec::with_capacity(6);
    let (ss, mut sp) = if gate.cpl < old_cpl {
        vals.push(old_ss.selector as u64);
        vals.push(old_sp);
        let (ss, sp) = legacy_stack(cx, gate.cpl, ext)?;
        (ss, sp)
    } else {
        (old_ss, old_sp)
    };
    vals.extend([flags, cx.cpu.seg(Seg::Cs).selector as u64, return_rip]);
    vals.extend(ev.error_code.map(u64::from));
    let sp_mask = if ss.attrs & seg_attr::DB != 0 {
        0xffff_ffff
    } else {
        0xffff
    };
    let mut frame = Frame {
        writes: Vec::with_capacity(vals.len()),
        user: gate.cpl == 3,
    };
    for v in vals {
        sp = sp.wrapping_sub(w.bytes() as u64) & sp_mask;
        let lin = ss.base.wrapping_add(sp) & 0xffff_ffff;
        frame.writes.push((lin, w, v & w.mask()));
    }
    frame.commit(cx)?;
    let new_sp = (old_sp & !sp_mask) | sp;
    let new_ss = (gate.cpl < old_cpl).then_some(ss);
    let new_sp = if new_ss.is_some() && sp_mask == 0xffff_ffff {
        sp
    } else {
        new_sp
    };
    enter_handler(cx, &gate, new_ss, new_sp, flags);
    Ok(())
}
