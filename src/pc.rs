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
//! | 8259A PIC master / slave | ports 0x20, 0xa0 | 2 each |
//! | ELCR (edge/level control) | port 0x4d0 | 2 |
//! | i8042 keyboard controller | ports 0x60 (data), 0x64 (status/command) | 1 each |
//! | MC146818 RTC / CMOS | port 0x70 (index), 0x71 (data) | 2 |
//! | 8254 PIT | ports 0x40–0x43 | 4 |
//! | system control port B | port 0x61 | 1 |
//! | I/O-delay sinks | ports 0x80, 0xed | 1 each |
//!
//! A UART is present for every `-serial` given (COM1 on stdout without one).
//!
//! Interrupt lines (ISA IRQs on the PIC pair):
//!
//! | IRQ | source |
//! |---|---|
//! | 0 | PIT channel 0 OUT |
//! | 1 | i8042 keyboard output buffer full |
//! | 3 | COM2 (and COM4) |
//! | 4 | COM1 (and COM3) |
//! | 8 | RTC (register C IRQF) |
//! | 12 | i8042 auxiliary (mouse) output buffer full |
//!
//! Port 0x61 drives PIT channel 2's gate (bit 0) and reads its OUT (bit 5).
//! The i8042's A20 output is not wired (A20 is always on).
//!
//! Time: [`Pc::clock`] is the machine's virtual clock and [`Pc::timers`] its
//! timers (ids in [`timer`]). [`PcIo`] publishes `clock.ns_at(icount)` in
//! [`Pc::now`] before each device access, so every device sees the exact
//! virtual time of the accessing instruction; [`Pc::service`]
//! (`pc_wiring.rs`) runs expired timers and samples the interrupt lines
//! after every engine exit.

use crate::cli::SerialTarget;
use crate::status::Error;
use cjemu_devices::bus::BusDevice;
use cjemu_devices::bus::{Bus, BusError, SharedDevice};
use cjemu_devices::debug_exit::DebugExit;
use cjemu_devices::i8042::{I8042, OFS_DATA as KBD_OFS_DATA, OFS_STATUS as KBD_OFS_STATUS};
use cjemu_devices::io_delay::IoDelay;
use cjemu_devices::pic8259::{Pic8259, Pic8259Window, OFS_ELCR, OFS_MASTER, OFS_SLAVE};
use cjemu_devices::pit8254::{Pit8254, PORT_SIZE as PIT_SIZE};
use cjemu_devices::port61::{Port61, Port61Link};
use cjemu_devices::rtc_cmos::{RtcCmos, RtcConfig, RTC_SIZE};
use cjemu_devices::testdev::{TestdevIoram, TestdevPort, IORAM_SIZE, PORT_SIZE};
use cjemu_devices::timed::TimedWindow;
use cjemu_devices::uart16550::{NullOutput, SerialOutput, Uart16550, UART_SIZE};
use cjemu_jit::emit::Width;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, IoBus};
use cjemu_replay::clock::{VirtualClock, VirtualNow, VirtualNs};
use cjemu_replay::timers::Timers;
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
/// 8259A master (command, data).
pub const PIC_MASTER_BASE: u16 = 0x20;
/// 8259A slave (command, data).
pub const PIC_SLAVE_BASE: u16 = 0xa0;
/// The two ELCRs (master, slave).
pub const ELCR_BASE: u16 = 0x4d0;
/// i8042 data port.
pub const KBD_DATA_PORT: u16 = 0x60;
/// i8042 status (read) / command (write) port.
pub const KBD_STATUS_PORT: u16 = 0x64;
/// System control port B.
pub const PORT61: u16 = 0x61;
/// MC146818 index port (the data port follows).
pub const RTC_BASE: u16 = 0x70;
/// I/O-delay write sinks (POST code port, Linux's alternative delay port).
pub const IO_DELAY_PORTS: [u16; 2] = [0x80, 0xed];
/// 8254 PIT counters 0–2 and control word.
pub const PIT_BASE: u16 = 0x40;

