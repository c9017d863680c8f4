//! The virtual clock: the only time source devices may read.
//!
//! Virtual time is a function of the instruction count:
//! `ns = bias + (icount << shift)`. The shift is 0–[`MAX_SHIFT`] (2^shift
//! virtual ns per retired instruction). `bias` moves only through the two
//! functions that the run loop calls, and each returns a [`ClockAdjust`]
//! value, an input of the run that the replay log records and
//! [`VirtualClock::apply`] injects back:
//!
//! - [`VirtualClock::advance_idle`]: an idle CPU (HLT) skips to a deadline
//!   (`sleep=off`), or waited some real time (`sleep=on`, the run loop turns
//!   that wait into a target [`VirtualNs`] itself).
//! - [`VirtualClock::set_shift`]: `shift=auto` picks a new shift; `bias` is
//!   rebased so time stays continuous at that instruction count.
//!
//! Host time is kept out of device state by the types: devices see
//! [`VirtualNs`] only, and the host-facing [`HostInstant`] has no conversion
//! into it.
//!
//! ```compile_fail
//! use cjemu_replay::clock::{HostInstant, VirtualNs};
//! let v: VirtualNs = HostInstant::now().into(); // no such conversion
//! ```
//!
//! ```
//! use cjemu_replay::clock::{ShiftMode, VirtualClock, VirtualNs};
//! let mut c = VirtualClock::new(ShiftMode::Fixed(3)).unwrap();
//! assert_eq!(c.ns_at(1000), VirtualNs(8000));
//! // The CPU halts at icount 1000 until a timer at 20 µs.
//! c.advance_idle(VirtualNs(20_000), 1000);
//! assert_eq!(c.ns_at(1000), VirtualNs(20_000));
//! assert_eq!(c.insns_until(VirtualNs(20_800), 1000), 100);
//! ```

use crate::state_hash::{StateHash, StateHasher};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The largest shift (2^10 ns per instruction, about 1 MIPS).
pub const MAX_SHIFT: u8 = 10;

/// The shift `shift=auto` starts with (8 ns per instruction).
pub const AUTO_INITIAL_SHIFT: u8 = 3;

/// A point in virtual time, in nanoseconds since the machine started.
///
/// The only time type device code sees. It never comes from the host clock:
/// the run loop computes it from the instruction count.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct VirtualNs(pub u64);

impl VirtualNs {
    /// The start of the run.
    pub const ZERO: VirtualNs = VirtualNs(0);
    /// The end of virtual time (about 584 years), also "never".
    pub const MAX: VirtualNs = VirtualNs(u64::MAX);

