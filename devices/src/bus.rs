//! The two buses: port I/O (a 16-bit port space) and MMIO (guest-physical
//! ranges).
//!
//! A device registers one or more windows; an access is routed to the one
//! window that contains its first byte, and the device sees only the offset
//! inside that window. Absolute ports and addresses belong to the machine's
//! layout table, never to device code.
//!
//! Guest mistakes are not errors: an access that reaches no device reads
//! all-ones and a write there is dropped; both are counted in
//! [`BusStats`] and logged at debug level under the [`GUEST_ERRORS`]
//! target (`-d guest_errors`). Registration mistakes are the machine's
//! and are reported as [`BusError`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use thiserror::Error;

/// Log target for guest mistakes (enabled by `-d guest_errors`).
pub const GUEST_ERRORS: &str = "cjemu_devices::guest_errors";

/// A device on a bus. Accesses are 1, 2, 4 or 8 bytes, little-endian.
///
/// Implementations must never panic on any offset or width a guest can
/// produce: an access they do not understand reads as all-ones (or what the
/// hardware gives) and a write is ignored.
pub trait BusDevice {
    /// Read `data.len()` bytes at `offset` inside the device's window.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Write `data` at `offset` inside the device's window.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else needs to see it
/// (the machine reads a debug-exit request, a test reads a UART's output).
pub type SharedDevice = Rc<RefCell<dyn BusDevice>>;

/// Why a window cannot be registered.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BusError {
    /// A window of size zero.
    #[error("bus window at {base:#x} has size zero")]
    ZeroSized {
        /// Start of the window.
        base: u64,
    },
    /// `base + size` runs past the end of the address space.
    #[error("bus window {base:#x}+{size:#x} runs past the end of the address space ({end:#x})")]
    Overflow {
        /// Start of the window.
        base: u64,
        /// Its size.
        size: u64,
        /// Size of the address space.
        end: u128,
    },
    /// The window overlaps one already registered.
    #[error("bus window {base:#x}+{size:#x} overlaps {other_base:#x}+{other_size:#x}")]
    Overlap {
        /// Start of the window.
        base: u64,
        /// Its size.
        size: u64,
        /// Start of the window already there.
        other_base: u64,
        /// Its size.
        other_size: u64,
    },
}

/// Counters of guest accesses that reached no device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Reads of nothing (answered with all-ones).
    pub unassigned_reads: u64,
    /// Writes to nothing (dropped).
    pub unassigned_writes: u64,
}

struct Window {
    size: u64,
    dev: SharedDevice,
}

/// A bus over an address space of `end` addresses (`0x10000` for ports,
/// `2^64` for MMIO). Windows are kept sorted by base; a lookup is one
/// range search (the last window starting at or below the address).
pub struct Bus {
    name: &'static str,
    end: u128,
    windows: BTreeMap<u64, Window>,
    /// Accesses that reached nothing.
    pub stats: BusStats,
}

impl Bus {
    /// The port-I/O bus: ports 0..=0xffff.
    pub fn pio() -> Bus {
        Bus::new("port", 1 << 16)
    }

    /// The MMIO bus: the whole 64-bit guest-physical space.
    pub fn mmio() -> Bus {
        Bus::new("mmio", 1 << 64)
    }

    fn new(name: &'static str, end: u128) -> Bus {
        Bus {
            name,
            end,
            windows: BTreeMap::new(),
            stats: BusStats::default(),
        }
    }

    /// Register `dev` at `[base, base + size)`.
    pub fn insert(&mut self, base: u64, size: u64, dev: SharedDevice) -> Result<(), BusError> {
        if size == 0 {
            return Err(BusError::ZeroSized { base });
        }
        if base as u128 + size as u128 > self.end {
            return Err(BusError::Overflow {
                base,
                size,
                end: self.end,
            });
        }
        let end = base as u128 + size as u128;
        // Only the nearest window below `end` can overlap: windows never
        // overlap one another, so it is the one with the highest base.
        let below_end = self
            .windows
            .range(..=((end - 1) as u64))
            .next_back()
            .filter(|(&b, w)| b as u128 + w.size as u128 > base as u128);
        if let Some((&other_base, w)) = below_end {
            return Err(BusError::Overlap {
                base,
                size,
                other_base,
                other_size: w.size,
            });
        }
        self.windows.insert(base, Window { size, dev });
        Ok(())
    }

