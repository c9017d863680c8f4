//! The PC layout: which device sits at which port or guest-physical
//! address, and the bridge from the engine's I/O callbacks to the buses.
//!
//! Device models (`cjemu-devices`) see offsets only; this table owns the
//! absolute places, as on QEMU's `pc` machine:
//!
//! | device | where | size |
//! |---|---|---|
//! | COM1–COM4 (16550A) | ports 0x3f8, 0x2f8, 0x3e8, 0x2e8 | 8 |
//! | isa-debug-exit | port 0xf4 (`-device isa-debug-exit,iobase=,iosize=`) | 4 |
//! | pc-testdev port scratch | ports 0xe0 and 0xe8 | 4 |
//! | pc-testdev IORAM | 0xff000000 | 64 KiB |
//!
//! A UART is present for every `-serial` given (COM1 on stdout without one).

use crate::cli::SerialTarget;
use crate::status::Error;
use cjemu_devices::bus::{Bus, BusError, SharedDevice};
use cjemu_devices::debug_exit::DebugExit;
use cjemu_devices::testdev::{TestdevIoram, TestdevPort, IORAM_SIZE, PORT_SIZE};
use cjemu_devices::uart16550::{NullOutput, SerialOutput, Uart16550, UART_SIZE};
use cjemu_jit::emit::Width;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, IoBus};
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::rc::Rc;

/// I/O bases of COM1..COM4.
pub const COM_BASES: [u16; 4] = [0x3f8, 0x2f8, 0x3e8, 0x2e8];
/// Default isa-debug-exit window (QEMU's defaults).
pub const DEBUG_EXIT_BASE: u16 = 0xf4;
/// Default isa-debug-exit window size.
pub const DEBUG_EXIT_SIZE: u16 = 4;
/// pc-testdev scratch register (byte-addressable).
pub const TESTDEV_PORT: u16 = 0xe0;
/// The same register again, QEMU's byte-access alias.
pub const TESTDEV_PORT_BYTE: u16 = 0xe8;
/// pc-testdev IORAM (kvm-unit-tests' MMIO scratch).
pub const IORAM_BASE: u64 = 0xff00_0000;

/// Where the debug-exit device goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugExitConfig {
    /// First port.
    pub iobase: u16,
    /// Number of ports.
    pub iosize: u16,
}

impl Default for DebugExitConfig {
    fn default() -> Self {
        DebugExitConfig {
            iobase: DEBUG_EXIT_BASE,
            iosize: DEBUG_EXIT_SIZE,
        }
    }
}

/// The machine's devices and buses.
pub struct Pc {
    /// The port-I/O bus.
    pub pio: Bus,
    /// The MMIO bus.
    pub mmio: Bus,
    /// COM1.. in order.
    pub uarts: Vec<Rc<RefCell<Uart16550>>>,
    /// isa-debug-exit.
    pub debug_exit: Rc<RefCell<DebugExit>>,
    /// pc-testdev IORAM.
    pub ioram: Rc<RefCell<TestdevIoram>>,
    /// pc-testdev port scratch register.
    pub testdev_port: Rc<RefCell<TestdevPort>>,
}

fn layout_error(what: &str, e: BusError) -> Error {
    Error::Usage(format!("{what}: {e}"))
}

