//! Linear-to-physical translation (paging) and the slow paths of guest
//! memory access: TLB misses, page-crossing accesses, MMIO and faults.
//!
//! Both engines call these functions on a TLB miss; the fast path (a TLB hit
//! on RAM) never comes here.

use crate::emit::Width;
use crate::exception::{pf_err, Exception};
use crate::memory::{GuestMemory, GuestPhysAddr, IoBus, PhysTarget};
use crate::soft_tlb::{TlbPerms, INVALID_TAG, PAGE_MASK};
use crate::state::{cr0, cr4, efer, exit_req, CpuState};

/// Kind of memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// Page-table entry bits.
mod pte {
    pub const P: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const US: u64 = 1 << 2;
    pub const A: u64 = 1 << 5;
    pub const D: u64 = 1 << 6;
    pub const PS: u64 = 1 << 7;
    pub const G: u64 = 1 << 8;
    pub const NX: u64 = 1 << 63;
    /// Physical-address bits of a 64-bit entry (52-bit physical space).
    pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
    /// Address bits 40..51 of a 64-bit entry: reserved, since CPUID
    /// 0x8000_0008 reports 40 physical-address bits (SDM 4.5, table 4-14).
    pub const RSVD_HIGH: u64 = 0x000f_ff00_0000_0000;
}

/// A successful translation.
#[derive(Clone, Copy, Debug)]
pub struct Translation {
    /// Physical address of the byte.
    pub phys: u64,
    /// What the page allows at the current privilege level.
    pub perms: TlbPerms,
}

/// True when `lin` is canonical for 48-bit linear addresses.
#[inline(always)]
pub fn is_canonical(lin: u64) -> bool {
    ((lin as i64) << 16 >> 16) as u64 == lin
}

fn read_pte(mem: &GuestMemory, addr: u64, wide: bool) -> u64 {
    match mem.target(GuestPhysAddr(addr)) {
        PhysTarget::Ram(off) => mem.read_ram(off, if wide { Width::Q } else { Width::D }),
        // A page table outside RAM reads as not present.
        _ => 0,
    }
}

fn write_pte(mem: &mut GuestMemory, addr: u64, wide: bool, v: u64) {
    if let PhysTarget::Ram(off) = mem.target(GuestPhysAddr(addr)) {
        mem.write_ram(off, if wide { Width::Q } else { Width::D }, v);
    }
}

