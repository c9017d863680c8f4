//! The soft TLB: a direct-mapped cache from linear page to host pointer,
//! consulted on every guest memory access and inlined by the JIT.
//!
//! A data entry's `read_tag`/`write_tag` (and a code entry's `tag`) hold the linear page address
//! when that kind of access may take the fast path, and [`INVALID_TAG`]
//! otherwise. A hit computes the host address as `linear + addend`. Only RAM
//! pages are ever entered, so a hit can never reach host memory outside
//! guest RAM. Pages holding translated code never get a write tag, so every
//! write to them takes the slow path, which invalidates the translations.
//!
//! The permission of an entry is that of the privilege level it was filled
//! at; the engine flushes the TLB when CPL moves between user and supervisor.

/// Number of data entries (a power of two).
pub const TLB_ENTRIES: usize = 1024;
/// Number of code (instruction-fetch) entries (a power of two).
pub const CODE_TLB_ENTRIES: usize = 64;
/// A tag that no page-aligned address equals.
pub const INVALID_TAG: u64 = 1;
/// Bits of a linear address inside its page.
pub const PAGE_MASK: u64 = 0xfff;

/// One data TLB entry (32 bytes, layout known to the JIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct TlbEntry {
    pub read_tag: u64,
    pub write_tag: u64,
    /// Host address minus linear address for this page.
    pub addend: u64,
    _pad: u64,
}

impl TlbEntry {
    const EMPTY: TlbEntry = TlbEntry {
        read_tag: INVALID_TAG,
        write_tag: INVALID_TAG,
        addend: 0,
        _pad: 0,
    };
}

/// One code TLB entry: pages instructions may be fetched from. Kept apart
/// from the data entries so that code and the data it works on never evict
/// each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CodeTlbEntry {
    pub tag: u64,
    pub addend: u64,
}

impl CodeTlbEntry {
    const EMPTY: CodeTlbEntry = CodeTlbEntry {
        tag: INVALID_TAG,
        addend: 0,
    };
}

/// The TLB itself, embedded in `CpuState`.
#[derive(Clone)]
#[repr(C)]
pub struct SoftTlb {
    /// Data entries (first: compiled code indexes them from the struct start).
    pub entries: [TlbEntry; TLB_ENTRIES],
    /// Instruction-fetch entries.
    pub code: [CodeTlbEntry; CODE_TLB_ENTRIES],
    /// Which data entries map global pages (kept across CR3 writes).
    global: [bool; TLB_ENTRIES],
    /// Which code entries map global pages.
    code_global: [bool; CODE_TLB_ENTRIES],
}

impl Default for SoftTlb {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftTlb {
    /// An empty TLB.
    pub fn new() -> SoftTlb {
        SoftTlb {
            entries: [TlbEntry::EMPTY; TLB_ENTRIES],
            code: [CodeTlbEntry::EMPTY; CODE_TLB_ENTRIES],
            global: [false; TLB_ENTRIES],
            code_global: [false; CODE_TLB_ENTRIES],
        }
    }

    /// Index of the data entry for a linear address.
    #[inline(always)]
    pub fn index(lin: u64) -> usize {
        ((lin >> 12) as usize) & (TLB_ENTRIES - 1)
    }

    #[inline(always)]
    fn code_index(lin: u64) -> usize {
        ((lin >> 12) as usize) & (CODE_TLB_ENTRIES - 1)
    }

    /// Host address of a `len`-byte read at `lin`, if the fast path applies.
    #[inline(always)]
    pub fn host_read(&self, lin: u64, len: u32) -> Option<*mut u8> {
        let e = &self.entries[Self::index(lin)];
        if e.read_tag == lin & !PAGE_MASK && (lin & PAGE_MASK) + len as u64 <= 0x1000 {
            Some(lin.wrapping_add(e.addend) as *mut u8)
        } else {
            None
        }
    }

    /// Host address of a `len`-byte write at `lin`, if the fast path applies.
    #[inline(always)]
    pub fn host_write(&self, lin: u64, len: u32) -> Option<*mut u8> {
        let e = &self.entries[Self::index(lin)];
        if e.write_tag == lin & !PAGE_MASK && (lin & PAGE_MASK) + len as u64 <= 0x1000 {
            Some(lin.wrapping_add(e.addend) as *mut u8)
        } else {
            None
        }
    }

    /// Host address for fetching code at `lin`, if the fast path applies.
    #[inline(always)]
    pub fn host_exec(&self, lin: u64) -> Option<*mut u8> {
        let e = &self.code[Self::code_index(lin)];
        if e.tag == lin & !PAGE_MASK {
            Some(lin.wrapping_add(e.addend) as *mut u8)
        } else {
            None
        }
    }

