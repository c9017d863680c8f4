//! The 8259A programmable interrupt controller pair of the PC (Intel 8259A
//! datasheet): a master and a slave, the slave's INT output wired to the
//! master's IR2, plus the two edge/level control registers (ELCR) of the
//! PIIX/ICH chipsets.
//!
//! [`Pic8259`] sees one offset space of [`PIC_SIZE`] bytes: the master's two
//! ports at [`OFS_MASTER`], the slave's at [`OFS_SLAVE`], the ELCRs at
//! [`OFS_ELCR`]. The machine maps the three windows (0x20, 0xa0, 0x4d0 on a
//! PC) with [`Pic8259Window`], which adds the window's base offset.
//!
//! Inputs arrive through [`Pic8259::set_irq`] (line 0–15 with its level);
//! the CPU samples [`Pic8259::intr`] and runs its INTA cycle with
//! [`Pic8259::acknowledge`]. Only 8086 mode and buffered-less cascade are
//! modelled; the cascade line is always IR2 (the PC's wiring), whatever ICW3
//! says.

use crate::bus::BusDevice;
use cjemu_replay::{StateHash, StateHasher};
use std::cell::RefCell;
use std::rc::Rc;
use thiserror::Error;

/// Offset of the master's command port (its data port is `+1`).
pub const OFS_MASTER: u64 = 0;
/// Offset of the slave's command port (its data port is `+1`).
pub const OFS_SLAVE: u64 = 2;
/// Offset of the master's ELCR (the slave's is `+1`).
pub const OFS_ELCR: u64 = 4;
/// Size of the whole offset space.
pub const PIC_SIZE: u64 = 6;

/// The master input the slave's output drives.
pub const CASCADE_IRQ: u8 = 2;
/// ELCR bits that exist on the master: IRQ0, 1 and 2 are always edge.
pub const ELCR_MASTER_MASK: u8 = 0xf8;
/// ELCR bits that exist on the slave: IRQ8 and IRQ13 are always edge.
pub const ELCR_SLAVE_MASK: u8 = 0xde;

/// Command port: ICW1 has bit 4 set.
pub const ICW1_INIT: u8 = 0x10;
/// ICW1: ICW4 follows.
pub const ICW1_IC4: u8 = 0x01;
/// ICW1: single chip (no ICW3).
pub const ICW1_SNGL: u8 = 0x02;
/// ICW1: level-triggered inputs.
pub const ICW1_LTIM: u8 = 0x08;
/// ICW4: automatic end of interrupt.
pub const ICW4_AEOI: u8 = 0x02;
/// ICW4: special fully nested mode.
pub const ICW4_SFNM: u8 = 0x10;
/// Command port: OCW3 has bit 3 set (and bit 4 clear).
pub const OCW3_SEL: u8 = 0x08;
/// OCW3: poll command.
pub const OCW3_POLL: u8 = 0x04;
/// OCW3: read register command (bit 1) selecting ISR (bit 0) or IRR.
pub const OCW3_RR: u8 = 0x02;
/// OCW3: read ISR rather than IRR.
pub const OCW3_RIS: u8 = 0x01;
/// OCW3: special mask mode command (bit 6) setting (bit 5) or clearing it.
pub const OCW3_ESMM: u8 = 0x40;
/// OCW3: set special mask mode.
pub const OCW3_SMM: u8 = 0x20;

/// Where an initialisation sequence stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InitStep {
    /// Initialised (or never): the data port is OCW1.
    #[default]
    Ready,
    /// ICW1 written; the data port takes ICW2 next.
    Icw2,
    /// The data port takes ICW3 next.
    Icw3,
    /// The data port takes ICW4 next.
    Icw4,
}

