//! Pausing the machine: `--stop-at`, `-S`, the monitor (`--monitor
//! unix:PATH`) and the gdb stub ([`crate::gdb`]).
//!
//! The run loop calls [`pause_point`] at the top of each iteration, before
//! the service round, i.e. at a budget end, where the machine is between
//! instructions and no service round of this count has run yet (the state
//! a snapshot captures). A pause there only waits: it changes nothing the
//! guest can see, so a paused-and-resumed run (or replay) is the same run.
//! The virtual clock does not move while paused (with `sleep=on` or
//! `align=on` the pacing sees the host time that passed, as after any
//! slow slice).
//!
//! While the guest runs, the monitor and gdb sockets are polled without
//! waiting, at most every [`POLL_EVERY`] of host time; a `stop` or gdb's
//! Ctrl-C takes effect at the next loop top. While paused they are polled
//! every few milliseconds until `cont`, a gdb `continue`/`stepi`, or
//! `quit`.
//!
//! Monitor commands, one per line: `stop`, `cont` (alias `c`),
//! `info registers`, `info replay`, `savevm FILE`, `quit` (alias `q`),
//! `help`. Each answer ends with the prompt `(cjemu) `.

use crate::machine::Machine;
use crate::record_replay::Journal;
use crate::status::{Error, Outcome};
use cjemu_jit::watchpoint::{Watch, WatchHit};
use cjemu_jit::{CpuState, Gpr, Seg};
use cjemu_replay::replay_log::StopReason;
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the sockets are polled while the guest runs.
pub const POLL_EVERY: Duration = Duration::from_millis(10);
/// How long a paused machine sleeps between polls.
const PAUSED_POLL: Duration = Duration::from_millis(2);
/// The monitor's prompt.
pub const PROMPT: &str = "(cjemu) ";

/// How the machine goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// Run freely (with breakpoints set: one instruction at a time).
    Run,
    /// Paused, waiting for the monitor or gdb.
    Paused,
    /// Until an instruction retired after this count, then pause (an
    /// interrupt delivered on the way does not stop it, as in QEMU's
    /// replay mode).
    Step { from: u64 },
    /// gdb's `reverse-stepi` (replay only), then pause.
    ReverseStep,
    /// gdb's `reverse-continue` (replay only), then pause.
    ReverseCont,
}

/// A run to a count that the time-travel code drives
/// ([`crate::time_travel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Travel {
    /// The count to reach.
    pub to: u64,
}

/// Why the machine paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseCause {
    /// `--stop-at` reached.
    StopAt,
    /// `-S`, or the monitor's `stop`.
    Requested,
    /// gdb connected.
    GdbAttach,
    /// gdb's Ctrl-C.
    GdbInterrupt,
    /// A gdb single-step is done.
    Step,
    /// RIP is at a breakpoint.
    SwBreak,
    /// RIP is at a hardware breakpoint.
    HwBreak,
    /// A `reverse-stepi` is done.
    ReverseStep,
    /// A reverse move found nothing earlier: the start of the history.
    HistoryStart,
    /// A replay reached the end of its recording.
    HistoryEnd,
    /// The monitor's `replay-seek` or `replay-break` arrived.
    Seek,
    /// An access hit a data watchpoint.
    Watch(WatchHit),
}