/// Translate `lin` for an access of kind `acc`, setting accessed and dirty
/// bits as the hardware does. `user` is true for accesses made at CPL 3.
pub fn translate(
    cpu: &CpuState,
    mem: &mut GuestMemory,
    lin: u64,
    acc: Access,
    user: bool,
) -> Result<Translation, Exception> {
    if cpu.cr0 & cr0::PG == 0 {
        let all = TlbPerms {
            read: true,
            write: true,
            exec: true,
            global: false,
        };
        return Ok(Translation {
            phys: lin & 0xffff_ffff,
            perms: all,
        });
    }
    let long = cpu.efer & efer::LMA != 0;
    let pae = cpu.cr4 & cr4::PAE != 0;
    let nxe = cpu.efer & efer::NXE != 0;
    let wp = cpu.cr0 & cr0::WP != 0;

    // Build the list of levels: (table base, index shift, entry is 64-bit).
    let (mut table, levels, wide): (u64, &[u32], bool) = if long {
        (cpu.cr3 & pte::ADDR, &[39, 30, 21, 12], true)
    } else if pae {
        // The four PDPTEs; we read them at walk time (no PDPTE registers).
        (cpu.cr3 & 0xffff_ffe0, &[30, 21, 12], true)
    } else {
        (cpu.cr3 & 0xffff_f000, &[22, 12], false)
    };

    let fault_code = |present: bool, rsvd: bool| {
        let mut c = 0;
        if present {
            c |= pf_err::PRESENT;
        }
        if acc == Access::Write {
            c |= pf_err::WRITE;
        }
        if user {
            c |= pf_err::USER;
        }
        if rsvd {
            c |= pf_err::RSVD | pf_err::PRESENT;
        }
        if acc == Access::Fetch && (nxe || cpu.cr4 & (1 << 20) != 0) {
            c |= pf_err::FETCH;
        }
        c
    };

    let mut allow_user = true;
    let mut allow_write = true;
    let mut no_exec = false;
    let mut entries: [(u64, u64); 4] = [(0, 0); 4];
    let mut n = 0;
    let mut page_bits = 12;
    let mut frame = 0;
    let mut global = false;
    for (depth, &shift) in levels.iter().enumerate() {
        let idx_bits = if wide { 9 } else { 10 };
        let is_pae_pdpt = !long && pae && depth == 0;
        let idx = if is_pae_pdpt {
            (lin >> 30) & 3
        } else {
            (lin >> shift) & ((1 << idx_bits) - 1)
        };
        let addr = table + idx * if wide { 8 } else { 4 };
        let e = read_pte(mem, addr, wide);
        if e & pte::P == 0 {
            return Err(Exception::pf(lin, fault_code(false, false)));
        }
        if wide && ((e & pte::NX != 0 && !nxe) || e & pte::RSVD_HIGH != 0) {
            return Err(Exception::pf(lin, fault_code(true, true)));
        }
        if is_pae_pdpt {
            // PAE PDPTEs carry no permission bits.
            table = e & pte::ADDR;
            continue;
        }
        entries[n] = (addr, e);
        n += 1;
        allow_user &= e & pte::US != 0;
        allow_write &= e & pte::RW != 0;
        no_exec |= wide && e & pte::NX != 0;
        let last = shift == 12;
        let large = !last && e & pte::PS != 0;
        if large {
            let big_ok = if long {
                shift == 30 || shift == 21
            } else {
                shift == 21 || (shift == 22 && cpu.cr4 & cr4::PSE != 0)
            };
            if !big_ok && shift != 22 {
                return Err(Exception::pf(lin, fault_code(true, true)));
            }
            if big_ok {
                page_bits = shift;
                frame = if wide {
                    e & pte::ADDR & !((1u64 << shift) - 1)
                } else {
                    // PSE-36 high bits in 13..20.
                    (e & 0xffc0_0000) | ((e >> 13) & 0xff) << 32
                };
                global = e & pte::G != 0 && cpu.cr4 & cr4::PGE != 0;
                break;
            }
        }
        if last {
            frame = if wide { e & pte::ADDR } else { e & 0xffff_f000 };
            global = e & pte::G != 0 && cpu.cr4 & cr4::PGE != 0;
            break;
        }
        table = if wide { e & pte::ADDR } else { e & 0xffff_f000 };
    }

    // Permission checks.
    let write_ok = if user {
        allow_user && allow_write
    } else {
        allow_write || !wp
    };
    let read_ok = !user || allow_user;
    let exec_ok = read_ok && !(no_exec && nxe);
    let ok = match acc {
        Access::Read => read_ok,
        Access::Write => write_ok,
        Access::Fetch => exec_ok,
    };
    if !ok {
        return Err(Exception::pf(lin, fault_code(true, false)));
    }

    // Accessed bits on every level; dirty on the leaf for writes.
    for (i, &(addr, e)) in entries[..n].iter().enumerate() {
        let mut ne = e | pte::A;
        if i == n - 1 && acc == Access::Write {
            ne |= pte::D;
        }
        if ne != e {
            write_pte(mem, addr, wide, ne);
        }
    }
    let dirty = entries[n - 1].1 & pte::D != 0 || acc == Access::Write;
    let phys = frame | (lin & ((1u64 << page_bits) - 1));
    Ok(Translation {
        phys,
        perms: TlbPerms {
            read: read_ok,
            // Writes take the slow path until the dirty bit is set.
            write: write_ok && dirty,
            exec: exec_ok,
            global,
        },
    })
}

