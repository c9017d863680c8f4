//! Stop requests from the host: SIGINT (Ctrl-C), SIGTERM, SIGHUP.
//!
//! The handler only records which signal came; the run loop looks at it at
//! its next service round, ends the run there (a recording writes the stop
//! into its log, so a replay stops at the same instruction) and exits
//! normally, flushing serial output and the log.

use cjemu_replay::replay_log::StopReason;
use std::sync::atomic::{AtomicI32, Ordering};

/// The last stop signal received, 0 for none.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Catch the stop signals from now on.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `signal` has no other preconditions.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Is a stop waiting to be taken? (Long host waits poll this.)
pub fn pending() -> bool {
    PENDING.load(Ordering::SeqCst) != 0
}

/// The stop asked for since the last call, if any.
pub fn take() -> Option<StopReason> {
    match PENDING.swap(0, Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some(StopReason::Interrupt),
        _ => Some(StopReason::Terminate),
    }
}
