//! The CPU's part of a machine snapshot: every architectural register plus
//! the clock-related engine fields (instruction count, TSC bias and
//! shift). The rest of [`CpuState`] (lazy-flags operands, budget, exit
//! requests, INTR, the soft TLB) is engine bookkeeping: it is rebuilt on
//! restore, never saved, so a snapshot taken under the JIT loads under the
//! interpreter and the other way round.

use crate::flags::{CcOp, RFLAGS_FIXED};
use crate::state::{CpuState, DescriptorTable, Msrs, Segment};
use serde::{Deserialize, Serialize};

/// Every saved field of the CPU. RFLAGS is stored materialised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSnapshot {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// ES CS SS DS FS GS.
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    /// (base, limit).
    pub gdtr: (u64, u16),
    pub idtr: (u64, u16),
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub dr: [u64; 8],
    pub efer: u64,
    pub msr: Msrs,
    /// x87 R0–R7, whole 16-byte slots.
    pub x87_regs: [[u8; 16]; 8],
    pub fcw: u16,
    pub fsw: u16,
    pub ftw: u16,
    pub fop: u16,
    pub fip: u64,
    pub fdp: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub cpl: u8,
    pub interrupt_shadow: u8,
    pub halted: u8,
    /// Instructions retired since power-on.
    pub icount: u64,
    /// RDTSC = `tsc_bias + (icount << tsc_shift)`.
    pub tsc_bias: u64,
    pub tsc_shift: u64,
}

/// A snapshot the engine cannot run from.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuSnapshotError {
    #[error("CPU snapshot: CPL {0} is not 0..=3")]
    Cpl(u8),
    #[error("CPU snapshot: {0} is {1}, not 0 or 1")]
    Flag(&'static str, u8),
    #[error("CPU snapshot: TSC shift {0} is out of range")]
    TscShift(u64),
}

impl CpuState {
    /// The saved part of this state.
    pub fn snapshot(&self) -> CpuSnapshot {
        let x = &self.x87;
        CpuSnapshot {
            gpr: self.gpr,
            rip: self.rip,
            rflags: self.rflags(),
            seg: self.seg,
            ldtr: self.ldtr,
            tr: self.tr,
            gdtr: (self.gdtr.base, self.gdtr.limit),
            idtr: (self.idtr.base, self.idtr.limit),
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            cr8: self.cr8,
            dr: self.dr,
            efer: self.efer,
            msr: self.msr,
            x87_regs: x.regs,
            fcw: x.fcw,
            fsw: x.fsw,
            ftw: x.ftw,
            fop: x.fop,
            fip: x.fip,
            fdp: x.fdp,
            xmm: self.xmm,
            mxcsr: self.mxcsr,
            cpl: self.cpl,
            interrupt_shadow: self.interrupt_shadow,
            halted: self.halted,
            icount: self.icount,
            tsc_bias: self.tsc_bias,
            tsc_shift: self.tsc_shift,
        }
    }

