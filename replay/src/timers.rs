//! Timers on the virtual clock.
//!
//! A timer is a [`TimerId`] (chosen by the machine's layout table, like an
//! IRQ number) with at most one deadline. Devices arm and cancel timers by
//! id; the run loop asks for the next deadline, turns it into the budget of
//! the next `run`, and after the run hands the ids of expired timers to
//! their owners. Nothing but plain data is stored (no closures), so the
//! whole set is a snapshot value.
//!
//! Order is deterministic: expired timers come out by deadline, then by id.
//!
//! ```
//! use cjemu_replay::clock::{ShiftMode, VirtualClock, VirtualNs};
//! use cjemu_replay::timers::{TimerId, Timers};
//! let clock = VirtualClock::new(ShiftMode::Fixed(0)).unwrap();
//! let mut t = Timers::new();
//! t.arm(TimerId(0), VirtualNs(500));
//! assert_eq!(t.budget(&clock, 100), Some(400));
//! let fired: Vec<_> = t.expire(clock.ns_at(500)).collect();
//! assert_eq!(fired, [TimerId(0)]);
//! ```

use crate::clock::{VirtualClock, VirtualNs};
use crate::state_hash::{StateHash, StateHasher};
use std::collections::{BTreeMap, BTreeSet};

/// A timer's name. The machine assigns ids; a device owns the ids it is
/// given.
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
pub struct TimerId(pub u32);

/// Every armed timer, for snapshots: `(id, deadline)` sorted by id.
/// `Default` is "nothing armed".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimersState {
    /// The armed timers, sorted by id, each id once.
    pub armed: Vec<(TimerId, VirtualNs)>,
}

impl StateHash for TimersState {
    /// The number of armed timers, then (id, deadline) by id.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("timers");
        h.write_u64(self.armed.len() as u64);
        for &(id, d) in &self.armed {
            h.write_u32(id.0);
            h.write_u64(d.0);
        }
    }
}

/// The set of timers of one machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timers {
    /// Deadline of each armed timer.
    by_id: BTreeMap<TimerId, VirtualNs>,
    /// The same timers ordered by (deadline, id): the expiry order.
    queue: BTreeSet<(VirtualNs, TimerId)>,
}

impl Timers {
    /// No timer armed.
    pub fn new() -> Timers {
        Timers::from_state(&TimersState::default())
    }

    /// Timers from a saved state. A repeated id keeps its last deadline.
    pub fn from_state(s: &TimersState) -> Timers {
        let mut t = Timers {
            by_id: BTreeMap::new(),
            queue: BTreeSet::new(),
        };
        for &(id, deadline) in &s.armed {
            t.arm(id, deadline);
        }
        t
    }

    /// The saved state (inverse of [`Timers::from_state`]).
    pub fn state(&self) -> TimersState {
        TimersState {
            armed: self.by_id.iter().map(|(&id, &d)| (id, d)).collect(),
        }
    }

    /// Arm `id` to expire at `deadline`, replacing any earlier arming. A
    /// deadline already past expires at the next [`Timers::expire`].
    pub fn arm(&mut self, id: TimerId, deadline: VirtualNs) {
        self.cancel(id);
        self.by_id.insert(id, deadline);
        self.queue.insert((deadline, id));
    }

    /// Disarm `id` (nothing happens if it is not armed).
    pub fn cancel(&mut self, id: TimerId) {
        if let Some(old) = self.by_id.remove(&id) {
            self.queue.remove(&(old, id));
        }
    }

    /// The deadline `id` is armed for.
    pub fn deadline(&self, id: TimerId) -> Option<VirtualNs> {
        self.by_id.get(&id).copied()
    }

    /// The earliest deadline of all armed timers.
    pub fn next_deadline(&self) -> Option<VirtualNs> {
        self.queue.first().map(|&(d, _)| d)
    }

    /// Disarm every timer whose deadline is at or before `now` and return
    /// their ids by deadline, then id. A timer re-armed by its owner while
    /// the caller walks the result is a new arming, not part of this batch.
    pub fn expire(&mut self, now: VirtualNs) -> impl Iterator<Item = TimerId> {
        let later = match now.0.checked_add(1) {
            Some(next) => self.queue.split_off(&(VirtualNs(next), TimerId(0))),
            None => BTreeSet::new(),
        };
        let expired = std::mem::replace(&mut self.queue, later);
        for (_, id) in &expired {
            self.by_id.remove(id);
        }
        expired.into_iter().map(|(_, id)| id)
    }

