//! The i8042 keyboard controller with a minimal AT keyboard behind it (no
//! key input source yet) and no mouse.
//!
//! Offset 0 is the data port (0x60 on a PC), offset 4 the status/command
//! port (0x64); the machine maps a 5-byte window. Commands run instantly,
//! so the input buffer is never full. Replies queue in the output buffer;
//! IRQ1 / IRQ12 are levels that follow "a byte from the keyboard / aux
//! device is waiting and its interrupt is enabled in the command byte".
//!
//! Linux's probe (drivers/input/serio/i8042.c) needs: status != 0xff,
//! self-test 0xaa → 0x55, command byte read/write (0x20/0x60), 0xa7/0xa8
//! reflected in the command byte, the aux loopback 0xd3 with IRQ12, and a
//! keyboard answering reset and GETID. Every command this module does not
//! know is ignored without a reply rather than half-done. 0xfe (pulse the
//! reset line) and an output-port write with bit 0 clear set
//! [`I8042::reset_requested`], which the machine polls.

use cjemu_replay::{StateHash, StateHasher};
use thiserror::Error;

/// Data port.
pub const OFS_DATA: u64 = 0;
/// Status (read) / command (write) port.
pub const OFS_STATUS: u64 = 4;
/// Window size (0x60–0x64).
pub const I8042_SIZE: u64 = 5;

/// Status: output buffer full.
pub const SB_OUT_FULL: u8 = 0x01;
/// Status: input buffer full (never: commands run at once).
pub const SB_IN_FULL: u8 = 0x02;
/// Status: system flag (self-test passed).
pub const SB_SYS: u8 = 0x04;
/// Status: the last write was to the command port.
pub const SB_CMD: u8 = 0x08;
/// Status: keyboard not inhibited (no key lock).
pub const SB_UNLOCKED: u8 = 0x10;
/// Status: the output byte comes from the aux device.
pub const SB_AUX: u8 = 0x20;
/// Status: the device did not answer (timeout).
pub const SB_TIMEOUT: u8 = 0x40;

/// Command byte: keyboard interrupt enable.
pub const CB_KBD_INT: u8 = 0x01;
/// Command byte: aux interrupt enable.
pub const CB_AUX_INT: u8 = 0x02;
/// Command byte: system flag.
pub const CB_SYS: u8 = 0x04;
/// Command byte: keyboard clock disabled.
pub const CB_KBD_DIS: u8 = 0x10;
/// Command byte: aux clock disabled.
pub const CB_AUX_DIS: u8 = 0x20;
/// Command byte: translate set 2 to set 1.
pub const CB_XLATE: u8 = 0x40;

/// Controller commands.
pub const CMD_READ_CTR: u8 = 0x20;
/// Write the command byte (data follows).
pub const CMD_WRITE_CTR: u8 = 0x60;
/// Disable the aux port.
pub const CMD_AUX_DISABLE: u8 = 0xa7;
/// Enable the aux port.
pub const CMD_AUX_ENABLE: u8 = 0xa8;
/// Aux interface test.
pub const CMD_AUX_TEST: u8 = 0xa9;
/// Controller self-test.
pub const CMD_SELF_TEST: u8 = 0xaa;
/// Keyboard interface test.
pub const CMD_KBD_TEST: u8 = 0xab;
/// Disable the keyboard port.
pub const CMD_KBD_DISABLE: u8 = 0xad;
/// Enable the keyboard port.
pub const CMD_KBD_ENABLE: u8 = 0xae;
/// Read the input port.
pub const CMD_READ_INPUT: u8 = 0xc0;
/// Read the output port.
pub const CMD_READ_OUTPORT: u8 = 0xd0;
/// Write the output port (data follows).
pub const CMD_WRITE_OUTPORT: u8 = 0xd1;
/// Put the next data byte in the output buffer as keyboard data.
pub const CMD_WRITE_KBD_OUT: u8 = 0xd2;
/// Put the next data byte in the output buffer as aux data (loopback).
pub const CMD_WRITE_AUX_OUT: u8 = 0xd3;
/// Send the next data byte to the aux device.
pub const CMD_WRITE_AUX: u8 = 0xd4;
/// Disable A20 (HP extension).
pub const CMD_A20_OFF: u8 = 0xdd;
/// Enable A20 (HP extension).
pub const CMD_A20_ON: u8 = 0xdf;
/// Read the test inputs.
pub const CMD_READ_TEST: u8 = 0xe0;
/// Pulse output-port line 0: reset the CPU.
pub const CMD_RESET_CPU: u8 = 0xfe;