/// Translate and, when the page is RAM, enter it in the TLB.
fn translate_and_fill(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    lin: u64,
    acc: Access,
) -> Result<u64, Exception> {
    let user = cpu.cpl == 3;
    let t = translate(cpu, mem, lin, acc, user)?;
    let phys_page = GuestPhysAddr(t.phys & !PAGE_MASK);
    if let Some(host) = mem.host_page(phys_page) {
        let mut perms = t.perms;
        if acc == Access::Fetch {
            cpu.tlb.fill_code(lin, host, perms);
        } else {
            if mem.is_code_page(phys_page.page()) {
                perms.write = false;
            }
            // Watched pages stay out: every access to them is checked.
            if mem.watch.is_empty() || mem.watch.page_cacheable(lin & !PAGE_MASK) {
                cpu.tlb.fill(lin, host, perms);
            }
        }
    }
    Ok(t.phys)
}

/// A slow-path access to `lin`, translated: with watchpoints set, a hit
/// ends the block after this instruction, so the run loop sees it at the
/// exact count.
#[inline(always)]
fn note_watched(cpu: &mut CpuState, mem: &mut GuestMemory, lin: u64, len: u64, write: bool) {
    if mem.watch.is_empty() {
        return;
    }
    mem.watch.note(lin, len, write);
    if mem.watch.has_hit() {
        cpu.exit_req |= exit_req::DEVICE | exit_req::END_BLOCK;
    }
}

fn check_canonical(cpu: &CpuState, lin: u64) -> Result<(), Exception> {
    if cpu.efer & efer::LMA != 0 && !is_canonical(lin) {
        Err(Exception::gp(0))
    } else {
        Ok(())
    }
}

fn phys_read(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    io: &mut dyn IoBus,
    phys: u64,
    w: Width,
) -> u64 {
    match mem.target(GuestPhysAddr(phys)) {
        PhysTarget::Ram(off) if off + w.bytes() as u64 <= mem.ram_size() => mem.read_ram(off, w),
        PhysTarget::Mmio => {
            cpu.exit_req |= exit_req::DEVICE | exit_req::END_BLOCK;
            io.mmio_read(GuestPhysAddr(phys), w, cpu.icount) & w.mask()
        }
        _ => w.mask(),
    }
}

fn phys_write(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    io: &mut dyn IoBus,
    phys: u64,
    w: Width,
    v: u64,
) {
    match mem.target(GuestPhysAddr(phys)) {
        PhysTarget::Ram(off) if off + w.bytes() as u64 <= mem.ram_size() => {
            mem.write_ram(off, w, v);
            if mem.has_dirty_code() {
                cpu.exit_req |= exit_req::CODE_WRITE | exit_req::END_BLOCK;
            }
        }
        PhysTarget::Mmio => {
            cpu.exit_req |= exit_req::DEVICE | exit_req::END_BLOCK;
            io.mmio_write(GuestPhysAddr(phys), w, v & w.mask(), cpu.icount);
        }
        _ => {}
    }
}

/// A guest read that missed the TLB fast path.
pub fn read_slow(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    io: &mut dyn IoBus,
    lin: u64,
    w: Width,
) -> Result<u64, Exception> {
    check_canonical(cpu, lin)?;
    let n = w.bytes() as u64;
    if (lin & PAGE_MASK) + n <= 0x1000 {
        let phys = translate_and_fill(cpu, mem, lin, Access::Read)?;
        note_watched(cpu, mem, lin, n, false);
        return Ok(phys_read(cpu, mem, io, phys, w));
    }
    // Crosses a page: translate both pages first, then read byte by byte.
    let second = (lin | PAGE_MASK).wrapping_add(1);
    check_canonical(cpu, second)?;
    let p1 = translate_and_fill(cpu, mem, lin, Access::Read)?;
    let p2 = translate_and_fill(cpu, mem, second, Access::Read)?;
    note_watched(cpu, mem, lin, n, false);
    let first_len = 0x1000 - (lin & PAGE_MASK);
    let mut v = 0u64;
    for i in 0..n {
        let p = if i < first_len {
            p1 + i
        } else {
            p2 + (i - first_len)
        };
        v |= phys_read(cpu, mem, io, p, Width::B) << (8 * i);
    }
    Ok(v)
}