    /// The device and offset for `addr`, if a window contains it.
    fn find(&self, addr: u64) -> Option<(&SharedDevice, u64)> {
        let (&base, w) = self.windows.range(..=addr).next_back()?;
        let off = addr - base;
        (off < w.size).then_some((&w.dev, off))
    }

    /// A guest read of `data.len()` bytes at `addr`.
    pub fn read(&mut self, addr: u64, data: &mut [u8]) {
        match self.find(addr) {
            Some((dev, off)) => dev.borrow_mut().read(off, data),
            None => {
                self.stats.unassigned_reads += 1;
                log::debug!(target: GUEST_ERRORS, "{} read of {} bytes at {addr:#x}: nothing there", self.name, data.len());
                data.fill(0xff);
            }
        }
    }

    /// A guest write of `data` at `addr`.
    pub fn write(&mut self, addr: u64, data: &[u8]) {
        match self.find(addr) {
            Some((dev, off)) => dev.borrow_mut().write(off, data),
            None => {
                self.stats.unassigned_writes += 1;
                log::debug!(target: GUEST_ERRORS, "{} write of {data:02x?} at {addr:#x}: nothing there", self.name);
            }
        }
    }
}

/// Little-endian value of up to 8 bytes.
pub fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Fill `data` with the low bytes of `v`, little-endian (bytes past 8 are 0).
pub fn put_le_value(data: &mut [u8], v: u64) {
    for (i, d) in data.iter_mut().enumerate() {
        *d = if i < 8 { (v >> (8 * i)) as u8 } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers its own offset; remembers the last write.
    #[derive(Default)]
    struct IdDevice {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for IdDevice {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            put_le_value(data, offset);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn dev() -> Rc<RefCell<IdDevice>> {
        Rc::new(RefCell::new(IdDevice::default()))
    }

    #[test]
    fn bus_insert_rejects_overlap_zero_size_and_overflow() {
        let mut b = Bus::pio();
        b.insert(0x3f8, 8, dev()).unwrap();
        assert!(matches!(
            b.insert(0x3f0, 9, dev()),
            Err(BusError::Overlap {
                other_base: 0x3f8,
                ..
            })
        ));
        assert!(matches!(
            b.insert(0x3ff, 1, dev()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            b.insert(0x3f9, 1, dev()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            b.insert(0x300, 0x200, dev()),
            Err(BusError::Overlap { .. })
        ));
        b.insert(0x3f0, 8, dev()).unwrap();
        b.insert(0x400, 1, dev()).unwrap();
        assert_eq!(
            b.insert(0x10, 0, dev()),
            Err(BusError::ZeroSized { base: 0x10 })
        );
        assert!(matches!(
            b.insert(0xfffc, 5, dev()),
            Err(BusError::Overflow { .. })
        ));
        b.insert(0xfffc, 4, dev()).unwrap();
        let mut m = Bus::mmio();
        m.insert(u64::MAX - 0xfff, 0x1000, dev()).unwrap();
        assert!(matches!(
            m.insert(u64::MAX, 2, dev()),
            Err(BusError::Overflow { .. })
        ));
    }

    #[test]
    fn bus_routes_offsets_to_the_right_device() {
        let mut b = Bus::pio();
        let (a, c) = (dev(), dev());
        b.insert(0x60, 1, a.clone()).unwrap();
        b.insert(0x64, 4, c.clone()).unwrap();
        let mut d = [0u8; 2];
        b.read(0x66, &mut d);
        assert_eq!(d, [2, 0], "device sees the offset in its window");
        b.write(0x60, &[0xab]);
        assert_eq!(a.borrow().last_write, Some((0, vec![0xab])));
        assert_eq!(c.borrow().last_write, None);
        assert_eq!(b.stats, BusStats::default());
    }

    #[test]
    fn bus_unassigned_reads_all_ones_and_counts() {
        let mut b = Bus::pio();
        b.insert(0x80, 1, dev()).unwrap();
        let mut d = [0u8; 4];
        b.read(0x81, &mut d);
        assert_eq!(d, [0xff; 4]);
        b.read(0x7f, &mut d[..1]);
        b.write(0x1234, &[1, 2]);
        assert_eq!(
            b.stats,
            BusStats {
                unassigned_reads: 2,
                unassigned_writes: 1
            }
        );
    }

    #[test]
    fn le_helpers_round_trip() {
        let mut d = [0u8; 4];
        put_le_value(&mut d, 0x1122_3344_5566);
        assert_eq!(d, [0x66, 0x55, 0x44, 0x33]);
        assert_eq!(le_value(&d), 0x3344_5566);
    }
}