/// Every guest-visible field of one 8259A. `Default` is the power-on state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PicChipState {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register (OCW1).
    pub imr: u8,
    /// Input line levels last seen (edge detection).
    pub lines: u8,
    /// Edge/level control register (1 = level).
    pub elcr: u8,
    /// ICW2: vector of IR0 (low 3 bits zero).
    pub vector_base: u8,
    /// ICW3 as written (cascade bit mask on a master, ID on a slave).
    pub icw3: u8,
    /// Initialisation sequence progress.
    pub init: InitStep,
    /// ICW1 asked for an ICW4.
    pub icw4_needed: bool,
    /// ICW1: single mode (no ICW3, no cascade).
    pub single: bool,
    /// ICW1: all inputs level-triggered.
    pub ltim: bool,
    /// ICW4: automatic EOI at INTA.
    pub auto_eoi: bool,
    /// OCW2: rotate priorities on automatic EOI.
    pub rotate_on_aeoi: bool,
    /// ICW4: special fully nested mode.
    pub sfnm: bool,
    /// OCW3: special mask mode.
    pub special_mask: bool,
    /// OCW3: the command port reads ISR (else IRR).
    pub read_isr: bool,
    /// OCW3: the next command-port read is a poll.
    pub poll: bool,
    /// The input with the highest priority (rotation moves it).
    pub lowest_rotation: u8,
}

impl PicChipState {
    fn level_triggered(&self, irq: u8) -> bool {
        self.ltim || self.elcr & (1 << irq) != 0
    }

    /// A new level on input `irq`. Edge mode latches a rising edge in IRR;
    /// the request must stay high until INTA (datasheet), so a falling
    /// input drops it again in both modes.
    fn set_line(&mut self, irq: u8, level: bool) {
        let bit = 1 << irq;
        if !level {
            self.irr &= !bit;
            self.lines &= !bit;
            return;
        }
        if self.level_triggered(irq) || self.lines & bit == 0 {
            self.irr |= bit;
        }
        self.lines |= bit;
    }

