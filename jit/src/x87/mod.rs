//! The x87 FPU: 80-bit extended-precision arithmetic in software ([`f80`])
//! and the register stack kept in [`X87State`] (physical registers R0–R7,
//! TOP in the status word, the full two-bit tag word).
//!
//! The instruction semantics live in `semantics/x87.rs`; this module has
//! what they share: stack addressing, tags and status-word bits.

pub mod f80;

pub use f80::F80;

use crate::state::X87State;

/// Status-word bits beyond the exception flags (bits 0–5).
pub mod sw {
    /// Stack fault (with IE).
    pub const SF: u16 = 1 << 6;
    /// Exception summary: an unmasked exception is pending.
    pub const ES: u16 = 1 << 7;
    pub const C0: u16 = 1 << 8;
    pub const C1: u16 = 1 << 9;
    pub const C2: u16 = 1 << 10;
    pub const C3: u16 = 1 << 14;
    /// Busy (mirrors ES).
    pub const B: u16 = 1 << 15;
    /// TOP field.
    pub const TOP_SHIFT: u16 = 11;
    pub const TOP_MASK: u16 = 7 << 11;
    /// The condition codes.
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// Tag of an empty register.
pub const TAG_EMPTY: u16 = 3;

/// FNINIT's control word.
pub const FCW_INIT: u16 = 0x037f;

/// Stack and tag access on the x87 state.
pub trait Stack {
    /// TOP (0–7).
    fn top(&self) -> usize;
    fn set_top(&mut self, top: usize);
    /// Physical register number of ST(i).
    fn phys(&self, i: usize) -> usize;
    /// Tag of physical register `p`.
    fn tag_of(&self, p: usize) -> u16;
    fn set_tag(&mut self, p: usize, tag: u16);
    /// ST(i) is empty.
    fn is_empty(&self, i: usize) -> bool;
    /// The contents of physical register `p` (whatever its tag).
    fn reg(&self, p: usize) -> F80;
    /// Write physical register `p` and tag it by its contents.
    fn set_reg(&mut self, p: usize, v: F80);
    /// The contents of ST(i) (whatever its tag).
    fn st(&self, i: usize) -> F80;
    /// Write ST(i) and tag it.
    fn set_st(&mut self, i: usize, v: F80);
    /// Decrement TOP and write the new ST(0).
    fn push(&mut self, v: F80);
    /// Mark ST(0) empty and increment TOP.
    fn pop(&mut self);
    /// Recompute ES and B from the flags and masks.
    fn update_es(&mut self);
    /// The tag word computed from the registers' contents (for FNSAVE).
    fn full_tags(&self) -> u16;
}

impl Stack for X87State {
    fn top(&self) -> usize {
        ((self.fsw & sw::TOP_MASK) >> sw::TOP_SHIFT) as usize
    }

    fn set_top(&mut self, top: usize) {
        self.fsw = (self.fsw & !sw::TOP_MASK) | (((top & 7) as u16) << sw::TOP_SHIFT);
    }

    fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }

    fn tag_of(&self, p: usize) -> u16 {
        (self.ftw >> (2 * p)) & 3
    }

    fn set_tag(&mut self, p: usize, tag: u16) {
        self.ftw = (self.ftw & !(3 << (2 * p))) | (tag << (2 * p));
    }

    fn is_empty(&self, i: usize) -> bool {
        self.tag_of(self.phys(i)) == TAG_EMPTY
    }

    fn reg(&self, p: usize) -> F80 {
        F80::from_bytes(&self.regs[p][..10])
    }

    fn set_reg(&mut self, p: usize, v: F80) {
        self.regs[p][..10].copy_from_slice(&v.to_bytes());
        self.set_tag(p, v.tag());
    }

    fn st(&self, i: usize) -> F80 {
        self.reg(self.phys(i))
    }

    fn set_st(&mut self, i: usize, v: F80) {
        let p = self.phys(i);
        self.set_reg(p, v);
    }

    fn push(&mut self, v: F80) {
        let t = (self.top() + 7) & 7;
        self.set_top(t);
        self.set_st(0, v);
    }

    fn pop(&mut self) {
        let p = self.phys(0);
        self.set_tag(p, TAG_EMPTY);
        let t = self.top() + 1;
        self.set_top(t);
    }

    fn update_es(&mut self) {
        if self.fsw & !self.fcw & 0x3f != 0 {
            self.fsw |= sw::ES | sw::B;
        } else {
            self.fsw &= !(sw::ES | sw::B);
        }
    }

    fn full_tags(&self) -> u16 {
        (0..8).fold(0, |acc, p| {
            let t = if self.tag_of(p) == TAG_EMPTY {
                TAG_EMPTY
            } else {
                self.reg(p).tag()
            };
            acc | (t << (2 * p))
        })
    }
}

/// FNINIT: control word 0x37F, everything else cleared, all registers
/// empty (their contents are kept).
pub fn init(s: &mut X87State) {
    s.fcw = FCW_INIT;
    s.fsw = 0;
    s.ftw = 0xffff;
    s.fop = 0;
    s.fip = 0;
    s.fdp = 0;
}