impl Pc {
    /// Build the PC with one UART per serial sink.
    pub fn new(serial: Vec<Box<dyn SerialOutput>>, dx: DebugExitConfig) -> Result<Pc, Error> {
        let mut pio = Bus::pio();
        let mut mmio = Bus::mmio();
        let mut uarts = Vec::new();
        for (out, base) in serial.into_iter().zip(COM_BASES) {
            let u = Rc::new(RefCell::new(Uart16550::new(out)));
            pio.insert(base as u64, UART_SIZE, u.clone() as SharedDevice)
                .map_err(|e| layout_error("serial port", e))?;
            uarts.push(u);
        }
        let debug_exit = Rc::new(RefCell::new(DebugExit::new()));
        pio.insert(
            dx.iobase as u64,
            dx.iosize as u64,
            debug_exit.clone() as SharedDevice,
        )
        .map_err(|e| layout_error("-device isa-debug-exit", e))?;
        let testdev_port = Rc::new(RefCell::new(TestdevPort::new()));
        for base in [TESTDEV_PORT, TESTDEV_PORT_BYTE] {
            pio.insert(base as u64, PORT_SIZE, testdev_port.clone() as SharedDevice)
                .map_err(|e| layout_error("pc-testdev", e))?;
        }
        let ioram = Rc::new(RefCell::new(TestdevIoram::new()));
        mmio.insert(IORAM_BASE, IORAM_SIZE, ioram.clone() as SharedDevice)
            .map_err(|e| layout_error("pc-testdev", e))?;
        Ok(Pc {
            pio,
            mmio,
            uarts,
            debug_exit,
            ioram,
            testdev_port,
        })
    }

    /// Declare the MMIO holes in guest memory (they shadow RAM there).
    pub fn map_mmio(&self, mem: &mut GuestMemory) -> Result<(), Error> {
        mem.add_mmio(GuestPhysAddr(IORAM_BASE), IORAM_SIZE)
            .map_err(|e| Error::Internal(format!("mapping the IORAM: {e}")))
    }

    /// Every device back to its power-on state (serial sinks stay).
    pub fn reset(&mut self) {
        for u in &self.uarts {
            u.borrow_mut().reset();
        }
        *self.debug_exit.borrow_mut() = DebugExit::new();
        *self.ioram.borrow_mut() = TestdevIoram::new();
        *self.testdev_port.borrow_mut() = TestdevPort::new();
    }

    /// Push buffered serial output out.
    pub fn flush(&self) {
        for u in &self.uarts {
            u.borrow_mut().flush();
        }
    }
}

/// The engine's [`IoBus`], routing to the PC's buses.
pub struct PcIo(pub Rc<RefCell<Pc>>);

impl IoBus for PcIo {
    fn port_read(&mut self, port: u16, w: Width, _icount: u64) -> u32 {
        let mut b = [0u8; 4];
        let n = w.bytes() as usize;
        self.0.borrow_mut().pio.read(port as u64, &mut b[..n]);
        u32::from_le_bytes(b)
    }

    fn port_write(&mut self, port: u16, w: Width, value: u32, _icount: u64) {
        let n = w.bytes() as usize;
        self.0
            .borrow_mut()
            .pio
            .write(port as u64, &value.to_le_bytes()[..n]);
    }

    fn mmio_read(&mut self, addr: GuestPhysAddr, w: Width, _icount: u64) -> u64 {
        let mut b = [0u8; 8];
        let n = w.bytes() as usize;
        self.0.borrow_mut().mmio.read(addr.0, &mut b[..n]);
        u64::from_le_bytes(b)
    }

    fn mmio_write(&mut self, addr: GuestPhysAddr, w: Width, value: u64, _icount: u64) {
        let n = w.bytes() as usize;
        self.0
            .borrow_mut()
            .mmio
            .write(addr.0, &value.to_le_bytes()[..n]);
    }
}

/// Serial output to stdout: only guest bytes go there. Flushed at each
/// newline and whenever the run loop asks, so an interactive prompt shows.
pub struct StdoutOutput(BufWriter<std::io::Stdout>);

impl SerialOutput for StdoutOutput {
    fn write_byte(&mut self, b: u8) {
        // A closed stdout must not kill the guest: drop the byte.
        let _ = self.0.write_all(&[b]);
        if b == b'\n' {
            let _ = self.0.flush();
        }
    }
    fn flush(&mut self) {
        let _ = self.0.flush();
    }
}

/// Serial output to a file (`-serial file:PATH`), created or truncated.
pub struct FileOutput(BufWriter<File>);

impl SerialOutput for FileOutput {
    fn write_byte(&mut self, b: u8) {
        if let Err(e) = self.0.write_all(&[b]) {
            log::warn!("-serial file: {e}");
        }
    }
    fn flush(&mut self) {
        if let Err(e) = self.0.flush() {
            log::warn!("-serial file: {e}");
        }
    }
}

