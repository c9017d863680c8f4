//! Segment descriptors (SDM vol. 3, 3.4–3.5 and 5.5–5.8): reading them from
//! the GDT/LDT, the checks each kind of segment load makes, and loading the
//! hidden part of segment registers. Shared by MOV/POP Sreg, LDS & co., far
//! transfers, IRET, LLDT/LTR and interrupt delivery.
//!
//! Descriptor-table and TSS accesses are *implicit supervisor* accesses:
//! they are translated as CPL 0 accesses whatever the CPL (SDM 4.6).

use crate::emit::Width;
use crate::exception::Exception;
use crate::interp::Interp;
use crate::memory::{GuestPhysAddr, PhysTarget};
use crate::mmu::{self, Access};
use crate::state::{cr0, efer, exit_req, seg_attr, Seg, Segment};

/// Physical address of `lin` for an implicit (system) access.
fn sys_phys(cx: &mut Interp, lin: u64, acc: Access, user: bool) -> Result<u64, Exception> {
    if cx.cpu.efer & efer::LMA != 0 && !mmu::is_canonical(lin) {
        return Err(Exception::gp(0));
    }
    let lin = if cx.cpu.efer & efer::LMA != 0 {
        lin
    } else {
        lin & 0xffff_ffff
    };
    Ok(mmu::translate(&cx.cpu, &mut cx.mem, lin, acc, user)?.phys)
}

/// The physical address of every byte of an access of `n` bytes (two
/// translations when it crosses a page).
fn span(cx: &mut Interp, lin: u64, n: u64, acc: Access, user: bool) -> Result<[u64; 2], Exception> {
    let p1 = sys_phys(cx, lin, acc, user)?;
    let first = 0x1000 - (lin & 0xfff);
    if n <= first {
        return Ok([p1, u64::MAX]);
    }
    let p2 = sys_phys(cx, lin.wrapping_add(first), acc, user)?;
    Ok([p1, p2.wrapping_sub(first)])
}

fn byte_addr(sp: [u64; 2], lin: u64, i: u64) -> u64 {
    let first = 0x1000 - (lin & 0xfff);
    if i < first || sp[1] == u64::MAX {
        sp[0] + i
    } else {
        sp[1].wrapping_add(i)
    }
}

/// Read `w` bytes at a linear address as an implicit supervisor access.
/// Non-RAM reads as all ones (descriptor tables are never device memory).
pub fn sys_read(cx: &mut Interp, lin: u64, w: Width) -> Result<u64, Exception> {
    let n = w.bytes() as u64;
    let sp = span(cx, lin, n, Access::Read, false)?;
    let mut v = 0u64;
    for i in 0..n {
        let b = match cx.mem.target(GuestPhysAddr(byte_addr(sp, lin, i))) {
            PhysTarget::Ram(off) => cx.mem.read_ram(off, Width::B),
            _ => 0xff,
        };
        v |= b << (8 * i);
    }
    Ok(v)
}

/// Check that `w` bytes at `lin` can be written (`user`: at CPL 3).
pub fn probe_write(cx: &mut Interp, lin: u64, w: Width, user: bool) -> Result<(), Exception> {
    span(cx, lin, w.bytes() as u64, Access::Write, user).map(|_| ())
}

/// Write `w` bytes at a linear address; `user` says the access is made at
/// CPL 3 (stack pushes of an interrupt to ring 3), else it is a supervisor
/// access. A write to a page holding translated code is noted for the run
/// loop like any other guest write.
pub fn sys_write(cx: &mut Interp, lin: u64, w: Width, v: u64, user: bool) -> Result<(), Exception> {
    let n = w.bytes() as u64;
    let sp = span(cx, lin, n, Access::Write, user)?;
    for i in 0..n {
        if let PhysTarget::Ram(off) = cx.mem.target(GuestPhysAddr(byte_addr(sp, lin, i))) {
            cx.mem.write_ram(off, Width::B, v >> (8 * i));
        }
    }
    if cx.mem.has_dirty_code() {
        cx.cpu.exit_req |= exit_req::CODE_WRITE | exit_req::END_BLOCK;
    }
    Ok(())
}

/// A raw 8-byte descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc(pub u64);