/// ISA interrupt lines (PIC inputs).
pub mod irq {
    /// PIT channel 0.
    pub const PIT: u8 = 0;
    /// i8042 keyboard.
    pub const KBD: u8 = 1;
    /// COM1..COM4 in order (COM3 shares IRQ4, COM4 IRQ3, as on the PC).
    pub const COM: [u8; 4] = [4, 3, 4, 3];
    /// RTC.
    pub const RTC: u8 = 8;
    /// i8042 auxiliary device.
    pub const MOUSE: u8 = 12;
}

/// The machine's timers: one id per device event source.
pub mod timer {
    use cjemu_replay::timers::TimerId;
    /// PIT channel 0's next OUT change (IRQ0).
    pub const PIT0: TimerId = TimerId(0);
    /// The RTC's next periodic / update / alarm event.
    pub const RTC: TimerId = TimerId(1);
    /// COM1..COM4's next timed event (receive character timeout).
    pub fn com(i: usize) -> TimerId {
        TimerId(2 + i as u32)
    }
}

/// Where RAM goes around the PCI hole, as on QEMU's `pc` machine: all of
/// it below 4 GiB up to 3.5 GiB; from 3.5 GiB on, 3 GiB below and the
/// rest above 4 GiB. Returns (below 4 GiB, above 4 GiB) in bytes; the
/// CMOS memory-size bytes report these.
pub fn ram_split(ram_size: u64) -> (u64, u64) {
    const LOWMEM_MAX: u64 = 0xe000_0000;
    const GIGABYTE_ALIGNED: u64 = 0xc000_0000;
    if ram_size >= LOWMEM_MAX {
        (GIGABYTE_ALIGNED, ram_size - GIGABYTE_ALIGNED)
    } else {
        (ram_size, 0)
    }
}

/// A device seen through a window that starts `offset` bytes into it: the
/// i8042's two ports are 4 apart with port 0x61 between them, so each gets
/// its own one-byte window.
struct OffsetWindow {
    dev: SharedDevice,
    offset: u64,
}

impl BusDevice for OffsetWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.dev.borrow_mut().read(self.offset + offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.dev.borrow_mut().write(self.offset + offset, data);
    }
}

/// Port 0x61's wires to PIT channel 2.
struct PitChannel2(Rc<RefCell<Pit8254>>);

impl Port61Link for PitChannel2 {
    fn ch2_out(&mut self, now_ns: u64) -> bool {
        self.0.borrow().out(2, VirtualNs(now_ns))
    }
    fn set_ch2_gate(&mut self, now_ns: u64, gate: bool) {
        self.0.borrow_mut().set_gate(2, gate, VirtualNs(now_ns));
    }
}

/// What the PC's devices are built from, besides the serial sinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcConfig {
    /// Where the debug-exit device goes.
    pub debug_exit: DebugExitConfig,
    /// RTC start time and the CMOS memory sizes.
    pub rtc: RtcConfig,
}

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
    /// The 8259A pair (and ELCRs).
    pub pic: Rc<RefCell<Pic8259>>,
    /// The keyboard controller.
    pub i8042: Rc<RefCell<I8042>>,
    /// The RTC and CMOS memory.
    pub rtc: Rc<RefCell<RtcCmos>>,
    /// Port 0x61.
    pub port61: Rc<RefCell<Port61>>,
    /// The 8254 PIT.
    pub pit: Rc<RefCell<Pit8254>>,
    /// The virtual time of the current device access or timer event,
    /// published by [`PcIo`] and [`Pc::service`].
    pub now: VirtualNow,
    /// The virtual clock (`ns = bias + (icount << shift)`).
    pub clock: VirtualClock,
    /// The devices' timers on that clock.
    pub timers: Timers,
}