/// The debugger side of the machine.
pub struct Control {
    /// `--stop-at`: pause when the count reaches this (once).
    pub stop_at: Option<u64>,
    /// How the machine goes on.
    pub exec: Exec,
    /// A pause asked for, taken at the next loop top.
    pause_req: Option<PauseCause>,
    /// gdb's breakpoints (RIP values).
    pub sw_breaks: BTreeSet<u64>,
    pub hw_breaks: BTreeSet<u64>,
    /// gdb's watchpoints (the engine checks them:
    /// [`Machine::apply_watchpoints`]).
    pub watches: Vec<Watch>,
    /// Where the machine last resumed: a breakpoint there is not hit again
    /// before the guest moves on.
    resume_from: Option<(u64, u64)>,
    /// The gdb stub, when `-s` / `-gdb`.
    pub gdb: Option<crate::gdb::GdbServer>,
    monitor: Option<Monitor>,
    last_poll: Option<Instant>,
    /// `quit` (or gdb's `kill`): end the run at this loop top.
    pub quit: bool,
    /// The run was ended here rather than by the guest.
    ended_here: bool,
    /// A recording's stop, for the service round to log and take.
    stop_request: Option<StopReason>,
    /// A run to a count driven by the time-travel code.
    pub travel: Option<Travel>,
    /// The monitor's `replay-seek`: go there at the next loop top.
    pub seek: Option<u64>,
    /// Paused at the end of a replay's recording: how the guest's run
    /// ended there (the run ends with it when resumed forward).
    at_end: Option<Outcome>,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            stop_at: None,
            exec: Exec::Run,
            pause_req: None,
            sw_breaks: BTreeSet::new(),
            hw_breaks: BTreeSet::new(),
            watches: Vec::new(),
            resume_from: None,
            gdb: None,
            monitor: None,
            last_poll: None,
            quit: false,
            ended_here: false,
            stop_request: None,
            travel: None,
            seek: None,
            at_end: None,
        }
    }
}

impl Control {
    /// `--stop-at`, `-S`, `--monitor`, `-gdb`.
    pub fn new(
        stop_at: Option<u64>,
        freeze: bool,
        monitor: Option<&Path>,
        gdb: Option<&str>,
    ) -> Result<Control, Error> {
        Ok(Control {
            stop_at,
            pause_req: freeze.then_some(PauseCause::Requested),
            gdb: gdb.map(crate::gdb::GdbServer::bind).transpose()?,
            monitor: monitor.map(Monitor::bind).transpose()?,
            ..Control::default()
        })
    }

    /// Nothing to do at loop tops (the run loop's fast path).
    pub fn idle(&self) -> bool {
        self.stop_at.is_none()
            && self.pause_req.is_none()
            && self.monitor.is_none()
            && self.gdb.is_none()
    }

    /// The most instructions the engine may run from `icount`: 1 while
    /// stepping, else up to `--stop-at` (breakpoints stop the engine
    /// themselves).
    pub fn budget_limit(&self, icount: u64) -> Option<u64> {
        if let Some(t) = self.travel {
            // Breakpoints and watchpoints stop the engine by themselves.
            return Some(t.to.saturating_sub(icount).max(1));
        }
        if matches!(self.exec, Exec::Step { .. }) {
            return Some(1);
        }
        self.stop_at.filter(|&n| n > icount).map(|n| n - icount)
    }

    /// The breakpoint at `rip`, if any.
    pub fn breakpoint_at(&self, rip: u64) -> Option<PauseCause> {
        if self.sw_breaks.contains(&rip) {
            Some(PauseCause::SwBreak)
        } else if self.hw_breaks.contains(&rip) {
            Some(PauseCause::HwBreak)
        } else {
            None
        }
    }

    /// Pause at the next loop top (the first cause asked for wins).
    pub fn request_pause(&mut self, why: PauseCause) {
        if self.exec != Exec::Paused {
            self.pause_req = self.pause_req.or(Some(why));
        }
    }

    /// The monitor or gdb ended the run (a replay then stops short of its
    /// recording's end, which is not a divergence).
    pub fn ended_here(&self) -> bool {
        self.ended_here
    }

    /// A stop for this service round to log (as a signal's is) and take.
    pub fn take_stop_request(&mut self) -> Option<StopReason> {
        self.stop_request.take()
    }
}

/// Why to pause at this loop top, if at all.
fn pause_due(m: &mut Machine) -> Option<PauseCause> {
    if let Some(hit) = m.engine.take_watch_hit() {
        return Some(PauseCause::Watch(hit));
    }
    let (icount, rip) = (m.engine.cpu().icount, m.engine.cpu().rip);
    let c = &mut m.control;
    if c.stop_at.is_some_and(|n| icount >= n) {
        c.stop_at = None;
        return Some(PauseCause::StopAt);
    }
    if let Exec::Step { from } = c.exec {
        if from != icount {
            return Some(PauseCause::Step);
        }
    }
    if c.resume_from != Some((icount, rip)) {
        if let Some(cause) = c.breakpoint_at(rip) {
            return Some(cause);
        }
    }
    c.pause_req.take()
}

