//! cjemu: the machine and the command line around the `cjemu-jit` CPU engine.
//!
//! [`cli::parse`] turns the command line into a [`cli::Config`]; [`run`]
//! loads the guest (a multiboot kernel, a flat binary, or the built-in
//! [`demo`]), runs it on a [`machine::Machine`] (the engine plus the PC's
//! devices, laid out in [`pc`]) and returns the exit status ([`status`] is
//! the one place that maps outcomes to statuses). cjemu's own messages, logs
//! and `--stats` go to stderr; stdout carries only the guest's serial output.

pub mod cli;
pub mod demo;
pub mod flat;
pub mod gdb;
pub mod hash;
pub mod loader;
pub mod logging;
pub mod machine;
pub mod monitor;
pub mod pacing;
pub mod pc;
mod pc_wiring;
pub mod record_replay;
pub mod serial_input;
pub mod signals;
pub mod snapshot;
pub mod stats;
pub mod status;
pub mod time_travel;

use cjemu_replay::clock::ShiftMode;
use cjemu_replay::replay_log::Fingerprint;
use cli::Config;
use machine::{Machine, MachineConfig};
use pacing::PacingMode;
use record_replay::{Journal, Recorder, Replayer};
use serial_input::SerialInput;
use status::{Error, Outcome};
use std::path::{Path, PathBuf};

/// The guest to run.
#[derive(Debug)]
pub enum Guest {
    /// The built-in demo.
    Demo,
    /// A flat binary read from `path`.
    Flat {
        path: PathBuf,
        image: Vec<u8>,
        load: u64,
        entry: u64,
    },
    /// A multiboot kernel, laid out (replayed on every reset).
    Multiboot {
        path: PathBuf,
        plan: loader::multiboot::Plan,
    },
}

/// Read an input file; failure is status 2 with one line naming the file.
fn read_input(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Input(format!("{what} {}: {e}", path.display())))
}

impl Guest {
    /// The guest the configuration asks for (reads the kernel file and
    /// modules).
    pub fn from_config(cfg: &Config) -> Result<Guest, Error> {
        let Some(path) = &cfg.kernel else {
            return Ok(Guest::Demo);
        };
        let image = read_input("-kernel", path)?;
        if let Some(f) = cfg.flat {
            return Ok(Guest::Flat {
                path: path.clone(),
                image,
                load: f.load,
                entry: f.entry,
            });
        }
        let args = loader::MultibootArgs {
            kernel: path,
            append: cfg.append.as_deref().unwrap_or(""),
            initrd: &cfg.initrd,
            ram: cfg.ram_size,
        };
        let plan = loader::load_kernel(&image, &args)?;
        Ok(Guest::Multiboot {
            path: path.clone(),
            plan,
        })
    }

    /// Does a triple fault reset the machine (unless `-no-reboot`)? Only a
    /// kernel can boot again; a flat binary or the demo just stops.
    pub fn reboots(&self) -> bool {
        matches!(self, Guest::Multiboot { .. })
    }

    /// Put the guest into the machine.
    pub fn load(&self, m: &mut Machine) -> Result<(), Error> {
        match self {
            Guest::Demo => demo::load(&mut m.engine),
            Guest::Flat {
                path,
                image,
                load,
                entry,
            } => flat::load_flat(&mut m.engine, image, *load, *entry)
                .map_err(|e| Error::Input(format!("-kernel {}: {e}", path.display()))),
            Guest::Multiboot { path, plan } => loader::multiboot::apply(plan, &mut m.engine)
                .map_err(|e| Error::Input(format!("-kernel {}: {e}", path.display()))),
        }
    }
}

