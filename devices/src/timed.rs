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
