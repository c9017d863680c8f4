//! Exit statuses: the one place that turns how a run ended into the process
//! exit status (DESIGN.md, "Command line, output and exit status").
//!
//! | how the run ended | status |
//! |---|---|
//! | guest wrote V to the debug-exit port | `((V << 1) | 1) & 0xff`, as QEMU |
//! | guest powered off (HLT with IF=0), or triple fault or guest reset with `-no-reboot` | 0 |
//! | HLT with IF=1 (no interrupt source exists yet; a note on stderr) | 0 |
//! | usage error, unreadable or malformed input file, feature not implemented yet | 2 |
//! | replay divergence, bad, foreign or truncated log | 4 |
//! | internal error (a bug in cjemu), including a panic | 6 |
//!
//! Even statuses never collide with debug-exit's odd ones.

use cjemu_jit::Exception;
use cjemu_replay::replay_log::StopReason;
use std::fmt;

/// The guest's run ended normally (powered off, halted, shut down).
pub const STATUS_OK: u8 = 0;
/// Usage error, unreadable or malformed input, feature not implemented yet.
pub const STATUS_USAGE: u8 = 2;
/// Replay divergence or a bad, foreign or truncated log.
pub const STATUS_REPLAY: u8 = 4;
/// A bug in cjemu.
pub const STATUS_INTERNAL: u8 = 6;

/// How a guest run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HLT with interrupts disabled and nothing pending: power-off.
    PoweredOff,
    /// A triple fault (shutdown). With `-no-reboot`, and for flat binaries
    /// always, this ends the run as QEMU does.
    TripleFault {
        /// The first exception of the cascade.
        first: Exception,
        /// RIP of the instruction that raised it.
        rip: u64,
    },
    /// The guest pulsed the reset line (i8042 command 0xfe, or its output
    /// port's reset bit). Like a triple fault, this resets the machine
    /// unless `-no-reboot` (or a guest that cannot boot again) stops it.
    GuestReset,
    /// HLT with interrupts enabled, but no timer is armed and no input can
    /// arrive: the CPU would wait forever, so the run ends (status 0, with
    /// a note).
    HaltedWithInterruptsOn,
    /// The user or the host stopped the run (SIGINT, SIGTERM, SIGHUP), or
    /// a replay reached the point where its recording was stopped so.
    Stopped(StopReason),
    /// The guest wrote this value to the debug-exit port (0xf4).
    DebugExit(u32),
}

impl Outcome {
    /// The process exit status for this outcome.
    pub fn status(&self) -> u8 {
        match self {
            Outcome::PoweredOff
            | Outcome::HaltedWithInterruptsOn
            | Outcome::Stopped(_)
            | Outcome::TripleFault { .. }
            | Outcome::GuestReset => STATUS_OK,
            Outcome::DebugExit(v) => debug_exit_status(*v),
        }
    }
}

/// QEMU isa-debug-exit: writing V makes the process exit with `(V << 1) | 1`.
pub fn debug_exit_status(v: u32) -> u8 {
    cjemu_devices::debug_exit::exit_status(v)
}

/// The one line printed for a triple fault, naming the exception (vector,
/// error code, fault address for #PF) and the RIP that raised it.
pub fn triple_fault_message(first: &Exception, rip: u64) -> String {
    let name = cjemu_jit::exception::vector_name(first.vector);
    let mut s = format!("guest triple fault: {name} (vector {})", first.vector);
    if first.has_error_code {
        s += &format!(", error code {:#x}", first.error_code);
    }
    if first.vector == cjemu_jit::exception::vector::PF {
        s += &format!(", address {:#x}", first.address);
    }
    s += &format!(", at rip {rip:#x}; machine stopped (as with -no-reboot)");
    s
}

/// Everything that stops cjemu before or instead of a normal guest exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad command line (the message may span lines: clap's usage text).
    Usage(String),
    /// A feature that exists on the command line but not yet in cjemu:
    /// what was asked for, and an optional hint (printed in parentheses).
    NotImplemented { what: String, hint: Option<String> },
    /// An input file that cannot be read or is malformed.
    Input(String),
    /// Replay divergence or a bad log.
    Replay(String),
    /// A bug in cjemu.
    Internal(String),
}