    /// The input in `mask` with the highest priority.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8)
            .map(|n| (n + self.lowest_rotation) & 7)
            .find(|&irq| mask & (1 << irq) != 0)
    }

    /// Priority rank of `irq` (0 = highest).
    fn rank(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.lowest_rotation) & 7
    }

    /// The input this chip would signal on INT, if any. `nested` are
    /// in-service bits that do not block (the cascade input under SFNM).
    fn request(&self, nested: u8) -> Option<u8> {
        let irq = self.highest(self.irr & !self.imr)?;
        let mut blocking = self.isr & !nested;
        if self.special_mask {
            // A masked level in service no longer holds lower levels off.
            blocking &= !self.imr;
        }
        match self.highest(blocking) {
            Some(s) if self.rank(s) <= self.rank(irq) => None,
            _ => Some(irq),
        }
    }

    /// INTA (or a poll) for `irq`.
    fn ack(&mut self, irq: u8) {
        let bit = 1 << irq;
        if !self.level_triggered(irq) {
            self.irr &= !bit;
        }
        if !self.auto_eoi {
            self.isr |= bit;
        } else if self.rotate_on_aeoi {
            self.lowest_rotation = (irq + 1) & 7;
        }
    }

    /// End of interrupt for `irq`; `rotate` makes it the lowest priority.
    fn eoi(&mut self, irq: u8, rotate: bool) {
        self.isr &= !(1 << irq);
        if rotate {
            self.lowest_rotation = (irq + 1) & 7;
        }
    }

    /// ICW1: start initialisation. The IMR, ISR, special mask and read
    /// select are cleared, IR0 gets the highest priority, and the edge
    /// latch is cleared (an input already high needs a new rising edge).
    fn icw1(&mut self, v: u8) {
        *self = PicChipState {
            lines: self.lines,
            elcr: self.elcr,
            init: InitStep::Icw2,
            icw4_needed: v & ICW1_IC4 != 0,
            single: v & ICW1_SNGL != 0,
            ltim: v & ICW1_LTIM != 0,
            ..PicChipState::default()
        };
        for irq in 0..8 {
            if self.lines & (1 << irq) != 0 && self.level_triggered(irq) {
                self.irr |= 1 << irq;
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        self.init = match self.init {
            InitStep::Ready => {
                self.imr = v;
                InitStep::Ready
            }
            InitStep::Icw2 => {
                self.vector_base = v & 0xf8;
                match (self.single, self.icw4_needed) {
                    (false, _) => InitStep::Icw3,
                    (true, true) => InitStep::Icw4,
                    (true, false) => InitStep::Ready,
                }
            }
            InitStep::Icw3 => {
                self.icw3 = v;
                if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                }
            }
            InitStep::Icw4 => {
                self.auto_eoi = v & ICW4_AEOI != 0;
                self.sfnm = v & ICW4_SFNM != 0;
                InitStep::Ready
            }
        };
    }

    /// OCW2: bits 7–5 are R, SL, EOI; bits 2–0 the level for SL.
    fn ocw2(&mut self, v: u8) {
        let level = v & 7;
        match v >> 5 {
            0b001 => self.non_specific_eoi(false),
            0b101 => self.non_specific_eoi(true),
            0b011 => self.eoi(level, false),
            0b111 => self.eoi(level, true),
            0b100 => self.rotate_on_aeoi = true,
            0b000 => self.rotate_on_aeoi = false,
            0b110 => self.lowest_rotation = (level + 1) & 7,
            _ => {} // 0b010: no operation
        }
    }

    fn non_specific_eoi(&mut self, rotate: bool) {
        if let Some(irq) = self.highest(self.isr) {
            self.eoi(irq, rotate);
        }
    }

    fn ocw3(&mut self, v: u8) {
        if v & OCW3_RR != 0 {
            self.read_isr = v & OCW3_RIS != 0;
        }
        if v & OCW3_ESMM != 0 {
            self.special_mask = v & OCW3_SMM != 0;
        }
        self.poll = v & OCW3_POLL != 0;
    }

    fn write_command(&mut self, v: u8) {
        if v & ICW1_INIT != 0 {
            self.icw1(v);
        } else if v & OCW3_SEL != 0 {
            self.ocw3(v);
        } else {
            self.ocw2(v);
        }
    }

    /// A poll read: acknowledges like INTA and answers `0x80 | level`, or
    /// 0 when nothing is requested.
    fn poll_read(&mut self, nested: u8) -> u8 {
        self.poll = false;
        match self.request(nested) {
            Some(irq) => {
                self.ack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }

    fn read_command(&mut self, nested: u8) -> u8 {
        if self.poll {
            self.poll_read(nested)
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }
}

/// Every guest-visible field of the pair. `Default` is the power-on state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pic8259State {
    /// The master (IRQ0–7).
    pub master: PicChipState,
    /// The slave (IRQ8–15), cascaded on the master's IR2.
    pub slave: PicChipState,
}

impl InitStep {
    /// The step as one byte for the state hash (declaration order).
    fn hash_byte(self) -> u8 {
        match self {
            InitStep::Ready => 0,
            InitStep::Icw2 => 1,
            InitStep::Icw3 => 2,
            InitStep::Icw4 => 3,
        }
    }
}

impl StateHash for PicChipState {
    /// In order: irr, isr, imr, lines, elcr, vector_base, icw3, init
    /// (Ready 0, Icw2 1, Icw3 2, Icw4 3), icw4_needed, single, ltim,
    /// auto_eoi, rotate_on_aeoi, sfnm, special_mask, read_isr, poll,
    /// lowest_rotation; one byte each.
    fn hash_state(&self, h: &mut StateHasher) {
        for v in [
            self.irr,
            self.isr,
            self.imr,
            self.lines,
            self.elcr,
            self.vector_base,
            self.icw3,
            self.init.hash_byte(),
            self.icw4_needed as u8,
            self.single as u8,
            self.ltim as u8,
            self.auto_eoi as u8,
            self.rotate_on_aeoi as u8,
            self.sfnm as u8,
            self.special_mask as u8,
            self.read_isr as u8,
            self.poll as u8,
            self.lowest_rotation,
        ] {
            h.write_u8(v);
        }
    }
}

impl StateHash for Pic8259State {
    /// The master, then the slave.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("pic8259");
        self.master.hash_state(h);
        self.slave.hash_state(h);
    }
}

/// Why a saved state cannot be restored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PicError {
    /// A priority rotation outside 0–7.
    #[error("8259 priority rotation {0} is not a level 0-7")]
    Rotation(u8),
    /// A vector base with low bits set.
    #[error("8259 vector base {0:#x} has its low 3 bits set")]
    VectorBase(u8),
}

/// The master/slave 8259A pair.
#[derive(Debug, Default)]
pub struct Pic8259 {
    s: Pic8259State,
}

impl Pic8259 {
    /// The pair in its power-on state.
    pub fn new() -> Pic8259 {
        Pic8259::from_state(&Pic8259State::default()).expect("the reset state is valid")
    }