/// The RTC's time at virtual time 0, seconds since 1970-01-01: `-rtc
/// base=`'s date, or the host's clock now. The host time is an input of
/// the run (to be recorded for replay once recording exists).
pub fn rtc_start_secs(base: cli::RtcBase) -> i64 {
    let utc = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    match base {
        cli::RtcBase::Fixed(s) => s,
        cli::RtcBase::Utc => utc(),
        cli::RtcBase::LocalTime => {
            let now = utc();
            now + local_utc_offset(now)
        }
    }
}

/// The host time zone's offset from UTC at `secs`, in seconds.
fn local_utc_offset(secs: i64) -> i64 {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we pass; both pointers are
    // valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        log::warn!("-rtc base=localtime: the host's time zone is unknown; using UTC");
        0
    }
}

/// The clock's shift and pacing for `--icount` (none given: `shift=0`,
/// `sleep=off`, which is deterministic).
pub fn clock_mode(icount: Option<&cli::Icount>) -> (ShiftMode, PacingMode) {
    let Some(ic) = icount else {
        return (ShiftMode::Fixed(0), PacingMode::default());
    };
    let shift = match ic.shift {
        cli::Shift::Fixed(n) => ShiftMode::Fixed(n as u8),
        cli::Shift::Auto => ShiftMode::Auto,
    };
    let pacing = PacingMode {
        sleep: ic.sleep,
        align: ic.align,
        auto: ic.shift == cli::Shift::Auto,
    };
    (shift, pacing)
}

/// COM1's input: `--serial-input FILE`, else stdin when COM1 is stdio.
fn serial_input(cfg: &Config) -> Result<SerialInput, Error> {
    if let Some(p) = &cfg.serial_input {
        return Ok(SerialInput::from_bytes(read_input("--serial-input", p)?));
    }
    Ok(match cfg.serial.first() {
        Some(cli::SerialTarget::Stdio) => SerialInput::stdin(),
        _ => SerialInput::none(),
    })
}

/// The clock mode of a replay: the log's, which an explicit `--icount`
/// must equal.
fn replay_icount(cfg: &Config, fp: &Fingerprint) -> Result<Option<cli::Icount>, Error> {
    let logged =
        fp.0.get("clock")
            .ok_or_else(|| Error::Replay("the log's header names no clock mode".into()))?;
    if let Some(ic) = &cfg.icount {
        let asked = cli::icount_spec(Some(ic));
        if &asked != logged {
            return Err(Error::Replay(format!(
                "--icount {asked} conflicts with the clock of the recording ({logged}); \
                 leave --icount out to replay with the recorded one"
            )));
        }
    }
    let (ic, _) = cli::parse_icount(logged)
        .map_err(|e| Error::Replay(format!("the log's clock mode '{logged}': {e}")))?;
    Ok(ic)
}

/// What a replay must match: the guest's contents, its command line, the
/// machine's size and devices, the clock mode, the checkpoint layout. The
/// serial backends, `--accel`, `-d` and `--stats` are not part of it.
fn fingerprint(
    cfg: &Config,
    guest: &Guest,
    icount: &Option<cli::Icount>,
    m: &Machine,
) -> Result<Fingerprint, Error> {
    let digest = |b: &[u8]| format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(b));
    let kernel = match guest {
        Guest::Demo => "built-in demo".to_string(),
        Guest::Flat {
            image, load, entry, ..
        } => format!("flat {} at {load:#x} entry {entry:#x}", digest(image)),
        Guest::Multiboot { path, .. } => {
            format!("multiboot {}", digest(&read_input("-kernel", path)?))
        }
    };
    let mut initrd = Vec::new();
    for p in &cfg.initrd {
        initrd.push(match std::fs::read(p) {
            Ok(b) => digest(&b),
            Err(_) => p.display().to_string(),
        });
    }
    let parts = m.state_parts();
    let kv = [
        ("kernel", kernel),
        ("initrd", initrd.join(",")),
        // What the guest sees: the multiboot command line starts with the
        // kernel's path (as QEMU's does).
        ("cmdline", guest_cmdline(cfg, guest)),
        ("clock", cli::icount_spec(icount.as_ref())),
        (record_replay::PARTS_KEY, record_replay::part_names(&parts)),
    ];
    Ok(Fingerprint(
        kv.into_iter()
            .chain(m.hardware())
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    ))
}

