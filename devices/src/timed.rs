//! Devices whose registers depend on virtual time (RTC, port 0x61).
//!
//! Such a device takes the current virtual time as a plain `now_ns`
//! argument ([`TimedDevice`]) and never reads a clock itself, so its state
//! is a function of its inputs. [`TimedWindow`] puts one on a bus and hands
//! it the virtual time the run loop publishes in a [`VirtualNow`] (host
//! time cannot get there: `VirtualNow` only holds `VirtualNs`).

use crate::bus::BusDevice;
use cjemu_replay::clock::VirtualNow;
use std::cell::RefCell;
use std::rc::Rc;

/// A device whose accesses need the current virtual time.
pub trait TimedDevice {
    /// A guest read at virtual time `now_ns`.
    fn read_at(&mut self, now_ns: u64, offset: u64, data: &mut [u8]);
    /// A guest write at virtual time `now_ns`.
    fn write_at(&mut self, now_ns: u64, offset: u64, data: &[u8]);
}

/// A bus window onto a shared [`TimedDevice`], reading the time from `now`.
pub struct TimedWindow<D> {
    dev: Rc<RefCell<D>>,
    now: VirtualNow,
}

impl<D> TimedWindow<D> {
    /// The window of `dev` with the published virtual time `now`.
    pub fn new(dev: Rc<RefCell<D>>, now: VirtualNow) -> TimedWindow<D> {
        TimedWindow { dev, now }
    }
}

impl<D: TimedDevice> BusDevice for TimedWindow<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let t = self.now.get().0;
        self.dev.borrow_mut().read_at(t, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let t = self.now.get().0;
        self.dev.borrow_mut().write_at(t, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cjemu_replay::clock::VirtualNs;

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
        let now = VirtualNow::new();
        now.set(VirtualNs(5));
        let dev = Rc::new(RefCell::new(Clocked::default()));
        let mut w = TimedWindow::new(dev.clone(), now.clone());
        let mut d = [0u8; 2];
        w.read(0, &mut d);
        assert_eq!(d, [5, 0]);
        now.set(VirtualNs(0x1234));
        w.read(0, &mut d);
        assert_eq!(d, [0x34, 0x12]);
        w.write(1, &[0]);
        assert_eq!(dev.borrow().written_at, Some((0x1234, 1)));
    }
}