/// A guest write that missed the TLB fast path. Either every byte is
/// written or, on a fault, none.
pub fn write_slow(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    io: &mut dyn IoBus,
    lin: u64,
    w: Width,
    v: u64,
) -> Result<(), Exception> {
    check_canonical(cpu, lin)?;
    let n = w.bytes() as u64;
    if (lin & PAGE_MASK) + n <= 0x1000 {
        let phys = translate_and_fill(cpu, mem, lin, Access::Write)?;
        note_watched(cpu, mem, lin, n, true);
        phys_write(cpu, mem, io, phys, w, v);
        return Ok(());
    }
    let second = (lin | PAGE_MASK).wrapping_add(1);
    check_canonical(cpu, second)?;
    let p1 = translate_and_fill(cpu, mem, lin, Access::Write)?;
    let p2 = translate_and_fill(cpu, mem, second, Access::Write)?;
    note_watched(cpu, mem, lin, n, true);
    let first_len = 0x1000 - (lin & PAGE_MASK);
    for i in 0..n {
        let p = if i < first_len {
            p1 + i
        } else {
            p2 + (i - first_len)
        };
        phys_write(cpu, mem, io, p, Width::B, v >> (8 * i));
    }
    Ok(())
}

/// Check that a write of `w` bytes at `lin` would succeed, without writing
/// (for instructions that must fault before changing anything).
pub fn probe_write(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    lin: u64,
    w: Width,
) -> Result<(), Exception> {
    check_canonical(cpu, lin)?;
    translate_and_fill(cpu, mem, lin, Access::Write)?;
    let last = lin.wrapping_add(w.bytes() as u64 - 1);
    if last & !PAGE_MASK != lin & !PAGE_MASK {
        check_canonical(cpu, last)?;
        translate_and_fill(cpu, mem, last, Access::Write)?;
    }
    Ok(())
}

/// Size of the page that maps `lin` now (4 KiB when not mapped), read
/// without setting accessed bits.
fn mapped_page_size(cpu: &CpuState, mem: &GuestMemory, lin: u64) -> u64 {
    if cpu.cr0 & cr0::PG == 0 {
        return 0x1000;
    }
    if cpu.efer & efer::LMA != 0 {
        let pml4e = read_pte(mem, (cpu.cr3 & pte::ADDR) + ((lin >> 39) & 511) * 8, true);
        if pml4e & pte::P == 0 {
            return 0x1000;
        }
        let pdpte = read_pte(mem, (pml4e & pte::ADDR) + ((lin >> 30) & 511) * 8, true);
        if pdpte & pte::P == 0 {
            return 0x1000;
        }
        if pdpte & pte::PS != 0 {
            return 1 << 30;
        }
        let pde = read_pte(mem, (pdpte & pte::ADDR) + ((lin >> 21) & 511) * 8, true);
        return if pde & (pte::P | pte::PS) == pte::P | pte::PS {
            1 << 21
        } else {
            0x1000
        };
    }
    if cpu.cr4 & cr4::PAE != 0 {
        let pdpte = read_pte(mem, (cpu.cr3 & 0xffff_ffe0) + ((lin >> 30) & 3) * 8, true);
        if pdpte & pte::P == 0 {
            return 0x1000;
        }
        let pde = read_pte(mem, (pdpte & pte::ADDR) + ((lin >> 21) & 511) * 8, true);
        return if pde & (pte::P | pte::PS) == pte::P | pte::PS {
            1 << 21
        } else {
            0x1000
        };
    }
    let pde = read_pte(
        mem,
        (cpu.cr3 & 0xffff_f000) + ((lin >> 22) & 1023) * 4,
        false,
    );
    if pde & (pte::P | pte::PS) == pte::P | pte::PS && cpu.cr4 & cr4::PSE != 0 {
        1 << 22
    } else {
        0x1000
    }
}