/// Output port: reset line (0 = assert reset).
pub const OP_RESET: u8 = 0x01;
/// Output port: A20 gate.
pub const OP_A20: u8 = 0x02;

/// Keyboard replies.
pub const KBD_ACK: u8 = 0xfa;
/// Keyboard: basic assurance test passed.
pub const KBD_BAT_OK: u8 = 0xaa;
/// Keyboard: command not understood.
pub const KBD_RESEND: u8 = 0xfe;

/// Bytes the output queue holds (beyond that, replies are dropped).
pub const OUT_QUEUE_LEN: usize = 16;

/// One byte waiting in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutByte {
    /// The byte.
    pub value: u8,
    /// It came from the aux port.
    pub aux: bool,
    /// The device timed out (status bit 6 with it).
    pub timeout: bool,
}

/// Every guest-visible field. `Default` is the power-on state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    /// The command byte.
    pub ctr: u8,
    /// The output port.
    pub outport: u8,
    /// A controller command waiting for its data byte.
    pub pending_cmd: Option<u8>,
    /// A keyboard command waiting for its parameter.
    pub pending_kbd: Option<u8>,
    /// Bytes waiting to be read, oldest first.
    pub out: Vec<OutByte>,
    /// The last byte read from the data port (read again when empty).
    pub last_data: u8,
    /// The last write went to the command port.
    pub last_was_cmd: bool,
    /// Keyboard scanning enabled (0xf4 / 0xf5).
    pub kbd_scanning: bool,
    /// Keyboard scancode set (1–3).
    pub scancode_set: u8,
    /// Keyboard LEDs.
    pub leds: u8,
    /// The guest asked for a CPU reset.
    pub reset_requested: bool,
}

impl Default for I8042State {
    fn default() -> Self {
        I8042State {
            ctr: CB_KBD_INT | CB_SYS,
            outport: OP_RESET | OP_A20,
            pending_cmd: None,
            pending_kbd: None,
            out: Vec::new(),
            last_data: 0,
            last_was_cmd: false,
            kbd_scanning: true,
            scancode_set: 2,
            leds: 0,
            reset_requested: false,
        }
    }
}

impl StateHash for I8042State {
    /// In order: ctr, outport, pending_cmd, pending_kbd (each a flag byte,
    /// then the byte if present), out (length as u32, then per byte: value,
    /// aux, timeout), last_data, last_was_cmd, kbd_scanning, scancode_set,
    /// leds, reset_requested; one byte each.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("i8042");
        h.write_u8(self.ctr);
        h.write_u8(self.outport);
        for p in [self.pending_cmd, self.pending_kbd] {
            match p {
                Some(v) => {
                    h.write_u8(1);
                    h.write_u8(v);
                }
                None => h.write_u8(0),
            }
        }
        h.write_u32(self.out.len() as u32);
        for b in &self.out {
            h.write_u8(b.value);
            h.write_u8(b.aux as u8);
            h.write_u8(b.timeout as u8);
        }
        for v in [
            self.last_data,
            self.last_was_cmd as u8,
            self.kbd_scanning as u8,
            self.scancode_set,
            self.leds,
            self.reset_requested as u8,
        ] {
            h.write_u8(v);
        }
    }
}

/// Why a saved state cannot be restored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum I8042Error {
    /// More queued output than the queue holds.
    #[error("i8042 output queue holds {0} bytes, more than {OUT_QUEUE_LEN}")]
    FullQueue(usize),
    /// A scancode set other than 1–3.
    #[error("keyboard scancode set {0} is not 1-3")]
    ScancodeSet(u8),
}

/// The i8042 controller.
#[derive(Debug)]
pub struct I8042 {
    s: I8042State,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042::new()
    }
}

impl I8042 {
    /// The controller in its power-on state.
    pub fn new() -> I8042 {
        I8042::from_state(&I8042State::default()).expect("the reset state is valid")
    }

    /// The controller with a saved state.
    pub fn from_state(s: &I8042State) -> Result<I8042, I8042Error> {
        if s.out.len() > OUT_QUEUE_LEN {
            return Err(I8042Error::FullQueue(s.out.len()));
        }
        if !(1..=3).contains(&s.scancode_set) {
            return Err(I8042Error::ScancodeSet(s.scancode_set));
        }
        Ok(I8042 { s: s.clone() })
    }

    /// The saved state.
    pub fn state(&self) -> I8042State {
        self.s.clone()
    }

    /// The guest asked for a CPU reset (0xfe, or the output port's bit 0).
    pub fn reset_requested(&self) -> bool {
        self.s.reset_requested
    }