    /// Enter a translation made for a data access. `host_page` must point at
    /// a 4 KiB page inside guest RAM that stays mapped as long as the TLB
    /// can hold it.
    pub fn fill(&mut self, lin: u64, host_page: *mut u8, perms: TlbPerms) {
        let i = Self::index(lin);
        let page = lin & !PAGE_MASK;
        let e = &mut self.entries[i];
        e.addend = (host_page as u64).wrapping_sub(page);
        e.read_tag = if perms.read { page } else { INVALID_TAG };
        e.write_tag = if perms.write { page } else { INVALID_TAG };
        self.global[i] = perms.global;
    }

    /// Enter a translation made for an instruction fetch (same contract as
    /// [`SoftTlb::fill`]).
    pub fn fill_code(&mut self, lin: u64, host_page: *mut u8, perms: TlbPerms) {
        if !perms.exec {
            return;
        }
        let i = Self::code_index(lin);
        let page = lin & !PAGE_MASK;
        self.code[i] = CodeTlbEntry {
            tag: page,
            addend: (host_page as u64).wrapping_sub(page),
        };
        self.code_global[i] = perms.global;
    }

    /// Drop every entry.
    pub fn flush_all(&mut self) {
        self.entries = [TlbEntry::EMPTY; TLB_ENTRIES];
        self.code = [CodeTlbEntry::EMPTY; CODE_TLB_ENTRIES];
        self.global = [false; TLB_ENTRIES];
        self.code_global = [false; CODE_TLB_ENTRIES];
    }

    /// Drop every entry that does not map a global page (a CR3 write).
    pub fn flush_non_global(&mut self) {
        for i in 0..TLB_ENTRIES {
            if !self.global[i] {
                self.entries[i] = TlbEntry::EMPTY;
            }
        }
        for i in 0..CODE_TLB_ENTRIES {
            if !self.code_global[i] {
                self.code[i] = CodeTlbEntry::EMPTY;
            }
        }
    }

    /// Drop the entries for one linear page (INVLPG).
    pub fn flush_page(&mut self, lin: u64) {
        let page = lin & !PAGE_MASK;
        let i = Self::index(lin);
        let e = &self.entries[i];
        if e.read_tag == page || e.write_tag == page {
            self.entries[i] = TlbEntry::EMPTY;
            self.global[i] = false;
        }
        let c = Self::code_index(lin);
        if self.code[c].tag == page {
            self.code[c] = CodeTlbEntry::EMPTY;
            self.code_global[c] = false;
        }
    }

    /// Remove write permission from every entry whose host page is
    /// `host_page` (the page now holds translated code).
    pub fn revoke_write_to_host_page(&mut self, host_page: *mut u8) {
        for e in self.entries.iter_mut() {
            if e.write_tag != INVALID_TAG && e.write_tag.wrapping_add(e.addend) == host_page as u64
            {
                e.write_tag = INVALID_TAG;
            }
        }
    }
}

/// What a filled TLB entry allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlbPerms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub global: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlb_hit_miss_and_page_cross() {
        let mut buf = vec![0u8; 0x2000];
        let mut t = Box::new(SoftTlb::new());
        let host = buf.as_mut_ptr();
        let perms = TlbPerms {
            read: true,
            write: false,
            exec: true,
            global: false,
        };
        t.fill(0x7000, host, perms);
        assert!(
            t.host_exec(0x7123).is_none(),
            "a data fill is not a code fill"
        );
        t.fill_code(0x7000, host, perms);
        assert_eq!(t.host_read(0x7010, 8), Some(host.wrapping_add(0x10)));
        assert_eq!(t.host_read(0x7ffc, 8), None, "page-crossing read must miss");
        assert_eq!(t.host_write(0x7010, 8), None);
        assert!(t.host_exec(0x7123).is_some());
        t.flush_non_global();
        assert_eq!(t.host_read(0x7010, 8), None);
    }

    #[test]
    fn tlb_global_entries_survive_cr3_flush() {
        let mut buf = vec![0u8; 0x1000];
        let mut t = Box::new(SoftTlb::new());
        let perms = TlbPerms {
            read: true,
            write: true,
            exec: false,
            global: true,
        };
        t.fill(0x5000, buf.as_mut_ptr(), perms);
        t.flush_non_global();
        assert!(t.host_write(0x5008, 4).is_some());
        t.revoke_write_to_host_page(buf.as_mut_ptr());
        assert!(t.host_write(0x5008, 4).is_none());
        assert!(t.host_read(0x5008, 4).is_some());
        t.flush_page(0x5abc);
        assert!(t.host_read(0x5008, 4).is_none());
    }
}
