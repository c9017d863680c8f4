//! The 16550A UART (National Semiconductor PC16550D datasheet; the PC's
//! COM ports), on virtual time.
//!
//! Eight registers at offsets 0–7; LCR bit 7 (DLAB) switches offsets 0 and 1
//! to the baud-rate divisor latch. The model takes the current virtual time
//! as a `now_ns` argument ([`TimedDevice`]) and never reads a clock.
//!
//! - Transmit is instant (as QEMU): a byte written to THR goes straight to
//!   the [`SerialOutput`] sink (in loopback, into the receiver), so LSR
//!   always shows THR empty and the transmitter idle, and the THR-empty
//!   interrupt is raised again at once.
//! - Receive: [`Uart16550::receive`] is the RX line. FIFO mode holds 16
//!   bytes and raises "received data available" at the FCR trigger level
//!   (1/4/8/14); 16450 (non-FIFO) mode holds one byte in RBR. A byte that
//!   finds no room sets OE: in FIFO mode it is lost, in 16450 mode it
//!   overwrites RBR (datasheet, LSR bit 1).
//! - Character timeout (FIFO mode only): when no byte went into or out of a
//!   non-empty FIFO for 4 character times, IIR reports 0x0C until RBR is
//!   read. As in the datasheet (and QEMU) the timer runs whenever the FIFO
//!   holds data, also at or above the trigger level; then the timeout takes
//!   IIR precedence over RDA (same priority level, QEMU's order). The
//!   deadline is the plain field `timeout_at`: [`Uart16550::next_event_ns`]
//!   tells the machine when, [`Uart16550::advance`] processes it. A change
//!   of LCR or divisor does not move an armed deadline (QEMU neither).
//! - Character time = (start + 5..8 data + parity + stop) bits × divisor ×
//!   16 / 1.8432 MHz. Stop bits: 1, or 2 when LCR bit 2 is set, except 1.5
//!   with 5-bit words (datasheet; QEMU always counts 2). Divisor 0: the
//!   datasheet does not define it; QEMU runs it at 3500 baud and so do we.
//!   Four character times are computed exactly (u128) and rounded up, so
//!   the timeout never fires before 4 full character times.
//! - IIR priorities (datasheet table 4): line status (OE; PE/FE/BI never
//!   happen, host bytes arrive clean, so LSR bit 7 stays 0) > RDA / char
//!   timeout > THR empty > modem status.
//! - Modem lines: outside loopback the inputs are fixed (a terminal is
//!   there: DCD, DSR, CTS). In loopback (MCR bit 4) they follow the
//!   outputs (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD), and any change of the
//!   visible inputs, including entering or leaving loopback, sets the MSR
//!   delta bits (TERI on RI going inactive only).
//! - The IRQ as the PC sees it ([`Uart16550::irq_level`]) is the chip's
//!   INTR gated by the OUT2 pin: PC serial boards drive the IRQ line
//!   through a buffer enabled by OUT2 (Bochs and real hardware; QEMU does
//!   not gate, it raises the IRQ whatever MCR says). In loopback the
//!   datasheet forces the modem output pins, OUT2 included, inactive, so
//!   the PC sees no IRQ then, although IIR keeps reporting causes. Linux's
//!   IRQ autoprobe (8250 `autoconfig_irq`) relies on the gate and not on
//!   loopback: it writes MCR = 0 to keep the line quiet, then DTR|RTS|OUT2,
//!   enables every IER source and writes THR, expecting the THR-empty IRQ.
//! - Host bytes are not received in loopback (SIN is disconnected):
//!   [`Uart16550::can_receive`] says 0 so the machine keeps them, and a byte
//!   passed anyway is dropped.
//! - Reading RBR with nothing received returns the last byte read (RBR
//!   keeps its value).

use crate::timed::TimedDevice;
use cjemu_replay::{StateHash, StateHasher};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use thiserror::Error;

/// Register offsets (datasheet table 2).
/// RBR (read) / THR (write); DLL when DLAB = 1.
pub const OFS_DATA: u64 = 0;
/// DLM when DLAB = 1.
pub const OFS_IER: u64 = 1;
/// IIR (read) / FCR (write).
pub const OFS_IIR_FCR: u64 = 2;
/// Line control register.
pub const OFS_LCR: u64 = 3;
/// Modem control register.
pub const OFS_MCR: u64 = 4;
/// Line status register (read-only).
pub const OFS_LSR: u64 = 5;
/// Modem status register (read-only).
pub const OFS_MSR: u64 = 6;
/// Scratch register.
pub const OFS_SCR: u64 = 7;
/// The UART's window size.
pub const UART_SIZE: u64 = 8;