fn layout_error(what: &str, e: BusError) -> Error {
    Error::Usage(format!("{what}: {e}"))
}

impl Pc {
    /// Build the PC with one UART per serial sink.
    pub fn new(
        serial: Vec<Box<dyn SerialOutput>>,
        cfg: &PcConfig,
        clock: VirtualClock,
    ) -> Result<Pc, Error> {
        let dx = cfg.debug_exit;
        let mut pio = Bus::pio();
        let mut mmio = Bus::mmio();
        let now = VirtualNow::new();
        let mut uarts = Vec::new();
        for (out, base) in serial.into_iter().zip(COM_BASES) {
            let u = Rc::new(RefCell::new(Uart16550::new(out)));
            let w = TimedWindow::new(u.clone(), now.clone());
            pio.insert(base as u64, UART_SIZE, Rc::new(RefCell::new(w)))
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
        let legacy = Legacy::insert(&mut pio, &cfg.rtc, now.clone())?;
        let mut pc = Pc {
            pio,
            mmio,
            uarts,
            debug_exit,
            ioram,
            testdev_port,
            pic: legacy.pic,
            i8042: legacy.i8042,
            rtc: legacy.rtc,
            port61: legacy.port61,
            pit: legacy.pit,
            now,
            clock,
            timers: Timers::new(),
        };
        pc.settle_lines();
        Ok(pc)
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
        self.pic.borrow_mut().reset();
        *self.i8042.borrow_mut() = I8042::new();
        self.pit.borrow_mut().reset();
        let link = PitChannel2(self.pit.clone());
        *self.port61.borrow_mut() = Port61::new(Box::new(link));
        // The RTC is battery-backed: its time and CMOS memory survive. The
        // clock goes on; timers of reset devices are re-armed (or not) by
        // the next `service`.
        for i in 0..self.uarts.len() {
            self.timers.cancel(timer::com(i));
        }
        self.timers.cancel(timer::PIT0);
        self.settle_lines();
    }

    /// Port 0x61's wires to PIT channel 2 (to build port 0x61 anew).
    pub(crate) fn port61_link(&self) -> Box<dyn Port61Link> {
        Box::new(PitChannel2(self.pit.clone()))
    }

    /// Push buffered serial output out.
    pub fn flush(&self) {
        for u in &self.uarts {
            u.borrow_mut().flush();
        }
    }
}

/// The chipset devices every PC has, fixed at QEMU's ports.
struct Legacy {
    pic: Rc<RefCell<Pic8259>>,
    pit: Rc<RefCell<Pit8254>>,
    i8042: Rc<RefCell<I8042>>,
    rtc: Rc<RefCell<RtcCmos>>,
    port61: Rc<RefCell<Port61>>,
}

impl Legacy {
    fn insert(pio: &mut Bus, rtc_cfg: &RtcConfig, now: VirtualNow) -> Result<Legacy, Error> {
        let err = |e| layout_error("chipset devices", e);
        let pic = Rc::new(RefCell::new(Pic8259::new()));
        for (port, ofs) in [
            (PIC_MASTER_BASE, OFS_MASTER),
            (PIC_SLAVE_BASE, OFS_SLAVE),
            (ELCR_BASE, OFS_ELCR),
        ] {
            let w = Pic8259Window::new(pic.clone(), ofs, 2);
            pio.insert(port as u64, 2, Rc::new(RefCell::new(w)))
                .map_err(err)?;
        }
        let i8042 = Rc::new(RefCell::new(I8042::new()));
        for (port, ofs) in [
            (KBD_DATA_PORT, KBD_OFS_DATA),
            (KBD_STATUS_PORT, KBD_OFS_STATUS),
        ] {
            let w = OffsetWindow {
                dev: i8042.clone() as SharedDevice,
                offset: ofs,
            };
            pio.insert(port as u64, 1, Rc::new(RefCell::new(w)))
                .map_err(err)?;
        }
        let rtc = Rc::new(RefCell::new(RtcCmos::new(rtc_cfg)));
        let w = TimedWindow::new(rtc.clone(), now.clone());
        pio.insert(RTC_BASE as u64, RTC_SIZE, Rc::new(RefCell::new(w)))
            .map_err(err)?;
        let pit = Rc::new(RefCell::new(Pit8254::new(now.clone())));
        pio.insert(PIT_BASE as u64, PIT_SIZE, pit.clone() as SharedDevice)
            .map_err(err)?;
        let link = PitChannel2(pit.clone());
        let port61 = Rc::new(RefCell::new(Port61::new(Box::new(link))));
        let w = TimedWindow::new(port61.clone(), now);
        pio.insert(PORT61 as u64, 1, Rc::new(RefCell::new(w)))
            .map_err(err)?;
        for port in IO_DELAY_PORTS {
            pio.insert(port as u64, 1, Rc::new(RefCell::new(IoDelay::new())))
                .map_err(err)?;
        }
        Ok(Legacy {
            pic,
            pit,
            i8042,
            rtc,
            port61,
        })
    }
}

/// The engine's [`IoBus`], routing to the PC's buses.
pub struct PcIo(pub Rc<RefCell<Pc>>);

impl IoBus for PcIo {
    fn port_read(&mut self, port: u16, w: Width, icount: u64) -> u32 {
        let mut b = [0u8; 4];
        let n = w.bytes() as usize;
        let mut pc = self.0.borrow_mut();
        pc.publish_time(icount);
        pc.pio.read(port as u64, &mut b[..n]);
        u32::from_le_bytes(b)
    }

