//! QEMU's `isa-debug-exit`: a write of V to any of its ports asks the
//! emulator to exit with status `((V << 1) | 1) & 0xff`; reads give 0.
//!
//! The device only records the request; the machine ends the run after the
//! writing instruction retires. The window (`iobase`, `iosize`, default
//! 0xf4 and 4 in QEMU's PC) is chosen by the machine.

use crate::bus::{le_value, BusDevice};
use cjemu_replay::{StateHash, StateHasher};

/// Every guest-visible field. `Default` is the power-on state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DebugExitState {
    /// The value last written, not yet acted on.
    pub requested: Option<u32>,
}

impl StateHash for DebugExitState {
    /// requested: a flag byte, then the u32 if present.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("debug_exit");
        match self.requested {
            Some(v) => {
                h.write_u8(1);
                h.write_u32(v);
            }
            None => h.write_u8(0),
        }
    }
}

/// The debug-exit device.
#[derive(Debug, Default)]
pub struct DebugExit {
    state: DebugExitState,
}

impl DebugExit {
    /// The device in its power-on state.
    pub fn new() -> DebugExit {
        DebugExit::from_state(&DebugExitState::default())
    }

    /// The device with a saved state.
    pub fn from_state(s: &DebugExitState) -> DebugExit {
        DebugExit { state: *s }
    }

    /// The saved state.
    pub fn state(&self) -> DebugExitState {
        self.state
    }

    /// Take the pending exit request, if the guest wrote one.
    pub fn take_request(&mut self) -> Option<u32> {
        self.state.requested.take()
    }
}

/// The process exit status a write of `v` asks for (QEMU's formula; the
/// operating system keeps the low 8 bits).
pub fn exit_status(v: u32) -> u8 {
    (((v as u64) << 1 | 1) & 0xff) as u8
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.state.requested = Some(le_value(data) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_records_the_written_value() {
        let mut d = DebugExit::new();
        assert_eq!(d.take_request(), None);
        d.write(0, &[0x10]);
        assert_eq!(
            d.state(),
            DebugExitState {
                requested: Some(0x10)
            }
        );
        assert_eq!(d.take_request(), Some(0x10));
        assert_eq!(d.take_request(), None);
        d.write(2, &[0x34, 0x12]);
        assert_eq!(d.take_request(), Some(0x1234));
        let mut b = [9u8; 4];
        d.read(0, &mut b);
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn debug_exit_status_follows_qemu() {
        assert_eq!(exit_status(0), 1);
        assert_eq!(exit_status(1), 3);
        assert_eq!(exit_status(0x7f), 0xff);
        assert_eq!(exit_status(0x80), 1, "only the low 8 bits survive");
        assert_eq!(exit_status(u32::MAX), 0xff);
    }
}