    /// The pair with a saved state.
    pub fn from_state(s: &Pic8259State) -> Result<Pic8259, PicError> {
        for c in [&s.master, &s.slave] {
            if c.lowest_rotation > 7 {
                return Err(PicError::Rotation(c.lowest_rotation));
            }
            if c.vector_base & 7 != 0 {
                return Err(PicError::VectorBase(c.vector_base));
            }
        }
        Ok(Pic8259 { s: *s })
    }

    /// The saved state.
    pub fn state(&self) -> Pic8259State {
        self.s
    }

    /// Back to the power-on state (input line levels are forgotten too;
    /// the machine re-drives its lines after a reset).
    pub fn reset(&mut self) {
        self.s = Pic8259State::default();
    }

    /// In-service master bits that do not block: the cascade under SFNM.
    fn master_nested(&self) -> u8 {
        if self.s.master.sfnm && !self.s.master.single {
            1 << CASCADE_IRQ
        } else {
            0
        }
    }

    /// Carry the slave's INT output to the master's IR2.
    fn update_cascade(&mut self) {
        let out = self.s.slave.request(0).is_some();
        self.s.master.set_line(CASCADE_IRQ, out);
    }

    /// Input `line` (0–15) changes to `level`. Line 2 is the cascade and
    /// cannot be driven from outside (ISA IRQ2 is wired to IRQ9 on an AT).
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 if line != CASCADE_IRQ => self.s.master.set_line(line, level),
            8..=15 => self.s.slave.set_line(line - 8, level),
            _ => log::debug!("8259: set_irq({line}) ignored: not an input"),
        }
        self.update_cascade();
    }

    /// The INT output to the CPU.
    pub fn intr(&self) -> bool {
        self.s.master.request(self.master_nested()).is_some()
    }

    /// The vector [`Pic8259::acknowledge`] would return now, if INT is high.
    pub fn pending_vector(&self) -> Option<u8> {
        let m = &self.s.master;
        let irq = m.request(self.master_nested())?;
        if irq == CASCADE_IRQ && !m.single {
            let s = &self.s.slave;
            return Some(s.vector_base | s.request(0).unwrap_or(7));
        }
        Some(m.vector_base | irq)
    }

    /// The CPU's INTA cycle: the vector of the highest request, which moves
    /// to in-service. A request that vanished before INTA gives the
    /// spurious IR7 vector of the chip asked, with no ISR bit set (a
    /// spurious slave IRQ15 leaves the master's IR2 in service).
    pub fn acknowledge(&mut self) -> u8 {
        let nested = self.master_nested();
        let m = &mut self.s.master;
        let v = match m.request(nested) {
            None => m.vector_base | 7,
            Some(CASCADE_IRQ) if !m.single => {
                m.ack(CASCADE_IRQ);
                let s = &mut self.s.slave;
                match s.request(0) {
                    Some(irq) => {
                        s.ack(irq);
                        s.vector_base | irq
                    }
                    None => s.vector_base | 7,
                }
            }
            Some(irq) => {
                m.ack(irq);
                m.vector_base | irq
            }
        };
        self.update_cascade();
        v
    }

    fn read_byte(&mut self, offset: u64) -> u8 {
        let nested = self.master_nested();
        let v = match offset {
            0 => self.s.master.read_command(nested),
            1 => self.s.master.imr,
            2 => self.s.slave.read_command(0),
            3 => self.s.slave.imr,
            4 => self.s.master.elcr,
            5 => self.s.slave.elcr,
            _ => 0xff,
        };
        self.update_cascade();
        v
    }

    fn write_byte(&mut self, offset: u64, v: u8) {
        match offset {
            0 => self.s.master.write_command(v),
            1 => self.s.master.write_data(v),
            2 => self.s.slave.write_command(v),
            3 => self.s.slave.write_data(v),
            4 => self.s.master.elcr = v & ELCR_MASTER_MASK,
            5 => self.s.slave.elcr = v & ELCR_SLAVE_MASK,
            _ => {}
        }
        self.update_cascade();
    }
}

/// Wider accesses are split into byte accesses at consecutive offsets, as
/// the ISA bus does.
impl BusDevice for Pic8259 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_byte(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &d) in data.iter().enumerate() {
            self.write_byte(offset + i as u64, d);
        }
    }
}