    fn port_write(&mut self, port: u16, w: Width, value: u32, icount: u64) {
        let n = w.bytes() as usize;
        let mut pc = self.0.borrow_mut();
        pc.publish_time(icount);
        pc.pio.write(port as u64, &value.to_le_bytes()[..n]);
    }

    fn mmio_read(&mut self, addr: GuestPhysAddr, w: Width, icount: u64) -> u64 {
        let mut b = [0u8; 8];
        let n = w.bytes() as usize;
        let mut pc = self.0.borrow_mut();
        pc.publish_time(icount);
        pc.mmio.read(addr.0, &mut b[..n]);
        u64::from_le_bytes(b)
    }

    fn mmio_write(&mut self, addr: GuestPhysAddr, w: Width, value: u64, icount: u64) {
        let n = w.bytes() as usize;
        let mut pc = self.0.borrow_mut();
        pc.publish_time(icount);
        pc.mmio.write(addr.0, &value.to_le_bytes()[..n]);
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
    use cjemu_replay::clock::ShiftMode;

    /// The tests' clock: 1 ns per instruction.
    const NS_PER_INSN: u64 = 1;

    fn clock() -> VirtualClock {
        VirtualClock::new(ShiftMode::Fixed(0)).unwrap()
    }

    fn cfg(debug_exit: DebugExitConfig) -> PcConfig {
        PcConfig {
            debug_exit,
            ..PcConfig::default()
        }
    }

    fn pc(dx: DebugExitConfig) -> (Pc, VecOutput) {
        let out = VecOutput::default();
        (
            Pc::new(vec![Box::new(out.clone())], &cfg(dx), clock()).unwrap(),
            out,
        )
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
            &cfg(DebugExitConfig {
                iobase: 0x3f8,
                iosize: 4,
            }),
            clock(),
        );
        assert!(r.is_ok(), "no UART configured: nothing to overlap");
        let r = Pc::new(
            vec![Box::new(NullOutput)],
            &cfg(DebugExitConfig {
                iobase: 0x3fc,
                iosize: 4,
            }),
            clock(),
        );
        assert!(matches!(r, Err(Error::Usage(_))));
        let r = Pc::new(
            vec![],
            &cfg(DebugExitConfig {
                iobase: 0x10,
                iosize: 0,
            }),
            clock(),
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

    fn chipset_io(rtc: RtcConfig) -> PcIo {
        let c = PcConfig {
            rtc,
            ..PcConfig::default()
        };
        PcIo(Rc::new(RefCell::new(Pc::new(vec![], &c, clock()).unwrap())))
    }

    fn outb(io: &mut PcIo, port: u16, v: u8) {
        io.port_write(port, Width::B, v as u32, 0);
    }

    fn inb(io: &mut PcIo, port: u16) -> u8 {
        io.port_read(port, Width::B, 0) as u8
    }

    #[test]
    fn pc_pic_init_sequence_and_irr_isr_read_back_through_the_bus() {
        let mut io = chipset_io(RtcConfig::default());
        // ICW1 (edge, cascade, ICW4), ICW2 vector base, ICW3, ICW4 8086.
        for (base, vector, icw3) in [(0x20, 0x20, 0x04), (0xa0, 0x28, 0x02)] {
            outb(&mut io, base, 0x11);
            outb(&mut io, base + 1, vector);
            outb(&mut io, base + 1, icw3);
            outb(&mut io, base + 1, 0x01);
        }
        outb(&mut io, 0x21, 0xb8);
        outb(&mut io, 0xa1, 0x5a);
        assert_eq!((inb(&mut io, 0x21), inb(&mut io, 0xa1)), (0xb8, 0x5a));
        {
            let pc = io.0.borrow();
            let st = pc.pic.borrow().state();
            assert_eq!((st.master.vector_base, st.slave.vector_base), (0x20, 0x28));
        }
        // No device drives a line yet: raise IRQ1 (unmasked) and IRQ3
        // (masked: still requested) by hand, as the wiring will.
        io.0.borrow().pic.borrow_mut().set_irq(1, true);
        io.0.borrow().pic.borrow_mut().set_irq(3, true);
        outb(&mut io, 0x20, 0x0a); // OCW3: read IRR
        assert_eq!(inb(&mut io, 0x20), 0x0a);
        assert_eq!(inb(&mut io, 0xa0), 0, "slave IRR");
        let v = io.0.borrow().pic.borrow_mut().acknowledge();
        assert_eq!(v, 0x21, "IRQ1 at vector base + 1");
        outb(&mut io, 0x20, 0x0b); // OCW3: read ISR
        assert_eq!(inb(&mut io, 0x20), 0x02);
        outb(&mut io, 0x20, 0x20); // non-specific EOI
        assert_eq!(inb(&mut io, 0x20), 0);
        // ELCR: IRQ0-2 and 8, 13 are edge-only.
        outb(&mut io, 0x4d0, 0xff);
        outb(&mut io, 0x4d1, 0xff);
        assert_eq!((inb(&mut io, 0x4d0), inb(&mut io, 0x4d1)), (0xf8, 0xde));
    }

    #[test]
    fn pc_i8042_self_test_and_reset_request_through_the_bus() {
        let mut io = chipset_io(RtcConfig::default());
        outb(&mut io, 0x64, 0xaa);
        assert_eq!(inb(&mut io, 0x64) & 0x01, 0x01, "output buffer full");
        assert_eq!(inb(&mut io, 0x60), 0x55);
        assert_eq!(inb(&mut io, 0x64) & 0x01, 0);
        // 0x61 sits between the i8042's ports and is port B, not the i8042.
        outb(&mut io, 0x61, 0x03);
        assert_eq!(inb(&mut io, 0x61) & 0x0f, 0x03);
        assert_eq!(io.0.borrow().i8042.borrow().state().out.len(), 0);
        outb(&mut io, 0x64, 0xfe);
        assert!(io.0.borrow().i8042.borrow_mut().take_reset_request());
    }

    #[test]
    fn pc_rtc_reads_the_rtc_base_date_in_bcd() {
        let start = crate::cli::parse_datetime("2020-02-29T23:59:58").unwrap();
        let (below, above) = ram_split(128 << 20);
        let mut io = chipset_io(RtcConfig {
            start_secs: start,
            ram_below_4g: below,
            ram_above_4g: above,
        });
        let rd = |io: &mut PcIo, reg: u8, icount: u64| {
            io.port_write(0x70, Width::B, reg as u32, icount);
            io.port_read(0x71, Width::B, icount) as u8
        };
        let date: Vec<u8> = [0x32, 0x09, 0x08, 0x07, 0x06, 0x04, 0x02, 0x00]
            .iter()
            .map(|&r| rd(&mut io, r, 0))
            .collect();
        // Saturday (7) 2020-02-29 23:59:58, BCD, 24-hour.
        assert_eq!(date, [0x20, 0x20, 0x02, 0x29, 0x07, 0x23, 0x59, 0x58]);
        // Two seconds of instructions later (1 ns each) it is March 1st.
        let later = 2_000_000_000 / NS_PER_INSN;
        assert_eq!(rd(&mut io, 0x08, later), 0x03);
        assert_eq!(rd(&mut io, 0x07, later), 0x01);
        assert_eq!(rd(&mut io, 0x06, later), 0x01, "Sunday");
        // CMOS memory sizes from -m 128M.
        assert_eq!((rd(&mut io, 0x17, 0), rd(&mut io, 0x18, 0)), (0xff, 0xff));
        assert_eq!((rd(&mut io, 0x34, 0), rd(&mut io, 0x35, 0)), (0x00, 0x07));
    }

    #[test]
    fn pc_port61_refresh_follows_the_instruction_count_and_io_delay_sinks() {
        let mut io = chipset_io(RtcConfig::default());
        let refresh = |io: &mut PcIo, icount: u64| io.port_read(0x61, Width::B, icount) & 0x10;
        assert_eq!(refresh(&mut io, 0), 0);
        let toggle = cjemu_devices::port61::REFRESH_TOGGLE_NS / NS_PER_INSN;
        assert_eq!(refresh(&mut io, toggle), 0x10);
        assert_eq!(refresh(&mut io, 2 * toggle), 0);
        outb(&mut io, 0x80, 0x12);
        outb(&mut io, 0xed, 0x34);
        let st = io.0.borrow().pio.stats;
        assert_eq!((st.unassigned_reads, st.unassigned_writes), (0, 0));
    }

    #[test]
    fn pc_reset_keeps_the_rtc_and_resets_pic_and_i8042() {
        let mut io = chipset_io(RtcConfig::default());
        outb(&mut io, 0x70, 0x40);
        outb(&mut io, 0x71, 0x5a);
        outb(&mut io, 0x21, 0x12);
        outb(&mut io, 0x64, 0xaa);
        io.0.borrow_mut().reset();
        assert_eq!(inb(&mut io, 0x21), 0, "PIC back to power-on");
        assert_eq!(inb(&mut io, 0x64) & 0x01, 0, "i8042 queue emptied");
        outb(&mut io, 0x70, 0x40);
        assert_eq!(inb(&mut io, 0x71), 0x5a, "CMOS is battery-backed");
    }

    #[test]
    fn pc_ram_split_follows_qemu_pc() {
        assert_eq!(ram_split(128 << 20), (128 << 20, 0));
        assert_eq!(ram_split(0xdfff_f000), (0xdfff_f000, 0));
        assert_eq!(ram_split(0xe000_0000), (0xc000_0000, 0x2000_0000));
        assert_eq!(ram_split(8 << 30), (0xc000_0000, (8 << 30) - 0xc000_0000));
    }

    #[test]
    fn pc_debug_exit_cannot_overlap_the_chipset() {
        let c = cfg(DebugExitConfig {
            iobase: 0x70,
            iosize: 1,
        });
        assert!(matches!(Pc::new(vec![], &c, clock()), Err(Error::Usage(_))));
    }
}