    /// `self + ns`, stopping at [`VirtualNs::MAX`].
    pub fn saturating_add(self, ns: u64) -> VirtualNs {
        VirtualNs(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn saturating_since(self, earlier: VirtualNs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A host monotonic instant, for host-facing code only (pacing with
/// `sleep=on`, statistics, the UI). Deliberately not convertible into
/// [`VirtualNs`]: host time reaches the guest only as a recorded
/// [`ClockAdjust`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostInstant(Instant);

impl HostInstant {
    /// Now, on the host's monotonic clock.
    pub fn now() -> HostInstant {
        HostInstant(Instant::now())
    }

    /// Host time elapsed since `self`.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// Host time from `earlier` to `self` (zero if `earlier` is later).
    pub fn saturating_duration_since(&self, earlier: HostInstant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }
}

/// The current virtual time as the run loop last published it: a shared,
/// read-only view for devices that sit behind a bus (whose `read`/`write`
/// carry no time). The run loop sets it to the exact `ns_at(icount)` before
/// every device access and every timer callback.
#[derive(Clone, Debug, Default)]
pub struct VirtualNow(Rc<Cell<VirtualNs>>);

impl VirtualNow {
    /// A view starting at time zero.
    pub fn new() -> VirtualNow {
        VirtualNow::default()
    }

    /// The published time.
    pub fn get(&self) -> VirtualNs {
        self.0.get()
    }

    /// Publish `now` (run loop only).
    pub fn set(&self, now: VirtualNs) {
        self.0.set(now)
    }
}

/// How the shift is chosen (`-icount shift=N|auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShiftMode {
    /// `shift=N`: fixed for the whole run.
    Fixed(u8),
    /// `shift=auto`: starts at [`AUTO_INITIAL_SHIFT`], changed by
    /// [`VirtualClock::set_shift`].
    Auto,
}

/// Why a clock cannot be built or adjusted.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ClockError {
    /// A shift above [`MAX_SHIFT`].
    #[error("icount shift {0} is out of range 0..={MAX_SHIFT}")]
    ShiftOutOfRange(u8),
    /// `set_shift` (or a recorded shift change) on a clock with a fixed
    /// shift.
    #[error("icount shift is fixed at {0}; only shift=auto may change it")]
    FixedShift(u8),
}

/// Every field of the clock, for snapshots. `Default` is `shift=0`,
/// `bias=0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockState {
    /// Added to `icount << shift`. Signed: a rebase to a larger shift moves
    /// it below zero (virtual time itself never goes below zero at or after
    /// the rebase point).
    pub bias: i64,
    /// Current shift, 0..=[`MAX_SHIFT`].
    pub shift: u8,
    /// `shift=auto` (the shift may change).
    pub auto: bool,
}

impl StateHash for ClockState {
    /// bias (as u64 bits), shift, auto.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("clock");
        h.write_u64(self.bias as u64);
        h.write_u8(self.shift);
        h.write_u8(self.auto as u8);
    }
}

/// What moved the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustCause {
    /// An idle CPU skipped (or slept) to a later time.
    Idle,
    /// `shift=auto` changed the shift.
    Shift,
}

/// One move of the clock: the values after the move, at the instruction
/// count where it took effect. Recording stores it; replay hands it to
/// [`VirtualClock::apply`] instead of recomputing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockAdjust {
    /// Instruction count at which the move took effect.
    pub at_icount: u64,
    /// What moved the clock.
    pub cause: AdjustCause,
    /// `bias` after the move.
    pub bias: i64,
    /// `shift` after the move.
    pub shift: u8,
}

/// The virtual clock of one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualClock {
    state: ClockState,
}

impl VirtualClock {
    /// A clock at time zero.
    pub fn new(mode: ShiftMode) -> Result<VirtualClock, ClockError> {
        let state = match mode {
            ShiftMode::Fixed(shift) => ClockState {
                bias: 0,
                shift,
                auto: false,
            },
            ShiftMode::Auto => ClockState {
                bias: 0,
                shift: AUTO_INITIAL_SHIFT,
                auto: true,
            },
        };
        VirtualClock::from_state(&state)
    }

    /// A clock with a saved state.
    pub fn from_state(s: &ClockState) -> Result<VirtualClock, ClockError> {
        check_shift(s.shift)?;
        Ok(VirtualClock { state: *s })
    }

    /// The saved state.
    pub fn state(&self) -> ClockState {
        self.state
    }

    /// The current shift.
    pub fn shift(&self) -> u8 {
        self.state.shift
    }

    /// Virtual time after `icount` retired instructions:
    /// `bias + (icount << shift)`, clamped to `0..=u64::MAX` (neither end is
    /// reachable in a real run: 2^64 ns is 584 years).
    pub fn ns_at(&self, icount: u64) -> VirtualNs {
        let ns = self.state.bias as i128 + ((icount as i128) << self.state.shift);
        VirtualNs(ns.clamp(0, u64::MAX as i128) as u64)
    }

    /// The smallest instruction count at which virtual time is at or past
    /// `deadline`. Rounds up: the instruction that ends the budget is the
    /// first whose completion makes `ns >= deadline`, so time lands exactly
    /// on the deadline when it is a multiple of `2^shift` away and at most
    /// `2^shift - 1` ns past it otherwise, never before it.
    pub fn icount_at(&self, deadline: VirtualNs) -> u64 {
        let span = deadline.0 as i128 - self.state.bias as i128;
        if span <= 0 {
            return 0;
        }
        let step = 1i128 << self.state.shift;
        let n = (span + step - 1) >> self.state.shift;
        n.min(u64::MAX as i128) as u64
    }

