//! QEMU's `pc-testdev` (used by kvm-unit-tests): a 64 KiB MMIO scratch area
//! ("IORAM", at 0xff000000 on the PC) that reads back what was written, and
//! a 4-byte port scratch register (ports 0xe0–0xe3, and byte-wise at
//! 0xe8–0xeb). The flush-page port (0xe4) and the IRQ-line ports (0x2000)
//! of QEMU's device are not modelled yet.
//!
//! Two bus windows, two devices sharing nothing: [`TestdevIoram`] and
//! [`TestdevPort`].

use crate::bus::BusDevice;
use cjemu_replay::{StateHash, StateHasher};

/// Size of the IORAM window.
pub const IORAM_SIZE: u64 = 0x10000;
/// Size of the port scratch register's window.
pub const PORT_SIZE: u64 = 4;

/// The IORAM's contents. `Default` (zeroes) is the power-on state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestdevIoramState {
    /// [`IORAM_SIZE`] bytes.
    pub bytes: Vec<u8>,
}

impl Default for TestdevIoramState {
    fn default() -> Self {
        TestdevIoramState {
            bytes: vec![0; IORAM_SIZE as usize],
        }
    }
}

impl StateHash for TestdevIoramState {
    /// bytes: the length as u32, then the bytes.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("testdev_ioram");
        h.write_u32(self.bytes.len() as u32);
        h.write(&self.bytes);
    }
}

/// The 64 KiB IORAM.
#[derive(Debug, Default)]
pub struct TestdevIoram {
    state: TestdevIoramState,
}

impl TestdevIoram {
    /// The IORAM in its power-on state.
    pub fn new() -> TestdevIoram {
        TestdevIoram::from_state(&TestdevIoramState::default())
    }

    /// An IORAM with saved contents (resized to 64 KiB if they differ).
    pub fn from_state(s: &TestdevIoramState) -> TestdevIoram {
        let mut bytes = s.bytes.clone();
        bytes.resize(IORAM_SIZE as usize, 0);
        TestdevIoram {
            state: TestdevIoramState { bytes },
        }
    }

    /// The saved state.
    pub fn state(&self) -> &TestdevIoramState {
        &self.state
    }
}

impl BusDevice for TestdevIoram {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Bytes past the end of the window read 0.
        for (i, d) in data.iter_mut().enumerate() {
            let o = offset as usize + i;
            *d = self.state.bytes.get(o).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &d) in data.iter().enumerate() {
            if let Some(b) = self.state.bytes.get_mut(offset as usize + i) {
                *b = d;
            }
        }
    }
}

/// The port scratch register. `Default` (0) is the power-on state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestdevPortState {
    /// The 32-bit register, little-endian over its four ports.
    pub data: u32,
}

impl StateHash for TestdevPortState {
    /// data, as a u32.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("testdev_port");
        h.write_u32(self.data);
    }
}

/// The scratch register at 0xe0 (and 0xe8): each byte port reads back the
/// byte last written to it.
#[derive(Debug, Default)]
pub struct TestdevPort {
    state: TestdevPortState,
}

impl TestdevPort {
    /// The register in its power-on state.
    pub fn new() -> TestdevPort {
        TestdevPort::from_state(&TestdevPortState::default())
    }

    /// The register with a saved state.
    pub fn from_state(s: &TestdevPortState) -> TestdevPort {
        TestdevPort { state: *s }
    }

    /// The saved state.
    pub fn state(&self) -> TestdevPortState {
        self.state
    }
}

impl BusDevice for TestdevPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let bytes = self.state.data.to_le_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            *d = bytes.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = self.state.data.to_le_bytes();
        for (i, &d) in data.iter().enumerate() {
            if let Some(b) = bytes.get_mut(offset as usize + i) {
                *b = d;
            }
        }
        self.state.data = u32::from_le_bytes(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testdev_ioram_reads_back_what_was_written() {
        let mut r = TestdevIoram::new();
        r.write(0x10, &0xdead_beef_u32.to_le_bytes());
        r.write(0xffff, &[0x77]);
        let mut d = [0u8; 4];
        r.read(0x10, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xdead_beef);
        r.read(0x12, &mut d[..2]);
        assert_eq!(&d[..2], &[0xad, 0xde]);
        let mut e = [1u8; 4];
        r.read(0xfffe, &mut e);
        assert_eq!(e, [0, 0x77, 0, 0], "bytes past the window read 0");
        r.write(0xfffe, &[1, 2, 3, 4]);
        assert_eq!(r.state().bytes.len(), IORAM_SIZE as usize);
        let s = r.state().clone();
        assert_eq!(TestdevIoram::from_state(&s).state(), &s);
    }

    #[test]
    fn testdev_port_is_byte_addressable() {
        let mut p = TestdevPort::new();
        p.write(0, &0x1122_3344_u32.to_le_bytes());
        p.write(1, &[0xaa]);
        assert_eq!(p.state().data, 0x1122_aa44);
        let mut d = [0u8; 2];
        p.read(2, &mut d);
        assert_eq!(d, [0x22, 0x11]);
        let mut d = [0u8; 2];
        p.read(3, &mut d);
        assert_eq!(d, [0x11, 0]);
    }
}
