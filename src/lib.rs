//! cjemu: the machine and the command line around the `cjemu-jit` CPU engine.
//!
//! [`cli::parse`] turns the command line into a [`cli::Config`]; [`run`]
//! loads the guest (a flat binary, or the built-in [`demo`]), runs it on a
//! [`machine::Machine`] and returns the exit status ([`status`] is the one
//! place that maps outcomes to statuses). cjemu's own messages, logs and
//! `--stats` go to stderr; stdout is reserved for the guest's serial output.

pub mod cli;
pub mod demo;
pub mod flat;
pub mod hash;
pub mod logging;
pub mod machine;
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
}

/// Read an input file; failure is status 2 with one line naming the file.
fn read_input(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Input(format!("{what} {}: {e}", path.display())))
}

/// What a kernel file that is not loaded with `--flat` looks like.
#[derive(Debug, PartialEq, Eq)]
enum KernelKind {
    /// Has a multiboot (v1) header in its first 8 KiB.
    Multiboot,
    /// A Linux bzImage ("HdrS" at 0x202).
    Linux,
    /// An ELF file without a multiboot header.
    PlainElf,
    /// Anything else.
    Unknown,
}

fn kernel_kind(image: &[u8]) -> KernelKind {
    const MULTIBOOT_MAGIC: [u8; 4] = 0x1bad_b002u32.to_le_bytes();
    let head = &image[..image.len().min(8192)];
    if head.chunks_exact(4).any(|w| w == MULTIBOOT_MAGIC) {
        KernelKind::Multiboot
    } else if image.get(0x202..0x206) == Some(b"HdrS") {
        KernelKind::Linux
    } else if image.starts_with(b"\x7fELF") {
        KernelKind::PlainElf
    } else {
        KernelKind::Unknown
    }
}

impl Guest {
    /// The guest the configuration asks for (reads the kernel file).
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
        let file = path.display();
        let not_yet = |loader: &str| Error::NotImplemented {
            what: format!("-kernel {file}: the {loader} loader"),
            hint: Some("flat binaries run with --flat ADDR".into()),
        };
        Err(match kernel_kind(&image) {
            KernelKind::Multiboot => not_yet("multiboot"),
            KernelKind::Linux => not_yet("Linux boot protocol"),
            KernelKind::PlainElf => Error::Input(format!(
                "-kernel {file}: an ELF file without a multiboot header; cjemu boots multiboot \
                 and Linux kernels, or flat binaries with --flat ADDR"
            )),
            KernelKind::Unknown => Error::Input(format!(
                "-kernel {file}: not a multiboot or Linux kernel; to run it as a flat 64-bit \
                 binary, add --flat ADDR (e.g. --flat 0x100000)"
            )),
        })
    }

    /// Put the guest into the machine.
    pub fn load(&self, m: &mut Machine) -> Result<(), Error> {
        match self {
            Guest::Demo => {
                let ram = m.engine.mem().ram_size();
                if ram < demo::DEMO_MIN_RAM {
                    return Err(Error::Usage(format!(
                        "the built-in demo guest needs at least {} MiB of RAM (-m)",
                        demo::DEMO_MIN_RAM >> 20
                    )));
                }
                flat::load_flat(
                    &mut m.engine,
                    demo::DEMO_GUEST,
                    demo::DEMO_LOAD,
                    demo::DEMO_LOAD,
                )
                .map_err(|e| Error::Internal(format!("loading the demo guest: {e}")))
            }
            Guest::Flat {
                path,
                image,
                load,
                entry,
            } => flat::load_flat(&mut m.engine, image, *load, *entry)
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
    let mut m = Machine::new(cfg.ram_size, cfg.accel)?;
    guest.load(&mut m)?;
    let report = m.run()?;
    if let Outcome::TripleFault { first, rip } = report.outcome {
        eprintln!("cjemu: {}", status::triple_fault_message(&first, rip));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_kinds_are_recognised() {
        let mut mb = vec![0u8; 64];
        mb[8..12].copy_from_slice(&0x1bad_b002u32.to_le_bytes());
        assert_eq!(kernel_kind(&mb), KernelKind::Multiboot);
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_kind(&bz), KernelKind::Linux);
        assert_eq!(kernel_kind(b"\x7fELF\x02\x01\x01"), KernelKind::PlainElf);
        assert_eq!(kernel_kind(&[0x90, 0xf4]), KernelKind::Unknown);
        assert_eq!(kernel_kind(&[]), KernelKind::Unknown);
        // The magic must be 4-byte aligned to count.
        let mut off = vec![0u8; 64];
        off[9..13].copy_from_slice(&0x1bad_b002u32.to_le_bytes());
        assert_eq!(kernel_kind(&off), KernelKind::Unknown);
    }
}