    /// Instructions to run from `icount` until `deadline` is reached
    /// ([`VirtualClock::icount_at`] rounding); 0 if it already is.
    pub fn insns_until(&self, deadline: VirtualNs, icount: u64) -> u64 {
        self.icount_at(deadline).saturating_sub(icount)
    }

    /// An idle CPU at `at_icount` moves virtual time forward to `to`
    /// (a timer deadline with `sleep=off`; with `sleep=on`, now plus the
    /// real time waited). Time never moves backwards: a `to` at or before
    /// now leaves the clock as it is and returns `None`.
    pub fn advance_idle(&mut self, to: VirtualNs, at_icount: u64) -> Option<ClockAdjust> {
        let now = self.ns_at(at_icount);
        if to <= now {
            return None;
        }
        let bias = self.state.bias as i128 + (to.0 - now.0) as i128;
        self.state.bias = bias.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        Some(self.adjust(at_icount, AdjustCause::Idle))
    }

    /// `shift=auto` switches to `new_shift` at `at_icount`, rebasing `bias`
    /// so that `ns_at(at_icount)` is unchanged.
    ///
    /// # Errors
    /// [`ClockError::FixedShift`] on a fixed-shift clock,
    /// [`ClockError::ShiftOutOfRange`] above [`MAX_SHIFT`].
    pub fn set_shift(&mut self, new_shift: u8, at_icount: u64) -> Result<ClockAdjust, ClockError> {
        if !self.state.auto {
            return Err(ClockError::FixedShift(self.state.shift));
        }
        check_shift(new_shift)?;
        let now = self.ns_at(at_icount).0 as i128;
        let bias = now - ((at_icount as i128) << new_shift);
        self.state.bias = bias.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        self.state.shift = new_shift;
        Ok(self.adjust(at_icount, AdjustCause::Shift))
    }

    /// Replay: install a recorded move (the caller injects it at
    /// `adj.at_icount`).
    ///
    /// # Errors
    /// As [`VirtualClock::set_shift`], for a shift the clock cannot take.
    pub fn apply(&mut self, adj: &ClockAdjust) -> Result<(), ClockError> {
        check_shift(adj.shift)?;
        if !self.state.auto && adj.shift != self.state.shift {
            return Err(ClockError::FixedShift(self.state.shift));
        }
        self.state.bias = adj.bias;
        self.state.shift = adj.shift;
        Ok(())
    }

    fn adjust(&self, at_icount: u64, cause: AdjustCause) -> ClockAdjust {
        ClockAdjust {
            at_icount,
            cause,
            bias: self.state.bias,
            shift: self.state.shift,
        }
    }
}