/// LCR bits 0–1: word length minus 5.
pub const LCR_WLS: u8 = 0x03;
/// LCR bit 2: 2 stop bits (1.5 with 5-bit words).
pub const LCR_STB: u8 = 0x04;
/// LCR bit 3: parity enable.
pub const LCR_PEN: u8 = 0x08;
/// LCR bit 7: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;
/// IER bits.
/// Received data available (and character timeout).
pub const IER_RDI: u8 = 0x01;
/// THR empty.
pub const IER_THRI: u8 = 0x02;
/// IER: receiver line status.
pub const IER_RLSI: u8 = 0x04;
/// IER: modem status.
pub const IER_MSI: u8 = 0x08;
/// Bits of IER that exist (the rest read 0).
pub const IER_MASK: u8 = 0x0f;
/// IIR values.
/// IIR: modem status.
pub const IIR_MSI: u8 = 0x00;
/// IIR: no interrupt pending.
pub const IIR_NO_INT: u8 = 0x01;
/// IIR: THR empty.
pub const IIR_THRI: u8 = 0x02;
/// IIR: received data available.
pub const IIR_RDI: u8 = 0x04;
/// IIR: receiver line status.
pub const IIR_RLSI: u8 = 0x06;
/// IIR: character timeout.
pub const IIR_CTI: u8 = 0x0c;
/// IIR bits 6-7: FIFOs enabled.
pub const IIR_FIFO_ENABLED: u8 = 0xc0;
/// FCR bits.
pub const FCR_ENABLE: u8 = 0x01;
/// FCR: clear the receive FIFO.
pub const FCR_CLEAR_RX: u8 = 0x02;
/// FCR: clear the transmit FIFO.
pub const FCR_CLEAR_TX: u8 = 0x04;
/// FCR: DMA mode select (kept, no effect: there is no DMA).
pub const FCR_DMA: u8 = 0x08;
/// FCR bits 6–7: receive trigger level.
pub const FCR_TRIGGER: u8 = 0xc0;
/// The FCR bits the model keeps.
const FCR_KEPT: u8 = FCR_ENABLE | FCR_DMA | FCR_TRIGGER;
/// MCR bits.
pub const MCR_DTR: u8 = 0x01;
/// MCR: request to send.
pub const MCR_RTS: u8 = 0x02;
/// MCR: OUT1.
pub const MCR_OUT1: u8 = 0x04;
/// MCR: OUT2 (gates the IRQ on a PC).
pub const MCR_OUT2: u8 = 0x08;
/// MCR: loopback mode.
pub const MCR_LOOP: u8 = 0x10;
/// Bits of MCR that exist.
pub const MCR_MASK: u8 = 0x1f;
/// LSR bits.
/// Data ready.
pub const LSR_DR: u8 = 0x01;
/// Overrun.
pub const LSR_OE: u8 = 0x02;
/// THR empty.
pub const LSR_THRE: u8 = 0x20;
/// Transmitter empty.
pub const LSR_TEMT: u8 = 0x40;
/// MSR bits.
/// Delta clear-to-send.
pub const MSR_DCTS: u8 = 0x01;
/// MSR: delta data-set-ready.
pub const MSR_DDSR: u8 = 0x02;
/// MSR: trailing edge of ring indicator.
pub const MSR_TERI: u8 = 0x04;
/// MSR: delta data-carrier-detect.
pub const MSR_DDCD: u8 = 0x08;
/// MSR: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
/// MSR bits 0–3: the delta bits.
const MSR_DELTAS: u8 = 0x0f;
/// MSR bits 4–7: the input lines.
const MSR_INPUTS: u8 = 0xf0;
/// Receive FIFO depth.
pub const FIFO_LEN: usize = 16;
/// The PC's UART input clock (the divisor divides it by 16 × divisor).
pub const UART_CLOCK_HZ: u64 = 1_843_200;
/// The baud rate QEMU uses for divisor 0, which the datasheet leaves open.
pub const ZERO_DIVISOR_BAUD: u64 = 3500;
const NS_PER_S: u128 = 1_000_000_000;

/// Where transmitted bytes go (stdout, a file, nowhere, a test buffer).
pub trait SerialOutput {
    /// One byte left the transmitter.
    fn write_byte(&mut self, b: u8);
    /// Push buffered bytes out (the run ended or paused).
    fn flush(&mut self) {}
}

/// Discards everything (`-serial null`).
#[derive(Debug, Default)]
pub struct NullOutput;

impl SerialOutput for NullOutput {
    fn write_byte(&mut self, _: u8) {}
}

/// Collects bytes in a shared buffer (tests, embedders).
#[derive(Clone, Debug, Default)]
pub struct VecOutput(pub Rc<RefCell<Vec<u8>>>);

impl SerialOutput for VecOutput {
    fn write_byte(&mut self, b: u8) {
        self.0.borrow_mut().push(b);
    }
}

/// Every guest-visible field of the UART. `Default` is the power-on state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Uart16550State {
    /// Divisor latch, low byte (reset 0x0c: 9600 baud).
    pub dll: u8,
    /// Divisor latch, high byte.
    pub dlm: u8,
    /// Interrupt enable register (bits 0–3).
    pub ier: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register (bits 0–4).
    pub mcr: u8,
    /// LSR error bits latched until LSR is read (only OE can happen).
    pub lsr_errors: u8,
    /// The modem input lines outside loopback (MSR bits 4–7).
    pub msr: u8,
    /// MSR delta bits 0–3, latched until MSR is read.
    pub msr_delta: u8,
    /// Scratch register.
    pub scr: u8,
    /// FCR bits kept: 0 (FIFOs enabled), 3 (DMA mode), 6–7 (trigger).
    pub fcr: u8,
    /// A THR-empty interrupt is pending (only while IER bit 1 is set;
    /// cleared by reading IIR while it is the reported cause, or by
    /// writing THR, which empties again at once and sets it anew).
    pub thr_pending: bool,
    /// Received bytes not read yet (at most [`FIFO_LEN`]; at most 1 in
    /// 16450 mode).
    pub rx: Vec<u8>,
    /// What RBR reads when nothing was received: the last byte read.
    pub rbr: u8,
    /// A character timeout is signalled (until RBR is read).
    pub timeout_pending: bool,
    /// Virtual time (ns) at which the character timeout fires, if armed.
    pub timeout_at: Option<u64>,
}

impl Default for Uart16550State {
    fn default() -> Self {
        Uart16550State {
            dll: 0x0c,
            dlm: 0,
            ier: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            // Carrier, data-set-ready and clear-to-send: a terminal is there.
            msr: MSR_DCD | MSR_DSR | MSR_CTS,
            msr_delta: 0,
            scr: 0,
            fcr: 0,
            thr_pending: false,
            rx: Vec::new(),
            rbr: 0,
            timeout_pending: false,
            timeout_at: None,
        }
    }
}

impl StateHash for Uart16550State {
    /// In order: dll, dlm, ier, lcr, mcr, lsr_errors, msr, msr_delta, scr,
    /// fcr, thr_pending, rx (length as u32, then the bytes), rbr,
    /// timeout_pending, timeout_at (flag byte, then the u64 if present).
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("uart16550");
        for v in [
            self.dll,
            self.dlm,
            self.ier,
            self.lcr,
            self.mcr,
            self.lsr_errors,
            self.msr,
            self.msr_delta,
            self.scr,
            self.fcr,
            self.thr_pending as u8,
        ] {
            h.write_u8(v);
        }
        h.write_u32(self.rx.len() as u32);
        h.write(&self.rx);
        h.write_u8(self.rbr);
        h.write_u8(self.timeout_pending as u8);
        match self.timeout_at {
            Some(t) => {
                h.write_u8(1);
                h.write_u64(t);
            }
            None => h.write_u8(0),
        }
    }
}