/// Poll the monitor and gdb (without waiting).
fn poll_all(m: &mut Machine) {
    m.control.last_poll = Some(Instant::now());
    if let Some(mut mon) = m.control.monitor.take() {
        mon.poll(m);
        m.control.monitor = Some(mon);
    }
    crate::gdb::poll(m);
}

/// During a travel in time (which runs the loop itself): poll the
/// debuggers as the run loop does, and say whether one asked to stop
/// (gdb's Ctrl-C, the monitor's `stop` or `quit`).
pub fn interrupted_while_travelling(m: &mut Machine) -> bool {
    poll_if_due(m);
    m.control.pause_req.is_some() || m.control.quit
}

/// Poll the monitor and gdb if [`POLL_EVERY`] has passed since the last
/// time. Returns whether it polled.
fn poll_if_due(m: &mut Machine) -> bool {
    let due = m
        .control
        .last_poll
        .is_none_or(|t| t.elapsed() >= POLL_EVERY);
    if due {
        poll_all(m);
    }
    due
}

/// The run loop's pause hook (see the module comment). `Some` ends the
/// run.
pub fn pause_point(m: &mut Machine) -> Result<Option<Outcome>, Error> {
    let mut why = pause_due(m);
    if why.is_none() && !m.control.quit && poll_if_due(m) {
        why = pause_due(m);
    }
    if m.control.quit {
        return Ok(end_run(m));
    }
    let Some(why) = why else {
        return Ok(None);
    };
    if m.control.monitor.is_none() && !crate::gdb::listening(m) {
        // Nobody can resume it: show where it stopped and end the run.
        eprint!("{}", info_registers(m.engine.cpu()));
        return Ok(end_run(m));
    }
    Ok(paused(m, why)?.0)
}

/// Paused for `why` until resumed, carrying out the reverse moves and
/// seeks asked for meanwhile. Returns the run's end if it ends here, and
/// whether the machine moved in time.
fn paused(m: &mut Machine, why: PauseCause) -> Result<(Option<Outcome>, bool), Error> {
    let mut why = why;
    let mut travelled = false;
    loop {
        let icount = m.engine.cpu().icount;
        log::info!("paused at icount {icount} ({why:?})");
        m.control.exec = Exec::Paused;
        crate::gdb::report_stop(m, why);
        while m.control.exec == Exec::Paused && !m.control.quit && m.control.seek.is_none() {
            std::thread::sleep(PAUSED_POLL);
            poll_all(m);
            if crate::signals::pending() {
                m.control.quit = true;
            }
            if why == PauseCause::HistoryEnd && !attached(m) {
                // Nobody is left to go back: the run ends.
                m.control.exec = Exec::Run;
            }
        }
        if m.control.quit {
            return Ok((end_run(m), travelled));
        }
        match travel(m)? {
            Some(Ok(cause)) => {
                why = cause;
                m.control.at_end = None;
            }
            Some(Err(outcome)) => {
                // A seek past the end stops at the end, as a replay does.
                why = PauseCause::HistoryEnd;
                m.control.at_end = Some(outcome);
            }
            None => break,
        }
        travelled = true;
    }
    if let Some(outcome) = m.control.at_end.take() {
        // Resumed forward at the end of the recording: the run ends.
        return Ok((Some(outcome), travelled));
    }
    // A pause asked for while paused (gdb's Ctrl-C right after its `c`)
    // is kept: it takes effect at the next loop top.
    let c = m.engine.cpu();
    m.control.resume_from = Some((c.icount, c.rip));
    Ok((None, travelled))
}

/// A replay driven by a debugger reached the end of its recording (the
/// guest's run ended with `outcome`): pause there, as QEMU does, so the
/// debugger can go back. `None`: it went back, the run goes on from there;
/// `Some`: the run ends.
pub fn at_history_end(m: &mut Machine, outcome: Outcome) -> Result<Option<Outcome>, Error> {
    if m.history.is_none() || !attached(m) {
        return Ok(Some(outcome));
    }
    log::info!("the replay reached the end of its recording ({outcome:?})");
    // Output up to here has been shown: a run back here shows none of it.
    crate::time_travel::note_progress(m);
    m.pc.borrow().flush();
    m.control.at_end = Some(outcome);
    let (end, _) = paused(m, PauseCause::HistoryEnd)?;
    // `None`: a debugger went back; the run goes on from there.
    Ok(end)
}

