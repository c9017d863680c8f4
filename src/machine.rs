//! The machine and its run loop.
//!
//! The machine is the CPU engine plus the PC's devices ([`crate::pc`]),
//! bridged by [`PcIo`]. The run loop hands the engine slices of [`SLICE`]
//! instructions and, after every exit, looks at what the guest asked for:
//! a debug-exit write ends the run with its status; HLT with interrupts off
//! (nothing can wake the CPU) is a power-off; HLT with interrupts on also
//! ends the run for now, since no device raises interrupts yet; a triple
//! fault or a reset through the keyboard controller (0xfe to port 0x64) is
//! returned to the caller, which resets or stops (`-no-reboot`).

use crate::cli::Accel;
use crate::pc::{ram_split, DebugExitConfig, Pc, PcConfig, PcIo};
use crate::status::{Error, Outcome};
use cjemu_devices::rtc_cmos::RtcConfig;
use cjemu_devices::uart16550::SerialOutput;
use cjemu_jit::memory::GuestMemory;
use cjemu_jit::state::CpuState;
use cjemu_jit::{Engine, Exit, Gpr};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Instructions per `Engine::run` call. The run loop regains control this
/// often (later: to look at timers and interrupts).
pub const SLICE: u64 = 1_000_000;

/// The emulated machine.
pub struct Machine {
    /// The CPU engine (CPU state, RAM, block cache).
    pub engine: Engine,
    /// The devices, shared with the engine's I/O bridge.
    pub pc: Rc<RefCell<Pc>>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock time spent in the engine.
    pub run_time: Duration,
}

/// The engine's tier for the command line's `--accel`.
pub fn engine_tier(accel: Accel) -> cjemu_jit::Accel {
    match accel {
        Accel::Interp => cjemu_jit::Accel::Interp,
        Accel::Jit { threshold } => cjemu_jit::Accel::Jit {
            threshold: threshold.unwrap_or(cjemu_jit::engine::DEFAULT_JIT_THRESHOLD),
        },
    }
}

impl Machine {
    /// A machine with `ram_size` bytes of RAM, the given CPU engine, no
    /// serial port, the default debug-exit port and the RTC at the epoch.
    pub fn new(ram_size: u64, accel: Accel) -> Result<Machine, Error> {
        Machine::with_devices(ram_size, accel, Vec::new(), DebugExitConfig::default(), 0)
    }

    /// A machine with one UART per serial sink (COM1, COM2, …) and the RTC
    /// showing `rtc_start_secs` (seconds since 1970-01-01 UTC) at virtual
    /// time 0. The CMOS memory sizes follow `ram_size`.
    pub fn with_devices(
        ram_size: u64,
        accel: Accel,
        serial: Vec<Box<dyn SerialOutput>>,
        debug_exit: DebugExitConfig,
        rtc_start_secs: i64,
    ) -> Result<Machine, Error> {
        let (ram_below_4g, ram_above_4g) = ram_split(ram_size);
        let cfg = PcConfig {
            debug_exit,
            rtc: RtcConfig {
                start_secs: rtc_start_secs,
                ram_below_4g,
                ram_above_4g,
            },
        };
        let pc = Rc::new(RefCell::new(Pc::new(serial, &cfg)?));
        let mut mem = GuestMemory::new(ram_size).map_err(|e| Error::Usage(format!("-m: {e}")))?;
        pc.borrow().map_mmio(&mut mem)?;
        let mut engine = Engine::with_memory(mem, Box::new(PcIo(pc.clone())));
        engine.config.accel = engine_tier(accel);
        Ok(Machine { engine, pc })
    }

    /// Reset: the CPU to its power-on state (the instruction count goes on)
    /// and every device to its reset state. RAM keeps its contents, as on a
    /// PC; the caller reloads the guest.
    pub fn reset(&mut self) {
        let icount = self.engine.cpu().icount;
        *self.engine.cpu_mut() = CpuState::power_on();
        self.engine.cpu_mut().icount = icount;
        self.engine.flush_tlb();
        self.pc.borrow_mut().reset();
    }