/// System-descriptor types (S = 0).
pub mod sys_type {
    pub const TSS16_AVAIL: u8 = 1;
    pub const LDT: u8 = 2;
    pub const TSS16_BUSY: u8 = 3;
    pub const CALL_GATE16: u8 = 4;
    pub const TASK_GATE: u8 = 5;
    pub const INT_GATE16: u8 = 6;
    pub const TRAP_GATE16: u8 = 7;
    pub const TSS_AVAIL: u8 = 9;
    pub const TSS_BUSY: u8 = 11;
    pub const CALL_GATE: u8 = 12;
    pub const INT_GATE: u8 = 14;
    pub const TRAP_GATE: u8 = 15;
}

impl Desc {
    /// Type field (4 bits).
    pub fn typ(self) -> u8 {
        ((self.0 >> 40) & 0xf) as u8
    }
    /// Code or data (S = 1) rather than system.
    pub fn is_seg(self) -> bool {
        self.0 & (1 << 44) != 0
    }
    /// Descriptor privilege level.
    pub fn dpl(self) -> u8 {
        ((self.0 >> 45) & 3) as u8
    }
    /// Present bit.
    pub fn present(self) -> bool {
        self.0 & (1 << 47) != 0
    }
    /// Code segment (S = 1, type bit 3).
    pub fn is_code(self) -> bool {
        self.is_seg() && self.typ() & 8 != 0
    }
    /// Data segment (S = 1, type bit 3 clear).
    pub fn is_data(self) -> bool {
        self.is_seg() && self.typ() & 8 == 0
    }
    /// Conforming code segment.
    pub fn conforming(self) -> bool {
        self.is_code() && self.typ() & 4 != 0
    }
    /// Readable code or any data segment.
    pub fn readable(self) -> bool {
        self.is_data() || (self.is_code() && self.typ() & 2 != 0)
    }
    /// Writable data segment.
    pub fn writable(self) -> bool {
        self.is_data() && self.typ() & 2 != 0
    }
    /// L bit (64-bit code segment).
    pub fn long(self) -> bool {
        self.0 & (1 << 53) != 0
    }
    /// D/B bit.
    pub fn db(self) -> bool {
        self.0 & (1 << 54) != 0
    }
    /// The hidden segment part this descriptor loads (32-bit base).
    pub fn segment(self, sel: u16) -> Segment {
        segment_from_descriptor(sel, self.0)
    }
    /// Target offset of a 32-bit gate (low 16 bits and bits 48–63).
    pub fn gate_offset(self) -> u64 {
        (self.0 & 0xffff) | ((self.0 >> 32) & 0xffff_0000)
    }
    /// Selector of a gate.
    pub fn gate_selector(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

/// Decode a code/data descriptor into the hidden segment part.
pub fn segment_from_descriptor(sel: u16, d: u64) -> Segment {
    let base = ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000);
    let mut limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
    let attrs = (((d >> 40) & 0xff) | ((d >> 40) & 0xf000)) as u16;
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

/// The error code naming a selector (RPL bits cleared).
pub fn sel_err(sel: u16) -> u32 {
    (sel & 0xfffc) as u32
}

/// True for a null selector (index 0 in the GDT).
pub fn is_null(sel: u16) -> bool {
    sel & 0xfffc == 0
}

/// Linear address of the descriptor `sel` names, after the table-limit
/// check (#GP(sel)). `len` is 8, or 16 for long-mode system descriptors.
fn desc_addr(cx: &Interp, sel: u16, len: u64) -> Result<u64, Exception> {
    let err = Exception::gp(sel_err(sel));
    let (base, limit) = if sel & 4 != 0 {
        let l = &cx.cpu.ldtr;
        if is_null(l.selector) || l.attrs & seg_attr::P == 0 {
            return Err(err);
        }
        (l.base, l.limit as u64)
    } else {
        (cx.cpu.gdtr.base, cx.cpu.gdtr.limit as u64)
    };
    let off = (sel & !7) as u64;
    if off + len - 1 > limit {
        return Err(err);
    }
    Ok(base.wrapping_add(off))
}

/// Read the 8-byte descriptor `sel` names (GDT or LDT by its TI bit).
pub fn fetch(cx: &mut Interp, sel: u16) -> Result<Desc, Exception> {
    let a = desc_addr(cx, sel, 8)?;
    Ok(Desc(sys_read(cx, a, Width::Q)?))
}

/// Read a 16-byte long-mode system descriptor; returns both halves.
pub fn fetch16(cx: &mut Interp, sel: u16) -> Result<(Desc, u64), Exception> {
    let a = desc_addr(cx, sel, 16)?;
    let lo = sys_read(cx, a, Width::Q)?;
    let hi = sys_read(cx, a.wrapping_add(8), Width::Q)?;
    Ok((Desc(lo), hi))
}

/// Set the accessed bit of a code/data descriptor in memory, as the CPU
/// does when it loads a segment register from it.
pub fn set_accessed(cx: &mut Interp, sel: u16, d: Desc) -> Result<(), Exception> {
    if d.typ() & 1 != 0 {
        return Ok(());
    }
    let a = desc_addr(cx, sel, 8)?;
    let byte = ((d.0 >> 40) & 0xff) | 1;
    sys_write(cx, a + 5, Width::B, byte, false)
}

/// True in protected mode outside virtual-8086 mode.
pub fn protected(cx: &Interp) -> bool {
    cx.cpu.cr0 & cr0::PE != 0 && cx.cpu.rflags & (1 << 17) == 0
}

/// The hidden part of a segment register loaded with a null selector:
/// unusable (not present), base 0.
pub fn null_segment(sel: u16) -> Segment {
    Segment {
        base: 0,
        limit: 0,
        selector: sel,
        attrs: 0,
    }
}

/// A real-mode / virtual-8086 segment: base = selector * 16; the limit and
/// attributes stay as they were.
fn real_segment(old: &Segment, sel: u16) -> Segment {
    Segment {
        base: (sel as u64) << 4,
        selector: sel,
        ..*old
    }
}

/// Check `sel` for a load into DS, ES, FS or GS and return the hidden part
/// it loads (the accessed bit is already set in memory).
pub fn load_data_seg(cx: &mut Interp, s: Seg, sel: u16) -> Result<Segment, Exception> {
    if !protected(cx) {
        return Ok(real_segment(&cx.cpu.seg[s as usize], sel));
    }
    if is_null(sel) {
        return Ok(null_segment(sel));
    }
    let d = fetch(cx, sel)?;
    let err = Exception::gp(sel_err(sel));
    if !d.readable() {
        return Err(err);
    }
    let rpl = (sel & 3) as u8;
    if !d.conforming() && (rpl > d.dpl() || cx.cpu.cpl > d.dpl()) {
        return Err(err);
    }
    if !d.present() {
        return Err(Exception::np(sel_err(sel)));
    }
    set_accessed(cx, sel, d)?;
    Ok(d.segment(sel))
}

/// The null SS of 64-bit mode below ring 3 (IRET, RET far, SYSRET and
/// interrupts may leave SS null there): usable, flat, DPL = `cpl`.
pub fn null_ss64(sel: u16, cpl: u8) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: sel,
        attrs: seg_attr::P
            | seg_attr::S
            | seg_attr::RW
            | seg_attr::ACCESSED
            | seg_attr::DB
            | seg_attr::G
            | ((cpl as u16) << seg_attr::DPL_SHIFT),
    }
}