fn check_shift(shift: u8) -> Result<(), ClockError> {
    if shift > MAX_SHIFT {
        Err(ClockError::ShiftOutOfRange(shift))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(shift: u8) -> VirtualClock {
        VirtualClock::new(ShiftMode::Fixed(shift)).unwrap()
    }

    #[test]
    fn clock_ns_is_icount_shifted() {
        assert_eq!(fixed(0).ns_at(12345), VirtualNs(12345));
        assert_eq!(fixed(10).ns_at(3), VirtualNs(3072));
        assert_eq!(fixed(10).ns_at(u64::MAX), VirtualNs::MAX, "clamped");
        assert_eq!(
            VirtualClock::new(ShiftMode::Fixed(11)),
            Err(ClockError::ShiftOutOfRange(11))
        );
        let auto = VirtualClock::new(ShiftMode::Auto).unwrap();
        assert_eq!(auto.shift(), AUTO_INITIAL_SHIFT);
    }

    #[test]
    fn clock_icount_at_rounds_up_to_reach_the_deadline() {
        let c = fixed(3);
        // 8 ns per instruction: 80 ns is reached exactly after 10.
        assert_eq!(c.icount_at(VirtualNs(80)), 10);
        // 81..=88 ns: after 11 (88 ns), never before the deadline.
        assert_eq!(c.icount_at(VirtualNs(81)), 11);
        assert_eq!(c.icount_at(VirtualNs(88)), 11);
        for d in 0..200u64 {
            let n = c.icount_at(VirtualNs(d));
            assert!(c.ns_at(n).0 >= d);
            assert!(n == 0 || c.ns_at(n - 1).0 < d, "smallest such count");
        }
        assert_eq!(c.insns_until(VirtualNs(80), 4), 6);
        assert_eq!(c.insns_until(VirtualNs(80), 12), 0, "already past");
    }

    #[test]
    fn clock_advance_idle_moves_bias_forward_only() {
        let mut c = fixed(2);
        assert_eq!(c.advance_idle(VirtualNs(40), 10), None, "40 ns is now");
        assert_eq!(c.advance_idle(VirtualNs(39), 10), None, "the past");
        let adj = c.advance_idle(VirtualNs(1000), 10).unwrap();
        assert_eq!(
            adj,
            ClockAdjust {
                at_icount: 10,
                cause: AdjustCause::Idle,
                bias: 960,
                shift: 2
            }
        );
        assert_eq!(c.ns_at(10), VirtualNs(1000));
        assert_eq!(c.ns_at(11), VirtualNs(1004));
        assert_eq!(c.icount_at(VirtualNs(1004)), 11);
    }

    #[test]
    fn clock_set_shift_keeps_time_continuous() {
        let mut c = VirtualClock::new(ShiftMode::Auto).unwrap();
        let before = c.ns_at(1000); // 8000 ns
        let adj = c.set_shift(5, 1000).unwrap();
        assert_eq!(c.ns_at(1000), before);
        assert_eq!(c.ns_at(1001), VirtualNs(before.0 + 32));
        assert_eq!(adj.bias, 8000 - 32000, "bias goes negative");
        assert_eq!(c.icount_at(before), 1000);
        c.set_shift(0, 2000).unwrap();
        assert_eq!(c.ns_at(2000), VirtualNs(8000 + 1000 * 32));
        assert_eq!(c.ns_at(2001), VirtualNs(8000 + 1000 * 32 + 1));
        assert_eq!(c.set_shift(11, 2000), Err(ClockError::ShiftOutOfRange(11)));
        assert_eq!(fixed(3).set_shift(4, 0), Err(ClockError::FixedShift(3)));
    }

    #[test]
    fn clock_replay_applies_recorded_adjustments() {
        let mut rec = VirtualClock::new(ShiftMode::Auto).unwrap();
        let mut rep = rec.clone();
        let log = [
            rec.set_shift(6, 500).unwrap(),
            rec.advance_idle(VirtualNs(1_000_000), 700).unwrap(),
            rec.set_shift(1, 900).unwrap(),
        ];
        for adj in &log {
            rep.apply(adj).unwrap();
        }
        assert_eq!(rep.state(), rec.state());
        let mut f = fixed(3);
        assert_eq!(f.apply(&log[0]), Err(ClockError::FixedShift(3)));
        let same_shift = ClockAdjust { shift: 3, ..log[1] };
        f.apply(&same_shift).unwrap();
        assert_eq!(f.state().bias, log[1].bias);
    }

    #[test]
    fn clock_state_round_trips() {
        let mut c = VirtualClock::new(ShiftMode::Auto).unwrap();
        c.set_shift(7, 123).unwrap();
        let d = VirtualClock::from_state(&c.state()).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.state().state_hash(), c.state().state_hash());
        assert_ne!(c.state().state_hash(), ClockState::default().state_hash());
        let bad = ClockState {
            shift: 12,
            ..ClockState::default()
        };
        assert_eq!(
            VirtualClock::from_state(&bad),
            Err(ClockError::ShiftOutOfRange(12))
        );
    }

    #[test]
    fn virtual_now_is_shared() {
        let now = VirtualNow::new();
        let dev_view = now.clone();
        now.set(VirtualNs(42));
        assert_eq!(dev_view.get(), VirtualNs(42));
        assert_eq!(VirtualNs(5).saturating_since(VirtualNs(7)), 0);
        assert_eq!(VirtualNs::MAX.saturating_add(1), VirtualNs::MAX);
    }
}