/// Why a saved state cannot be restored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum UartError {
    /// More bytes in the receive FIFO than it holds.
    #[error("UART receive FIFO holds {0} bytes, more than {FIFO_LEN}")]
    FullFifo(usize),
    /// More than one byte received in 16450 (non-FIFO) mode.
    #[error("UART in 16450 mode holds {0} received bytes, more than 1")]
    FullRbr(usize),
    /// A register holds bits the chip does not have or cannot set.
    #[error("UART field {field} = {value:#04x} has impossible bits")]
    Bits {
        /// The state field.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// A THR-empty interrupt pending while IER does not enable it.
    #[error("UART THR-empty interrupt pending with IER bit 1 clear")]
    ThrPending,
    /// A character timeout signalled or armed without data in FIFO mode,
    /// or both at once.
    #[error("UART character timeout state is inconsistent")]
    Timeout,
}

/// A 16550A UART.
pub struct Uart16550 {
    state: Uart16550State,
    rx: VecDeque<u8>,
    out: Box<dyn SerialOutput>,
}

/// The MSR delta bits for the input lines going from `old` to `new`.
fn msr_deltas(old: u8, new: u8) -> u8 {
    let changed = old ^ new;
    let mut d = 0;
    if changed & MSR_CTS != 0 {
        d |= MSR_DCTS;
    }
    if changed & MSR_DSR != 0 {
        d |= MSR_DDSR;
    }
    // TERI: the RI pin went inactive (MSR bit 6 from 1 to 0) only.
    if old & MSR_RI != 0 && new & MSR_RI == 0 {
        d |= MSR_TERI;
    }
    if changed & MSR_DCD != 0 {
        d |= MSR_DDCD;
    }
    d
}

/// Four character times for `lcr` and `divisor`, in ns, rounded up.
pub fn char_timeout_ns(lcr: u8, divisor: u16) -> u64 {
    let data = 5 + (lcr & LCR_WLS) as u128;
    let parity = (lcr & LCR_PEN != 0) as u128;
    // Stop bits in halves: 1, 1.5 (5-bit words) or 2.
    let stop_halves = match (lcr & LCR_STB != 0, data) {
        (false, _) => 2,
        (true, 5) => 3,
        (true, _) => 4,
    };
    let half_bits = 2 * (1 + data + parity) + stop_halves;
    // Four characters of half_bits / 2 bits each: 2 × half_bits bit times.
    let (num, den) = if divisor == 0 {
        (2 * half_bits * NS_PER_S, ZERO_DIVISOR_BAUD as u128)
    } else {
        // One bit lasts divisor × 16 clock periods.
        let clocks = 2 * half_bits * divisor as u128 * 16;
        (clocks * NS_PER_S, UART_CLOCK_HZ as u128)
    };
    num.div_ceil(den) as u64
}

impl Uart16550 {
    /// A UART in its power-on state sending to `out`.
    pub fn new(out: Box<dyn SerialOutput>) -> Uart16550 {
        Uart16550::from_state(&Uart16550State::default(), out).expect("the reset state is valid")
    }

    /// A UART with a saved state (checked for values the chip cannot hold).
    pub fn from_state(
        s: &Uart16550State,
        out: Box<dyn SerialOutput>,
    ) -> Result<Uart16550, UartError> {
        check_state(s)?;
        Ok(Uart16550 {
            state: Uart16550State {
                rx: Vec::new(),
                ..s.clone()
            },
            rx: s.rx.iter().copied().collect(),
            out,
        })
    }

    /// The saved state (inverse of [`Uart16550::from_state`]).
    pub fn state(&self) -> Uart16550State {
        Uart16550State {
            rx: self.rx.iter().copied().collect(),
            ..self.state.clone()
        }
    }

    /// The output sink, given up (a snapshot load builds the UART anew
    /// from its saved state around the same sink).
    pub fn into_output(self) -> Box<dyn SerialOutput> {
        self.out
    }

    /// Back to the power-on state (the output sink stays).
    pub fn reset(&mut self) {
        self.state = Uart16550State::default();
        self.rx.clear();
    }

    /// Flush the output sink.
    pub fn flush(&mut self) {
        self.out.flush();
    }

    /// A byte arrives on the RX line from the host at `now_ns`. Without
    /// room it is an overrun (see [`Uart16550::can_receive`]); in loopback
    /// the line is disconnected and the byte is dropped.
    pub fn receive(&mut self, b: u8, now_ns: u64) {
        self.advance(now_ns);
        if self.loopback() {
            log::debug!("uart: byte {b:#04x} dropped, RX line disconnected in loopback");
            return;
        }
        self.rx_push(b, now_ns);
    }

    /// How many bytes the machine may hand over now without an overrun:
    /// the free FIFO space (FIFO mode) or 1 if RBR is empty (16450 mode);
    /// 0 in loopback, where the RX line is disconnected.
    pub fn can_receive(&self) -> usize {
        if self.loopback() {
            0
        } else if self.fifo_enabled() {
            FIFO_LEN - self.rx.len()
        } else {
            self.rx.is_empty() as usize
        }
    }

    /// The virtual time of the next timed event (the character timeout).
    pub fn next_event_ns(&self) -> Option<u64> {
        self.state.timeout_at
    }

    /// Process everything due at or before `now_ns`.
    pub fn advance(&mut self, now_ns: u64) {
        match self.state.timeout_at {
            Some(t) if t <= now_ns => {
                self.state.timeout_at = None;
                self.state.timeout_pending = !self.rx.is_empty();
            }
            _ => {}
        }
    }

    /// Is an interrupt condition pending (the chip's INTR pin, ungated)?
    pub fn irq_pending(&self) -> bool {
        self.cause() != IIR_NO_INT
    }

    /// The UART's IRQ line as the PC sees it: INTR through the buffer that
    /// the OUT2 pin enables (inactive in loopback). QEMU does not gate.
    pub fn irq_level(&self) -> bool {
        let out2_pin = self.state.mcr & MCR_OUT2 != 0 && !self.loopback();
        self.irq_pending() && out2_pin
    }

    fn dlab(&self) -> bool {
        self.state.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.state.mcr & MCR_LOOP != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.state.fcr & FCR_ENABLE != 0
    }

    fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.state.dll, self.state.dlm])
    }

    /// The receive FIFO trigger level (FCR bits 6–7).
    fn trigger_level(&self) -> usize {
        [1, 4, 8, 14][(self.state.fcr >> 6) as usize]
    }

    /// Is "received data available" due (trigger level, or any byte in
    /// 16450 mode)?
    fn rx_at_trigger(&self) -> bool {
        if self.fifo_enabled() {
            self.rx.len() >= self.trigger_level()
        } else {
            !self.rx.is_empty()
        }
    }

    /// Restart the character-timeout timer (nothing armed when the FIFO is
    /// empty or a timeout is already signalled).
    fn rearm_timeout(&mut self, now_ns: u64) {
        let armed = self.fifo_enabled() && !self.rx.is_empty() && !self.state.timeout_pending;
        self.state.timeout_at =
            armed.then(|| now_ns.saturating_add(char_timeout_ns(self.state.lcr, self.divisor())));
    }

    /// A byte reaches the receiver (from the line or from loopback).
    fn rx_push(&mut self, b: u8, now_ns: u64) {
        if !self.fifo_enabled() {
            if !self.rx.is_empty() {
                // 16450 mode: the new byte overwrites the unread one.
                self.state.lsr_errors |= LSR_OE;
                self.rx.clear();
            }
            self.rx.push_back(b);
        } else if self.rx.len() >= FIFO_LEN {
            // FIFO mode: the byte stays in the shift register and is lost.
            self.state.lsr_errors |= LSR_OE;
        } else {
            self.rx.push_back(b);
            self.rearm_timeout(now_ns);
        }
    }

    fn clear_rx(&mut self) {
        self.rx.clear();
        self.state.timeout_pending = false;
        self.state.timeout_at = None;
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        // Bit 7 (error in FIFO) would need PE/FE/BI, which never happen.
        LSR_THRE | LSR_TEMT | dr | self.state.lsr_errors
    }

    /// MSR bits 4–7: the input lines, or the looped-back outputs.
    fn msr_inputs(&self) -> u8 {
        if !self.loopback() {
            return self.state.msr;
        }
        let m = self.state.mcr;
        let bit = |on: bool, v: u8| if on { v } else { 0 };
        bit(m & MCR_RTS != 0, MSR_CTS)
            | bit(m & MCR_DTR != 0, MSR_DSR)
            | bit(m & MCR_OUT1 != 0, MSR_RI)
            | bit(m & MCR_OUT2 != 0, MSR_DCD)
    }

    /// The interrupt cause IIR reports (highest priority first).
    fn cause(&self) -> u8 {
        let s = &self.state;
        let on = |bit: u8| s.ier & bit != 0;
        if on(IER_RLSI) && s.lsr_errors != 0 {
            IIR_RLSI
        } else if on(IER_RDI) && s.timeout_pending {
            IIR_CTI
        } else if on(IER_RDI) && self.rx_at_trigger() {
            IIR_RDI
        } else if on(IER_THRI) && s.thr_pending {
            IIR_THRI
        } else if on(IER_MSI) && s.msr_delta != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    fn read_iir(&mut self) -> u8 {
        let cause = self.cause();
        if cause == IIR_THRI {
            // Reading IIR acknowledges a THR-empty interrupt it reports.
            self.state.thr_pending = false;
        }
        let fifo = if self.fifo_enabled() {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        cause | fifo
    }

    fn read_rbr(&mut self, now_ns: u64) -> u8 {
        if let Some(b) = self.rx.pop_front() {
            self.state.rbr = b;
        }
        // A read clears a signalled timeout and restarts the timer.
        self.state.timeout_pending = false;
        self.rearm_timeout(now_ns);
        self.state.rbr
    }

    fn read_lsr(&mut self) -> u8 {
        let v = self.lsr();
        // Reading LSR clears the error bits and so the line-status cause.
        self.state.lsr_errors = 0;
        v
    }

    fn read_msr(&mut self) -> u8 {
        let v = self.msr_inputs() | self.state.msr_delta;
        self.state.msr_delta = 0;
        v
    }

    fn transmit(&mut self, b: u8, now_ns: u64) {
        if self.loopback() {
            self.rx_push(b, now_ns);
        } else {
            self.out.write_byte(b);
        }
        // Writing THR clears the THR-empty interrupt; the byte leaves at
        // once, THR is empty again and raises it anew.
        self.state.thr_pending = self.state.ier & IER_THRI != 0;
    }

    fn write_ier(&mut self, v: u8) {
        let was = self.state.ier;
        self.state.ier = v & IER_MASK;
        if self.state.ier & IER_THRI == 0 {
            self.state.thr_pending = false;
        } else if was & IER_THRI == 0 {
            // Enabling THRI while THR is empty (always) signals it at once,
            // as Bochs and QEMU do on the rising edge (Linux's TXEN test
            // and Windows rely on it).
            self.state.thr_pending = true;
        }
    }

    fn write_fcr(&mut self, v: u8) {
        let on = v & FCR_ENABLE != 0;
        if on != self.fifo_enabled() || (on && v & FCR_CLEAR_RX != 0) {
            // Switching between FIFO and 16450 mode empties the FIFOs.
            self.clear_rx();
        }
        // Clearing the transmit FIFO has nothing to do: it is always empty.
        // Without bit 0 the other bits are not programmed (datasheet).
        self.state.fcr = if on {
            v & FCR_KEPT
        } else {
            self.state.fcr & !FCR_ENABLE
        };
    }

    fn write_mcr(&mut self, v: u8) {
        let before = self.msr_inputs();
        self.state.mcr = v & MCR_MASK;
        self.state.msr_delta |= msr_deltas(before, self.msr_inputs());
    }

    /// Read register `ofs` at virtual time `now_ns`.
    pub fn read_reg(&mut self, ofs: u64, now_ns: u64) -> u8 {
        self.advance(now_ns);
        let s = &self.state;
        let dlab = self.dlab();
        match ofs {
            OFS_DATA if dlab => s.dll,
            OFS_DATA => self.read_rbr(now_ns),
            OFS_IER if dlab => s.dlm,
            OFS_IER => s.ier,
            OFS_IIR_FCR => self.read_iir(),
            OFS_LCR => s.lcr,
            OFS_MCR => s.mcr,
            OFS_LSR => self.read_lsr(),
            OFS_MSR => self.read_msr(),
            OFS_SCR => s.scr,
            _ => 0xff,
        }
    }

    /// Write register `ofs` at virtual time `now_ns`.
    pub fn write_reg(&mut self, ofs: u64, v: u8, now_ns: u64) {
        self.advance(now_ns);
        let dlab = self.dlab();
        match ofs {
            OFS_DATA if dlab => self.state.dll = v,
            OFS_DATA => self.transmit(v, now_ns),
            OFS_IER if dlab => self.state.dlm = v,
            OFS_IER => self.write_ier(v),
            OFS_IIR_FCR => self.write_fcr(v),
            OFS_LCR => self.state.lcr = v,
            OFS_MCR => self.write_mcr(v),
            // LSR and MSR are read-only (writes are factory-test only).
            OFS_LSR | OFS_MSR => {}
            OFS_SCR => self.state.scr = v,
            _ => {}
        }
    }
}

/// Reject states the chip cannot be in.
fn check_state(s: &Uart16550State) -> Result<(), UartError> {
    let bits = |field, value: u8, allowed: u8| {
        if value & !allowed == 0 {
            Ok(())
        } else {
            Err(UartError::Bits { field, value })
        }
    };
    bits("ier", s.ier, IER_MASK)?;
    bits("mcr", s.mcr, MCR_MASK)?;
    bits("lsr_errors", s.lsr_errors, LSR_OE)?;
    bits("msr", s.msr, MSR_INPUTS)?;
    bits("msr_delta", s.msr_delta, MSR_DELTAS)?;
    bits("fcr", s.fcr, FCR_KEPT)?;
    let fifo = s.fcr & FCR_ENABLE != 0;
    if s.rx.len() > FIFO_LEN {
        return Err(UartError::FullFifo(s.rx.len()));
    }
    if !fifo && s.rx.len() > 1 {
        return Err(UartError::FullRbr(s.rx.len()));
    }
    if s.thr_pending && s.ier & IER_THRI == 0 {
        return Err(UartError::ThrPending);
    }
    let needs_data = s.timeout_pending || s.timeout_at.is_some();
    let both = s.timeout_pending && s.timeout_at.is_some();
    if both || (needs_data && (!fifo || s.rx.is_empty())) {
        return Err(UartError::Timeout);
    }
    Ok(())
}

impl TimedDevice for Uart16550 {
    fn read_at(&mut self, now_ns: u64, offset: u64, data: &mut [u8]) {
        // A wider access reads consecutive registers, as the ISA bus
        // splits it into byte cycles.
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_reg(offset + i as u64, now_ns);
        }
    }

    fn write_at(&mut self, now_ns: u64, offset: u64, data: &[u8]) {
        for (i, &d) in data.iter().enumerate() {
            self.write_reg(offset + i as u64, d, now_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four character times at 9600 baud 8N1 (divisor 12): 10 bits of
    /// 12 × 16 / 1843200 s each is 1/960 s per character, so 4 characters
    /// are 4166666.67 ns, rounded up.
    const T4_9600_8N1: u64 = 4_166_667;

    fn uart() -> (Uart16550, Rc<RefCell<Vec<u8>>>) {
        let out = VecOutput::default();
        let buf = out.0.clone();
        (Uart16550::new(Box::new(out)), buf)
    }

    /// A UART at 9600 baud 8N1 with FIFOs on at trigger level `fcr`.
    fn fifo_uart(fcr: u8) -> Uart16550 {
        let (mut u, _) = uart();
        u.write_reg(OFS_LCR, 0x03, 0);
        u.write_reg(OFS_IIR_FCR, fcr | FCR_ENABLE, 0);
        u
    }

    fn iir(u: &mut Uart16550, now: u64) -> u8 {
        u.read_reg(OFS_IIR_FCR, now)
    }

    #[test]
    fn uart_reset_values() {
        let (mut u, _) = uart();
        assert_eq!(u.read_reg(OFS_IER, 0), 0);
        assert_eq!(u.read_reg(OFS_IIR_FCR, 0), IIR_NO_INT);
        assert_eq!(u.read_reg(OFS_LCR, 0), 0);
        assert_eq!(u.read_reg(OFS_MCR, 0), 0);
        assert_eq!(u.read_reg(OFS_LSR, 0), LSR_THRE | LSR_TEMT);
        assert_eq!(u.read_reg(OFS_MSR, 0), 0xb0);
        assert_eq!(u.read_reg(OFS_SCR, 0), 0);
        assert_eq!(u.next_event_ns(), None);
        assert!(!u.irq_pending() && !u.irq_level());
    }

    #[test]
    fn uart_transmits_to_the_sink_and_stays_empty() {
        let (mut u, out) = uart();
        for b in b"hi\n" {
            u.write_reg(OFS_DATA, *b, 0);
            assert_eq!(u.read_reg(OFS_LSR, 0) & (LSR_THRE | LSR_TEMT), 0x60);
        }
        assert_eq!(out.borrow().as_slice(), b"hi\n");
    }

    #[test]
    fn uart_dlab_switches_to_the_divisor_latch() {
        let (mut u, out) = uart();
        u.write_reg(OFS_LCR, 0x83, 0);
        u.write_reg(OFS_DATA, 0x01, 0);
        u.write_reg(OFS_IER, 0x02, 0);
        assert_eq!((u.read_reg(OFS_DATA, 0), u.read_reg(OFS_IER, 0)), (1, 2));
        u.write_reg(OFS_LCR, 0x03, 0);
        assert_eq!(u.read_reg(OFS_IER, 0), 0, "IER untouched by DLM writes");
        assert!(out.borrow().is_empty(), "DLL writes are not transmitted");
        u.write_reg(OFS_LCR, 0x83, 0);
        assert_eq!(u.read_reg(OFS_DATA, 0), 1);
    }

    #[test]
    fn uart_iir_reports_causes_in_priority_order() {
        let (mut u, _) = uart();
        u.write_reg(OFS_LCR, 0x03, 0);
        // Modem status: entering and leaving loopback moves the inputs.
        u.write_reg(OFS_MCR, MCR_LOOP, 0);
        u.write_reg(OFS_MCR, 0, 0);
        u.write_reg(OFS_IIR_FCR, FCR_ENABLE, 0); // trigger level 1
        u.write_reg(OFS_IER, IER_MASK, 0); // THR empty: THRI pending
        for b in 0..=FIFO_LEN as u8 {
            u.receive(b, 0); // the 17th byte overruns
        }
        let t = T4_9600_8N1; // and the character timeout fires
        assert_eq!(iir(&mut u, t), 0xc0 | IIR_RLSI);
        assert_eq!(u.read_reg(OFS_LSR, t) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(iir(&mut u, t), 0xc0 | IIR_CTI);
        assert_eq!(u.read_reg(OFS_DATA, t), 0);
        assert_eq!(iir(&mut u, t), 0xc0 | IIR_RDI, "15 bytes >= trigger 1");
        for b in 1..FIFO_LEN as u8 {
            assert_eq!(u.read_reg(OFS_DATA, t), b);
        }
        assert_eq!(iir(&mut u, t), 0xc0 | IIR_THRI);
        assert_eq!(iir(&mut u, t), 0xc0 | IIR_MSI, "THRI acknowledged");
        assert_eq!(
            u.read_reg(OFS_MSR, t),
            0xb0 | MSR_DCTS | MSR_DDSR | MSR_DDCD
        );
        assert_eq!(iir(&mut u, t), 0xc0 | IIR_NO_INT);
    }

    #[test]
    fn uart_thr_empty_interrupt_rules() {
        let (mut u, _) = uart();
        u.write_reg(OFS_DATA, b'a', 0);
        assert!(
            !u.state().thr_pending,
            "not latched while IER bit 1 is clear"
        );
        u.write_reg(OFS_IER, IER_THRI, 0);
        assert_eq!(iir(&mut u, 0), IIR_THRI, "enabled with THR empty");
        assert_eq!(iir(&mut u, 0), IIR_NO_INT, "reading IIR acknowledged it");
        u.write_reg(OFS_IER, IER_THRI, 0);
        assert_eq!(iir(&mut u, 0), IIR_NO_INT, "no rising edge, no new THRI");
        u.write_reg(OFS_DATA, b'b', 0);
        u.write_reg(OFS_DATA, b'c', 0);
        assert_eq!(iir(&mut u, 0), IIR_THRI, "THR emptied again");
        assert_eq!(iir(&mut u, 0), IIR_NO_INT);
        u.write_reg(OFS_DATA, b'd', 0);
        u.write_reg(OFS_IER, 0, 0);
        assert!(!u.irq_pending(), "disabled");
        u.write_reg(OFS_IER, IER_THRI | IER_RDI, 0);
        u.receive(7, 0);
        assert_eq!(iir(&mut u, 0), IIR_RDI);
        assert_eq!(u.read_reg(OFS_DATA, 0), 7);
        assert_eq!(iir(&mut u, 0), IIR_THRI, "not acknowledged behind RDA");
        assert_eq!(iir(&mut u, 0), IIR_NO_INT);
    }

    #[test]
    fn uart_rda_fires_at_each_trigger_level() {
        for (bits, level) in [(0x00, 1), (0x40, 4), (0x80, 8), (0xc0, 14)] {
            let mut u = fifo_uart(bits);
            u.write_reg(OFS_IER, IER_RDI, 0);
            for b in 1..level {
                u.receive(b as u8, 0);
            }
            assert_eq!(iir(&mut u, 0), 0xc0 | IIR_NO_INT, "level {level}");
            assert_eq!(u.read_reg(OFS_LSR, 0) & LSR_DR, u8::from(level > 1));
            u.receive(0xaa, 0);
            assert_eq!(iir(&mut u, 0), 0xc0 | IIR_RDI, "level {level}");
            u.read_reg(OFS_DATA, 0);
            assert_eq!(iir(&mut u, 0), 0xc0 | IIR_NO_INT, "below level {level}");
        }
        // 16450 mode: any byte.
        let (mut u, _) = uart();
        u.write_reg(OFS_IER, IER_RDI, 0);
        u.receive(1, 0);
        assert_eq!(iir(&mut u, 0), IIR_RDI);
        assert_eq!(
            u.next_event_ns(),
            None,
            "no character timeout in 16450 mode"
        );
    }

    #[test]
    fn uart_char_time_follows_lcr_and_divisor() {
        // 4 character times = 4 × bits × divisor × 16 / 1843200 s, rounded
        // up to the ns; divisor 0 runs at 3500 baud as in QEMU.
        let cases = [
            (0x03, 12, T4_9600_8N1), // 10 bits: 4 × 10 × 192 / 1843200 s
            (0x03, 1, 347_223),      // 640 / 1843200 s = 347222.2 ns
            (0x1e, 3, 1_145_834),    // 7E2, 11 bits: 2112 / 1843200 s
            (0x04, 1, 260_417),      // 5 bits, 1.5 stop: 7.5 bits
            (0x0b, 2, 763_889),      // 8O1, 11 bits: 1408 / 1843200 s
            (0x03, 0, 11_428_572),   // 40 bits at 3500 baud
        ];
        for (lcr, div, want) in cases {
            assert_eq!(char_timeout_ns(lcr, div), want, "lcr {lcr:#x} div {div}");
        }
    }

    #[test]
    fn uart_char_timeout_fires_after_four_char_times() {
        let mut u = fifo_uart(0x40); // trigger level 4
        u.write_reg(OFS_IER, IER_RDI, 0);
        let t0 = 1_000;
        u.receive(b'x', t0);
        u.receive(b'y', t0 + 500);
        let due = t0 + 500 + T4_9600_8N1;
        assert_eq!(u.next_event_ns(), Some(due), "restarted by the 2nd byte");
        assert_eq!(iir(&mut u, due - 1), 0xc0 | IIR_NO_INT);
        assert!(!u.irq_pending());
        u.advance(due);
        assert!(u.irq_pending());
        assert_eq!(u.next_event_ns(), None);
        assert_eq!(iir(&mut u, due), 0xc0 | IIR_CTI);
        assert_eq!(
            iir(&mut u, due),
            0xc0 | IIR_CTI,
            "IIR reads do not clear it"
        );
        u.receive(b'z', due + 1);
        assert_eq!(iir(&mut u, due + 2), 0xc0 | IIR_CTI, "only RBR reads do");
        assert_eq!(u.read_reg(OFS_DATA, due + 10), b'x');
        assert_eq!(iir(&mut u, due + 10), 0xc0 | IIR_NO_INT);
        let again = due + 10 + T4_9600_8N1;
        assert_eq!(u.next_event_ns(), Some(again), "restarted by the read");
        assert_eq!(iir(&mut u, again), 0xc0 | IIR_CTI);
        u.read_reg(OFS_DATA, again);
        u.read_reg(OFS_DATA, again);
        assert_eq!(u.next_event_ns(), None, "nothing left");
        assert_eq!(iir(&mut u, again * 2), 0xc0 | IIR_NO_INT);
    }

    #[test]
    fn uart_timeout_deadline_uses_divisor_latch() {
        let (mut u, _) = uart();
        u.write_reg(OFS_LCR, LCR_DLAB | 0x03, 0);
        u.write_reg(OFS_DATA, 1, 0); // 115200 baud
        u.write_reg(OFS_LCR, 0x03, 0);
        u.write_reg(OFS_IIR_FCR, 0xc1, 0);
        u.write_reg(OFS_IER, IER_RDI, 0);
        u.receive(0, 0);
        assert_eq!(u.next_event_ns(), Some(347_223));
        let mut d = [0u8];
        u.read_at(347_223, OFS_IIR_FCR, &mut d);
        assert_eq!(d[0], 0xc0 | IIR_CTI, "read_at advances first");
    }

    #[test]
    fn uart_loopback_echoes_and_msr_follows_mcr() {
        let (mut u, out) = uart();
        u.write_reg(OFS_IIR_FCR, FCR_ENABLE, 0);
        u.write_reg(OFS_MCR, MCR_LOOP | MCR_RTS | MCR_OUT2, 0);
        // DSR dropped (0xb0 -> 0x90): Linux's loop test reads 0x90 & 0xf0.
        assert_eq!(u.read_reg(OFS_MSR, 0), MSR_CTS | MSR_DCD | MSR_DDSR);
        assert_eq!(u.read_reg(OFS_MSR, 0), MSR_CTS | MSR_DCD, "deltas cleared");
        u.write_reg(OFS_MCR, MCR_LOOP | MCR_DTR | MCR_OUT1, 0);
        let deltas = MSR_DCTS | MSR_DDSR | MSR_DDCD; // RI rising: no TERI
        assert_eq!(u.read_reg(OFS_MSR, 0), MSR_DSR | MSR_RI | deltas);
        u.write_reg(OFS_IER, IER_MSI, 0);
        u.write_reg(OFS_MCR, MCR_LOOP, 0);
        assert_eq!(iir(&mut u, 0), 0xc0 | IIR_MSI);
        assert_eq!(u.read_reg(OFS_MSR, 0), MSR_DDSR | MSR_TERI);
        assert_eq!(iir(&mut u, 0), 0xc0 | IIR_NO_INT);
        for b in b"abc" {
            u.write_reg(OFS_DATA, *b, 0);
        }
        assert_eq!(u.can_receive(), 0, "RX line disconnected");
        u.receive(b'!', 0);
        let got: Vec<u8> = (0..3).map(|_| u.read_reg(OFS_DATA, 0)).collect();
        assert_eq!(got, b"abc");
        assert_eq!(u.read_reg(OFS_LSR, 0) & LSR_DR, 0, "host byte dropped");
        assert!(out.borrow().is_empty());
        for b in 0..=FIFO_LEN as u8 {
            u.write_reg(OFS_DATA, b, 0);
        }
        assert_eq!(u.read_reg(OFS_LSR, 0) & LSR_OE, LSR_OE, "loopback overrun");
    }

    #[test]
    fn uart_overrun_sets_oe_until_lsr_is_read() {
        let mut u = fifo_uart(0xc0);
        u.write_reg(OFS_IER, IER_RLSI, 0);
        for b in 0..=FIFO_LEN as u8 {
            u.receive(b, 0);
        }
        assert_eq!(iir(&mut u, 0), 0xc0 | IIR_RLSI);
        assert_eq!(u.read_reg(OFS_LSR, 0) & LSR_OE, LSR_OE);
        assert_eq!(u.read_reg(OFS_LSR, 0) & LSR_OE, 0);
        assert_eq!(iir(&mut u, 0), 0xc0 | IIR_NO_INT);
        let got: Vec<u8> = (0..FIFO_LEN).map(|_| u.read_reg(OFS_DATA, 0)).collect();
        assert_eq!(got, (0..FIFO_LEN as u8).collect::<Vec<_>>(), "17th lost");
        // 16450 mode: the new byte overwrites RBR.
        let (mut u, _) = uart();
        u.receive(1, 0);
        u.receive(2, 0);
        assert_eq!(
            u.read_reg(OFS_LSR, 0),
            LSR_THRE | LSR_TEMT | LSR_OE | LSR_DR
        );
        assert_eq!(u.read_reg(OFS_DATA, 0), 2);
        assert_eq!(u.read_reg(OFS_LSR, 0), LSR_THRE | LSR_TEMT);
        assert_eq!(u.read_reg(OFS_DATA, 0), 2, "RBR keeps the last byte");
    }

    #[test]
    fn uart_can_receive_counts_room() {
        let (mut u, _) = uart();
        assert_eq!(u.can_receive(), 1);
        u.receive(1, 0);
        assert_eq!(u.can_receive(), 0);
        u.write_reg(OFS_IIR_FCR, FCR_ENABLE, 0);
        assert_eq!(u.can_receive(), FIFO_LEN, "enabling the FIFO emptied it");
        for b in 0..5 {
            u.receive(b, 0);
        }
        assert_eq!(u.can_receive(), FIFO_LEN - 5);
    }

    #[test]
    fn uart_fcr_programs_and_clears() {
        let mut u = fifo_uart(0x80);
        u.receive(1, 0);
        u.write_reg(OFS_IIR_FCR, 0x40, 0); // bit 0 clear: FIFOs off
        assert_eq!(iir(&mut u, 0), IIR_NO_INT, "IIR bits 6-7 follow bit 0");
        assert_eq!(u.read_reg(OFS_LSR, 0) & LSR_DR, 0, "disabling cleared it");
        assert_eq!(u.state().fcr, 0x80, "trigger bits not programmed");
        u.receive(2, 0);
        u.write_reg(OFS_IIR_FCR, FCR_CLEAR_RX, 0);
        assert_eq!(
            u.read_reg(OFS_LSR, 0) & LSR_DR,
            LSR_DR,
            "ignored in 16450 mode"
        );
        u.write_reg(OFS_IIR_FCR, 0xc1, 0);
        assert_eq!(u.state().fcr, 0xc1);
        u.receive(3, 0);
        assert!(u.next_event_ns().is_some());
        u.write_reg(OFS_IIR_FCR, 0xc1 | FCR_CLEAR_RX | FCR_CLEAR_TX, 0);
        assert_eq!(u.read_reg(OFS_LSR, 0), LSR_THRE | LSR_TEMT);
        assert_eq!(u.next_event_ns(), None, "the timer stops with the FIFO");
    }

    #[test]
    fn uart_irq_level_is_gated_by_out2() {
        let (mut u, _) = uart();
        u.write_reg(OFS_IER, IER_THRI, 0);
        assert!(u.irq_pending() && !u.irq_level(), "OUT2 low: line quiet");
        u.write_reg(OFS_MCR, MCR_OUT2, 0);
        assert!(u.irq_level());
        u.write_reg(OFS_MCR, MCR_OUT2 | MCR_LOOP, 0);
        assert!(
            u.irq_pending() && !u.irq_level(),
            "loopback forces OUT2 off"
        );
        u.write_reg(OFS_MCR, MCR_OUT2 | MCR_DTR | MCR_RTS, 0);
        assert!(u.irq_level());
        iir(&mut u, 0);
        assert!(!u.irq_level(), "acknowledged");
    }

    /// A UART with every kind of state: FIFO data, an armed timeout,
    /// pending causes, deltas, an overrun.
    fn busy_uart() -> Uart16550 {
        let mut u = fifo_uart(0x40);
        u.write_reg(OFS_SCR, 0x42, 0);
        u.write_reg(OFS_MCR, MCR_LOOP | MCR_RTS, 0);
        u.write_reg(OFS_MCR, MCR_OUT2 | MCR_DTR, 0);
        u.write_reg(OFS_IER, IER_MASK, 0);
        for b in 0..=FIFO_LEN as u8 {
            u.receive(b, 100);
        }
        u.read_reg(OFS_DATA, 200);
        u
    }

    #[test]
    fn uart_state_round_trips_with_the_same_future() {
        let mut u = busy_uart();
        let s = u.state();
        assert_eq!(s.timeout_at, Some(200 + T4_9600_8N1));
        let mut v = Uart16550::from_state(&s, Box::new(NullOutput)).unwrap();
        assert_eq!(v.state(), s);
        assert_eq!(v.state().state_hash(), s.state_hash());
        assert_eq!(v.next_event_ns(), u.next_event_ns());
        let later = 200 + T4_9600_8N1;
        for ofs in [2, 5, 2, 0, 2, 6, 2, 2, 0, 4, 7] {
            assert_eq!(v.read_reg(ofs, later), u.read_reg(ofs, later), "ofs {ofs}");
            assert_eq!(v.irq_level(), u.irq_level());
        }
        assert_eq!(v.state(), u.state());
        u.reset();
        assert_eq!(u.state(), Uart16550State::default());
    }

    #[test]
    fn uart_from_state_rejects_impossible_states() {
        let d = Uart16550State::default;
        let fifo = |rx: Vec<u8>| Uart16550State {
            fcr: FCR_ENABLE,
            rx,
            ..d()
        };
        let bad = [
            (fifo(vec![0; 17]), UartError::FullFifo(17)),
            (
                Uart16550State {
                    rx: vec![1, 2],
                    ..d()
                },
                UartError::FullRbr(2),
            ),
            (
                Uart16550State { ier: 0x10, ..d() },
                UartError::Bits {
                    field: "ier",
                    value: 0x10,
                },
            ),
            (
                Uart16550State {
                    lsr_errors: 0x04,
                    ..d()
                },
                UartError::Bits {
                    field: "lsr_errors",
                    value: 4,
                },
            ),
            (
                Uart16550State {
                    msr_delta: 0x10,
                    ..d()
                },
                UartError::Bits {
                    field: "msr_delta",
                    value: 0x10,
                },
            ),
            (
                Uart16550State {
                    thr_pending: true,
                    ..d()
                },
                UartError::ThrPending,
            ),
            (
                Uart16550State {
                    timeout_at: Some(5),
                    ..fifo(vec![])
                },
                UartError::Timeout,
            ),
            (
                Uart16550State {
                    timeout_pending: true,
                    ..d()
                },
                UartError::Timeout,
            ),
            (
                Uart16550State {
                    timeout_pending: true,
                    timeout_at: Some(1),
                    ..fifo(vec![1])
                },
                UartError::Timeout,
            ),
        ];
        for (s, e) in bad {
            assert_eq!(
                Uart16550::from_state(&s, Box::new(NullOutput)).err(),
                Some(e)
            );
        }
    }

    #[test]
    fn uart_state_hash_covers_every_field() {
        let base = Uart16550State::default();
        let edits: [fn(&mut Uart16550State); 15] = [
            |s| s.dll = 1,
            |s| s.dlm = 1,
            |s| s.ier = 1,
            |s| s.lcr = 1,
            |s| s.mcr = 1,
            |s| s.lsr_errors = LSR_OE,
            |s| s.msr = 0,
            |s| s.msr_delta = 1,
            |s| s.scr = 1,
            |s| s.fcr = 1,
            |s| s.thr_pending = true,
            |s| s.rx = vec![0],
            |s| s.rbr = 1,
            |s| s.timeout_pending = true,
            |s| s.timeout_at = Some(0),
        ];
        let mut seen = vec![base.state_hash()];
        for edit in edits {
            let mut s = base.clone();
            edit(&mut s);
            let h = s.state_hash();
            assert!(!seen.contains(&h), "{s:?}");
            seen.push(h);
        }
    }

    #[test]
    fn uart_wide_access_touches_consecutive_registers() {
        let (mut u, _) = uart();
        u.write_at(0, OFS_LCR, &[0x03, 0x0b]);
        let mut d = [0u8; 2];
        u.read_at(0, OFS_LCR, &mut d);
        assert_eq!(d, [0x03, 0x0b]);
        let mut d = [0u8; 2];
        u.read_at(0, OFS_SCR, &mut d);
        assert_eq!(d[1], 0xff, "past the last register");
    }
}
