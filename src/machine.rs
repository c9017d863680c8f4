//! The machine and its run loop.
//!
//! The machine is the CPU engine plus the PC's devices ([`crate::pc`]),
//! bridged by [`PcIo`], on one virtual clock. The run loop:
//!
//! 1. hands serial input to the UART and services the devices
//!    ([`Pc::service`]: due timers, interrupt lines), then asserts the
//!    CPU's INTR input if the PIC asks for it;
//! 2. runs the engine for a budget that ends exactly at the next timer
//!    deadline (at most [`SLICE`] instructions);
//! 3. looks at why the engine stopped: a device access (debug exit, reset
//!    request), an interrupt window (acknowledge the PIC, deliver the
//!    vector), HLT (idle until a timer or input wakes the CPU; with IF=0
//!    nothing can, so that is a power-off), a triple fault.
//!
//! All of that happens at instruction counts that depend only on the guest
//! and its inputs, so every run, under either engine, takes the same
//! interrupts at the same counts. Host time enters only through
//! [`Pacing`] (`sleep=on`, `align=on`, `shift=auto`), as clock moves.

use crate::cli::Accel;
use crate::pacing::{IdleWait, Pacing, PacingMode};
use crate::pc::{ram_split, DebugExitConfig, Pc, PcConfig, PcIo};
use crate::record_replay::{checkpoint_parts, Journal};
use crate::serial_input::SerialInput;
use crate::snapshot::SnapshotPlan;
use crate::status::{Error, Outcome};
use cjemu_devices::rtc_cmos::RtcConfig;
use cjemu_devices::uart16550::SerialOutput;
use cjemu_jit::memory::GuestMemory;
use cjemu_jit::{Engine, Exit, Gpr};
use cjemu_replay::clock::{AdjustCause, ClockAdjust, ShiftMode, VirtualClock};
use cjemu_replay::replay_log::{Event, StopReason};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The longest `Engine::run` call: the run loop regains control at least
/// this often (to flush serial output, poll input, pace the clock).
pub const SLICE: u64 = 1_000_000;

/// How a machine is built.
pub struct MachineConfig {
    /// RAM size in bytes.
    pub ram_size: u64,
    /// The engine tier.
    pub accel: Accel,
    /// One UART per sink (COM1, COM2, …).
    pub serial: Vec<Box<dyn SerialOutput>>,
    /// Host input for COM1.
    pub serial_input: SerialInput,
    /// Where the debug-exit device goes.
    pub debug_exit: DebugExitConfig,
    /// The RTC's time at virtual time 0, seconds since 1970-01-01 UTC.
    pub rtc_start_secs: i64,
    /// The clock's shift.
    pub shift: ShiftMode,
    /// The clock's pacing.
    pub pacing: PacingMode,
}

impl MachineConfig {
    /// `ram_size` bytes of RAM, the given tier, no serial port, the default
    /// debug-exit port, the RTC at the epoch, `shift=0,sleep=off`.
    pub fn new(ram_size: u64, accel: Accel) -> MachineConfig {
        MachineConfig {
            ram_size,
            accel,
            serial: Vec::new(),
            serial_input: SerialInput::none(),
            debug_exit: DebugExitConfig::default(),
            rtc_start_secs: 0,
            shift: ShiftMode::Fixed(0),
            pacing: PacingMode::default(),
        }
    }
}

