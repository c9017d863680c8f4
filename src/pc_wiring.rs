//! How the PC's devices reach the CPU: timers on the virtual clock and
//! interrupt lines into the PIC.
//!
//! Devices never act on their own. After every engine exit (device access,
//! budget end at a deadline, interrupt window, HLT) the run loop calls
//! [`Pc::service`], which
//!
//! 1. runs every timer whose deadline has passed, in deadline order, each
//!    at its own deadline (not at "now"), so a short pulse between two
//!    deadlines (the PIT's one-tick low phase in mode 2) is seen as the
//!    two edges it is, whatever the shift;
//! 2. brings every timed device up to now, samples its interrupt output
//!    into the PIC and re-arms its timer (a guest access may have changed
//!    its next event);
//! 3. tells the caller whether the PIC's INT output is high.
//!
//! Everything here is a function of the instruction count and the clock,
//! so it happens at the same counts on every run and under every engine.

use crate::pc::{irq, timer, Pc};
use crate::serial_input::SerialInput;
use cjemu_devices::pic8259::Pic8259;
use cjemu_replay::clock::VirtualNs;
use cjemu_replay::timers::TimerId;

impl Pc {
    /// Publish the virtual time of an access by the instruction at
    /// `icount` (the count of instructions retired before it).
    pub fn publish_time(&self, icount: u64) -> VirtualNs {
        let now = self.clock.ns_at(icount);
        self.now.set(now);
        now
    }

    /// Run due timers and sample every interrupt line at `icount`. Returns
    /// the PIC's INT output.
    pub fn service(&mut self, icount: u64) -> bool {
        let now = self.clock.ns_at(icount);
        while let Some(due) = self.timers.next_deadline().filter(|&d| d <= now) {
            let ids: Vec<TimerId> = self.timers.expire(due).collect();
            for id in ids {
                self.run_timer(id, due);
            }
        }
        self.sync_lines(now);
        self.pic.borrow().intr()
    }

    /// At power-on and reset: drive every interrupt line to its device's
    /// level without latching edges (a line that is high from the start,
    /// like the PIT's OUT in its power-on mode, has not risen).
    pub(crate) fn settle_lines(&mut self) {
        let now = self.now.get();
        self.sync_lines(now);
        let mut pic = self.pic.borrow_mut();
        let mut st = pic.state();
        st.master.irr = 0;
        st.slave.irr = 0;
        match Pic8259::from_state(&st) {
            Ok(p) => *pic = p,
            Err(e) => log::error!("8259: cannot settle its lines: {e}"),
        }
    }

    /// Hand COM`port` as many waiting bytes of `input` as it can take
    /// without an overrun (the guest's pace decides, as a real terminal
    /// line with flow control would). Returns the bytes handed over.
    pub fn feed_serial(&mut self, port: usize, input: &mut SerialInput, icount: u64) -> Vec<u8> {
        let room = match self.uarts.get(port) {
            Some(u) if input.has_pending() => u.borrow().can_receive(),
            _ => return Vec::new(),
        };
        let bytes = input.take(room);
        // They fit: the UART just said so.
        let _ = self.feed_bytes(port, &bytes, icount);
        bytes
    }

    /// Replay: hand COM`port` exactly these bytes. `Err` with the number it
    /// could take if that is fewer (the replay diverged).
    pub fn feed_bytes(&mut self, port: usize, bytes: &[u8], icount: u64) -> Result<(), usize> {
        let Some(uart) = self.uarts.get(port) else {
            return Err(0);
        };
        let now = self.publish_time(icount);
        let mut u = uart.borrow_mut();
        let room = u.can_receive();
        if room < bytes.len() {
            return Err(room);
        }
        for &b in bytes {
            u.receive(b, now.0);
        }
        Ok(())
    }

    /// The virtual time of the next timer deadline, if any.
    pub fn next_deadline(&self) -> Option<VirtualNs> {
        self.timers.next_deadline()
    }

    /// Timer `id` expired; its owner acts at virtual time `at`.
    fn run_timer(&mut self, id: TimerId, at: VirtualNs) {
        self.now.set(at);
        if id == timer::PIT0 {
            self.sync_pit(at);
        } else if id == timer::RTC {
            self.sync_rtc(at);
        } else if let Some(i) = (0..self.uarts.len()).find(|&i| timer::com(i) == id) {
            self.sync_uart(i, at);
        } else {
            log::warn!("timer {id:?} expired but has no owner");
        }
    }

    /// Every device's interrupt output and next event, as of `now`.
    fn sync_lines(&mut self, now: VirtualNs) {
        self.now.set(now);
        self.sync_pit(now);
        self.sync_rtc(now);
        for i in 0..self.uarts.len() {
            self.sync_uart(i, now);
        }
        let (kbd, aux) = {
            let k = self.i8042.borrow();
            (k.irq1_level(), k.irq12_level())
        };
        let mut pic = self.pic.borrow_mut();
        pic.set_irq(irq::KBD, kbd);
        pic.set_irq(irq::MOUSE, aux);
    }

    /// IRQ0 follows channel 0's OUT; its timer the next OUT change.
    fn sync_pit(&mut self, at: VirtualNs) {
        let (out, next) = {
            let pit = self.pit.borrow();
            (pit.out(0, at), pit.next_out_change(0, at))
        };
        self.pic.borrow_mut().set_irq(irq::PIT, out);
        self.rearm(timer::PIT0, next, at);
    }

    /// IRQ8 follows register C's IRQF; the timer the next RTC event.
    fn sync_rtc(&mut self, at: VirtualNs) {
        let (level, next) = {
            let mut rtc = self.rtc.borrow_mut();
            rtc.advance(at.0);
            (rtc.irq_level(), rtc.next_event_ns(at.0))
        };
        self.pic.borrow_mut().set_irq(irq::RTC, level);
        self.rearm(timer::RTC, next.map(VirtualNs), at);
    }

    /// COM`i` up to `at` (its receive timeout), its timer re-armed; its
    /// interrupt line is the OR of the UARTs sharing it.
    fn sync_uart(&mut self, i: usize, at: VirtualNs) {
        let next = {
            let mut u = self.uarts[i].borrow_mut();
            u.advance(at.0);
            u.next_event_ns().map(VirtualNs)
        };
        self.rearm(timer::com(i), next, at);
        let line = irq::COM[i];
        let level = self
            .uarts
            .iter()
            .enumerate()
            .filter(|&(j, _)| irq::COM[j] == line)
            .any(|(_, u)| u.borrow().irq_level());
        self.pic.borrow_mut().set_irq(line, level);
    }

    /// Arm `id` for `next` (a device's next event after `at`), or cancel
    /// it. A device that names a time not after `at` would make
    /// [`Pc::service`] loop without progress: that is a device bug, logged,
    /// and the event is moved to the next nanosecond.
    fn rearm(&mut self, id: TimerId, next: Option<VirtualNs>, at: VirtualNs) {
        match next {
            Some(d) if d <= at => {
                log::error!("timer {id:?}: next event {d:?} is not after {at:?}");
                self.timers.arm(id, at.saturating_add(1));
            }
            Some(d) => self.timers.arm(id, d),
            None => self.timers.cancel(id),
        }
    }
}