/// Check `sel` for a load into SS at privilege `cpl` (the current CPL, or
/// the CPL being returned to) and return the hidden part. `long64` says
/// the code segment that will run is 64-bit (a null SS is then allowed
/// below ring 3 when RPL = CPL).
pub fn load_ss(cx: &mut Interp, sel: u16, cpl: u8, long64: bool) -> Result<Segment, Exception> {
    if !protected(cx) {
        return Ok(real_segment(&cx.cpu.seg[Seg::Ss as usize], sel));
    }
    let rpl = (sel & 3) as u8;
    if is_null(sel) {
        if long64 && cpl < 3 && rpl == cpl {
            return Ok(null_ss64(sel, cpl));
        }
        return Err(Exception::gp(0));
    }
    let d = fetch(cx, sel)?;
    let err = Exception::gp(sel_err(sel));
    if rpl != cpl || !d.writable() || d.dpl() != cpl {
        return Err(err);
    }
    if !d.present() {
        return Err(Exception::ss(sel_err(sel)));
    }
    set_accessed(cx, sel, d)?;
    Ok(d.segment(sel))
}

/// How a code segment is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeEntry {
    /// Far JMP or CALL: same privilege; CPL does not change.
    JmpCall,
    /// Far RET or IRET: to privilege RPL (≥ CPL).
    Return,
}

