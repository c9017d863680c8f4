//! System control port B (port 0x61 on a PC): PIT channel 2's gate (bit 0)
//! and the speaker data enable (bit 1) are written here; reads add the
//! memory-refresh toggle (bit 4, which flips every 15.085 µs of virtual
//! time, the PIT channel 1 refresh period) and channel 2's OUT (bit 5),
//! which the machine supplies through [`Port61Link`] from the PIT.
//! Linux's PIT calibration gates channel 2 here and polls its OUT.

use crate::timed::TimedDevice;
use cjemu_replay::{StateHash, StateHasher};

/// Bit 0: PIT channel 2 gate.
pub const P61_GATE2: u8 = 0x01;
/// Bit 1: speaker data enable.
pub const P61_SPEAKER: u8 = 0x02;
/// Bits 0–3: the writable bits (bits 2–3 enable parity/IOCHK checks).
pub const P61_WRITABLE: u8 = 0x0f;
/// Bit 4: refresh toggle.
pub const P61_REFRESH: u8 = 0x10;
/// Bit 5: PIT channel 2 OUT.
pub const P61_OUT2: u8 = 0x20;
/// Half period of the refresh toggle, ns.
pub const REFRESH_TOGGLE_NS: u64 = 15_085;

/// What port 0x61 is wired to (the PIT's channel 2, the speaker).
pub trait Port61Link {
    /// Channel 2's OUT at virtual time `now_ns`.
    fn ch2_out(&mut self, now_ns: u64) -> bool;
    /// The guest set channel 2's gate at `now_ns`.
    fn set_ch2_gate(&mut self, now_ns: u64, gate: bool);
    /// The guest switched the speaker data on or off (nothing is audible).
    fn set_speaker(&mut self, _now_ns: u64, _on: bool) {}
}

/// Nothing attached: OUT reads 0, the gate goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLink;

impl Port61Link for NoLink {
    fn ch2_out(&mut self, _now_ns: u64) -> bool {
        false
    }
    fn set_ch2_gate(&mut self, _now_ns: u64, _gate: bool) {}
}

/// Every guest-visible field. `Default` is the power-on state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port61State {
    /// The writable bits 0–3 as last written.
    pub control: u8,
}

impl StateHash for Port61State {
    /// control. The refresh toggle and OUT2 are functions of the virtual
    /// time and the PIT, hashed there.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("port61");
        h.write_u8(self.control);
    }
}

/// Port 0x61.
pub struct Port61 {
    s: Port61State,
    link: Box<dyn Port61Link>,
}

impl Port61 {
    /// The port at power-on, wired to `link`.
    pub fn new(link: Box<dyn Port61Link>) -> Port61 {
        Port61::from_state(&Port61State::default(), link)
    }

    /// The port with a saved state. The link is not told anything: the
    /// PIT restores its own gate from its own state.
    pub fn from_state(s: &Port61State, link: Box<dyn Port61Link>) -> Port61 {
        Port61 {
            s: Port61State {
                control: s.control & P61_WRITABLE,
            },
            link,
        }
    }

    /// The saved state.
    pub fn state(&self) -> Port61State {
        self.s
    }

    /// The value a read gives at `now_ns`.
    pub fn value(&mut self, now_ns: u64) -> u8 {
        let refresh = if (now_ns / REFRESH_TOGGLE_NS) & 1 != 0 {
            P61_REFRESH
        } else {
            0
        };
        let out2 = if self.link.ch2_out(now_ns) {
            P61_OUT2
        } else {
            0
        };
        self.s.control | refresh | out2
    }

    fn write_value(&mut self, now_ns: u64, v: u8) {
        let old = self.s.control;
        self.s.control = v & P61_WRITABLE;
        let changed = old ^ self.s.control;
        if changed & P61_GATE2 != 0 {
            self.link.set_ch2_gate(now_ns, v & P61_GATE2 != 0);
        }
        if changed & P61_SPEAKER != 0 {
            self.link.set_speaker(now_ns, v & P61_SPEAKER != 0);
        }
    }
}

impl TimedDevice for Port61 {
    fn read_at(&mut self, now_ns: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let Some(d) = data.first_mut() {
            *d = self.value(now_ns);
        }
    }

    fn write_at(&mut self, now_ns: u64, _offset: u64, data: &[u8]) {
        if let Some(&v) = data.first() {
            self.write_value(now_ns, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A fake channel 2: OUT goes high 1000 ns after the gate rises;
    /// remembers the gate calls.
    #[derive(Clone, Default)]
    struct FakePit(Rc<RefCell<FakeCh2>>);

    /// When the gate last rose (None: low), and every gate call.
    type FakeCh2 = (Option<u64>, Vec<(u64, bool)>);

    impl Port61Link for FakePit {
        fn ch2_out(&mut self, now_ns: u64) -> bool {
            matches!(self.0.borrow().0, Some(t) if now_ns >= t + 1000)
        }
        fn set_ch2_gate(&mut self, now_ns: u64, gate: bool) {
            let mut s = self.0.borrow_mut();
            s.0 = gate.then_some(now_ns);
            s.1.push((now_ns, gate));
        }
    }

    fn rd(p: &mut Port61, now: u64) -> u8 {
        let mut d = [0u8];
        p.read_at(now, 0, &mut d);
        d[0]
    }

    #[test]
    fn port61_gate_reaches_the_pit_and_out2_reads_back() {
        let pit = FakePit::default();
        let mut p = Port61::new(Box::new(pit.clone()));
        assert_eq!(rd(&mut p, 0), 0);
        p.write_at(100, 0, &[0xf1]);
        assert_eq!(p.state().control, P61_GATE2, "bits 4-7 are read-only");
        assert_eq!(rd(&mut p, 500) & (P61_GATE2 | P61_OUT2), P61_GATE2);
        assert_eq!(rd(&mut p, 1100) & P61_OUT2, P61_OUT2);
        // Rewriting the same gate is no edge; the speaker bit is not a gate.
        p.write_at(1200, 0, &[P61_GATE2 | P61_SPEAKER]);
        p.write_at(1300, 0, &[0]);
        assert_eq!(pit.0.borrow().1, [(100, true), (1300, false)]);
        assert_eq!(rd(&mut p, 1400) & P61_OUT2, 0);
    }

    #[test]
    fn port61_refresh_bit_toggles_with_virtual_time() {
        let mut p = Port61::new(Box::new(NoLink));
        assert_eq!(rd(&mut p, 0) & P61_REFRESH, 0);
        assert_eq!(rd(&mut p, REFRESH_TOGGLE_NS - 1) & P61_REFRESH, 0);
        assert_eq!(rd(&mut p, REFRESH_TOGGLE_NS) & P61_REFRESH, P61_REFRESH);
        assert_eq!(rd(&mut p, 2 * REFRESH_TOGGLE_NS) & P61_REFRESH, 0);
        assert_eq!(rd(&mut p, 7), rd(&mut p, 7), "a function of time only");
    }
}