    /// Clear the reset request (the machine has acted on it).
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.s.reset_requested)
    }

    /// The A20 gate of the output port.
    pub fn a20(&self) -> bool {
        self.s.outport & OP_A20 != 0
    }

    /// IRQ1: keyboard data waiting with its interrupt enabled.
    pub fn irq1_level(&self) -> bool {
        matches!(self.s.out.first(), Some(b) if !b.aux) && self.s.ctr & CB_KBD_INT != 0
    }

    /// IRQ12: aux data waiting with its interrupt enabled.
    pub fn irq12_level(&self) -> bool {
        matches!(self.s.out.first(), Some(b) if b.aux) && self.s.ctr & CB_AUX_INT != 0
    }

    fn push(&mut self, value: u8, aux: bool, timeout: bool) {
        if self.s.out.len() < OUT_QUEUE_LEN {
            self.s.out.push(OutByte {
                value,
                aux,
                timeout,
            });
        } else {
            log::debug!("i8042: output queue full, {value:#04x} dropped");
        }
    }

    fn reply(&mut self, value: u8) {
        self.push(value, false, false);
    }

    /// The status register.
    pub fn status(&self) -> u8 {
        let mut st = SB_UNLOCKED | (self.s.ctr & CB_SYS);
        if self.s.last_was_cmd {
            st |= SB_CMD;
        }
        if let Some(b) = self.s.out.first() {
            st |= SB_OUT_FULL;
            st |= if b.aux { SB_AUX } else { 0 } | if b.timeout { SB_TIMEOUT } else { 0 };
        }
        st
    }

    fn read_data(&mut self) -> u8 {
        if !self.s.out.is_empty() {
            self.s.last_data = self.s.out.remove(0).value;
        }
        self.s.last_data
    }

    /// A write to the command port: one-byte commands act now, the others
    /// wait for their data byte on the data port.
    fn command(&mut self, cmd: u8) {
        self.s.pending_cmd = None;
        match cmd {
            CMD_READ_CTR => self.reply(self.s.ctr),
            // Other bytes of the controller RAM: nothing stored there.
            0x21..=0x3f => self.reply(0),
            CMD_WRITE_CTR..=0x7f
            | CMD_WRITE_OUTPORT
            | CMD_WRITE_KBD_OUT
            | CMD_WRITE_AUX_OUT
            | CMD_WRITE_AUX => self.s.pending_cmd = Some(cmd),
            CMD_AUX_DISABLE => self.s.ctr |= CB_AUX_DIS,
            CMD_AUX_ENABLE => self.s.ctr &= !CB_AUX_DIS,
            CMD_AUX_TEST | CMD_KBD_TEST => self.reply(0x00),
            CMD_SELF_TEST => {
                self.s.ctr |= CB_SYS;
                self.reply(0x55);
            }
            CMD_KBD_DISABLE => self.s.ctr |= CB_KBD_DIS,
            CMD_KBD_ENABLE => self.s.ctr &= !CB_KBD_DIS,
            // Input port: bit 7 = keyboard not inhibited.
            CMD_READ_INPUT => self.reply(0x80),
            CMD_READ_OUTPORT => self.reply(self.s.outport),
            CMD_A20_OFF => self.s.outport &= !OP_A20,
            CMD_A20_ON => self.s.outport |= OP_A20,
            CMD_READ_TEST => self.reply(0x00),
            // Pulse the output lines whose bit is 0; line 0 is reset.
            0xf0..=0xff if cmd & 1 == 0 => self.s.reset_requested = true,
            0xf0..=0xff => {}
            _ => log::debug!("i8042: unknown command {cmd:#04x} ignored"),
        }
    }

    /// A data byte that completes a controller command.
    fn command_data(&mut self, cmd: u8, v: u8) {
        match cmd {
            CMD_WRITE_CTR => self.s.ctr = v,
            CMD_WRITE_OUTPORT => {
                self.s.outport = v;
                if v & OP_RESET == 0 {
                    self.s.reset_requested = true;
                }
            }
            CMD_WRITE_KBD_OUT => self.reply(v),
            CMD_WRITE_AUX_OUT => self.push(v, true, false),
            // No mouse: the aux device never answers.
            CMD_WRITE_AUX => self.push(KBD_RESEND, true, true),
            _ => {} // 0x61..=0x7f: controller RAM nothing reads back
        }
    }

    /// A byte for the keyboard itself.
    fn keyboard(&mut self, v: u8) {
        if let Some(cmd) = self.s.pending_kbd.take() {
            return self.keyboard_param(cmd, v);
        }
        match v {
            0xff => {
                self.kbd_defaults();
                self.reply(KBD_ACK);
                self.reply(KBD_BAT_OK);
            }
            0xf2 => {
                // AT keyboard ID; the controller translates 0x83 when
                // asked to (Linux accepts ab 41 then).
                let id = if self.s.ctr & CB_XLATE != 0 {
                    0x41
                } else {
                    0x83
                };
                self.reply(KBD_ACK);
                self.reply(0xab);
                self.reply(id);
            }
            0xed | 0xf0 | 0xf3 => {
                self.s.pending_kbd = Some(v);
                self.reply(KBD_ACK);
            }
            0xf4 => {
                self.s.kbd_scanning = true;
                self.reply(KBD_ACK);
            }
            0xf5 => {
                self.kbd_defaults();
                self.s.kbd_scanning = false;
                self.reply(KBD_ACK);
            }
            0xf6 => {
                self.kbd_defaults();
                self.reply(KBD_ACK);
            }
            0xee => self.reply(0xee), // echo
            _ => self.reply(KBD_RESEND),
        }
    }

    fn kbd_defaults(&mut self) {
        self.s.kbd_scanning = true;
        self.s.scancode_set = 2;
        self.s.leds = 0;
    }

    fn keyboard_param(&mut self, cmd: u8, v: u8) {
        match cmd {
            0xed => self.s.leds = v & 7,
            0xf0 if v == 0 => {
                self.reply(KBD_ACK);
                return self.reply(self.s.scancode_set);
            }
            0xf0 if (1..=3).contains(&v) => self.s.scancode_set = v,
            0xf0 => return self.reply(KBD_RESEND),
            _ => {} // 0xf3: typematic rate, nothing to repeat yet
        }
        self.reply(KBD_ACK);
    }

    fn write_data(&mut self, v: u8) {
        self.s.last_was_cmd = false;
        match self.s.pending_cmd.take() {
            Some(cmd) => self.command_data(cmd, v),
            None => self.keyboard(v),
        }
    }
}