/// The emulated machine.
pub struct Machine {
    /// The CPU engine (CPU state, RAM, block cache).
    pub engine: Engine,
    /// The devices, clock and timers, shared with the engine's I/O bridge.
    pub pc: Rc<RefCell<Pc>>,
    /// Host input for COM1.
    pub serial_input: SerialInput,
    /// Recording or replaying the run's inputs.
    pub journal: Journal,
    pacing: Pacing,
    counters: RunCounters,
    /// The instruction count of the last service round, and how many
    /// rounds ran at it (events at one count are ordered by round).
    round_at: (u64, u32),
    /// A stop asked for (by a signal, or by the log being replayed), taken
    /// by the run loop after the service round that saw it.
    stop: Option<StopReason>,
    /// Where the debug-exit device sits (a snapshot's machine description).
    pub debug_exit: DebugExitConfig,
    /// `--snapshot-every`: stops (and snapshots) at multiples of a count.
    pub snapshots: Option<SnapshotPlan>,
    /// The count of the last snapshot written or loaded (never twice).
    last_snapshot: Option<u64>,
    /// `--stop-at`, `-S`, the monitor and gdb ([`crate::monitor`]).
    pub control: crate::monitor::Control,
    /// External interrupts delivered at one count: (count, how many). With
    /// the count it names a moment between instructions ([`Position`]).
    delivered_at: (u64, u32),
    /// Snapshots kept in memory while a debugger drives a replay
    /// ([`crate::time_travel`]).
    pub history: Option<crate::time_travel::History>,
    /// Set while re-executing what was already run: serial output is not
    /// shown twice.
    pub serial_muted: Rc<Cell<bool>>,
    /// Where the engine last stopped at a breakpoint, (icount, rip): the
    /// next run from there goes past it.
    last_break: Option<(u64, u64)>,
}

/// A moment between instructions, as the run loop sees it: the count, and
/// the external interrupts delivered at that count before it (a handler
/// entered at count N is later than the instruction boundary at N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Instructions retired.
    pub icount: u64,
    /// Interrupts delivered at `icount` so far.
    pub delivered: u32,
}

/// A serial sink that drops bytes while the machine re-executes history.
struct GatedOutput {
    out: Box<dyn SerialOutput>,
    muted: Rc<Cell<bool>>,
}

impl SerialOutput for GatedOutput {
    fn write_byte(&mut self, b: u8) {
        if !self.muted.get() {
            self.out.write_byte(b);
        }
    }

    fn flush(&mut self) {
        self.out.flush();
    }
}