/// The command line the guest is given.
fn guest_cmdline(cfg: &Config, guest: &Guest) -> String {
    let append = cfg.append.clone().unwrap_or_default();
    match guest {
        Guest::Multiboot { path, .. } => format!("{} {append}", path.display()),
        _ => append,
    }
}

/// Refuse a replay on another machine, naming every difference.
fn check_fingerprint(logged: &Fingerprint, now: &Fingerprint) -> Result<(), Error> {
    // The recording's identity names the log, not the machine.
    let mut logged = logged.clone();
    logged.0.remove(record_replay::RECORDING_KEY);
    let d = logged.differences(now);
    if d.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = d
        .iter()
        .map(|(k, a, b)| format!("{k}: recorded '{a}', now '{b}'"))
        .collect();
    Err(Error::Replay(format!(
        "the log was recorded on a different machine: {}",
        what.join("; ")
    )))
}

/// `cjemu replay-dump FILE`.
pub fn replay_dump(path: &Path) -> Result<String, Error> {
    record_replay::dump(path)
}

/// Put the guest in the machine: boot it, or (`--loadvm`) load the
/// snapshot. `--snapshot-every` arms the machine's snapshot stops; a
/// loaded run without it keeps the stops of the run that wrote the file,
/// so it hands serial input over at the same counts.
fn start_guest(cfg: &Config, guest: &Guest, m: &mut Machine) -> Result<(), Error> {
    // In a replay a debugger drives, `--snapshot-every` alone sets how
    // often the history keeps snapshots in memory; files are written only
    // to a `--snapshot-dir` given. Otherwise the directory defaults to `.`.
    let dir = match (&cfg.snapshot_dir, m.history.is_some()) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => None,
        (None, false) => Some(std::path::PathBuf::from(".")),
    };
    if let (Some(d), Some(_)) = (&dir, cfg.snapshot_every) {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::Input(format!("--snapshot-dir {}: {e}", d.display())))?;
    }
    m.snapshots = cfg
        .snapshot_every
        .map(|every| snapshot::SnapshotPlan { every, dir });
    let Some(path) = &cfg.loadvm else {
        return guest.load(m);
    };
    let loaded = snapshot::load_file(m, path)?;
    log::info!("loaded {} (icount {})", path.display(), loaded.icount);
    if m.snapshots.is_none() {
        m.snapshots = loaded
            .stop_every
            .map(|every| snapshot::SnapshotPlan { every, dir: None });
    }
    Ok(())
}

