//! The 16550A UART (National Semiconductor PC16550D datasheet; the PC's
//! COM ports).
//!
//! Eight registers at offsets 0–7; LCR bit 7 (DLAB) switches offsets 0 and 1
//! to the baud-rate divisor latch. Transmission is instant: a byte written to
//! THR goes straight to the [`SerialOutput`] sink (or, in loopback mode, to
//! the receive FIFO), so LSR always shows THR empty and the transmitter idle.
//! Receiving is minimal for now (loopback, and [`Uart16550::receive`] for a
//! later input backend) and no interrupt line is wired yet; IIR still reports
//! what an interrupt line would signal, so registers read back coherently.

use crate::bus::BusDevice;
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

/// LCR bit 7: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;
/// IER bits.
/// Received data available.
pub const IER_RDI: u8 = 0x01;
/// THR empty.
pub const IER_THRI: u8 = 0x02;
/// Bits of IER that exist (the rest read 0).
pub const IER_MASK: u8 = 0x0f;
/// IIR values.
pub const IIR_NO_INT: u8 = 0x01;
/// IIR: THR empty.
pub const IIR_THRI: u8 = 0x02;
/// IIR: received data available.
pub const IIR_RDI: u8 = 0x04;
/// IIR bits 6-7: FIFOs enabled.
pub const IIR_FIFO_ENABLED: u8 = 0xc0;
/// FCR bits.
pub const FCR_ENABLE: u8 = 0x01;
/// FCR: clear the receive FIFO.
pub const FCR_CLEAR_RX: u8 = 0x02;
/// FCR: clear the transmit FIFO.
pub const FCR_CLEAR_TX: u8 = 0x04;
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
pub const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
/// Receive FIFO depth.
pub const FIFO_LEN: usize = 16;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uart16550State {
    /// Divisor latch, low byte (reset 0x0c: 9600 baud).
    pub dll: u8,
    /// Divisor latch, high byte.
    pub dlm: u8,
    /// Interrupt enable register.
    pub ier: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register.
    pub mcr: u8,
    /// LSR error bits latched until LSR is read (only OE today).
    pub lsr_errors: u8,
    /// Modem status register outside loopback.
    pub msr: u8,
    /// Scratch register.
    pub scr: u8,
    /// Last FCR value (bit 0: FIFOs enabled; bits 6–7: trigger level).
    pub fcr: u8,
    /// A THR-empty interrupt is pending (cleared by reading IIR while it is
    /// the reported cause, or by writing THR).
    pub thr_pending: bool,
    /// Received bytes not read yet (at most [`FIFO_LEN`]).
    pub rx: Vec<u8>,
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
            scr: 0,
            fcr: 0,
            thr_pending: false,
            rx: Vec::new(),
        }
    }
}

/// Why a saved state cannot be restored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum UartError {
    /// More bytes in the receive FIFO than it holds.
    #[error("UART receive FIFO holds {0} bytes, more than {FIFO_LEN}")]
    FullFifo(usize),
}

/// A 16550A UART.
pub struct Uart16550 {
    state: Uart16550State,
    rx: VecDeque<u8>,
    out: Box<dyn SerialOutput>,
}

impl Uart16550 {
    /// A UART in its power-on state sending to `out`.
    pub fn new(out: Box<dyn SerialOutput>) -> Uart16550 {
        Uart16550::from_state(&Uart16550State::default(), out).expect("the reset state is valid")
    }

