//! Devices whose registers depend on virtual time (RTC, port 0x61).
//!
//! Such a device takes the current virtual time as a plain `now_ns`
//! argument ([`TimedDevice`]) and never reads a clock itself, so its state
//! is a function of its inputs. [`TimedWindow`] puts one on a bus with a
//! time source the machine supplies (the virtual clock, a test counter).

use crate::bus::BusDevice;
use std::cell::RefCell;
use std::rc::Rc;

/// The virtual time in nanoseconds, as the machine's clock reports it.
pub type NowNs = Rc<dyn Fn() -> u64>;

/// A device whose accesses need the current virtual time.
pub trait TimedDevice {
    /// A guest read at virtual time `now_ns`.
    fn read_at(&mut self, now_ns: u64, offset: u64, data: &mut [u8]);
    /// A guest write at virtual time `now_ns`.
    fn write_at(&mut self, now_ns: u64, offset: u64, data: &[u8]);
}

/// A bus window onto a shared [`TimedDevice`], asking `now` for the time.
pub struct TimedWindow<D> {
    dev: Rc<RefCell<D>>,
    now: NowNs,
}

impl<D> TimedWindow<D> {
    /// The window of `dev` with time source `now`.
    pub fn new(dev: Rc<RefCell<D>>, now: NowNs) -> TimedWindow<D> {
        TimedWindow { dev, now }
    }
}

impl<D: TimedDevice> BusDevice for TimedWindow<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let t = (self.now)();
        self.dev.borrow_mut().read_at(t, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let t = (self.now)();
        self.dev.borrow_mut().write_at(t, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Answers the time it was given; remembers the time of the last write.
    #[derive(Default)]
    struct Clocked {
        written_at: Option<(u64, u64)>,
    }

    impl TimedDevice for Clocked {
        fn read_at(&mut self, now_ns: u64, _offset: u64, data: &mut [u8]) {
            crate::bus::put_le_value(data, now_ns);
        }
        fn write_at(&mut self, now_ns: u64, offset: u64, _data: &[u8]) {
            self.written_at = Some((now_ns, offset));
        }
    }

    #[test]
    fn timed_window_passes_the_current_virtual_time() {
        let t = Rc::new(Cell::new(5u64));
        let dev = Rc::new(RefCell::new(Clocked::default()));
        let clock = t.clone();
        let mut w = TimedWindow::new(dev.clone(), Rc::new(move || clock.get()));
        let mut d = [0u8; 2];
        w.read(0, &mut d);
        assert_eq!(d, [5, 0]);
        t.set(0x1234);
        w.read(0, &mut d);
        assert_eq!(d, [0x34, 0x12]);
        w.write(1, &[0]);
        assert_eq!(dev.borrow().written_at, Some((0x1234, 1)));
    }
}
