//! The I/O-delay write sinks: ports 0x80 (the POST diagnostic port Linux's
//! default `io_delay=0x80` writes to) and 0xed (`io_delay=0xed`). Writes are
//! accepted and dropped without a log line (a booting kernel writes
//! thousands); reads give all-ones, as from an empty ISA bus.

use crate::bus::BusDevice;

/// A port that swallows writes and reads all-ones. It has no state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoDelay;

impl IoDelay {
    /// The sink.
    pub fn new() -> IoDelay {
        IoDelay
    }
}

impl BusDevice for IoDelay {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn io_delay_swallows_writes_and_reads_all_ones() {
        let mut pio = Bus::pio();
        pio.insert(0x80, 1, Rc::new(RefCell::new(IoDelay::new())))
            .unwrap();
        pio.write(0x80, &[0x12]);
        let mut d = [0u8; 2];
        pio.read(0x80, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        assert_eq!(
            (pio.stats.unassigned_reads, pio.stats.unassigned_writes),
            (0, 0),
            "the accesses reached the sink, not the unassigned path"
        );
    }
}