    /// A UART with a saved state.
    pub fn from_state(
        s: &Uart16550State,
        out: Box<dyn SerialOutput>,
    ) -> Result<Uart16550, UartError> {
        if s.rx.len() > FIFO_LEN {
            return Err(UartError::FullFifo(s.rx.len()));
        }
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

    /// Back to the power-on state (the output sink stays).
    pub fn reset(&mut self) {
        self.state = Uart16550State::default();
        self.rx.clear();
    }

    /// Flush the output sink.
    pub fn flush(&mut self) {
        self.out.flush();
    }

    /// A byte arrives on the receive line (dropped with an overrun when the
    /// FIFO is full).
    pub fn receive(&mut self, b: u8) {
        if self.rx.len() >= FIFO_LEN {
            self.state.lsr_errors |= LSR_OE;
        } else {
            self.rx.push_back(b);
        }
    }

    fn dlab(&self) -> bool {
        self.state.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.state.mcr & MCR_LOOP != 0
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        LSR_THRE | LSR_TEMT | dr | self.state.lsr_errors
    }

    fn msr(&self) -> u8 {
        if !self.loopback() {
            return self.state.msr;
        }
        // Loopback wires the modem outputs back to the inputs.
        let m = self.state.mcr;
        let bit = |on: bool, v: u8| if on { v } else { 0 };
        bit(m & MCR_RTS != 0, MSR_CTS)
            | bit(m & MCR_DTR != 0, MSR_DSR)
            | bit(m & MCR_OUT1 != 0, MSR_RI)
            | bit(m & MCR_OUT2 != 0, MSR_DCD)
    }

    /// The interrupt cause IIR reports (highest priority first).
    fn cause(&self) -> u8 {
        if self.state.ier & IER_RDI != 0 && !self.rx.is_empty() {
            IIR_RDI
        } else if self.state.ier & IER_THRI != 0 && self.state.thr_pending {
            IIR_THRI
        } else {
            IIR_NO_INT
        }
    }

    /// Would the interrupt line be raised (for the later PIC wiring)?
    pub fn irq_pending(&self) -> bool {
        self.cause() != IIR_NO_INT
    }

    fn read_iir(&mut self) -> u8 {
        let cause = self.cause();
        if cause == IIR_THRI {
            // Reading IIR acknowledges a THR-empty interrupt.
            self.state.thr_pending = false;
        }
        let fifo = if self.state.fcr & FCR_ENABLE != 0 {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        cause | fifo
    }

    fn transmit(&mut self, b: u8) {
        if self.loopback() {
            self.receive(b);
        } else {
            self.out.write_byte(b);
        }
        // The byte left at once: THR is empty again.
        self.state.thr_pending = true;
    }

    fn write_fcr(&mut self, v: u8) {
        if v & FCR_CLEAR_RX != 0 {
            self.rx.clear();
        }
        // Clearing the transmit FIFO has nothing to do: it is always empty.
        self.state.fcr = v & !(FCR_CLEAR_RX | FCR_CLEAR_TX);
    }

    /// Read register `ofs`.
    pub fn read_reg(&mut self, ofs: u64) -> u8 {
        let s = &mut self.state;
        match ofs {
            OFS_DATA if s.lcr & LCR_DLAB != 0 => s.dll,
            OFS_DATA => self.rx.pop_front().unwrap_or(0),
            OFS_IER if s.lcr & LCR_DLAB != 0 => s.dlm,
            OFS_IER => s.ier,
            OFS_IIR_FCR => self.read_iir(),
            OFS_LCR => s.lcr,
            OFS_MCR => s.mcr,
            OFS_LSR => {
                let v = self.lsr();
                self.state.lsr_errors = 0;
                v
            }
            OFS_MSR => self.msr(),
            OFS_SCR => s.scr,
            _ => 0xff,
        }
    }

    /// Write register `ofs`.
    pub fn write_reg(&mut self, ofs: u64, v: u8) {
        match ofs {
            OFS_DATA if self.dlab() => self.state.dll = v,
            OFS_DATA => self.transmit(v),
            OFS_IER if self.dlab() => self.state.dlm = v,
            OFS_IER => {
                let was = self.state.ier;
                self.state.ier = v & IER_MASK;
                if was & IER_THRI == 0 && v & IER_THRI != 0 {
                    // Enabling the THR-empty interrupt with THR empty
                    // signals it at once.
                    self.state.thr_pending = true;
                }
            }
            OFS_IIR_FCR => self.write_fcr(v),
            OFS_LCR => self.state.lcr = v,
            OFS_MCR => self.state.mcr = v & MCR_MASK,
            // LSR and MSR are read-only (writes are factory-test only).
            OFS_LSR | OFS_MSR => {}
            OFS_SCR => self.state.scr = v,
            _ => {}
        }
    }
}

impl BusDevice for Uart16550 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // A wider access reads consecutive registers, as the ISA bus
        // splits it into byte cycles.
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_reg(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &d) in data.iter().enumerate() {
            self.write_reg(offset + i as u64, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uart() -> (Uart16550, Rc<RefCell<Vec<u8>>>) {
        let out = VecOutput::default();
        let buf = out.0.clone();
        (Uart16550::new(Box::new(out)), buf)
    }

    #[test]
    fn uart_reset_values() {
        let (mut u, _) = uart();
        assert_eq!(u.read_reg(OFS_IER), 0);
        assert_eq!(u.read_reg(OFS_IIR_FCR), IIR_NO_INT);
        assert_eq!(u.read_reg(OFS_LCR), 0);
        assert_eq!(u.read_reg(OFS_MCR), 0);
        assert_eq!(u.read_reg(OFS_LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(u.read_reg(OFS_MSR), 0xb0);
        assert_eq!(u.read_reg(OFS_SCR), 0);
    }

    #[test]
    fn uart_transmits_to_the_sink_and_stays_empty() {
        let (mut u, out) = uart();
        for b in b"hi\n" {
            u.write_reg(OFS_DATA, *b);
            assert_eq!(u.read_reg(OFS_LSR) & (LSR_THRE | LSR_TEMT), 0x60);
        }
        assert_eq!(out.borrow().as_slice(), b"hi\n");
    }

    #[test]
    fn uart_dlab_switches_to_the_divisor_latch() {
        let (mut u, out) = uart();
        u.write_reg(OFS_LCR, 0x83);
        u.write_reg(OFS_DATA, 0x01);
        u.write_reg(OFS_IER, 0x02);
        assert_eq!((u.read_reg(OFS_DATA), u.read_reg(OFS_IER)), (1, 2));
        u.write_reg(OFS_LCR, 0x03);
        assert_eq!(u.read_reg(OFS_IER), 0, "IER untouched by DLM writes");
        assert!(out.borrow().is_empty(), "DLL writes are not transmitted");
        u.write_reg(OFS_LCR, 0x83);
        assert_eq!(u.read_reg(OFS_DATA), 1);
    }

    #[test]
    fn uart_thr_interrupt_is_reported_and_acknowledged() {
        let (mut u, _) = uart();
        u.write_reg(OFS_IIR_FCR, 0xc7);
        u.write_reg(OFS_IER, IER_THRI);
        assert!(u.irq_pending());
        assert_eq!(u.read_reg(OFS_IIR_FCR), 0xc0 | IIR_THRI);
        assert_eq!(u.read_reg(OFS_IIR_FCR), 0xc0 | IIR_NO_INT);
        u.write_reg(OFS_DATA, b'x');
        assert_eq!(u.read_reg(OFS_IIR_FCR), 0xc0 | IIR_THRI);
    }

    #[test]
    fn uart_loopback_receives_what_it_sends() {
        let (mut u, out) = uart();
        u.write_reg(OFS_MCR, MCR_LOOP | MCR_RTS | MCR_OUT2);
        assert_eq!(u.read_reg(OFS_MSR), MSR_CTS | MSR_DCD);
        u.write_reg(OFS_DATA, 0x5a);
        assert_eq!(u.read_reg(OFS_LSR) & LSR_DR, LSR_DR);
        u.write_reg(OFS_IER, IER_RDI);
        assert_eq!(u.read_reg(OFS_IIR_FCR), IIR_RDI);
        assert_eq!(u.read_reg(OFS_DATA), 0x5a);
        assert_eq!(u.read_reg(OFS_LSR) & LSR_DR, 0);
        assert!(out.borrow().is_empty());
    }

    #[test]
    fn uart_overrun_is_latched_until_lsr_is_read() {
        let (mut u, _) = uart();
        for b in 0..=FIFO_LEN as u8 {
            u.receive(b);
        }
        assert_eq!(u.read_reg(OFS_LSR) & LSR_OE, LSR_OE);
        assert_eq!(u.read_reg(OFS_LSR) & LSR_OE, 0);
        u.write_reg(OFS_IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(u.read_reg(OFS_LSR) & LSR_DR, 0);
    }

    #[test]
    fn uart_state_round_trips_and_rejects_a_full_fifo() {
        let (mut u, _) = uart();
        u.write_reg(OFS_SCR, 0x42);
        u.write_reg(OFS_MCR, MCR_LOOP);
        u.write_reg(OFS_DATA, 7);
        let s = u.state();
        let mut v = Uart16550::from_state(&s, Box::new(NullOutput)).unwrap();
        assert_eq!(v.state(), s);
        assert_eq!(v.read_reg(OFS_DATA), 7);
        assert_eq!(v.read_reg(OFS_SCR), 0x42);
        let bad = Uart16550State {
            rx: vec![0; 17],
            ..Default::default()
        };
        assert!(matches!(
            Uart16550::from_state(&bad, Box::new(NullOutput)),
            Err(UartError::FullFifo(17))
        ));
        u.reset();
        assert_eq!(u.state(), Uart16550State::default());
    }

    #[test]
    fn uart_wide_access_touches_consecutive_registers() {
        let (mut u, _) = uart();
        u.write(OFS_LCR, &[0x03, 0x0b]);
        let mut d = [0u8; 2];
        u.read(OFS_LCR, &mut d);
        assert_eq!(d, [0x03, 0x0b]);
        let mut d = [0u8; 2];
        u.read(OFS_SCR, &mut d);
        assert_eq!(d[1], 0xff, "past the last register");
    }
}