    /// The budget of the next `run` from `icount`: instructions until the
    /// next deadline is reached (see [`VirtualClock::icount_at`] for the
    /// rounding), 0 if a deadline is already due, `None` with no timer armed
    /// (the run loop then applies its own cap).
    pub fn budget(&self, clock: &VirtualClock, icount: u64) -> Option<u64> {
        self.next_deadline().map(|d| clock.insns_until(d, icount))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ShiftMode;

    #[test]
    fn timers_next_deadline_follows_arm_and_cancel() {
        let mut t = Timers::new();
        assert_eq!(t.next_deadline(), None);
        t.arm(TimerId(3), VirtualNs(300));
        t.arm(TimerId(1), VirtualNs(100));
        assert_eq!(t.next_deadline(), Some(VirtualNs(100)));
        t.arm(TimerId(1), VirtualNs(400)); // re-arm replaces
        assert_eq!(t.next_deadline(), Some(VirtualNs(300)));
        assert_eq!(t.deadline(TimerId(1)), Some(VirtualNs(400)));
        t.cancel(TimerId(3));
        t.cancel(TimerId(9));
        assert_eq!(t.next_deadline(), Some(VirtualNs(400)));
        t.cancel(TimerId(1));
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.deadline(TimerId(1)), None);
    }

    #[test]
    fn timers_expire_in_deadline_then_id_order() {
        let mut t = Timers::new();
        t.arm(TimerId(7), VirtualNs(50));
        t.arm(TimerId(2), VirtualNs(50));
        t.arm(TimerId(5), VirtualNs(10));
        t.arm(TimerId(1), VirtualNs(51));
        let got: Vec<_> = t.expire(VirtualNs(50)).collect();
        assert_eq!(got, [TimerId(5), TimerId(2), TimerId(7)]);
        assert_eq!(t.next_deadline(), Some(VirtualNs(51)));
        assert_eq!(t.expire(VirtualNs(50)).count(), 0, "already gone");
        let got: Vec<_> = t.expire(VirtualNs::MAX).collect();
        assert_eq!(got, [TimerId(1)]);
        assert_eq!(t, Timers::new());
    }

    #[test]
    fn timers_expire_at_max_takes_everything() {
        let mut t = Timers::new();
        t.arm(TimerId(0), VirtualNs::MAX);
        t.arm(TimerId(1), VirtualNs(0));
        let got: Vec<_> = t.expire(VirtualNs::MAX).collect();
        assert_eq!(got, [TimerId(1), TimerId(0)]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn timers_budget_ends_at_the_deadline() {
        let clock = VirtualClock::new(ShiftMode::Fixed(2)).unwrap();
        let mut t = Timers::new();
        assert_eq!(t.budget(&clock, 0), None);
        t.arm(TimerId(0), VirtualNs(1000));
        assert_eq!(t.budget(&clock, 0), Some(250));
        assert_eq!(t.budget(&clock, 100), Some(150));
        t.arm(TimerId(0), VirtualNs(1001));
        assert_eq!(t.budget(&clock, 0), Some(251), "rounds up");
        assert_eq!(t.budget(&clock, 300), Some(0), "overdue");
        // Running the budget reaches the deadline; one less does not.
        assert!(clock.ns_at(251) >= VirtualNs(1001));
        assert!(clock.ns_at(250) < VirtualNs(1001));
    }

    #[test]
    fn timers_state_round_trips() {
        let mut t = Timers::new();
        t.arm(TimerId(4), VirtualNs(9));
        t.arm(TimerId(2), VirtualNs(9));
        let s = t.state();
        assert_eq!(
            s.armed,
            [(TimerId(2), VirtualNs(9)), (TimerId(4), VirtualNs(9))]
        );
        let mut u = Timers::from_state(&s);
        assert_eq!(u, t);
        let got: Vec<_> = u.expire(VirtualNs(9)).collect();
        assert_eq!(got, [TimerId(2), TimerId(4)]);
        assert_ne!(u.state().state_hash(), s.state_hash());
        assert_eq!(u.state().state_hash(), TimersState::default().state_hash());
    }
}