/// Is a debugger connected now (a gdb session or a monitor client)?
fn attached(m: &Machine) -> bool {
    m.control
        .monitor
        .as_ref()
        .is_some_and(|mon| !mon.clients.is_empty())
        || crate::gdb::attached(m)
}

/// Carry out a reverse move or a seek asked for while paused. `None`:
/// nothing asked, resume; `Some(Ok(cause))`: moved, pause again;
/// `Some(Err(outcome))`: the guest's run ended on the way.
fn travel(m: &mut Machine) -> Result<Option<Result<PauseCause, Outcome>>, Error> {
    use crate::time_travel::{self, Arrival};
    let seek = m.control.seek.take();
    let exec = m.control.exec;
    if seek.is_none() && !matches!(exec, Exec::ReverseStep | Exec::ReverseCont) {
        return Ok(None);
    }
    // Running (not paused) while travelling: a `stop` or gdb's Ctrl-C
    // meanwhile interrupts the travel.
    m.control.exec = Exec::Run;
    let arrival = match (seek, exec) {
        (Some(to), _) => {
            let to = crate::machine::Position {
                icount: to,
                delivered: 0,
            };
            (time_travel::go_to(m, to)?, PauseCause::Seek)
        }
        (None, Exec::ReverseStep) => (time_travel::reverse_step(m)?, PauseCause::ReverseStep),
        (None, _) => (time_travel::reverse_continue(m)?, PauseCause::HistoryStart),
    };
    let c = m.engine.cpu();
    // The breakpoint travelled to is not hit again by the next continue.
    m.control.resume_from = Some((c.icount, c.rip));
    Ok(Some(match arrival {
        (Arrival::At, cause) => Ok(cause),
        (Arrival::Break(cause), _) => Ok(cause),
        (Arrival::HistoryStart, _) => Ok(PauseCause::HistoryStart),
        (Arrival::Ended(o), _) => Err(o),
        (Arrival::Interrupted, _) => {
            Ok(m.control.pause_req.take().unwrap_or(PauseCause::Requested))
        }
    }))
}

/// End the run here (`quit`, gdb `kill`, `--stop-at` with nobody to
/// resume). A recording ends in this count's service round instead, which
/// logs the stop as it logs a signal's, so its replay stops at the same
/// point of the same round (`None`: go on into that round).
fn end_run(m: &mut Machine) -> Option<Outcome> {
    m.control.quit = false;
    m.control.ended_here = true;
    if matches!(m.journal, Journal::Record(_)) {
        m.control.stop_request = Some(StopReason::Interrupt);
        return None;
    }
    m.pc.borrow().flush();
    Some(Outcome::Stopped(StopReason::Interrupt))
}

/// The run ended with exit status `status`: tell gdb.
pub fn finish(m: &mut Machine, status: u8) {
    crate::gdb::report_exit(m, status);
}