/// The sink for one `-serial` target.
pub fn serial_output(t: &SerialTarget) -> Result<Box<dyn SerialOutput>, Error> {
    Ok(match t {
        SerialTarget::Stdio => Box::new(StdoutOutput(BufWriter::new(std::io::stdout()))),
        SerialTarget::Null => Box::new(NullOutput),
        SerialTarget::File(p) => {
            let f = File::create(p)
                .map_err(|e| Error::Input(format!("-serial file:{}: {e}", p.display())))?;
            Box::new(FileOutput(BufWriter::new(f)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cjemu_devices::uart16550::VecOutput;

    fn pc(dx: DebugExitConfig) -> (Pc, VecOutput) {
        let out = VecOutput::default();
        (Pc::new(vec![Box::new(out.clone())], dx).unwrap(), out)
    }

    #[test]
    fn pc_layout_routes_com1_debug_exit_and_testdev() {
        let (p, out) = pc(DebugExitConfig::default());
        let mut io = PcIo(Rc::new(RefCell::new(p)));
        io.port_write(0x3f8, Width::B, b'x' as u32, 0);
        assert_eq!(out.0.borrow().as_slice(), b"x");
        assert_eq!(io.port_read(0x3fd, Width::B, 0) & 0x60, 0x60);
        io.port_write(0xe0, Width::D, 0x1234_5678, 0);
        assert_eq!(io.port_read(0xe9, Width::B, 0), 0x56, "0xe8 aliases 0xe0");
        io.mmio_write(
            GuestPhysAddr(IORAM_BASE + 8),
            Width::Q,
            0x1122_3344_5566_7788,
            0,
        );
        assert_eq!(
            io.mmio_read(GuestPhysAddr(IORAM_BASE + 12), Width::D, 0),
            0x1122_3344
        );
        assert_eq!(io.port_read(0x1234, Width::W, 0), 0xffff, "nothing there");
        io.port_write(0xf5, Width::B, 7, 0);
        assert_eq!(
            io.0.borrow().debug_exit.borrow_mut().take_request(),
            Some(7)
        );
        assert_eq!(io.0.borrow().pio.stats.unassigned_reads, 1);
    }

    #[test]
    fn pc_debug_exit_window_is_configurable() {
        let (p, _) = pc(DebugExitConfig {
            iobase: 0x501,
            iosize: 2,
        });
        let mut io = PcIo(Rc::new(RefCell::new(p)));
        io.port_write(0xf4, Width::B, 1, 0);
        assert_eq!(io.0.borrow().debug_exit.borrow_mut().take_request(), None);
        io.port_write(0x502, Width::B, 3, 0);
        assert_eq!(
            io.0.borrow().debug_exit.borrow_mut().take_request(),
            Some(3)
        );
        // Overlapping COM1 is a configuration error, not a panic.
        let r = Pc::new(
            vec![],
            DebugExitConfig {
                iobase: 0x3f8,
                iosize: 4,
            },
        );
        assert!(r.is_ok(), "no UART configured: nothing to overlap");
        let r = Pc::new(
            vec![Box::new(NullOutput)],
            DebugExitConfig {
                iobase: 0x3fc,
                iosize: 4,
            },
        );
        assert!(matches!(r, Err(Error::Usage(_))));
        let r = Pc::new(
            vec![],
            DebugExitConfig {
                iobase: 0x10,
                iosize: 0,
            },
        );
        assert!(r.is_err());
    }

    #[test]
    fn pc_reset_restores_power_on_device_state() {
        let (p, _) = pc(DebugExitConfig::default());
        let mut io = PcIo(Rc::new(RefCell::new(p)));
        io.port_write(0x3fb, Width::B, 0x83, 0);
        io.port_write(0xe0, Width::B, 9, 0);
        io.0.borrow_mut().reset();
        assert_eq!(io.port_read(0x3fb, Width::B, 0), 0);
        assert_eq!(io.port_read(0xe0, Width::B, 0), 0);
    }
}