    /// A CPU in the saved state: flags eager, INTR low, no budget, no exit
    /// request, an empty soft TLB (the caller's engine must flush its own).
    pub fn from_snapshot(s: &CpuSnapshot) -> Result<CpuState, CpuSnapshotError> {
        check(s)?;
        let mut c = CpuState::power_on();
        c.gpr = s.gpr;
        c.rip = s.rip;
        // Stored as read: the lazy-flags state becomes "all in RFLAGS".
        c.rflags = s.rflags | RFLAGS_FIXED;
        c.cc_op = CcOp::EFLAGS.raw() as u64;
        c.cc_dst = 0;
        c.cc_src = 0;
        c.cc_src2 = 0;
        c.seg = s.seg;
        c.ldtr = s.ldtr;
        c.tr = s.tr;
        c.gdtr = DescriptorTable::new(s.gdtr.0, s.gdtr.1);
        c.idtr = DescriptorTable::new(s.idtr.0, s.idtr.1);
        c.cr0 = s.cr0;
        c.cr2 = s.cr2;
        c.cr3 = s.cr3;
        c.cr4 = s.cr4;
        c.cr8 = s.cr8;
        c.dr = s.dr;
        c.efer = s.efer;
        c.msr = s.msr;
        c.x87.regs = s.x87_regs;
        c.x87.fcw = s.fcw;
        c.x87.fsw = s.fsw;
        c.x87.ftw = s.ftw;
        c.x87.fop = s.fop;
        c.x87.fip = s.fip;
        c.x87.fdp = s.fdp;
        c.xmm = s.xmm;
        c.mxcsr = s.mxcsr;
        c.cpl = s.cpl;
        c.interrupt_shadow = s.interrupt_shadow;
        c.halted = s.halted;
        c.intr = 0;
        c.icount = s.icount;
        c.budget = 0;
        c.tsc_bias = s.tsc_bias;
        c.tsc_shift = s.tsc_shift;
        c.exit_req = 0;
        c.tlb.flush_all();
        Ok(c)
    }
}

/// Values the engine indexes or shifts by must be in range.
fn check(s: &CpuSnapshot) -> Result<(), CpuSnapshotError> {
    if s.cpl > 3 {
        return Err(CpuSnapshotError::Cpl(s.cpl));
    }
    for (name, v) in [
        ("interrupt shadow", s.interrupt_shadow),
        ("halted", s.halted),
    ] {
        if v > 1 {
            return Err(CpuSnapshotError::Flag(name, v));
        }
    }
    if s.tsc_shift >= 64 {
        return Err(CpuSnapshotError::TscShift(s.tsc_shift));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::Width;
    use crate::flags::CcKind;

    /// A CPU with a distinct value in every saved field and lazy flags.
    fn busy() -> CpuState {
        let mut c = CpuState::power_on();
        for (i, r) in c.gpr.iter_mut().enumerate() {
            *r = 0x1111 * (i as u64 + 1);
        }
        c.rip = 0xdead_beef;
        c.seg[4].base = 0x7000_0000_1000;
        c.tr.selector = 0x28;
        c.gdtr = DescriptorTable::new(0x1000, 0x37);
        c.cr3 = 0x9000;
        c.dr[7] = 0x400;
        c.msr.lstar = 0xffff_8000_0000_0000;
        c.x87.regs[3][9] = 0x40;
        c.xmm[15] = u128::MAX - 5;
        c.mxcsr = 0x1f80;
        c.cpl = 3;
        c.halted = 1;
        c.icount = 123_456;
        c.tsc_bias = 77;
        c.tsc_shift = 3;
        // Flags left lazy by a 32-bit logic op with result 0: ZF, PF.
        c.cc_op = CcOp::new(CcKind::Logic, Width::D).raw() as u64;
        c.cc_dst = 0;
        c
    }

    #[test]
    fn snapshot_round_trips_every_saved_field() {
        let c = busy();
        let s = c.snapshot();
        let back = CpuState::from_snapshot(&s).unwrap();
        assert_eq!(back.snapshot(), s);
        assert_eq!(back.rflags(), c.rflags());
        assert_eq!(
            c.rflags() & 0x44,
            0x44,
            "ZF and PF came from the lazy state"
        );
        assert_eq!(back.cc_op, 0, "restored flags are eager");
        assert_eq!(back.icount, 123_456);
        assert_eq!(back.cpl, 3);
        assert_eq!(back.intr, 0);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut s = busy().snapshot();
        s.cpl = 4;
        assert_eq!(
            CpuState::from_snapshot(&s).err(),
            Some(CpuSnapshotError::Cpl(4))
        );
        let mut s = busy().snapshot();
        s.halted = 2;
        assert!(CpuState::from_snapshot(&s).is_err());
        let mut s = busy().snapshot();
        s.tsc_shift = 64;
        assert!(CpuState::from_snapshot(&s).is_err());
    }
}