/// `info registers`: the CPU state, QEMU-like.
pub fn info_registers(c: &CpuState) -> String {
    let mut s = String::new();
    let g = |r: Gpr| c.reg(r);
    let rows = [
        [
            ("RAX", Gpr::Rax),
            ("RBX", Gpr::Rbx),
            ("RCX", Gpr::Rcx),
            ("RDX", Gpr::Rdx),
        ],
        [
            ("RSI", Gpr::Rsi),
            ("RDI", Gpr::Rdi),
            ("RBP", Gpr::Rbp),
            ("RSP", Gpr::Rsp),
        ],
        [
            ("R8 ", Gpr::R8),
            ("R9 ", Gpr::R9),
            ("R10", Gpr::R10),
            ("R11", Gpr::R11),
        ],
        [
            ("R12", Gpr::R12),
            ("R13", Gpr::R13),
            ("R14", Gpr::R14),
            ("R15", Gpr::R15),
        ],
    ];
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|(n, r)| format!("{n}={:016x}", g(*r)))
            .collect();
        s.push_str(&cells.join(" "));
        s.push('\n');
    }
    s.push_str(&format!(
        "RIP={:016x} RFL={:08x} CPL={} HLT={}\n",
        c.rip,
        c.rflags(),
        c.cpl,
        c.halted
    ));
    for (name, seg) in [
        ("ES", Seg::Es),
        ("CS", Seg::Cs),
        ("SS", Seg::Ss),
        ("DS", Seg::Ds),
        ("FS", Seg::Fs),
        ("GS", Seg::Gs),
    ] {
        let d = c.seg(seg);
        s.push_str(&format!(
            "{name} ={:04x} {:016x} {:08x} {:04x}\n",
            d.selector, d.base, d.limit, d.attrs
        ));
    }
    s.push_str(&format!(
        "GDT=     {:016x} {:08x}\nIDT=     {:016x} {:08x}\n",
        c.gdtr.base, c.gdtr.limit, c.idtr.base, c.idtr.limit
    ));
    s.push_str(&format!(
        "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}\n",
        c.cr0, c.cr2, c.cr3, c.cr4
    ));
    s.push_str(&format!(
        "EFER={:016x} KERNEL_GS_BASE={:016x}\nICOUNT={}\n",
        c.efer, c.msr.kernel_gs_base, c.icount
    ));
    s
}

/// `info replay`.
fn info_replay(m: &Machine) -> String {
    let icount = m.engine.cpu().icount;
    match &m.journal {
        Journal::Off => format!("icount {icount}\nnot recording or replaying\n"),
        Journal::Record(r) => format!("icount {icount}\nrecording ({} bytes)\n", r.bytes()),
        Journal::Replay(r) => {
            let mut s = format!(
                "icount {icount}\nreplaying: {} log frames consumed\n",
                r.frames_taken()
            );
            if let Some(h) = &m.history {
                let (n, bytes) = h.kept();
                s.push_str(&format!(
                    "history: {n} snapshot(s) in memory ({bytes} bytes) from icount {}, \
                     furthest icount {}\n",
                    h.start().unwrap_or(0),
                    h.high_water()
                ));
            }
            s
        }
    }
}

/// `replay-seek N` / `replay-break N`: only in a replay; a seek back needs
/// the history (a debugger attached when the replay started).
fn replay_goto(m: &mut Machine, arg: &str, seek: bool) -> String {
    let Ok(n) = arg.parse::<u64>() else {
        return format!("'{arg}' is not an instruction count\n");
    };
    if !matches!(m.journal, Journal::Replay(_)) {
        return "not replaying\n".into();
    }
    let icount = m.engine.cpu().icount;
    if seek {
        m.control.seek = Some(n);
        m.control.request_pause(PauseCause::Seek);
        return String::new();
    }
    if n <= icount {
        return format!("icount {n} is not ahead (now {icount}); use replay-seek\n");
    }
    m.control.stop_at = Some(n);
    String::new()
}

/// The monitor's socket and its clients.
struct Monitor {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
}

struct Client {
    stream: UnixStream,
    line: Vec<u8>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Monitor {
    fn bind(path: &Path) -> Result<Monitor, Error> {
        // A socket left by an earlier run is in the way; anything else is
        // not ours to remove.
        if let Ok(md) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if md.file_type().is_socket() {
                let _ = std::fs::remove_file(path);
            }
        }
        let err = |e: std::io::Error| Error::Input(format!("-monitor {}: {e}", path.display()));
        let listener = UnixListener::bind(path).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        log::info!("monitor listening on {}", path.display());
        Ok(Monitor {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
        })
    }

    /// Accept clients, run the commands they sent.
    fn poll(&mut self, m: &mut Machine) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                let mut c = Client {
                    stream,
                    line: Vec::new(),
                };
                c.say(&format!("cjemu monitor (type help)\n{PROMPT}"));
                self.clients.push(c);
            }
        }
        self.clients.retain_mut(|c| c.poll(m));
    }
}

impl Client {
    fn say(&mut self, text: &str) {
        // Answers are short; a client that does not read them loses them.
        let _ = self.stream.write_all(text.as_bytes());
    }