impl crate::bus::BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            OFS_DATA => self.read_data(),
            OFS_STATUS => self.status(),
            _ => 0xff,
        };
        data.fill(0xff);
        if let Some(d) = data.first_mut() {
            *d = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            OFS_DATA => self.write_data(v),
            OFS_STATUS => {
                self.s.last_was_cmd = true;
                self.command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusDevice;

    fn cmd(k: &mut I8042, c: u8) {
        k.write(OFS_STATUS, &[c]);
    }

    fn data(k: &mut I8042, v: u8) {
        k.write(OFS_DATA, &[v]);
    }

    fn status(k: &mut I8042) -> u8 {
        let mut d = [0u8];
        k.read(OFS_STATUS, &mut d);
        d[0]
    }

    /// Read every waiting byte.
    fn drain(k: &mut I8042) -> Vec<u8> {
        let mut v = Vec::new();
        while status(k) & SB_OUT_FULL != 0 {
            let mut d = [0u8];
            k.read(OFS_DATA, &mut d);
            v.push(d[0]);
        }
        v
    }

    #[test]
    fn i8042_self_and_interface_tests() {
        let mut k = I8042::new();
        assert_ne!(status(&mut k), 0xff, "a controller is there");
        assert_eq!(status(&mut k) & (SB_OUT_FULL | SB_IN_FULL), 0);
        cmd(&mut k, CMD_SELF_TEST);
        assert_eq!(status(&mut k) & (SB_OUT_FULL | SB_CMD | SB_SYS), 0x0d);
        assert_eq!(drain(&mut k), [0x55]);
        cmd(&mut k, CMD_KBD_TEST);
        cmd(&mut k, CMD_AUX_TEST);
        assert_eq!(drain(&mut k), [0, 0]);
        // An empty buffer reads the last byte again.
        let mut d = [0u8];
        k.read(OFS_DATA, &mut d);
        assert_eq!(d[0], 0);
    }

    #[test]
    fn i8042_command_byte_and_port_enables() {
        let mut k = I8042::new();
        cmd(&mut k, CMD_READ_CTR);
        assert_eq!(drain(&mut k), [CB_KBD_INT | CB_SYS]);
        cmd(&mut k, CMD_WRITE_CTR);
        data(&mut k, 0x47);
        cmd(&mut k, CMD_READ_CTR);
        assert_eq!(drain(&mut k), [0x47]);
        cmd(&mut k, CMD_AUX_DISABLE);
        cmd(&mut k, CMD_KBD_DISABLE);
        assert_eq!(k.state().ctr, 0x47 | CB_AUX_DIS | CB_KBD_DIS);
        cmd(&mut k, CMD_AUX_ENABLE);
        cmd(&mut k, CMD_KBD_ENABLE);
        assert_eq!(k.state().ctr, 0x47);
        assert!(drain(&mut k).is_empty(), "enables answer nothing");
    }

    #[test]
    fn i8042_output_port_a20_and_reset_line() {
        let mut k = I8042::new();
        cmd(&mut k, CMD_READ_OUTPORT);
        assert_eq!(drain(&mut k), [OP_RESET | OP_A20]);
        cmd(&mut k, CMD_A20_OFF);
        assert!(!k.a20());
        cmd(&mut k, CMD_WRITE_OUTPORT);
        data(&mut k, OP_RESET | OP_A20);
        assert!(k.a20() && !k.reset_requested());
        cmd(&mut k, 0xff); // pulse nothing
        assert!(!k.reset_requested());
        cmd(&mut k, CMD_RESET_CPU);
        assert!(k.reset_requested());
        assert!(k.take_reset_request());
        assert!(!k.reset_requested());
        cmd(&mut k, CMD_WRITE_OUTPORT);
        data(&mut k, OP_A20);
        assert!(k.take_reset_request(), "output-port bit 0 low resets");
    }

    #[test]
    fn i8042_keyboard_reset_id_and_params() {
        let mut k = I8042::new();
        data(&mut k, 0xff);
        assert!(k.irq1_level(), "IRQ1 enabled by default");
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_BAT_OK]);
        assert!(!k.irq1_level());
        data(&mut k, 0xf2);
        assert_eq!(drain(&mut k), [KBD_ACK, 0xab, 0x83]);
        cmd(&mut k, CMD_WRITE_CTR);
        data(&mut k, CB_XLATE | CB_KBD_INT);
        data(&mut k, 0xf2);
        assert_eq!(drain(&mut k), [KBD_ACK, 0xab, 0x41]);
        data(&mut k, 0xed);
        data(&mut k, 0x07);
        data(&mut k, 0xf0);
        data(&mut k, 0x00);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_ACK, KBD_ACK, KBD_ACK, 2]);
        assert_eq!(k.state().leds, 7);
        data(&mut k, 0xf0);
        data(&mut k, 9);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_RESEND]);
        data(&mut k, 0xf5);
        data(&mut k, 0x42);
        assert_eq!(drain(&mut k), [KBD_ACK, KBD_RESEND]);
        assert!(!k.state().kbd_scanning);
    }

    #[test]
    fn i8042_aux_loopback_raises_irq12_and_no_mouse_times_out() {
        let mut k = I8042::new();
        cmd(&mut k, CMD_WRITE_AUX_OUT);
        data(&mut k, 0x5a);
        assert!(!k.irq12_level(), "aux interrupt off");
        assert_eq!(
            status(&mut k) & (SB_OUT_FULL | SB_AUX),
            SB_OUT_FULL | SB_AUX
        );
        cmd(&mut k, CMD_WRITE_CTR);
        data(&mut k, CB_AUX_INT);
        assert!(k.irq12_level() && !k.irq1_level());
        assert_eq!(drain(&mut k), [0x5a]);
        cmd(&mut k, CMD_WRITE_AUX);
        data(&mut k, 0xf2);
        assert_eq!(status(&mut k) & SB_TIMEOUT, SB_TIMEOUT);
        assert_eq!(drain(&mut k), [KBD_RESEND]);
        // 0xd2 feeds the keyboard side.
        cmd(&mut k, CMD_WRITE_KBD_OUT);
        data(&mut k, 0x1c);
        assert_eq!(status(&mut k) & SB_AUX, 0);
        assert_eq!(drain(&mut k), [0x1c]);
    }

    #[test]
    fn i8042_queue_is_bounded_and_state_round_trips() {
        let mut k = I8042::new();
        for _ in 0..OUT_QUEUE_LEN {
            data(&mut k, 0xee);
        }
        data(&mut k, 0xee);
        assert_eq!(k.state().out.len(), OUT_QUEUE_LEN);
        let s = k.state();
        assert_eq!(I8042::from_state(&s).unwrap().state(), s);
        let bad = I8042State {
            scancode_set: 0,
            ..s
        };
        assert_eq!(
            I8042::from_state(&bad).unwrap_err(),
            I8042Error::ScancodeSet(0)
        );
    }
}