/// One bus window onto a shared [`Pic8259`]: the machine maps the master,
/// slave and ELCR ports separately, each window adding its own base.
pub struct Pic8259Window {
    pic: Rc<RefCell<Pic8259>>,
    base: u64,
    size: u64,
}

impl Pic8259Window {
    /// The window of `size` bytes at `base` ([`OFS_MASTER`], [`OFS_SLAVE`]
    /// or [`OFS_ELCR`], size 2) of `pic`.
    pub fn new(pic: Rc<RefCell<Pic8259>>, base: u64, size: u64) -> Pic8259Window {
        Pic8259Window { pic, base, size }
    }
}

impl BusDevice for Pic8259Window {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let n = (self.size.saturating_sub(offset) as usize).min(data.len());
        self.pic
            .borrow_mut()
            .read(self.base + offset, &mut data[..n]);
        data[n..].fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let n = (self.size.saturating_sub(offset) as usize).min(data.len());
        self.pic.borrow_mut().write(self.base + offset, &data[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &mut Pic8259, ofs: u64, v: u8) {
        p.write(ofs, &[v]);
    }

    fn inb(p: &mut Pic8259, ofs: u64) -> u8 {
        let mut d = [0u8];
        p.read(ofs, &mut d);
        d[0]
    }

    /// Linux's init_8259A: vectors 0x30 / 0x38, cascade on IR2, 8086 mode,
    /// normal EOI, everything unmasked afterwards.
    fn linux_init(auto_eoi: bool) -> Pic8259 {
        let mut p = Pic8259::new();
        let icw4 = 0x01 | if auto_eoi { ICW4_AEOI } else { 0 };
        out(&mut p, 1, 0xff);
        out(&mut p, 3, 0xff);
        for (cmd, base, icw3) in [(0, 0x30, 0x04), (2, 0x38, 0x02)] {
            out(&mut p, cmd, 0x11);
            out(&mut p, cmd + 1, base);
            out(&mut p, cmd + 1, icw3);
            out(&mut p, cmd + 1, icw4);
        }
        out(&mut p, 1, 0);
        out(&mut p, 3, 0);
        p
    }

    fn eoi_master(p: &mut Pic8259) {
        out(p, 0, 0x20);
    }

    fn eoi_slave(p: &mut Pic8259) {
        out(p, 2, 0x20);
    }

    #[test]
    fn pic_init_sequence_sets_vectors_and_modes() {
        let mut p = linux_init(false);
        let s = p.state();
        assert_eq!(s.master.vector_base, 0x30);
        assert_eq!(s.slave.vector_base, 0x38);
        assert_eq!((s.master.icw3, s.slave.icw3), (0x04, 0x02));
        assert_eq!(s.master.init, InitStep::Ready);
        assert!(!s.master.auto_eoi && !s.master.single);
        // After the sequence the data port is OCW1 again.
        out(&mut p, 1, 0x5a);
        assert_eq!(inb(&mut p, 1), 0x5a);
        // ICW1 without IC4 in single mode needs only ICW2.
        out(&mut p, 0, ICW1_INIT | ICW1_SNGL);
        assert_eq!(inb(&mut p, 1), 0, "ICW1 clears the mask");
        out(&mut p, 1, 0x08);
        assert_eq!(p.state().master.init, InitStep::Ready);
        assert_eq!(p.state().master.vector_base, 0x08);
        // ICW2 low bits are not part of the vector.
        out(&mut p, 0, 0x11);
        out(&mut p, 1, 0x27);
        assert_eq!(p.state().master.vector_base, 0x20);
        assert_eq!(p.state().master.init, InitStep::Icw3);
    }

    #[test]
    fn pic_masking_holds_requests_in_irr() {
        let mut p = linux_init(false);
        out(&mut p, 1, 0x01);
        p.set_irq(0, true);
        assert!(!p.intr(), "IRQ0 is masked");
        assert_eq!(inb(&mut p, 0), 0x01, "but requested in IRR");
        out(&mut p, 1, 0x00);
        assert!(p.intr());
        assert_eq!(p.acknowledge(), 0x30);
    }

    #[test]
    fn pic_priorities_and_nesting() {
        let mut p = linux_init(false);
        p.set_irq(4, true);
        p.set_irq(1, true);
        assert_eq!(p.pending_vector(), Some(0x31));
        assert_eq!(p.acknowledge(), 0x31);
        // IRQ4 is lower than IRQ1 in service: held off.
        assert!(!p.intr());
        // IRQ0 is higher: it nests.
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x30);
        eoi_master(&mut p); // ends IRQ0, the highest in service
        assert_eq!(p.state().master.isr, 0x02);
        assert!(!p.intr());
        eoi_master(&mut p);
        assert_eq!(p.acknowledge(), 0x34);
    }