    /// Run the complete lines received. `false`: the client left.
    fn poll(&mut self, m: &mut Machine) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.line.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        while let Some(nl) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=nl).collect();
            let cmd = String::from_utf8_lossy(&line).trim().to_string();
            let answer = command(m, &cmd);
            self.say(&format!("{answer}{PROMPT}"));
        }
        true
    }
}

/// Run one monitor command; the answer (empty or lines ending in '\n').
pub fn command(m: &mut Machine, cmd: &str) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        [] => String::new(),
        ["stop"] => {
            m.control.request_pause(PauseCause::Requested);
            String::new()
        }
        ["cont"] | ["c"] => {
            if m.control.exec == Exec::Paused {
                m.control.exec = Exec::Run;
            }
            String::new()
        }
        ["info", "registers"] | ["info", "regs"] => info_registers(m.engine.cpu()),
        ["info", "replay"] => info_replay(m),
        ["replay-seek", n] => replay_goto(m, n, true),
        ["replay-break", n] => replay_goto(m, n, false),
        ["info", "status"] => match m.control.exec {
            Exec::Paused => "VM status: paused\n".into(),
            _ => "VM status: running\n".into(),
        },
        ["savevm", file] => match savevm(m, Path::new(file)) {
            Ok(()) => format!("saved {file} at icount {}\n", m.engine.cpu().icount),
            Err(e) => format!("savevm: {e}\n"),
        },
        ["quit"] | ["q"] => {
            m.control.quit = true;
            String::new()
        }
        ["help"] => "stop | cont | info registers | info replay | info status | savevm FILE | \
             replay-seek ICOUNT | replay-break ICOUNT | quit\n"
            .into(),
        _ => format!("unknown command: '{cmd}' (type help)\n"),
    }
}

/// `savevm FILE`. The machine is between instructions at a loop top, where
/// the run loop's own snapshots are taken too.
fn savevm(m: &Machine, path: &Path) -> Result<(), Error> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    crate::snapshot::save(m, &mut f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Accel;
    use crate::flat::load_flat;

    #[test]
    fn budget_is_one_while_stepping_or_with_breakpoints_else_up_to_stop_at() {
        let mut c = Control {
            stop_at: Some(100),
            ..Control::default()
        };
        assert_eq!(c.budget_limit(40), Some(60));
        assert_eq!(c.budget_limit(100), None);
        c.sw_breaks.insert(0x1000);
        assert_eq!(
            c.budget_limit(40),
            Some(60),
            "the engine stops at breakpoints"
        );
        c.sw_breaks.clear();
        c.exec = Exec::Step { from: 0 };
        assert_eq!(c.budget_limit(40), Some(1));
    }

    #[test]
    fn stop_at_without_a_debugger_ends_the_run_exactly_there() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        // mov ecx, 1000; l: dec rcx; jnz l; hlt
        let mut code = vec![0xb9];
        code.extend_from_slice(&1000u32.to_le_bytes());
        code.extend_from_slice(&[0x48, 0xff, 0xc9, 0x75, 0xfb, 0xf4]);
        load_flat(&mut m.engine, &code, 0x1000, 0x1000).unwrap();
        m.control.stop_at = Some(101);
        let r = m.run().unwrap();
        assert_eq!(r.outcome, Outcome::Stopped(StopReason::Interrupt));
        assert_eq!(m.engine.cpu().icount, 101);
        // 1 mov + 50 × (dec, jnz): RCX = 1000 - 50.
        assert_eq!(m.engine.cpu().reg(Gpr::Rcx), 950);
        assert!(m.control.ended_here());
    }

    #[test]
    fn monitor_commands_answer() {
        let mut m = Machine::new(1 << 20, Accel::Interp).unwrap();
        m.engine.cpu_mut().set_reg(Gpr::Rbx, 0xabcdef);
        assert!(command(&mut m, "info registers").contains("RBX=0000000000abcdef"));
        assert!(command(&mut m, "info replay").starts_with("icount 0\n"));
        assert!(command(&mut m, "frobnicate").contains("unknown command"));
        command(&mut m, "stop");
        assert_eq!(m.control.pause_req, Some(PauseCause::Requested));
        command(&mut m, "quit");
        assert!(m.control.quit);
    }
}
