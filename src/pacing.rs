//! Host-facing pacing of the virtual clock (`--icount
//! shift=N|auto,sleep=on|off,align=on|off`).
//!
//! Everything here looks at the host's real time, and the only way it can
//! affect the guest is by moving the virtual clock through the two calls
//! that return a [`ClockAdjust`]: idling (`advance_idle`) and `shift=auto`
//! (`set_shift`). Each such move is an input of the run (the record/replay
//! log will keep them); with `sleep=off` and a fixed shift no host time
//! reaches the guest at all, so the run is deterministic.
//!
//! - `sleep=off`: a halted CPU jumps to the next timer deadline at once.
//! - `sleep=on`: it waits for the deadline in real time (or for serial
//!   input), and virtual time advances by the real time waited.
//! - `align=on` (fixed shift, sleep=on): the guest is held back whenever
//!   its virtual time runs ahead of real time.
//! - `shift=auto`: every [`AUTO_PERIOD`] of real time the shift moves one
//!   step towards keeping virtual time with real time.

use crate::serial_input::SerialInput;
use cjemu_replay::clock::{ClockAdjust, HostInstant, VirtualClock, VirtualNs, MAX_SHIFT};
use std::time::Duration;

/// How often `shift=auto` reconsiders the shift (real time).
pub const AUTO_PERIOD: Duration = Duration::from_millis(100);

/// How far virtual time may drift from real time before `shift=auto`
/// changes the shift or `align=on` sleeps.
pub const DRIFT: Duration = Duration::from_millis(10);

/// The clock's pacing options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacingMode {
    /// Idle time passes in real time.
    pub sleep: bool,
    /// Keep virtual time from running ahead of real time.
    pub align: bool,
    /// The shift adapts (`shift=auto`).
    pub auto: bool,
}

impl Default for PacingMode {
    /// cjemu's default without `--icount`: deterministic (`sleep=off`).
    fn default() -> Self {
        PacingMode {
            sleep: false,
            align: false,
            auto: false,
        }
    }
}

/// What an idle CPU's wait did.
#[derive(Debug, PartialEq, Eq)]
pub enum IdleWait {
    /// Virtual time moved (to a deadline, or by the real time waited).
    Moved(ClockAdjust),
    /// Serial input arrived; no virtual time passed.
    Input,
    /// Nothing armed and no live input: the CPU can never wake.
    Never,
}

/// Real time and virtual time at the start of the run.
#[derive(Debug)]
pub struct Pacing {
    mode: PacingMode,
    start: HostInstant,
    start_virtual: VirtualNs,
    last_auto: HostInstant,
}

impl Pacing {
    /// Pacing from now, with the clock at `start_virtual`.
    pub fn new(mode: PacingMode, start_virtual: VirtualNs) -> Pacing {
        let now = HostInstant::now();
        Pacing {
            mode,
            start: now,
            start_virtual,
            last_auto: now,
        }
    }

    /// The options.
    pub fn mode(&self) -> PacingMode {
        self.mode
    }

    /// A halted CPU at `icount` waits for `deadline` (the next timer) or
    /// for serial input.
    pub fn idle(
        &mut self,
        clock: &mut VirtualClock,
        icount: u64,
        deadline: Option<VirtualNs>,
        input: &mut SerialInput,
    ) -> IdleWait {
        if !self.mode.sleep {
            if let Some(d) = deadline {
                return moved(clock.advance_idle(d, icount));
            }
            if input.is_live() {
                wait_interruptibly(input, None);
                // Input, or a stop request the run loop will see.
                return IdleWait::Input;
            }
            return IdleWait::Never;
        }
        let now = clock.ns_at(icount);
        let timeout = deadline.map(|d| Duration::from_nanos(d.saturating_since(now)));
        if deadline.is_none() && !input.is_live() {
            return IdleWait::Never;
        }
        let t0 = HostInstant::now();
        let got_input = wait_interruptibly(input, timeout);
        let waited = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        let mut to = now.saturating_add(waited);
        if let Some(d) = deadline {
            if !got_input || to > d {
                to = d;
            }
        }
        match clock.advance_idle(to, icount) {
            Some(adj) => IdleWait::Moved(adj),
            None if got_input => IdleWait::Input,
            None => moved(None),
        }
    }

