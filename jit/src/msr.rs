//! Model-specific registers: the table RDMSR/WRMSR see (SDM vol. 4).
//!
//! Every index not listed here raises #GP(0), as does a write of a reserved
//! bit or a non-canonical address, so guests using `rdmsr_safe`-style
//! fixups behave as on hardware. Unknown indices are logged.

use crate::exception::Exception;
use crate::interp::Interp;
use crate::mmu::is_canonical;
use crate::state::{cr0, efer, Seg};

/// MSR indices.
pub mod index {
    pub const TSC: u32 = 0x10;
    pub const APIC_BASE: u32 = 0x1b;
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    pub const MTRRCAP: u32 = 0xfe;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// Physical-address bits (CPUID 0x80000008: 40).
const PHYS_MASK: u64 = (1 << 40) - 1;

/// The current TSC: virtual time (`tsc_bias` follows the clock's bias plus
/// any offset the guest wrote to the TSC MSR), the same for RDTSC, RDTSCP
/// and RDMSR.
pub fn tsc(cx: &Interp) -> u64 {
    cx.cpu
        .tsc_bias
        .wrapping_add(cx.cpu.icount.wrapping_shl(cx.cpu.tsc_shift as u32))
}

/// RDMSR of `idx`.
pub fn read(cx: &Interp, idx: u32) -> Result<u64, Exception> {
    use index::*;
    let m = &cx.cpu.msr;
    Ok(match idx {
        TSC => tsc(cx),
        APIC_BASE => m.apic_base,
        BIOS_SIGN_ID => 0,
        // No MTRRs are advertised (CPUID.1:EDX.MTRR = 0): no ranges.
        MTRRCAP => 0,
        SYSENTER_CS => m.sysenter_cs,
        SYSENTER_ESP => m.sysenter_esp,
        SYSENTER_EIP => m.sysenter_eip,
        MISC_ENABLE => m.misc_enable,
        PAT => m.pat,
        MTRR_DEF_TYPE => m.mtrr_def_type,
        EFER => cx.cpu.efer,
        STAR => m.star,
        LSTAR => m.lstar,
        CSTAR => m.cstar,
        SFMASK => m.sfmask,
        FS_BASE => cx.cpu.seg[Seg::Fs as usize].base,
        GS_BASE => cx.cpu.seg[Seg::Gs as usize].base,
        KERNEL_GS_BASE => m.kernel_gs_base,
        _ => {
            log::info!("rdmsr of unknown MSR {idx:#x}: #GP");
            return Err(Exception::gp(0));
        }
    })
}

fn canonical(v: u64) -> Result<u64, Exception> {
    if is_canonical(v) {
        Ok(v)
    } else {
        Err(Exception::gp(0))
    }
}

fn no_reserved(v: u64, allowed: u64) -> Result<u64, Exception> {
    if v & !allowed == 0 {
        Ok(v)
    } else {
        Err(Exception::gp(0))
    }
}

/// Every byte of PAT must name a memory type (0, 1, 4, 5, 6 or 7).
fn check_pat(v: u64) -> Result<u64, Exception> {
    if v.to_le_bytes().iter().all(|&t| matches!(t, 0 | 1 | 4..=7)) {
        Ok(v)
    } else {
        Err(Exception::gp(0))
    }
}

/// EFER: SCE, LME, NXE are writable (LMA is read-only, set by paging
/// activation); LME cannot change while paging is on. An NXE change
/// changes what TLB entries allow, so the TLB is flushed.
fn write_efer(cx: &mut Interp, v: u64) -> Result<(), Exception> {
    let old = cx.cpu.efer;
    let v = no_reserved(v, efer::SCE | efer::LME | efer::LMA | efer::NXE)?;
    if cx.cpu.cr0 & cr0::PG != 0 && (v ^ old) & efer::LME != 0 {
        return Err(Exception::gp(0));
    }
    let new = (v & !efer::LMA) | (old & efer::LMA);
    if (new ^ old) & efer::NXE != 0 {
        cx.cpu.tlb.flush_all();
    }
    cx.cpu.efer = new;
    Ok(())
}

/// WRMSR of `v` to `idx`.
pub fn write(cx: &mut Interp, idx: u32, v: u64) -> Result<(), Exception> {
    use index::*;
    match idx {
        EFER => return write_efer(cx, v),
        TSC => {
            // RDTSC continues from the written value.
            let now = cx.cpu.icount.wrapping_shl(cx.cpu.tsc_shift as u32);
            cx.cpu.tsc_bias = v.wrapping_sub(now);
        }
        APIC_BASE => {
            // BSP (8), global enable (11) and the base; no x2APIC.
            cx.cpu.msr.apic_base = no_reserved(v, (1 << 8) | (1 << 11) | (PHYS_MASK & !0xfff))?
        }
        BIOS_SIGN_ID => {} // writing 0 before CPUID is how the revision is read
        SYSENTER_CS => cx.cpu.msr.sysenter_cs = v & 0xffff_ffff,
        SYSENTER_ESP => cx.cpu.msr.sysenter_esp = canonical(v)?,
        SYSENTER_EIP => cx.cpu.msr.sysenter_eip = canonical(v)?,
        MISC_ENABLE => cx.cpu.msr.misc_enable = v,
        PAT => cx.cpu.msr.pat = check_pat(v)?,
        MTRR_DEF_TYPE => cx.cpu.msr.mtrr_def_type = no_reserved(v, 0xcff)?,
        STAR => cx.cpu.msr.star = v,
        LSTAR => cx.cpu.msr.lstar = canonical(v)?,
        CSTAR => cx.cpu.msr.cstar = canonical(v)?,
        SFMASK => cx.cpu.msr.sfmask = v & 0xffff_ffff,
        FS_BASE => cx.cpu.seg[Seg::Fs as usize].base = canonical(v)?,
        GS_BASE => cx.cpu.seg[Seg::Gs as usize].base = canonical(v)?,
        KERNEL_GS_BASE => cx.cpu.msr.kernel_gs_base = canonical(v)?,
        _ => {
            log::info!("wrmsr of unknown MSR {idx:#x} (value {v:#x}): #GP");
            return Err(Exception::gp(0));
        }
    }
    Ok(())
}