/// Counters of a run, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// External interrupts delivered.
    pub interrupts: u64,
    /// Times the clock moved (idle skips and waits, shift changes).
    pub clock_adjusts: u64,
    /// Virtual time at the end, ns.
    pub virtual_ns: u64,
    /// Serial bytes handed to the guest.
    pub serial_in: u64,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock time spent in the run loop.
    pub run_time: Duration,
    /// Counters.
    pub counters: RunCounters,
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
    /// A machine with `ram_size` bytes of RAM, the given CPU engine and
    /// the defaults of [`MachineConfig::new`].
    pub fn new(ram_size: u64, accel: Accel) -> Result<Machine, Error> {
        Machine::build(MachineConfig::new(ram_size, accel))
    }

    /// A machine as configured. The CMOS memory sizes follow the RAM size.
    pub fn build(cfg: MachineConfig) -> Result<Machine, Error> {
        let (ram_below_4g, ram_above_4g) = ram_split(cfg.ram_size);
        let pc_cfg = PcConfig {
            debug_exit: cfg.debug_exit,
            rtc: RtcConfig {
                start_secs: cfg.rtc_start_secs,
                ram_below_4g,
                ram_above_4g,
            },
        };
        let clock = VirtualClock::new(cfg.shift).map_err(|e| Error::Usage(e.to_string()))?;
        let start = clock.ns_at(0);
        let shift = clock.shift();
        let serial_muted = Rc::new(Cell::new(false));
        let serial = cfg
            .serial
            .into_iter()
            .map(|out| {
                Box::new(GatedOutput {
                    out,
                    muted: serial_muted.clone(),
                }) as Box<dyn SerialOutput>
            })
            .collect();
        let pc = Rc::new(RefCell::new(Pc::new(serial, &pc_cfg, clock)?));
        let mut mem =
            GuestMemory::new(cfg.ram_size).map_err(|e| Error::Usage(format!("-m: {e}")))?;
        pc.borrow().map_mmio(&mut mem)?;
        let mut engine = Engine::with_memory(mem, Box::new(PcIo(pc.clone())));
        engine.config.accel = engine_tier(cfg.accel);
        // RDTSC reads virtual time (1 GHz).
        engine.cpu_mut().tsc_shift = shift as u64;
        Ok(Machine {
            engine,
            pc,
            serial_input: cfg.serial_input,
            journal: Journal::Off,
            pacing: Pacing::new(cfg.pacing, start),
            counters: RunCounters::default(),
            round_at: (u64::MAX, 0),
            stop: None,
            debug_exit: cfg.debug_exit,
            snapshots: None,
            last_snapshot: None,
            control: crate::monitor::Control::default(),
            delivered_at: (u64::MAX, 0),
            history: None,
            serial_muted,
            last_break: None,
        })
    }

    /// Reset: the CPU to its power-on state (the instruction count and the
    /// clock go on) and every device to its reset state. RAM keeps its
    /// contents, as on a PC; the caller reloads the guest.
    pub fn reset(&mut self) {
        let cpu = self.engine.cpu_mut();
        *cpu = cpu.power_on_keeping_clock();
        self.engine.flush_tlb();
        self.pc.borrow_mut().reset();
    }

    /// Hand the debugger's breakpoints to the engine, which stops before
    /// them ([`Exit::Breakpoint`]).
    pub fn apply_breakpoints(&mut self) {
        let c = &self.control;
        let rips: Vec<u64> = c.sw_breaks.iter().chain(&c.hw_breaks).copied().collect();
        self.engine.set_breakpoints(rips);
    }

    /// Hand the debugger's watchpoints to the engine (they stay across
    /// resets and snapshot loads).
    pub fn apply_watchpoints(&mut self) {
        self.engine.set_watchpoints(self.control.watches.clone());
    }

    /// The machine's hardware as (name, value) pairs, in a fixed order:
    /// what a snapshot and a record/replay log must be loaded on.
    pub fn hardware(&self) -> Vec<(&'static str, String)> {
        let ram = self.engine.mem().ram_size();
        let ram = if ram.is_multiple_of(1 << 20) {
            format!("{} MiB", ram >> 20)
        } else {
            format!("{ram} bytes")
        };
        let dx = self.debug_exit;
        vec![
            ("RAM", ram),
            ("serial ports", self.pc.borrow().uarts.len().to_string()),
            ("debug-exit", format!("{:#x}+{}", dx.iobase, dx.iosize)),
        ]
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

    /// The hash of each part of the machine's state (checkpoints).
    pub fn state_parts(&self) -> Vec<(&'static str, u64)> {
        crate::hash::state_parts(&self.engine, &self.pc.borrow())
    }

    /// Where the machine stands (between instructions, at a loop top).
    pub fn position(&self) -> Position {
        self.position_at(self.engine.cpu().icount)
    }

    /// The moment an instruction that began at count `icount` began, seen
    /// right after it retired: after the interrupts delivered at that count
    /// (deliveries happen only between engine runs, so any recorded at
    /// `icount` came before it).
    pub fn position_at(&self, icount: u64) -> Position {
        let delivered = if self.delivered_at.0 == icount {
            self.delivered_at.1
        } else {
            0
        };
        Position { icount, delivered }
    }

    /// Service rounds run so far at `icount`.
    pub(crate) fn rounds_done(&self, icount: u64) -> u32 {
        if self.round_at.0 == icount {
            self.round_at.1
        } else {
            0
        }
    }

    /// One service round: inputs (live, or recorded ones due now), due
    /// timers, interrupt lines, the CPU's INTR input. Returns INTR.
    fn service(&mut self) -> Result<bool, Error> {
        let icount = self.engine.cpu().icount;
        let round = self.rounds_done(icount);
        if round == 0 {
            self.snapshot_if_due(icount)?;
            crate::time_travel::keep_if_due(self)?;
        }
        self.round_at = (icount, round + 1);
        if matches!(self.journal, Journal::Replay(_)) {
            self.replay_round(icount, round)?;
        } else {
            self.live_round(icount, round)?;
        }
        let intr = self.pc.borrow_mut().service(icount);
        self.engine.set_intr(intr);
        Ok(intr)
    }

    /// `--snapshot-every`: the machine as it enters the first service
    /// round at a multiple of the period.
    fn snapshot_if_due(&mut self, icount: u64) -> Result<(), Error> {
        let Some(plan) = &self.snapshots else {
            return Ok(());
        };
        let seen = self
            .history
            .as_ref()
            .is_some_and(|h| icount < h.high_water());
        if !plan.due(icount) || self.last_snapshot == Some(icount) || seen {
            // (A count already run before a debugger went back in time
            // has its file already.)
            return Ok(());
        }
        crate::snapshot::write_due(self, plan)?;
        self.last_snapshot = Some(icount);
        Ok(())
    }

    /// A snapshot taken at `icount` was just loaded: the next service
    /// round is that count's first, and writes no snapshot of it again.
    pub(crate) fn snapshot_loaded(&mut self, icount: u64) {
        self.round_at = (u64::MAX, 0);
        self.delivered_at = (u64::MAX, 0);
        self.stop = None;
        self.last_snapshot = Some(icount);
        // A watchpoint hit of the state left behind is not this one's.
        let _ = self.engine.take_watch_hit();
    }

    /// Live inputs to COM1 (recorded when recording), and a checkpoint if
    /// one is due.
    fn live_round(&mut self, icount: u64, round: u32) -> Result<(), Error> {
        self.serial_input.poll();
        let fed = self
            .pc
            .borrow_mut()
            .feed_serial(0, &mut self.serial_input, icount);
        self.counters.serial_in += fed.len() as u64;
        // A signal, or the monitor's quit (or --stop-at's end) when recording.
        let stop = crate::signals::take().or(self.control.take_stop_request());
        self.stop = self.stop.or(stop);
        if let Journal::Record(r) = &mut self.journal {
            if !fed.is_empty() {
                r.serial(icount, round, 0, &fed)?;
            }
            if let Some(reason) = stop {
                r.stop(icount, round, reason)?;
            }
            if r.checkpoint_due(icount) {
                let parts = checkpoint_parts(&self.state_parts());
                if let Journal::Record(r) = &mut self.journal {
                    r.checkpoint(icount, round, parts)?;
                }
            }
        }
        Ok(())
    }

    /// Inject the recorded events of this round, check its checkpoints.
    fn replay_round(&mut self, icount: u64, round: u32) -> Result<(), Error> {
        loop {
            let Journal::Replay(r) = &mut self.journal else {
                return Ok(());
            };
            let Some(ev) = r.take(icount, round)? else {
                if r.exhausted() {
                    return Err(r.ended_early(icount));
                }
                return Ok(());
            };
            match ev {
                Event::SerialIn { port, bytes } => {
                    let fed = self
                        .pc
                        .borrow_mut()
                        .feed_bytes(port as usize, &bytes, icount);
                    if let Err(room) = fed {
                        return Err(Error::Replay(format!(
                            "replay diverged at icount {icount}: COM{} can take {room} of the \
                             {} recorded byte(s)",
                            port + 1,
                            bytes.len()
                        )));
                    }
                    self.counters.serial_in += bytes.len() as u64;
                }
                Event::Clock(adj) => {
                    let old_bias = {
                        let mut pc = self.pc.borrow_mut();
                        let old = pc.clock.state().bias;
                        pc.clock.apply(&adj).map_err(|e| {
                            Error::Replay(format!("a recorded clock move at icount {icount}: {e}"))
                        })?;
                        old
                    };
                    self.clock_moved(adj, old_bias)?;
                }
                Event::Checkpoint(parts) => {
                    let now = checkpoint_parts(&self.state_parts());
                    if let Journal::Replay(r) = &self.journal {
                        r.check(icount, &parts, &now)?;
                    }
                }
                Event::Stop(reason) => self.stop = Some(reason),
                Event::RtcStart(_) | Event::End(_) => {}
            }
        }
    }

    /// Instructions until the next timer deadline, checkpoint, snapshot or
    /// recorded event, at most [`SLICE`].
    fn budget(&self) -> u64 {
        let pc = self.pc.borrow();
        let icount = self.engine.cpu().icount;
        let mut b = pc
            .timers
            .budget(&pc.clock, icount)
            .map_or(SLICE, |b| b.min(SLICE));
        if let Some(p) = &self.snapshots {
            b = b.min(p.until_next(icount));
        }
        if let Some(n) = self.control.budget_limit(icount) {
            b = b.min(n);
        }
        if let Some(h) = &self.history {
            b = b.min(h.until_next(icount));
        }
        match &self.journal {
            Journal::Off => {}
            Journal::Record(r) => b = b.min(r.next_checkpoint().saturating_sub(icount)),
            Journal::Replay(r) => {
                if let Some(n) = r.next_icount() {
                    b = b.min(n.saturating_sub(icount));
                }
            }
        }
        b
    }

    /// The clock moved: RDTSC follows (TSC = virtual ns plus whatever
    /// offset the guest wrote to the TSC MSR). A move that depends on the
    /// host (idle time waited with `sleep=on`, a `shift=auto` change) is an
    /// input of the run: recorded, in the round after the last one at its
    /// count.
    fn clock_moved(&mut self, adj: ClockAdjust, old_bias: i64) -> Result<(), Error> {
        self.counters.clock_adjusts += 1;
        log::debug!("clock: {adj:?}");
        let cpu = self.engine.cpu_mut();
        cpu.tsc_bias = cpu
            .tsc_bias
            .wrapping_add(adj.bias.wrapping_sub(old_bias) as u64);
        cpu.tsc_shift = adj.shift as u64;
        let host_dependent = adj.cause == AdjustCause::Shift || self.pacing.mode().sleep;
        let round = self.rounds_done(adj.at_icount);
        if let Journal::Record(r) = &mut self.journal {
            if host_dependent {
                r.clock(round, adj)?;
            }
        }
        Ok(())
    }

    /// INTA: take the PIC's vector and deliver it. `Some` ends the run.
    fn take_interrupt(&mut self) -> Option<Outcome> {
        let vector = self.pc.borrow().pic.borrow_mut().acknowledge();
        self.counters.interrupts += 1;
        let pos = self.position();
        self.delivered_at = (pos.icount, pos.delivered + 1);
        match self.engine.deliver_interrupt(vector) {
            Ok(()) => None,
            Err(Exit::TripleFault { first, rip }) => Some(Outcome::TripleFault { first, rip }),
            Err(_) => None,
        }
    }

    /// The CPU halted with IF set: wait (in virtual time, or real time with
    /// `sleep=on`) until an interrupt wakes it. `Some` ends the run.
    fn idle(&mut self) -> Result<Option<Outcome>, Error> {
        loop {
            let intr = self.service()?;
            if let Some(reason) = self.stop.take() {
                return Ok(Some(Outcome::Stopped(reason)));
            }
            if intr {
                return Ok(self.take_interrupt());
            }
            let icount = self.engine.cpu().icount;
            if let Journal::Replay(r) = &self.journal {
                if r.pending_at(icount) {
                    continue; // the next round brings what woke the recording
                }
                if self.pacing.mode().sleep && r.next_icount().is_some_and(|n| n > icount) {
                    return Err(Error::Replay(format!(
                        "replay diverged: the CPU waits at icount {icount} and the recording \
                         has nothing there to wake it"
                    )));
                }
            }
            let wait = {
                let mut pc = self.pc.borrow_mut();
                let deadline = pc.next_deadline();
                let old_bias = pc.clock.state().bias;
                let w = if self.pacing.mode().sleep && matches!(self.journal, Journal::Replay(_)) {
                    // Waits of the recording come from the log.
                    IdleWait::Never
                } else {
                    self.pacing
                        .idle(&mut pc.clock, icount, deadline, &mut self.serial_input)
                };
                (w, old_bias)
            };
            match wait {
                (IdleWait::Moved(adj), old_bias) => self.clock_moved(adj, old_bias)?,
                (IdleWait::Input, _) => {}
                (IdleWait::Never, _) => return Ok(Some(Outcome::HaltedWithInterruptsOn)),
            }
        }
    }

    /// After a slice: flush output and let the pacing adjust the clock
    /// (when replaying, the recorded moves do).
    fn end_of_slice(&mut self) -> Result<(), Error> {
        self.pc.borrow().flush();
        let icount = self.engine.cpu().icount;
        if let Journal::Replay(r) = &self.journal {
            if r.ends_at(icount) {
                return Err(Error::Replay(format!(
                    "replay diverged: the recording ended at icount {icount}, this run goes on"
                )));
            }
            if r.pending_at(icount) && self.rounds_done(icount) > 0 {
                // Nothing retired since this count's rounds, yet the
                // recording had more of them here: it went another way.
                return Err(Error::Replay(format!(
                    "replay diverged at icount {icount}: the recording had more events here"
                )));
            }
            return Ok(());
        }
        let (adj, old_bias) = {
            let mut pc = self.pc.borrow_mut();
            let old_bias = pc.clock.state().bias;
            (self.pacing.after_slice(&mut pc.clock, icount), old_bias)
        };
        if let Some(adj) = adj {
            self.clock_moved(adj, old_bias)?;
        }
        Ok(())
    }

    /// The run ended for good (after any resets): the recording's end
    /// record, or the replay's check that the recording ended here too.
    pub fn finish_journal(&mut self) -> Result<(), Error> {
        let icount = self.engine.cpu().icount;
        let round = self.rounds_done(icount);
        let parts = checkpoint_parts(&self.state_parts());
        match &mut self.journal {
            Journal::Off => Ok(()),
            Journal::Record(r) => r.end(icount, round, parts),
            // Stopped by the monitor or gdb: short of the log's end.
            Journal::Replay(_) if self.control.ended_here() => Ok(()),
            Journal::Replay(r) => r.finish(icount, &parts),
        }
    }

    /// One turn of the run loop from a loop top: a service round, then the
    /// engine for one budget, then whatever its exit asks for. `Some`: the
    /// run ended.
    pub(crate) fn iterate(&mut self) -> Result<Option<Outcome>, Error> {
        crate::time_travel::note_progress(self);
        self.service()?;
        if let Some(reason) = self.stop.take() {
            return Ok(Some(Outcome::Stopped(reason)));
        }
        let here = (self.engine.cpu().icount, self.engine.cpu().rip);
        if self.last_break == Some(here) {
            // Stopped here before (and maybe paused): go past it now.
            self.engine.skip_breakpoint_at(here.1);
        }
        let exit = self.engine.run(self.budget());
        log_cpu(&self.engine, &exit);
        Ok(match exit {
            Exit::Breakpoint => {
                // The loop top decides whether to pause there.
                self.last_break = Some(here);
                None
            }
            Exit::Device => self.device_request(),
            Exit::BudgetExhausted => {
                self.end_of_slice()?;
                None
            }
            Exit::InterruptWindow => self.take_interrupt(),
            // Nothing can wake the CPU: the machine is off.
            Exit::Halted if self.engine.cpu().rflags & RFLAGS_IF == 0 => Some(Outcome::PoweredOff),
            Exit::Halted => self.idle()?,
            Exit::TripleFault { first, rip } => Some(Outcome::TripleFault { first, rip }),
            Exit::Exception(ex) => {
                return Err(Error::Internal(format!(
                    "the engine returned exception {ex:?} although exceptions_exit is off"
                )))
            }
        })
    }

    /// `--stop-at`, the monitor, gdb: may pause here (between instructions,
    /// before this count's service round) until resumed.
    fn pause_point(&mut self) -> Result<Option<Outcome>, Error> {
        if self.control.idle() {
            return Ok(None);
        }
        crate::monitor::pause_point(self)
    }

    /// Run until the guest powers off, exits through the debug port,
    /// triple-faults or asks for a reset.
    pub fn run(&mut self) -> Result<RunReport, Error> {
        let start = Instant::now();
        let outcome = loop {
            if let Some(o) = self.pause_point()? {
                break o;
            }
            if let Some(o) = self.iterate()? {
                match crate::monitor::at_history_end(self, o)? {
                    Some(o) => break o,
                    None => continue, // a debugger went back in time
                }
            }
        };
        self.pc.borrow().flush();
        let icount = self.engine.cpu().icount;
        self.counters.virtual_ns = self.pc.borrow().clock.ns_at(icount).0;
        Ok(RunReport {
            outcome,
            run_time: start.elapsed(),
            counters: self.counters,
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
        let mut m = Machine::build(MachineConfig {
            serial: vec![Box::new(out.clone())],
            ..MachineConfig::new(1 << 20, Accel::Interp)
        })
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
        let mut m = Machine::build(MachineConfig {
            rtc_start_secs: start,
            ..MachineConfig::new(64 << 20, Accel::Interp)
        })
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