/// Run the configured guest; the result is the process exit status.
pub fn run(cfg: &Config) -> Result<u8, Error> {
    logging::init(&cfg.log_items, cfg.log_file.as_deref())?;
    for w in &cfg.warnings {
        eprintln!("cjemu: warning: {w}");
    }
    if let Some(e) = cfg.not_implemented() {
        return Err(e);
    }
    let guest = Guest::from_config(cfg)?;
    signals::install();
    let serial = cfg
        .serial
        .iter()
        .map(pc::serial_output)
        .collect::<Result<Vec<_>, _>>()?;
    let debug_exit = pc::DebugExitConfig {
        iobase: cfg.debug_exit.0,
        iosize: cfg.debug_exit.1,
    };
    let replay = match &cfg.record_replay {
        Some(cli::RecordReplay::Replay(path)) => Some(Replayer::open(path)?),
        _ => None,
    };
    let icount = match &replay {
        Some((_, fp, _)) => replay_icount(cfg, fp)?,
        None => cfg.icount.clone(),
    };
    let rtc_start = match &replay {
        Some((_, _, secs)) => *secs,
        None => rtc_start_secs(cfg.rtc_base),
    };
    log::info!("RTC starts at {rtc_start} s after the epoch");
    let (shift, pacing) = clock_mode(icount.as_ref());
    let mut m = Machine::build(MachineConfig {
        ram_size: cfg.ram_size,
        accel: cfg.accel,
        serial,
        // A replay takes its input from the log only.
        serial_input: match replay {
            Some(_) => SerialInput::none(),
            None => serial_input(cfg)?,
        },
        debug_exit,
        rtc_start_secs: rtc_start,
        shift,
        pacing,
    })?;
    let fp = fingerprint(cfg, &guest, &icount, &m)?;
    m.control = monitor::Control::new(
        cfg.stop_at,
        cfg.freeze,
        cfg.monitor.as_deref(),
        cfg.gdb.as_deref(),
    )?;
    m.journal = match (replay, &cfg.record_replay) {
        (Some((r, logged, _)), _) => {
            check_fingerprint(&logged, &fp)?;
            Journal::Replay(r)
        }
        (None, Some(cli::RecordReplay::Record(path))) => {
            let every = cfg
                .checkpoint_every
                .unwrap_or(record_replay::DEFAULT_CHECKPOINT_EVERY);
            Journal::Record(Recorder::create(path, &fp, rtc_start, every)?)
        }
        _ => Journal::Off,
    };
    if matches!(m.journal, Journal::Replay(_)) && (cfg.gdb.is_some() || cfg.monitor.is_some()) {
        // A debugger may go back in time: keep snapshots as the replay runs.
        let every = cfg.snapshot_every.unwrap_or(time_travel::DEFAULT_EVERY);
        m.history = Some(time_travel::History::new(every));
    }
    // `--stats` shows where the engine's time went.
    m.engine.config.timing = cfg.stats;
    start_guest(cfg, &guest, &mut m)?;
    let report = loop {
        let report = m.run()?;
        let rebooting = guest.reboots() && !cfg.no_reboot;
        match report.outcome {
            Outcome::TripleFault { first, rip } if rebooting => {
                // Like QEMU: reset and boot again, for as long as it takes.
                log::info!("{}; resetting", status::triple_fault_message(&first, rip));
                m.reset();
                guest.load(&mut m)?;
            }
            Outcome::GuestReset if rebooting => {
                log::info!("the guest asked for a reset; resetting");
                m.reset();
                guest.load(&mut m)?;
            }
            _ => break report,
        }
    };
    m.finish_journal()?;
    match report.outcome {
        Outcome::TripleFault { first, rip } => {
            eprintln!("cjemu: {}", status::triple_fault_message(&first, rip));
        }
        Outcome::GuestReset => {
            eprintln!("cjemu: the guest asked for a reset; machine stopped (as with -no-reboot)")
        }
        Outcome::Stopped(reason) => eprintln!(
            "cjemu: stopped ({}) at icount {}",
            match reason {
                cjemu_replay::replay_log::StopReason::Interrupt => "interrupted",
                cjemu_replay::replay_log::StopReason::Terminate => "terminated",
            },
            m.engine.cpu().icount
        ),
        Outcome::HaltedWithInterruptsOn => eprintln!(
            "cjemu: the guest halted with interrupts enabled, but no timer is armed and no \
             input can arrive, so nothing can wake it; stopping (status 0)"
        ),
        _ => {}
    }
    if cfg.stats {
        eprint!("{}", stats::render(&m.engine, &m.pc.borrow(), &report));
    }
    if let Guest::Demo = guest {
        if report.outcome != Outcome::PoweredOff {
            return Err(Error::Internal(format!(
                "the demo guest ended with {:?}",
                report.outcome
            )));
        }
        let result = demo::read_result(&m.engine)?;
        eprintln!("cjemu: {}", demo::report(&result)?);
    }
    monitor::finish(&mut m, report.outcome.status());
    Ok(report.outcome.status())
}
