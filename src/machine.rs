//! The machine and its run loop.
//!
//! Today the machine is the CPU engine with RAM and no devices; the PC
//! layout, buses and timers come later. The run loop hands the engine slices
//! of [`SLICE`] instructions until the guest halts or shuts down.

use crate::cli::Accel;
use crate::status::{Error, Outcome};
use cjemu_jit::{Engine, Exit, Gpr};
use std::time::{Duration, Instant};

/// Instructions per `Engine::run` call. The run loop regains control this
/// often (later: to look at timers and interrupts).
pub const SLICE: u64 = 1_000_000;

/// The emulated machine.
pub struct Machine {
    /// The CPU engine (CPU state, RAM, block cache).
    pub engine: Engine,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock time spent in the engine.
    pub run_time: Duration,
}

impl Machine {
    /// A machine with `ram_size` bytes of RAM and the given CPU engine.
    pub fn new(ram_size: u64, accel: Accel) -> Result<Machine, Error> {
        if accel != Accel::Interp {
            // The CLI reports the JIT as not implemented before we get here.
            return Err(Error::not_implemented("--accel jit"));
        }
        let engine = Engine::new(ram_size).map_err(|e| Error::Usage(format!("-m: {e}")))?;
        Ok(Machine { engine })
    }

    /// Run until the guest halts or shuts down.
    pub fn run(&mut self) -> Result<RunReport, Error> {
        let start = Instant::now();
        let outcome = loop {
            let exit = self.engine.run(SLICE);
            log_cpu(&self.engine, &exit);
            match exit {
                Exit::BudgetExhausted | Exit::Device => continue,
                Exit::Halted => {
                    // No device can raise an interrupt yet, so nothing would
                    // ever wake the CPU: HLT powers the machine off.
                    break Outcome::PoweredOff;
                }
                Exit::TripleFault { first, rip } => break Outcome::TripleFault { first, rip },
                Exit::Exception(ex) => {
                    return Err(Error::Internal(format!(
                        "the engine returned exception {ex:?} although exceptions_exit is off"
                    )))
                }
            }
        };
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
}