/// INVLPG: drop every TLB entry for the page containing `lin`. The soft
/// TLB holds 4 KiB pieces even of large pages, and the page being
/// invalidated may have been large before the guest split it, so every
/// entry in the surrounding 2 MiB (or the current large page, if larger)
/// is dropped: more than needed, never less.
pub fn invlpg(cpu: &mut CpuState, mem: &mut GuestMemory, lin: u64) {
    let size = mapped_page_size(cpu, mem, lin).max(1 << 21);
    let start = lin & !(size - 1);
    let inside = |tag: u64| tag != INVALID_TAG && tag.wrapping_sub(start) < size;
    cpu.tlb.flush_page(lin);
    for e in cpu.tlb.entries.iter_mut() {
        if inside(e.read_tag) || inside(e.write_tag) {
            e.read_tag = INVALID_TAG;
            e.write_tag = INVALID_TAG;
        }
    }
    for e in cpu.tlb.code.iter_mut() {
        if inside(e.tag) {
            e.tag = INVALID_TAG;
        }
    }
}

/// Translate a code address for the decoder; returns the physical address.
pub fn translate_fetch(
    cpu: &mut CpuState,
    mem: &mut GuestMemory,
    lin: u64,
) -> Result<u64, Exception> {
    check_canonical(cpu, lin)?;
    translate_and_fill(cpu, mem, lin, Access::Fetch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build 4-level tables mapping linear 0x40_0000 → physical 0x8000 (4K),
    /// read-only, user.
    fn setup() -> (CpuState, GuestMemory) {
        let mut mem = GuestMemory::new(0x20_0000).unwrap();
        let mut cpu = CpuState::power_on();
        cpu.enter_long_mode_flat(0x1000);
        let w = |m: &mut GuestMemory, a: u64, v: u64| {
            m.write_phys(GuestPhysAddr(a), &v.to_le_bytes()).unwrap()
        };
        w(&mut mem, 0x1000, 0x2000 | 7); // PML4[0]
        w(&mut mem, 0x2000, 0x3000 | 7); // PDPT[0]
        w(&mut mem, 0x3000 + 2 * 8, 0x4000 | 7); // PD[2] (0x40_0000)
        w(&mut mem, 0x4000, 0x8000 | 5); // PT[0]: present, user, read-only
        (cpu, mem)
    }

    #[test]
    fn walk_sets_accessed_and_respects_rw() {
        let (cpu, mut mem) = setup();
        let t = translate(&cpu, &mut mem, 0x40_0123, Access::Read, false).unwrap();
        assert_eq!(t.phys, 0x8123);
        assert_eq!(mem.read_ram(0x4000, Width::Q) & pte::A, pte::A);
        // CR0.WP is set: supervisor write to a read-only page faults.
        let e = translate(&cpu, &mut mem, 0x40_0123, Access::Write, false).unwrap_err();
        assert_eq!(e.vector, crate::exception::vector::PF);
        assert_eq!(e.error_code, pf_err::PRESENT | pf_err::WRITE);
        assert_eq!(e.address, 0x40_0123);
        // Not present.
        let e = translate(&cpu, &mut mem, 0x60_0000, Access::Read, true).unwrap_err();
        assert_eq!(e.error_code, pf_err::USER);
    }

    #[test]
    fn slow_paths_fill_tlb_and_cross_pages() {
        let (mut cpu, mut mem) = setup();
        let mut io = crate::memory::NoIo;
        mem.write_phys(GuestPhysAddr(0x8ffe), &[0x11, 0x22])
            .unwrap();
        let v = read_slow(&mut cpu, &mut mem, &mut io, 0x40_0ffe, Width::B).unwrap();
        assert_eq!(v, 0x11);
        assert!(cpu.tlb.host_read(0x40_0ff0, 8).is_some());
        // Crossing into an unmapped page faults with the second page's address.
        let e = read_slow(&mut cpu, &mut mem, &mut io, 0x40_0ffe, Width::D).unwrap_err();
        assert_eq!(e.address, 0x40_1000);
        assert_eq!(
            read_slow(&mut cpu, &mut mem, &mut io, 0x8000_0000_0000, Width::B),
            Err(Exception::gp(0))
        );
    }
}
