//! cjemu-devices: the buses and the device models of cjemu's PC.
//!
//! - [`bus`]: a port-I/O bus (16-bit port space) and an MMIO bus
//!   (guest-physical ranges). A device implements [`bus::BusDevice`] and
//!   sees only offsets inside its window; accesses to nothing read all-ones,
//!   are dropped on write, counted and logged (`-d guest_errors`).
//! - [`uart16550`]: the 16550A UART of the COM ports.
//! - [`debug_exit`]: QEMU's isa-debug-exit (a write ends the run).
//! - [`pic8259`]: the 8259A interrupt controller pair (and the ELCRs).
//! - [`rtc_cmos`]: the MC146818 real-time clock and CMOS memory.
//! - [`i8042`]: the keyboard controller (its reset line).
//! - [`port61`]: system control port B (PIT gate, speaker, refresh).
//! - [`io_delay`]: the I/O-delay write sinks (ports 0x80, 0xed).
//! - [`timed`]: devices that need the virtual time on each access.
//! - [`pit8254`]: the 8254 interval timer, driven by virtual time.
//! - [`testdev`]: QEMU's pc-testdev scratch areas (IORAM, port 0xe0).
//!
//! Each device keeps its guest-visible state in one plain-data struct whose
//! `Default` is the power-on state; `new()` builds from that default through
//! the same `from_state` a snapshot restore uses, and `state()` is the
//! inverse. Absolute ports, addresses and IRQs live in the machine's layout
//! table (`src/pc.rs` of the cjemu crate), never here.
//!
//! ```
//! use cjemu_devices::bus::Bus;
//! use cjemu_devices::timed::TimedWindow;
//! use cjemu_devices::uart16550::{Uart16550, VecOutput};
//! use cjemu_replay::clock::VirtualNow;
//! use std::{cell::RefCell, rc::Rc};
//!
//! let out = VecOutput::default();
//! let uart = Rc::new(RefCell::new(Uart16550::new(Box::new(out.clone()))));
//! let window = TimedWindow::new(uart, VirtualNow::new());
//! let mut pio = Bus::pio();
//! pio.insert(0x3f8, 8, Rc::new(RefCell::new(window))).unwrap();
//! pio.write(0x3f8, b"A");
//! let mut lsr = [0u8];
//! pio.read(0x3fd, &mut lsr);
//! assert_eq!(lsr[0] & 0x60, 0x60); // THR empty, transmitter idle
//! assert_eq!(out.0.borrow().as_slice(), b"A");
//! ```

#![warn(missing_docs)]

pub mod bus;
pub mod debug_exit;
pub mod i8042;
pub mod io_delay;
pub mod pic8259;
pub mod pit8254;
pub mod port61;
pub mod rtc_cmos;
pub mod testdev;
pub mod timed;
pub mod uart16550;