    /// What a device asked for after the last exit, if anything.
    fn device_request(&mut self) -> Option<Outcome> {
        let pc = self.pc.borrow();
        if let Some(v) = pc.debug_exit.borrow_mut().take_request() {
            return Some(Outcome::DebugExit(v));
        }
        // The i8042 pulsed the CPU's reset line.
        let reset = pc.i8042.borrow_mut().take_reset_request();
        reset.then_some(Outcome::GuestReset)
    }

    /// Run until the guest powers off, exits through the debug port,
    /// triple-faults or asks for a reset.
    pub fn run(&mut self) -> Result<RunReport, Error> {
        let start = Instant::now();
        let outcome = loop {
            let exit = self.engine.run(SLICE);
            log_cpu(&self.engine, &exit);
            match exit {
                Exit::Device => match self.device_request() {
                    Some(o) => break o,
                    None => continue,
                },
                Exit::BudgetExhausted => {
                    // Let a prompt without a newline reach the terminal.
                    self.pc.borrow().flush();
                    continue;
                }
                Exit::Halted if self.engine.cpu().rflags & RFLAGS_IF == 0 => {
                    // Nothing can wake the CPU: the machine is off.
                    break Outcome::PoweredOff;
                }
                Exit::Halted => {
                    // No device raises interrupts yet, so this HLT would
                    // wait forever.
                    break Outcome::HaltedWithInterruptsOn;
                }
                Exit::TripleFault { first, rip } => break Outcome::TripleFault { first, rip },
                Exit::InterruptWindow => {
                    return Err(Error::Internal(
                        "the engine offered an interrupt window although INTR is never asserted"
                            .into(),
                    ))
                }
                Exit::Exception(ex) => {
                    return Err(Error::Internal(format!(
                        "the engine returned exception {ex:?} although exceptions_exit is off"
                    )))
                }
            }
        };
        self.pc.borrow().flush();
        Ok(RunReport {
            outcome,
            run_time: start.elapsed(),
        })
    }
}