    /// After a slice ends at `icount`: `shift=auto` may change the shift,
    /// `align=on` may sleep.
    pub fn after_slice(&mut self, clock: &mut VirtualClock, icount: u64) -> Option<ClockAdjust> {
        if self.mode.align {
            let ahead = self.drift(clock, icount);
            if ahead > DRIFT.as_nanos() as i128 {
                std::thread::sleep(Duration::from_nanos(ahead as u64));
            }
        }
        if !self.mode.auto || self.last_auto.elapsed() < AUTO_PERIOD {
            return None;
        }
        self.last_auto = HostInstant::now();
        let drift = self.drift(clock, icount);
        let shift = clock.shift();
        let new = if drift > DRIFT.as_nanos() as i128 && shift > 0 {
            shift - 1
        } else if drift < -(DRIFT.as_nanos() as i128) && shift < MAX_SHIFT {
            shift + 1
        } else {
            return None;
        };
        match clock.set_shift(new, icount) {
            Ok(adj) => {
                log::info!("icount: shift {shift} -> {new} at icount {icount} (virtual time was {drift} ns ahead of real time)");
                Some(adj)
            }
            Err(e) => {
                log::warn!("icount: {e}");
                None
            }
        }
    }

    /// Virtual time elapsed minus real time elapsed since the start, ns
    /// (positive: the guest runs ahead).
    fn drift(&self, clock: &VirtualClock, icount: u64) -> i128 {
        let virt = clock.ns_at(icount).saturating_since(self.start_virtual) as i128;
        virt - self.start.elapsed().as_nanos() as i128
    }
}

/// The longest single host wait: a stop signal is noticed this soon.
const POLL: Duration = Duration::from_millis(50);

/// Wait for input up to `timeout` (forever with `None`), in slices of
/// [`POLL`] so that a stop signal ends the wait. True if input came.
fn wait_interruptibly(input: &mut SerialInput, timeout: Option<Duration>) -> bool {
    let t0 = HostInstant::now();
    loop {
        let slice = match timeout {
            Some(t) => match t.checked_sub(t0.elapsed()) {
                Some(left) if !left.is_zero() => left.min(POLL),
                _ => return false,
            },
            None => POLL,
        };
        if input.wait(Some(slice)) {
            return true;
        }
        if crate::signals::pending() || (timeout.is_none() && !input.is_live()) {
            return false;
        }
    }
}

/// `advance_idle` returns `None` only when the target is not later than
/// now, which a deadline that is due would be: the caller services timers
/// first, so that cannot happen; treat it as input-free progress anyway.
fn moved(adj: Option<ClockAdjust>) -> IdleWait {
    match adj {
        Some(a) => IdleWait::Moved(a),
        None => IdleWait::Input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cjemu_replay::clock::ShiftMode;

    #[test]
    fn pacing_sleep_off_jumps_to_the_deadline() {
        let mut clock = VirtualClock::new(ShiftMode::Fixed(0)).unwrap();
        let mut p = Pacing::new(PacingMode::default(), VirtualNs::ZERO);
        let mut input = SerialInput::none();
        match p.idle(&mut clock, 100, Some(VirtualNs(5_000)), &mut input) {
            IdleWait::Moved(adj) => assert_eq!(adj.at_icount, 100),
            w => panic!("{w:?}"),
        }
        assert_eq!(clock.ns_at(100), VirtualNs(5_000));
        assert_eq!(clock.ns_at(101), VirtualNs(5_001));
        assert_eq!(p.idle(&mut clock, 100, None, &mut input), IdleWait::Never);
    }

    #[test]
    fn pacing_sleep_off_wakes_for_pending_input_without_moving_time() {
        let mut clock = VirtualClock::new(ShiftMode::Fixed(2)).unwrap();
        let mut p = Pacing::new(PacingMode::default(), VirtualNs::ZERO);
        // Not live: a file's bytes are handed over by the run loop, never
        // waited for here.
        let mut input = SerialInput::from_bytes(vec![1]);
        assert_eq!(p.idle(&mut clock, 7, None, &mut input), IdleWait::Never);
        assert_eq!(clock.ns_at(7), VirtualNs(28));
    }

    #[test]
    fn pacing_sleep_on_waits_up_to_the_deadline_in_real_time() {
        let mut clock = VirtualClock::new(ShiftMode::Fixed(0)).unwrap();
        let mode = PacingMode {
            sleep: true,
            ..PacingMode::default()
        };
        let mut p = Pacing::new(mode, VirtualNs::ZERO);
        let mut input = SerialInput::none();
        // 2 ms of virtual time: waited in real time, then exactly there.
        let w = p.idle(&mut clock, 0, Some(VirtualNs(2_000_000)), &mut input);
        assert!(matches!(w, IdleWait::Moved(_)), "{w:?}");
        assert_eq!(clock.ns_at(0), VirtualNs(2_000_000));
    }
}
