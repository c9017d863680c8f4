//! Data watchpoints (a debugger's `watch`, `rwatch`, `awatch`): linear
//! address ranges whose accesses stop the machine after the accessing
//! instruction.
//!
//! The set lives in `GuestMemory::watch` (set through
//! `Engine::set_watchpoints`). They cost nothing when none is set. When
//! some are, the soft TLB keeps no data entry for a page a range touches, so every access to such a page
//! (interpreted or compiled) takes the slow path, which checks the ranges,
//! records the hit and ends the block after the instruction
//! (`exit_req::DEVICE`), so the run loop sees it at the exact count.

/// What a watchpoint catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    /// Writes.
    Write,
    /// Reads.
    Read,
    /// Reads and writes.
    Access,
}

/// One watched range of linear addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// First byte.
    pub addr: u64,
    /// Length in bytes (at least 1).
    pub len: u64,
    /// What it catches.
    pub kind: WatchKind,
}

impl Watch {
    fn overlaps(&self, lin: u64, len: u64) -> bool {
        lin < self.addr.wrapping_add(self.len.max(1)) && self.addr < lin.wrapping_add(len)
    }

    fn catches(&self, write: bool) -> bool {
        match self.kind {
            WatchKind::Access => true,
            WatchKind::Write => write,
            WatchKind::Read => !write,
        }
    }
}

/// An access that hit a watchpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchHit {
    /// The watchpoint.
    pub watch: Watch,
    /// Whether the access was a write.
    pub write: bool,
}

/// The watchpoints set, and the first hit not taken yet.
#[derive(Clone, Debug, Default)]
pub struct WatchSet {
    watches: Vec<Watch>,
    hit: Option<WatchHit>,
}

impl WatchSet {
    /// Replace the watchpoints (the caller flushes the TLB).
    pub fn set(&mut self, watches: Vec<Watch>) {
        self.watches = watches;
        self.hit = None;
    }

    /// No watchpoint is set (the common case).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// May the TLB cache the 4 KiB page at `page` for data accesses?
    pub fn page_cacheable(&self, page: u64) -> bool {
        !self.watches.iter().any(|w| w.overlaps(page, 0x1000))
    }

    /// An access of `len` bytes at `lin` happened: record the first hit.
    pub fn note(&mut self, lin: u64, len: u64, write: bool) {
        if self.hit.is_some() {
            return;
        }
        self.hit = self
            .watches
            .iter()
            .find(|w| w.catches(write) && w.overlaps(lin, len))
            .map(|&watch| WatchHit { watch, write });
    }

    /// Is a hit recorded?
    pub fn has_hit(&self) -> bool {
        self.hit.is_some()
    }

    /// The recorded hit, cleared.
    pub fn take_hit(&mut self) -> Option<WatchHit> {
        self.hit.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_ranges_catch_overlapping_accesses_of_their_kind() {
        let mut s = WatchSet::default();
        s.set(vec![
            Watch {
                addr: 0x1004,
                len: 4,
                kind: WatchKind::Write,
            },
            Watch {
                addr: 0x3000,
                len: 1,
                kind: WatchKind::Read,
            },
        ]);
        assert!(!s.page_cacheable(0x1000));
        assert!(s.page_cacheable(0x2000));
        s.note(0x1000, 4, true);
        assert_eq!(s.take_hit(), None, "just below");
        s.note(0x1007, 8, false);
        assert_eq!(s.take_hit(), None, "a read of a write watch");
        s.note(0x1002, 4, true);
        assert_eq!(s.take_hit().map(|h| h.watch.addr), Some(0x1004));
        s.note(0x2ffc, 8, false);
        assert_eq!(
            s.take_hit().map(|h| (h.watch.addr, h.write)),
            Some((0x3000, false))
        );
        assert_eq!(s.take_hit(), None, "taken");
    }
}