/// `-d cpu`: registers after each slice.
fn log_cpu(e: &Engine, exit: &Exit) {
    if log::log_enabled!(log::Level::Trace) {
        let c = e.cpu();
        let regs: Vec<String> = Gpr::ALL
            .iter()
            .map(|&r| format!("{}={:#x}", r.name(), c.reg(r)))
            .collect();
        log::trace!(
            "{exit:?} icount={} rip={:#x} rflags={:#x} {}",
            c.icount,
            c.rip,
            c.rflags(),
            regs.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::load_flat;

    #[test]
    fn a_long_loop_runs_over_several_slices_and_halts() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        // mov ecx, 1_500_000; l: dec rcx; jnz l; hlt  -> 1 + 2 * 1.5M + 1
        let mut code = vec![0xb9];
        code.extend_from_slice(&1_500_000u32.to_le_bytes());
        code.extend_from_slice(&[0x48, 0xff, 0xc9, 0x75, 0xfb, 0xf4]);
        load_flat(&mut m.engine, &code, 0x1000, 0x1000).unwrap();
        let r = m.run().unwrap();
        assert_eq!(r.outcome, Outcome::PoweredOff);
        assert_eq!(m.engine.cpu().icount, 2 + 2 * 1_500_000);
        assert!(m.engine.cpu().icount > SLICE, "the test must span slices");
    }

    #[test]
    fn debug_exit_ends_the_run_with_the_value_written() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        // mov al, 0x21; out 0xf4, al; hlt
        load_flat(
            &mut m.engine,
            &[0xb0, 0x21, 0xe6, 0xf4, 0xf4],
            0x1000,
            0x1000,
        )
        .unwrap();
        let r = m.run().unwrap();
        assert_eq!(r.outcome, Outcome::DebugExit(0x21));
        assert_eq!(r.outcome.status(), 0x43);
        assert_eq!(m.engine.cpu().icount, 2, "the HLT after it never ran");
    }

    #[test]
    fn hlt_with_interrupts_on_is_reported_apart_from_power_off() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        // sti; hlt
        load_flat(&mut m.engine, &[0xfb, 0xf4], 0x1000, 0x1000).unwrap();
        let r = m.run().unwrap();
        assert_eq!(r.outcome, Outcome::HaltedWithInterruptsOn);
        assert_eq!(r.outcome.status(), 0);
    }

    #[test]
    fn serial_bytes_reach_the_sink_and_reset_restores_devices() {
        use cjemu_devices::uart16550::VecOutput;
        let out = VecOutput::default();
        let mut m = Machine::with_devices(
            1 << 20,
            Accel::Interp,
            vec![Box::new(out.clone())],
            DebugExitConfig::default(),
            0,
        )
        .unwrap();
        // mov dx, 0x3f8; mov al, 'k'; out dx, al; mov dx, 0x3fb; mov al, 3;
        // out dx, al; hlt
        let code = [
            0x66, 0xba, 0xf8, 0x03, 0xb0, b'k', 0xee, 0x66, 0xba, 0xfb, 0x03, 0xb0, 0x03, 0xee,
            0xf4,
        ];
        load_flat(&mut m.engine, &code, 0x1000, 0x1000).unwrap();
        assert_eq!(m.run().unwrap().outcome, Outcome::PoweredOff);
        assert_eq!(out.0.borrow().as_slice(), b"k");
        let lcr = m.pc.borrow().uarts[0].borrow_mut().read_reg(3, 0);
        assert_eq!(lcr, 3);
        let icount = m.engine.cpu().icount;
        m.reset();
        assert_eq!(m.pc.borrow().uarts[0].borrow_mut().read_reg(3, 0), 0);
        assert_eq!(m.engine.cpu().rip, 0xfff0, "power-on CPU");
        assert_eq!(m.engine.cpu().icount, icount, "the clock goes on");
    }

    #[test]
    fn triple_fault_ends_the_run() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        load_flat(&mut m.engine, &[0x0f, 0x0b], 0x1000, 0x1000).unwrap();
        match m.run().unwrap().outcome {
            Outcome::TripleFault { first, rip } => {
                assert_eq!(first, cjemu_jit::Exception::ud());
                assert_eq!(rip, 0x1000);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn i8042_reset_command_ends_the_run_as_a_guest_reset() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        // mov al, 0xfe; out 0x64, al; hlt
        load_flat(
            &mut m.engine,
            &[0xb0, 0xfe, 0xe6, 0x64, 0xf4],
            0x1000,
            0x1000,
        )
        .unwrap();
        let r = m.run().unwrap();
        assert_eq!(r.outcome, Outcome::GuestReset);
        assert_eq!(r.outcome.status(), 0);
        assert_eq!(m.engine.cpu().icount, 2, "the reset stops at the OUT");
        assert!(!m.pc.borrow().i8042.borrow().reset_requested(), "taken");
    }

    #[test]
    fn the_guest_reads_the_rtc_start_date_and_cmos_ram_size() {
        let start = crate::cli::parse_datetime("2031-07-04T10:20:30").unwrap();
        let mut m = Machine::with_devices(
            64 << 20,
            Accel::Interp,
            Vec::new(),
            DebugExitConfig::default(),
            start,
        )
        .unwrap();
        // mov al, 8; out 0x70, al; in al, 0x71; mov bl, al;
        // mov al, 0x35; out 0x70, al; in al, 0x71; mov bh, al;
        // mov al, bl; out 0xf4, al
        let code = [
            0xb0, 0x08, 0xe6, 0x70, 0xe4, 0x71, 0x88, 0xc3, 0xb0, 0x35, 0xe6, 0x70, 0xe4, 0x71,
            0x88, 0xc7, 0x88, 0xd8, 0xe6, 0xf4,
        ];
        load_flat(&mut m.engine, &code, 0x1000, 0x1000).unwrap();
        let r = m.run().unwrap();
        assert_eq!(r.outcome, Outcome::DebugExit(0x07), "July in BCD");
        // (64 - 16) MiB in 64 KiB units = 0x300: high byte 3.
        assert_eq!((m.engine.cpu().reg(Gpr::Rbx) >> 8) & 0xff, 0x03);
    }
}
