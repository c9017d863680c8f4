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
pub mod hash;
pub mod loader;
pub mod logging;
pub mod machine;
pub mod pc;
pub mod stats;
pub mod status;

use cli::Config;
use machine::Machine;
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
    let serial = cfg
        .serial
        .iter()
        .map(pc::serial_output)
        .collect::<Result<Vec<_>, _>>()?;
    let debug_exit = pc::DebugExitConfig {
        iobase: cfg.debug_exit.0,
        iosize: cfg.debug_exit.1,
    };
    let mut m = Machine::with_devices(cfg.ram_size, cfg.accel, serial, debug_exit)?;
    guest.load(&mut m)?;
    let report = loop {
        let report = m.run()?;
        match report.outcome {
            Outcome::TripleFault { first, rip } if guest.reboots() && !cfg.no_reboot => {
                // Like QEMU: reset and boot again, for as long as it takes.
                log::info!("{}; resetting", status::triple_fault_message(&first, rip));
                m.reset();
                guest.load(&mut m)?;
            }
            _ => break report,
        }
    };
    match report.outcome {
        Outcome::TripleFault { first, rip } => {
            eprintln!("cjemu: {}", status::triple_fault_message(&first, rip));
        }
        Outcome::HaltedWithInterruptsOn => eprintln!(
            "cjemu: the guest halted with interrupts enabled, but no device can interrupt yet; \
             stopping (status 0)"
        ),
        _ => {}
    }
    if cfg.stats {
        eprint!("{}", stats::render(&m.engine, &report));
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
    Ok(report.outcome.status())
}