    #[test]
    fn pic_eoi_kinds_and_rotation() {
        let mut p = linux_init(false);
        p.set_irq(3, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x33);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31);
        assert_eq!(p.state().master.isr, 0x0a);
        // Specific EOI of the lower one leaves the higher in service.
        out(&mut p, 0, 0x60 | 3);
        assert_eq!(p.state().master.isr, 0x02);
        // Rotate on non-specific EOI: IRQ1 becomes the lowest priority.
        out(&mut p, 0, 0xa0);
        assert_eq!(p.state().master.isr, 0);
        assert_eq!(p.state().master.lowest_rotation, 2);
        p.set_irq(1, false);
        p.set_irq(1, true);
        // IRQ5 now outranks IRQ1 (order 2,3,..,7,0,1).
        assert_eq!(p.acknowledge(), 0x35);
        // Set priority: IRQ5 lowest, so IRQ6 is the highest.
        out(&mut p, 0, 0xc0 | 5);
        assert_eq!(p.state().master.lowest_rotation, 6);
        // Rotate on specific EOI of 5: IRQ6 highest again.
        out(&mut p, 0, 0xe0 | 5);
        assert_eq!(p.state().master.isr, 0);
        assert_eq!(p.acknowledge(), 0x31);
    }

    #[test]
    fn pic_auto_eoi_sets_no_isr_and_can_rotate() {
        let mut p = linux_init(true);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x33);
        assert_eq!(p.state().master.isr, 0);
        out(&mut p, 0, 0x80); // rotate in AEOI mode
        p.set_irq(3, false);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x33);
        assert_eq!(p.state().master.lowest_rotation, 4);
        out(&mut p, 0, 0x00);
        assert!(!p.state().master.rotate_on_aeoi);
    }

    #[test]
    fn pic_reads_irr_or_isr_by_ocw3() {
        let mut p = linux_init(false);
        p.set_irq(6, true);
        p.set_irq(7, true);
        assert_eq!(inb(&mut p, 0), 0xc0, "IRR is the default read");
        assert_eq!(p.acknowledge(), 0x36);
        out(&mut p, 0, 0x0b);
        assert_eq!(inb(&mut p, 0), 0x40, "ISR");
        assert_eq!(inb(&mut p, 0), 0x40, "the selection sticks");
        out(&mut p, 0, 0x0a);
        assert_eq!(inb(&mut p, 0), 0x80, "IRR again");
        // OCW3 without RR keeps the selection.
        out(&mut p, 0, 0x08);
        assert_eq!(inb(&mut p, 0), 0x80);
    }

    #[test]
    fn pic_poll_acknowledges_once() {
        let mut p = linux_init(false);
        out(&mut p, 1, 0xff); // polled systems mask everything
        out(&mut p, 1, 0x00);
        p.set_irq(5, true);
        out(&mut p, 0, 0x0c);
        assert_eq!(inb(&mut p, 0), 0x85);
        assert_eq!(p.state().master.isr, 0x20);
        assert_eq!(inb(&mut p, 0), 0x00, "the next read is IRR again");
        out(&mut p, 0, 0x0c);
        assert_eq!(inb(&mut p, 0), 0x00, "nothing to poll");
    }

    #[test]
    fn pic_special_mask_mode_lets_lower_levels_in() {
        let mut p = linux_init(false);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x33);
        p.set_irq(6, true);
        assert!(!p.intr());
        out(&mut p, 0, 0x68); // set SMM
        out(&mut p, 1, 0x08); // mask the level in service
        assert_eq!(p.acknowledge(), 0x36);
        out(&mut p, 0, 0x48); // clear SMM
        assert!(!p.state().master.special_mask);
    }

    #[test]
    fn pic_cascade_through_the_slave() {
        let mut p = linux_init(false);
        p.set_irq(12, true);
        assert!(p.intr());
        assert_eq!(p.pending_vector(), Some(0x3c));
        assert_eq!(p.acknowledge(), 0x3c);
        assert_eq!(p.state().master.isr, 0x04);
        assert_eq!(p.state().slave.isr, 0x10);
        // Slave IRQ8 outranks 12 on the slave, but IR2 is in service on the
        // master (no SFNM): it waits.
        p.set_irq(8, true);
        assert!(!p.intr());
        eoi_slave(&mut p);
        eoi_master(&mut p);
        assert_eq!(p.acknowledge(), 0x38);
        // Masking IR2 on the master hides the whole slave.
        eoi_slave(&mut p);
        eoi_master(&mut p);
        p.set_irq(8, false);
        p.set_irq(8, true);
        out(&mut p, 1, 0x04);
        assert!(!p.intr());
        // IRQ2 cannot be driven from outside.
        out(&mut p, 1, 0x00);
        p.set_irq(8, false);
        p.set_irq(2, true);
        assert!(!p.intr());
    }

    #[test]
    fn pic_sfnm_lets_a_higher_slave_level_nest() {
        let mut p = linux_init(false);
        out(&mut p, 0, 0x11);
        out(&mut p, 1, 0x30);
        out(&mut p, 1, 0x04);
        out(&mut p, 1, 0x01 | ICW4_SFNM);
        p.set_irq(12, true);
        assert_eq!(p.acknowledge(), 0x3c);
        p.set_irq(9, true);
        assert_eq!(p.acknowledge(), 0x39);
    }

    #[test]
    fn pic_edge_needs_a_new_rising_edge_level_does_not() {
        let mut p = linux_init(false);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x34);
        eoi_master(&mut p);
        assert!(!p.intr(), "edge: a line still high asks nothing more");
        // Level mode on IRQ4 through the ELCR: still high = asks again.
        out(&mut p, OFS_ELCR, 0x10);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x34);
        assert!(!p.intr(), "in service");
        eoi_master(&mut p);
        assert_eq!(p.acknowledge(), 0x34);
        eoi_master(&mut p);
        p.set_irq(4, false);
        assert!(!p.intr(), "level: dropping the line withdraws it");
        // Edge-only bits of the ELCR stay clear.
        out(&mut p, OFS_ELCR, 0xff);
        out(&mut p, OFS_ELCR + 1, 0xff);
        assert_eq!(inb(&mut p, OFS_ELCR), 0xf8);
        assert_eq!(inb(&mut p, OFS_ELCR + 1), 0xde);
    }

    #[test]
    fn pic_spurious_irq7_and_irq15() {
        let mut p = linux_init(false);
        // A request that drops before INTA: spurious IRQ7, ISR untouched.
        p.set_irq(3, true);
        assert!(p.intr());
        p.set_irq(3, false);
        assert_eq!(p.acknowledge(), 0x37);
        assert_eq!(p.state().master.isr, 0);
        // On the slave: spurious IRQ15, master IR2 left in service.
        p.set_irq(10, true);
        // Masking the slave input after INT rose, the master has IR2 latched.
        let mut s = p.state();
        s.slave.imr = 0x04;
        let mut p = Pic8259::from_state(&s).unwrap();
        assert_eq!(p.acknowledge(), 0x3f);
        assert_eq!(p.state().master.isr, 0x04);
        assert_eq!(p.state().slave.isr, 0);
    }

    #[test]
    fn pic_windows_add_their_base_and_state_round_trips() {
        let pic = Rc::new(RefCell::new(linux_init(false)));
        let mut slave = Pic8259Window::new(pic.clone(), OFS_SLAVE, 2);
        slave.write(1, &[0x42]);
        assert_eq!(pic.borrow().state().slave.imr, 0x42);
        let mut d = [0u8; 2];
        slave.read(1, &mut d);
        assert_eq!(d, [0x42, 0xff], "past the window reads all-ones");
        let s = pic.borrow().state();
        assert_eq!(Pic8259::from_state(&s).unwrap().state(), s);
        let bad = Pic8259State {
            master: PicChipState {
                lowest_rotation: 8,
                ..s.master
            },
            ..s
        };
        assert_eq!(
            Pic8259::from_state(&bad).unwrap_err(),
            PicError::Rotation(8)
        );
    }
}