impl Error {
    /// A feature not implemented yet, without a hint.
    pub fn not_implemented(what: impl Into<String>) -> Error {
        Error::NotImplemented {
            what: what.into(),
            hint: None,
        }
    }

    /// The process exit status for this error.
    pub fn status(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::NotImplemented { .. } | Error::Input(_) => STATUS_USAGE,
            Error::Replay(_) => STATUS_REPLAY,
            Error::Internal(_) => STATUS_INTERNAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Input(m) | Error::Replay(m) => f.write_str(m),
            Error::NotImplemented { what, hint } => {
                write!(f, "{what}: not implemented yet")?;
                match hint {
                    Some(h) => write!(f, " ({h})"),
                    None => Ok(()),
                }
            }
            Error::Internal(m) => write!(f, "internal error (a bug in cjemu): {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Make a panic print one line and exit with [`STATUS_INTERNAL`] instead of
/// Rust's default 101 (which would look like a debug-exit status).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = panic_text(info.payload()).replace('\n', " ");
        eprintln!("cjemu: {}", Error::Internal(format!("panic: {msg}{place}")));
        std::process::exit(STATUS_INTERNAL as i32);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_statuses_match_qemu_formula() {
        assert_eq!(debug_exit_status(0), 1);
        assert_eq!(debug_exit_status(1), 3);
        assert_eq!(debug_exit_status(0x10), 0x21);
        // Only the low byte survives: (0x80 << 1 | 1) & 0xff = 1.
        assert_eq!(debug_exit_status(0x80), 1);
        for v in 0..1000 {
            assert_eq!(debug_exit_status(v) % 2, 1, "debug-exit statuses are odd");
        }
    }

    #[test]
    fn error_statuses_are_even_and_distinct_by_class() {
        assert_eq!(Error::Usage("x".into()).status(), 2);
        assert_eq!(Error::Input("x".into()).status(), 2);
        assert_eq!(Error::not_implemented("--accel jit").status(), 2);
        assert_eq!(Error::Replay("x".into()).status(), 4);
        assert_eq!(Error::Internal("x".into()).status(), 6);
    }

    #[test]
    fn outcomes_map_to_statuses() {
        assert_eq!(Outcome::PoweredOff.status(), 0);
        let tf = Outcome::TripleFault {
            first: Exception::ud(),
            rip: 0x1000,
        };
        assert_eq!(tf.status(), 0);
        assert_eq!(Outcome::DebugExit(2).status(), 5);
    }

    #[test]
    fn not_implemented_message_is_one_line() {
        let m = Error::not_implemented("--icount").to_string();
        assert_eq!(m, "--icount: not implemented yet");
        let m = Error::NotImplemented {
            what: "--accel jit".into(),
            hint: Some("use --accel interp".into()),
        };
        assert_eq!(
            m.to_string(),
            "--accel jit: not implemented yet (use --accel interp)"
        );
    }

    #[test]
    fn triple_fault_message_names_vector_code_and_rip() {
        let m = triple_fault_message(&Exception::gp(0x18), 0x10_0004);
        assert!(m.contains("#GP"), "{m}");
        assert!(m.contains("error code 0x18"), "{m}");
        assert!(m.contains("rip 0x100004"), "{m}");
        let m = triple_fault_message(&Exception::ud(), 0x42);
        assert!(m.contains("#UD") && !m.contains("error code"), "{m}");
        let m = triple_fault_message(&Exception::pf(0xdead_0000, 2), 0x42);
        assert!(m.contains("address 0xdead0000"), "{m}");
    }

    #[test]
    fn panic_text_reads_str_and_string_payloads() {
        let a: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_text(a.as_ref()), "boom");
        let b: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_text(b.as_ref()), "bang");
        let c: Box<dyn std::any::Any + Send> = Box::new(3u8);
        assert_eq!(panic_text(c.as_ref()), "(no message)");
    }
}
