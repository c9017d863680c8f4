//! Guest-physical memory: RAM in one anonymous mapping, MMIO holes, and the
//! record of which RAM pages hold translated code.
//!
//! Every guest-physical access is resolved here to exactly one of RAM (an
//! offset that is checked against the RAM size), an MMIO hole (handled by the
//! machine through [`IoBus`]), or nothing (reads all-ones, writes ignored).
//! No guest address is ever turned into a host pointer anywhere else.

use crate::emit::Width;
use memmap2::{MmapMut, MmapOptions};
use std::collections::BTreeSet;
use thiserror::Error;

/// A guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestPhysAddr(pub u64);

impl GuestPhysAddr {
    /// `self + n`, or `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<GuestPhysAddr> {
        self.0.checked_add(n).map(GuestPhysAddr)
    }
    /// The 4 KiB page number.
    pub fn page(self) -> u64 {
        self.0 >> 12
    }
}

/// A guest linear (virtual) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestVirtAddr(pub u64);

/// Errors of memory set-up and host-side access (loaders, tests).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MemoryError {
    /// RAM size is zero, not page-aligned or too large.
    #[error("invalid RAM size {0:#x}: must be a non-zero multiple of 4 KiB, at most 1 TiB")]
    InvalidRamSize(u64),
    /// The host refused the mapping.
    #[error("cannot map {size:#x} bytes of guest RAM: {reason}")]
    Map { size: u64, reason: String },
    /// A host-side access reaches outside RAM.
    #[error("guest-physical range {addr:#x}+{len:#x} is not inside RAM (size {ram:#x})")]
    OutsideRam { addr: u64, len: u64, ram: u64 },
    /// An MMIO range overlaps another one, or is empty.
    #[error("MMIO range {start:#x}+{len:#x} is empty or overlaps another range")]
    BadMmioRange { start: u64, len: u64 },
}

/// Callbacks for everything outside RAM: port I/O and MMIO. Implemented by
/// the machine, which routes to its buses. `icount` is the exact number of
/// instructions retired before the accessing instruction.
pub trait IoBus {
    /// Read from an I/O port.
    fn port_read(&mut self, port: u16, w: Width, icount: u64) -> u32;
    /// Write to an I/O port.
    fn port_write(&mut self, port: u16, w: Width, value: u32, icount: u64);
    /// Read from an MMIO hole.
    fn mmio_read(&mut self, addr: GuestPhysAddr, w: Width, icount: u64) -> u64;
    /// Write to an MMIO hole.
    fn mmio_write(&mut self, addr: GuestPhysAddr, w: Width, value: u64, icount: u64);
}

/// An `IoBus` with nothing on it: reads all-ones, writes are ignored.
#[derive(Debug, Default)]
pub struct NoIo;

impl IoBus for NoIo {
    fn port_read(&mut self, _: u16, w: Width, _: u64) -> u32 {
        w.mask() as u32
    }
    fn port_write(&mut self, _: u16, _: Width, _: u32, _: u64) {}
    fn mmio_read(&mut self, _: GuestPhysAddr, w: Width, _: u64) -> u64 {
        w.mask()
    }
    fn mmio_write(&mut self, _: GuestPhysAddr, _: Width, _: u64, _: u64) {}
}

/// Where a guest-physical address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysTarget {
    /// RAM at this offset from the start of the mapping.
    Ram(u64),
    /// An MMIO hole.
    Mmio,
    /// Nothing is there.
    Unassigned,
}

/// Guest-physical memory.
pub struct GuestMemory {
    ram: MmapMut,
    ram_size: u64,
    /// MMIO holes as (start, end exclusive), sorted, non-overlapping.
    mmio: Vec<(u64, u64)>,
    /// One byte per RAM page: non-zero when translated code came from it.
    code_pages: Vec<u8>,
    /// Code pages written since the engine last looked.
    dirty_code_pages: BTreeSet<u64>,
    /// Data watchpoints (a debugger's): kept here, beside the code-page
    /// marks, because both decide which accesses must take the slow path,
    /// and because the memory outlives any replacement of the CPU state
    /// (reset, snapshot load). See `crate::watchpoint`.
    pub watch: crate::watchpoint::WatchSet,
}