/// Check a code-segment descriptor for a far transfer to `sel` and return
/// the hidden part with RPL set to the new CPL, and that CPL. Gates and
/// TSS descriptors (call gates, task switches) are not implemented: #GP.
pub fn load_cs(cx: &mut Interp, sel: u16, how: CodeEntry) -> Result<(Segment, u8), Exception> {
    if is_null(sel) {
        return Err(Exception::gp(0));
    }
    let d = fetch(cx, sel)?;
    let err = Exception::gp(sel_err(sel));
    let cpl = cx.cpu.cpl;
    let rpl = (sel & 3) as u8;
    if !d.is_code() {
        if !d.is_seg() {
            log::warn!(
                "far transfer through system descriptor type {} (call gate / task switch) not implemented: #GP",
                d.typ()
            );
        }
        return Err(err);
    }
    let new_cpl = match how {
        CodeEntry::JmpCall => {
            let ok = if d.conforming() {
                d.dpl() <= cpl
            } else {
                rpl <= cpl && d.dpl() == cpl
            };
            if !ok {
                return Err(err);
            }
            cpl
        }
        CodeEntry::Return => {
            let ok = rpl >= cpl
                && if d.conforming() {
                    d.dpl() <= rpl
                } else {
                    d.dpl() == rpl
                };
            if !ok {
                return Err(err);
            }
            rpl
        }
    };
    if !d.present() {
        return Err(Exception::np(sel_err(sel)));
    }
    if cx.cpu.efer & efer::LMA != 0 && d.long() && d.db() {
        return Err(err);
    }
    set_accessed(cx, sel, d)?;
    let mut seg = d.segment((sel & !3) | new_cpl as u16);
    seg.attrs |= seg_attr::ACCESSED;
    Ok((seg, new_cpl))
}

/// True when a code segment runs 64-bit code (long mode active, L = 1).
pub fn is_64bit_cs(cx: &Interp, cs: &Segment) -> bool {
    cx.cpu.efer & efer::LMA != 0 && cs.attrs & seg_attr::L != 0
}

/// Check a new instruction pointer against the target code segment:
/// canonical for 64-bit code, within the limit otherwise (#GP(0)).
pub fn check_ip(cx: &Interp, cs: &Segment, ip: u64) -> Result<(), Exception> {
    let ok = if is_64bit_cs(cx, cs) {
        mmu::is_canonical(ip)
    } else {
        ip <= cs.limit as u64
    };
    if ok {
        Ok(())
    } else {
        Err(Exception::gp(0))
    }
}

/// Load CS and the CPL it carries; flushes the TLB when CPL crosses the
/// user/supervisor line (TLB entries carry the privilege they were filled
/// at) and ends the block (the decoding mode may have changed).
pub fn commit_cs(cx: &mut Interp, cs: Segment, cpl: u8) {
    set_cpl(cx, cpl);
    cx.cpu.seg[Seg::Cs as usize] = cs;
    cx.cpu.exit_req |= exit_req::END_BLOCK | exit_req::MODE_CHANGE;
}

/// Change the CPL, flushing the TLB when it crosses between 3 and not-3.
pub fn set_cpl(cx: &mut Interp, cpl: u8) {
    if (cx.cpu.cpl == 3) != (cpl == 3) {
        cx.cpu.tlb.flush_all();
    }
    cx.cpu.cpl = cpl;
}

/// Load a data/stack segment register's hidden part.
pub fn commit_seg(cx: &mut Interp, s: Seg, seg: Segment) {
    cx.cpu.seg[s as usize] = seg;
}

/// After a return to an outer privilege level: DS, ES, FS and GS holding a
/// data or non-conforming code segment more privileged than the new CPL
/// become null (SDM, RET and IRET operation).
pub fn invalidate_inner_segments(cx: &mut Interp, cpl: u8) {
    for s in [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs] {
        let seg = cx.cpu.seg[s as usize];
        let conforming_code = seg.attrs & seg_attr::CODE != 0 && seg.attrs & 4 != 0;
        let usable = seg.attrs & seg_attr::P != 0 && !is_null(seg.selector);
        if usable && !conforming_code && seg.dpl() < cpl {
            cx.cpu.seg[s as usize] = null_segment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields_decode() {
        // Linux's __BOOT_CS (64-bit code) and __BOOT_DS (flat data).
        let cs = segment_from_descriptor(0x10, 0x00af_9b00_0000_ffff);
        assert_eq!(cs.attrs, 0xa09b);
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = Desc(0x00cf_9300_0000_ffff);
        assert!(ds.writable() && ds.present() && ds.db() && !ds.long());
        assert_eq!(ds.segment(0x18).attrs, 0xc093);
        // Base bits 0-23 and 24-31, byte-granular limit.
        let d = segment_from_descriptor(0, 0x1200_9234_5678_0fff);
        assert_eq!(d.base, 0x1234_5678);
        assert_eq!(d.limit, 0xfff);
    }
}