impl GuestMemory {
    /// Map `size` bytes of zeroed RAM at guest-physical 0.
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        if size == 0 || size & 0xfff != 0 || size > (1 << 40) {
            return Err(MemoryError::InvalidRamSize(size));
        }
        let ram = MmapOptions::new()
            .len(size as usize)
            .map_anon()
            .map_err(|e| MemoryError::Map {
                size,
                reason: e.to_string(),
            })?;
        Ok(GuestMemory {
            ram,
            ram_size: size,
            mmio: Vec::new(),
            code_pages: vec![0; (size >> 12) as usize],
            dirty_code_pages: BTreeSet::new(),
            watch: Default::default(),
        })
    }

    /// Size of RAM in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// Declare `[start, start+len)` an MMIO hole (it shadows RAM there).
    pub fn add_mmio(&mut self, start: GuestPhysAddr, len: u64) -> Result<(), MemoryError> {
        let bad = MemoryError::BadMmioRange {
            start: start.0,
            len,
        };
        let end = start.0.checked_add(len).ok_or(bad.clone())?;
        if len == 0 || self.mmio.iter().any(|&(s, e)| start.0 < e && s < end) {
            return Err(bad);
        }
        self.mmio.push((start.0, end));
        self.mmio.sort_unstable();
        Ok(())
    }

    /// Resolve a guest-physical address.
    #[inline]
    pub fn target(&self, addr: GuestPhysAddr) -> PhysTarget {
        if !self.mmio.is_empty() && self.mmio.iter().any(|&(s, e)| addr.0 >= s && addr.0 < e) {
            return PhysTarget::Mmio;
        }
        if addr.0 < self.ram_size {
            PhysTarget::Ram(addr.0)
        } else {
            PhysTarget::Unassigned
        }
    }

    /// True when the whole 4 KiB page containing `addr` is plain RAM.
    pub fn page_is_ram(&self, addr: GuestPhysAddr) -> bool {
        let page = addr.0 & !0xfff;
        page + 0x1000 <= self.ram_size
            && !self
                .mmio
                .iter()
                .any(|&(s, e)| page < e && s < page + 0x1000)
    }

    /// Host pointer to the RAM page containing `addr`, if it is all RAM.
    pub fn host_page(&mut self, addr: GuestPhysAddr) -> Option<*mut u8> {
        if self.page_is_ram(addr) {
            // In bounds: checked by page_is_ram.
            Some(unsafe { self.ram.as_mut_ptr().add((addr.0 & !0xfff) as usize) })
        } else {
            None
        }
    }

    /// Guest-physical address of a host pointer into RAM (inverse of
    /// `host_page`), or `None` if it does not point into RAM.
    pub fn phys_of_host(&self, p: *const u8) -> Option<GuestPhysAddr> {
        let base = self.ram.as_ptr() as u64;
        let off = (p as u64).wrapping_sub(base);
        (off < self.ram_size).then_some(GuestPhysAddr(off))
    }

    /// RAM as a byte slice (host-side access for loaders and hashing).
    pub fn ram(&self) -> &[u8] {
        &self.ram
    }

    /// RAM as a mutable byte slice. Writing here bypasses code
    /// invalidation; use [`GuestMemory::write_phys`] once code may run.
    pub fn ram_mut(&mut self) -> &mut [u8] {
        &mut self.ram
    }

    fn check_ram(&self, addr: GuestPhysAddr, len: usize) -> Result<usize, MemoryError> {
        match addr.0.checked_add(len as u64) {
            Some(end) if end <= self.ram_size => Ok(addr.0 as usize),
            _ => Err(MemoryError::OutsideRam {
                addr: addr.0,
                len: len as u64,
                ram: self.ram_size,
            }),
        }
    }

    /// Copy RAM out (host side; all-or-error).
    pub fn read_phys(&self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let off = self.check_ram(addr, buf.len())?;
        buf.copy_from_slice(&self.ram[off..off + buf.len()]);
        Ok(())
    }

    /// Copy into RAM (host side; all-or-error). Invalidates translations of
    /// the pages written.
    pub fn write_phys(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), MemoryError> {
        let off = self.check_ram(addr, data.len())?;
        self.ram[off..off + data.len()].copy_from_slice(data);
        if !data.is_empty() {
            for page in (addr.0 >> 12)..=((addr.0 + data.len() as u64 - 1) >> 12) {
                self.note_write(page);
            }
        }
        Ok(())
    }

    /// Read a little-endian value of width `w` from RAM (guest access path;
    /// the caller has resolved `addr` to RAM).
    #[inline]
    pub fn read_ram(&self, off: u64, w: Width) -> u64 {
        let mut b = [0u8; 8];
        let n = w.bytes() as usize;
        let off = off as usize;
        if off + n <= self.ram.len() {
            b[..n].copy_from_slice(&self.ram[off..off + n]);
        }
        u64::from_le_bytes(b)
    }

    /// Write a little-endian value of width `w` to RAM (guest access path).
    #[inline]
    pub fn write_ram(&mut self, off: u64, w: Width, v: u64) {
        let n = w.bytes() as usize;
        let o = off as usize;
        if o + n <= self.ram.len() {
            self.ram[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
            self.note_write(off >> 12);
            if (off + n as u64 - 1) >> 12 != off >> 12 {
                self.note_write((off + n as u64 - 1) >> 12);
            }
        }
    }

    /// Mark a RAM page as holding translated code. Returns true if it was
    /// not marked before (the caller must then revoke fast-path writes).
    pub fn mark_code_page(&mut self, page: u64) -> bool {
        match self.code_pages.get_mut(page as usize) {
            Some(b) if *b == 0 => {
                *b = 1;
                true
            }
            _ => false,
        }
    }

    /// True when the page holds translated code.
    #[inline]
    pub fn is_code_page(&self, page: u64) -> bool {
        self.code_pages.get(page as usize).is_some_and(|&b| b != 0)
    }

    #[inline]
    fn note_write(&mut self, page: u64) {
        if let Some(b) = self.code_pages.get_mut(page as usize) {
            if *b != 0 {
                *b = 0;
                self.dirty_code_pages.insert(page);
            }
        }
    }

    /// Take the set of code pages written since the last call.
    pub fn take_dirty_code_pages(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dirty_code_pages)
            .into_iter()
            .collect()
    }

    /// True if some code page was written and not yet handled.
    #[inline]
    pub fn has_dirty_code(&self) -> bool {
        !self.dirty_code_pages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_rejects_bad_sizes_and_outside_access() {
        assert!(GuestMemory::new(0).is_err());
        assert!(GuestMemory::new(0x1234).is_err());
        let mut m = GuestMemory::new(0x10000).unwrap();
        assert!(m.write_phys(GuestPhysAddr(0xfffc), &[1, 2, 3, 4]).is_ok());
        assert!(matches!(
            m.write_phys(GuestPhysAddr(0xfffd), &[1, 2, 3, 4]),
            Err(MemoryError::OutsideRam { .. })
        ));
        assert!(m
            .write_phys(GuestPhysAddr(u64::MAX - 1), &[1, 2, 3, 4])
            .is_err());
        assert_eq!(m.target(GuestPhysAddr(0x10000)), PhysTarget::Unassigned);
    }

    #[test]
    fn memory_mmio_shadows_ram_and_rejects_overlap() {
        let mut m = GuestMemory::new(0x10000).unwrap();
        m.add_mmio(GuestPhysAddr(0x2000), 0x1000).unwrap();
        assert!(m.add_mmio(GuestPhysAddr(0x2800), 0x1000).is_err());
        assert!(m.add_mmio(GuestPhysAddr(0x9000), 0).is_err());
        assert_eq!(m.target(GuestPhysAddr(0x2004)), PhysTarget::Mmio);
        assert!(!m.page_is_ram(GuestPhysAddr(0x2000)));
        assert!(m.page_is_ram(GuestPhysAddr(0x3000)));
    }

    #[test]
    fn memory_code_page_writes_are_reported() {
        let mut m = GuestMemory::new(0x10000).unwrap();
        assert!(m.mark_code_page(3));
        assert!(!m.mark_code_page(3));
        m.write_ram(0x3ffe, Width::D, 0xdead_beef);
        assert_eq!(m.take_dirty_code_pages(), vec![3]);
        assert!(!m.is_code_page(3));
        assert_eq!(m.read_ram(0x3ffe, Width::D), 0xdead_beef);
    }
}
