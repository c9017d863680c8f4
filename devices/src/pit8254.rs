//! The 8254 programmable interval timer (Intel 82C54 datasheet, order
//! 231244): three 16-bit down counters on a 1.193182 MHz input clock.
//!
//! Offsets 0–2 are the counters' data registers, offset 3 the control word
//! (write only; reads give 0xff, nothing drives the bus). The PC puts them at
//! ports 0x40–0x43, wires channel 0's OUT to IRQ0 and channel 2's gate to
//! port 0x61 bit 0; that is the machine's table, not this file's.
//!
//! Nothing here ticks. Each running counter remembers the input-clock edge
//! at which it was loaded, and its value and OUT level at any moment are a
//! function of virtual time: `ticks = ns * 1193182 / 10^9` (integer, u128),
//! counted from the start of the run, so a second of virtual time is exactly
//! 1193182 edges. [`Pit8254::next_out_change`] tells the machine when to arm
//! a timer to follow OUT (IRQ0 is its rising edge).
//!
//! ```
//! use cjemu_devices::pit8254::{ns_of_tick, Pit8254, OFS_CONTROL};
//! use cjemu_replay::clock::{VirtualNow, VirtualNs};
//! let mut pit = Pit8254::new(VirtualNow::new());
//! let t0 = VirtualNs(1_000);
//! pit.write_reg(OFS_CONTROL, 0x34, t0); // counter 0, LSB then MSB, mode 2
//! pit.write_reg(0, 0xa9, t0); // 1193 = 0x04a9: about 1 kHz
//! pit.write_reg(0, 0x04, t0);
//! // The machine arms a timer for the next OUT change, and on expiry sets
//! // IRQ0 to `pit.out(0, now)` and asks again.
//! let low = pit.next_out_change(0, t0).unwrap();
//! assert!(!pit.out(0, low));
//! let high = pit.next_out_change(0, low).unwrap();
//! assert!(pit.out(0, high)); // rising edge: IRQ0
//! // t0 is within edge interval 1: the count loads at edge 2, reads 1 at
//! // edge 2 + 1192 (OUT low) and reloads at edge 2 + 1193 (OUT high).
//! assert_eq!(low, ns_of_tick(2 + 1192));
//! assert_eq!(high, ns_of_tick(2 + 1193));
//! ```
//!
//! Model conventions, where the datasheet leaves room:
//! - A count written during edge interval j (`tick_at(t) == j`) is loaded
//!   at input edge j+1, as on the chip (one-edge load cycle): the counter
//!   reads N at edge j+1, N-1 at j+2, and so on, so in mode 2 the K-th
//!   rising edge of OUT comes K·N+1 edges after edge j. The same goes for
//!   a gate trigger in modes 1 and 5 and a gate rising edge (reload) in
//!   modes 2 and 3. A second count written before the load edge replaces
//!   the first.
//! - Before its load edge the counter reads N (the datasheet says the
//!   value is undefined), OUT keeps the level it had (a mode 1 trigger
//!   during the pulse keeps it low, one after it high until the load edge)
//!   and the status reads null count if the count was written since the
//!   last load. A gate low before the load edge (modes 0, 4) holds the count
//!   from the load edge on.
//! - Mode 0: any count write sets OUT low at once (the datasheet says so for
//!   the first byte of a two-byte count; a one-byte count is its own first
//!   byte).
//! - Modes 2 and 3: a count written while counting takes effect at the end
//!   of the current period (mode 2) or half-period (mode 3), an edge the
//!   counter reaches anyway, so no extra load edge.
//! - Mode 3 with an odd count N: OUT is high for (N+1)/2 edges and low for
//!   (N-1)/2; reads give N, N-1, N-3, …, 2 in the high half and N, N-3, …, 2
//!   in the low half (the datasheet's decrement-by-one-then-two and
//!   by-three-then-two rules).
//! - The read and write byte flip-flops are separate.
//! - Power-on: every counter in mode 3, LSB-then-MSB, binary, no count
//!   written (so nothing counts until the guest programs it); gates 0 and 1
//!   high (tied high on the PC), gate 2 low.

use crate::bus::BusDevice;
use cjemu_replay::clock::{VirtualNow, VirtualNs};
use cjemu_replay::{StateHash, StateHasher};
use thiserror::Error;

/// Input clock of every counter, in Hz.
pub const PIT_HZ: u64 = 1_193_182;
const NS_PER_S: u128 = 1_000_000_000;

/// Number of counters.
pub const CHANNELS: usize = 3;
/// Size of the device's port window.
pub const PORT_SIZE: u64 = 4;

/// Data register of counter 0 (1 and 2 follow).
pub const OFS_COUNTER0: u64 = 0;
/// Control word register (write only).
pub const OFS_CONTROL: u64 = 3;

const CW_SC_SHIFT: u8 = 6; // select counter, 3 = read-back command
const CW_SC_READBACK: u8 = 3;
const CW_RW_SHIFT: u8 = 4; // read/write access
const CW_MODE_SHIFT: u8 = 1; // mode bits 3:1
const CW_BCD: u8 = 0x01; // count in BCD

/// Access mode: counter latch command (never stored as a mode).
const RW_LATCH: u8 = 0;
/// Access mode: low byte only.
pub const RW_LSB: u8 = 1;
/// Access mode: high byte only.
pub const RW_MSB: u8 = 2;
/// Access mode: low byte, then high byte.
pub const RW_WORD: u8 = 3;

const RB_NO_COUNT: u8 = 0x20; // read-back: 0 latches the count
const RB_NO_STATUS: u8 = 0x10; // read-back: 0 latches the status
const RB_COUNTER0: u8 = 0x02; // read-back: counter 0 selected (1, 2 follow)

const ST_OUT: u8 = 0x80; // status: OUT pin level
const ST_NULL_COUNT: u8 = 0x40; // status: last count written not loaded yet

/// Input-clock edges from the start of the run to `ns` (rounded down).
pub fn tick_at(ns: VirtualNs) -> u64 {
    (ns.0 as u128 * PIT_HZ as u128 / NS_PER_S) as u64
}

/// The first nanosecond at which `tick` edges have happened (rounded up),
/// so `tick_at(ns_of_tick(t)) == t`.
pub fn ns_of_tick(tick: u64) -> VirtualNs {
    let ns = (tick as u128 * NS_PER_S).div_ceil(PIT_HZ as u128);
    VirtualNs(ns.min(u64::MAX as u128) as u64)
}

/// A count written while a mode 2/3 counter runs, waiting for the end of
/// the current (half-)period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingLoad {
    /// The new count (1..=0x10000, or 1..=10000 in BCD).
    pub count: u32,
    /// Input edge at which it takes effect.
    pub at_tick: u64,
    /// The edge counting is measured from once it has.
    pub load_tick: u64,
}

/// Every guest-visible field of one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PitChannelState {
    /// Mode 0–5 (control-word modes 6 and 7 are stored as 2 and 3).
    pub mode: u8,
    /// Access mode, [`RW_LSB`], [`RW_MSB`] or [`RW_WORD`].
    pub access: u8,
    /// Counting in BCD (0–9999) rather than binary.
    pub bcd: bool,
    /// Gate input level.
    pub gate: bool,
    /// Count register as written (raw 16 bits), `None` until a count is
    /// written after the control word.
    pub cr: Option<u16>,
    /// Low byte of an LSB-then-MSB write, waiting for the high byte.
    pub write_lsb: Option<u8>,
    /// Next data read gives the high byte (LSB-then-MSB reads).
    pub read_msb: bool,
    /// Output latch of a counter latch or read-back command.
    pub count_latch: Option<u16>,
    /// Status byte latched by a read-back command.
    pub status_latch: Option<u8>,
    /// A count was written and not yet loaded into the counter.
    pub null_count: bool,
    /// The counter is counting (a count is loaded; in modes 1 and 5, it was
    /// triggered).
    pub running: bool,
    /// The count being counted (1..=0x10000, or 1..=10000 in BCD).
    pub n: u32,
    /// Input edge counting is measured from: the counter read `n` there.
    pub load_tick: u64,
    /// Edge at which a low gate stopped counting (modes 0, 2, 3, 4).
    pub paused_at: Option<u64>,
    /// A count waiting for the end of the current (half-)period.
    pub pending: Option<PendingLoad>,
    /// OUT from a write or trigger until its load edge (`load_tick`): the
    /// pin keeps the level it had.
    pub out_before_load: bool,
    /// The count loading at `load_tick` was written since the last load, so
    /// the status reads null count until that edge.
    pub null_before_load: bool,
}

impl PitChannelState {
    fn reset(gate: bool) -> PitChannelState {
        PitChannelState {
            mode: 3,
            access: RW_WORD,
            bcd: false,
            gate,
            cr: None,
            write_lsb: None,
            read_msb: false,
            count_latch: None,
            status_latch: None,
            null_count: false,
            running: false,
            n: 0,
            load_tick: 0,
            paused_at: None,
            pending: None,
            out_before_load: false,
            null_before_load: false,
        }
    }
}

/// Every guest-visible field of the PIT. `Default` is the power-on state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PitState {
    /// Counters 0, 1, 2.
    pub channels: [PitChannelState; CHANNELS],
}

impl Default for PitState {
    fn default() -> Self {
        PitState {
            channels: [
                PitChannelState::reset(true),
                PitChannelState::reset(true),
                PitChannelState::reset(false),
            ],
        }
    }
}

/// Why a saved state cannot be restored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PitError {
    /// A mode above 5.
    #[error("PIT counter {channel}: mode {mode} is not 0..=5")]
    Mode {
        /// The counter.
        channel: usize,
        /// The bad mode.
        mode: u8,
    },
    /// An access mode that is not 1, 2 or 3.
    #[error("PIT counter {channel}: access mode {access} is not 1..=3")]
    Access {
        /// The counter.
        channel: usize,
        /// The bad access mode.
        access: u8,
    },
    /// A running or pending count outside 1..=0x10000 (1..=10000 in BCD).
    #[error("PIT counter {channel}: count {count} is out of range")]
    Count {
        /// The counter.
        channel: usize,
        /// The bad count.
        count: u32,
    },
}

/// The 8254 PIT.
pub struct Pit8254 {
    state: PitState,
    now: VirtualNow,
}

impl Pit8254 {
    /// A PIT in its power-on state; bus accesses read the time from `now`.
    pub fn new(now: VirtualNow) -> Pit8254 {
        Pit8254::from_state(&PitState::default(), now).expect("the reset state is valid")
    }

    /// A PIT with a saved state.
    pub fn from_state(s: &PitState, now: VirtualNow) -> Result<Pit8254, PitError> {
        for (channel, c) in s.channels.iter().enumerate() {
            check_channel(channel, c)?;
        }
        Ok(Pit8254 { state: *s, now })
    }

    /// The saved state (inverse of [`Pit8254::from_state`]).
    pub fn state(&self) -> PitState {
        self.state
    }

    /// Back to the power-on state.
    pub fn reset(&mut self) {
        self.state = PitState::default();
    }

    /// OUT of counter `ch` at `now`.
    ///
    /// # Panics
    /// If `ch` >= [`CHANNELS`] (a machine bug; guests cannot choose `ch`).
    pub fn out(&self, ch: usize, now: VirtualNs) -> bool {
        self.state.channels[ch].out_at(tick_at(now))
    }

    /// The first time after `now` at which OUT of counter `ch` changes,
    /// `None` if it stays as it is until the guest or the gate acts.
    ///
    /// # Panics
    /// If `ch` >= [`CHANNELS`].
    pub fn next_out_change(&self, ch: usize, now: VirtualNs) -> Option<VirtualNs> {
        self.state.channels[ch]
            .next_change(tick_at(now))
            .map(ns_of_tick)
    }

    /// Set the gate input of counter `ch` at `now` (channel 2 on the PC:
    /// port 0x61 bit 0).
    ///
    /// # Panics
    /// If `ch` >= [`CHANNELS`].
    pub fn set_gate(&mut self, ch: usize, level: bool, now: VirtualNs) {
        self.state.channels[ch].set_gate(level, tick_at(now));
    }

    /// A guest read of register `ofs` at `now`.
    pub fn read_reg(&mut self, ofs: u64, now: VirtualNs) -> u8 {
        let tick = tick_at(now);
        match ofs {
            0..=2 => self.state.channels[ofs as usize].read_data(tick),
            _ => 0xff,
        }
    }

    /// A guest write of `v` to register `ofs` at `now`.
    pub fn write_reg(&mut self, ofs: u64, v: u8, now: VirtualNs) {
        let tick = tick_at(now);
        match ofs {
            0..=2 => self.state.channels[ofs as usize].write_data(v, tick),
            OFS_CONTROL => self.write_control(v, tick),
            _ => {}
        }
    }

    fn write_control(&mut self, v: u8, tick: u64) {
        let sc = v >> CW_SC_SHIFT;
        if sc == CW_SC_READBACK {
            self.read_back(v, tick);
            return;
        }
        let c = &mut self.state.channels[sc as usize];
        let rw = (v >> CW_RW_SHIFT) & 3;
        if rw == RW_LATCH {
            c.latch_count(tick);
        } else {
            c.program(rw, (v >> CW_MODE_SHIFT) & 7, v & CW_BCD != 0);
        }
    }

    /// The read-back command: latch count and/or status of each selected
    /// counter (a latch already holding a value keeps it).
    fn read_back(&mut self, v: u8, tick: u64) {
        for (i, c) in self.state.channels.iter_mut().enumerate() {
            if v & (RB_COUNTER0 << i) == 0 {
                continue;
            }
            if v & RB_NO_STATUS == 0 && c.status_latch.is_none() {
                c.settle(tick);
                c.status_latch = Some(c.status(tick));
            }
            if v & RB_NO_COUNT == 0 {
                c.latch_count(tick);
            }
        }
    }
}

impl BusDevice for Pit8254 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.now.get();
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_reg(offset + i as u64, now);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let now = self.now.get();
        for (i, &d) in data.iter().enumerate() {
            self.write_reg(offset + i as u64, d, now);
        }
    }
}

impl StateHash for PitState {
    /// Per counter, in order 0, 1, 2: mode, access, bcd, gate, cr
    /// (presence, value), write_lsb, read_msb, count_latch, status_latch,
    /// null_count, running, n, load_tick, paused_at, pending (count,
    /// at_tick, load_tick), out_before_load, null_before_load. Absent
    /// options hash as a 0 flag byte alone.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("pit8254");
        for c in &self.channels {
            h.write_u8(c.mode);
            h.write_u8(c.access);
            h.write_u8(c.bcd as u8);
            h.write_u8(c.gate as u8);
            hash_opt(h, c.cr, |h, v| h.write_u16(v));
            hash_opt(h, c.write_lsb, |h, v| h.write_u8(v));
            h.write_u8(c.read_msb as u8);
            hash_opt(h, c.count_latch, |h, v| h.write_u16(v));
            hash_opt(h, c.status_latch, |h, v| h.write_u8(v));
            h.write_u8(c.null_count as u8);
            h.write_u8(c.running as u8);
            h.write_u32(c.n);
            h.write_u64(c.load_tick);
            hash_opt(h, c.paused_at, |h, v| h.write_u64(v));
            hash_opt(h, c.pending, |h, p| {
                h.write_u32(p.count);
                h.write_u64(p.at_tick);
                h.write_u64(p.load_tick);
            });
            h.write_u8(c.out_before_load as u8);
            h.write_u8(c.null_before_load as u8);
        }
    }
}

fn hash_opt<T>(h: &mut StateHasher, v: Option<T>, f: impl FnOnce(&mut StateHasher, T)) {
    match v {
        Some(v) => {
            h.write_u8(1);
            f(h, v);
        }
        None => h.write_u8(0),
    }
}

fn check_channel(channel: usize, c: &PitChannelState) -> Result<(), PitError> {
    if c.mode > 5 {
        return Err(PitError::Mode {
            channel,
            mode: c.mode,
        });
    }
    if !(RW_LSB..=RW_WORD).contains(&c.access) {
        return Err(PitError::Access {
            channel,
            access: c.access,
        });
    }
    let wrap = wrap(c.bcd);
    let counts = [Some(c.n).filter(|_| c.running), c.pending.map(|p| p.count)];
    for count in counts.into_iter().flatten() {
        if count == 0 || count > wrap {
            return Err(PitError::Count { channel, count });
        }
    }
    Ok(())
}

/// The counter's modulus: 0x10000 binary, 10000 BCD.
fn wrap(bcd: bool) -> u32 {
    if bcd {
        10_000
    } else {
        0x1_0000
    }
}

/// The count a raw written value means (0 is the largest count). Nibbles
/// above 9 in BCD, undefined on the chip, weigh their value (0xA = 10).
fn decode_count(raw: u16, bcd: bool) -> u32 {
    let v = if bcd {
        (0..4)
            .rev()
            .fold(0u32, |acc, i| acc * 10 + ((raw >> (4 * i)) & 0xf) as u32)
            % 10_000
    } else {
        raw as u32
    };
    if v == 0 {
        wrap(bcd)
    } else {
        v
    }
}

/// The register form of a counter value below the modulus.
fn encode_value(v: u32, bcd: bool) -> u16 {
    if !bcd {
        return v as u16;
    }
    (0..4).fold(0u16, |acc, i| {
        acc | (((v / 10u32.pow(i)) % 10) as u16) << (4 * i)
    })
}

/// OUT of a running, ungated counter `d` edges after it read `n`.
fn mode_out(mode: u8, n: u64, d: u64) -> bool {
    match mode {
        0 | 1 => d >= n,
        2 => d % n != n - 1,
        3 => d % n < n.div_ceil(2),
        _ => d != n, // 4, 5: one edge low at terminal count
    }
}

/// Counter value (before the modulus) `d` edges after it read `n`.
fn mode_value(mode: u8, n: u64, d: u64, wrap: u64) -> u64 {
    match mode {
        2 => n - d % n,
        3 => square_value(n, d % n),
        _ => (n + wrap - d % wrap) % wrap,
    }
}

/// Mode 3 counter value `p` edges into a period of `n` (decrements by two;
/// odd counts start each half with the datasheet's extra step).
fn square_value(n: u64, p: u64) -> u64 {
    let high = n.div_ceil(2);
    let (q, first_step) = if p < high { (p, 1) } else { (p - high, 3) };
    match (q, n % 2) {
        (0, _) => n,
        (_, 0) => n - 2 * q,
        // odd: N, N-1, N-3, … (high half); N, N-3, N-5, … (low half)
        _ => n - first_step - 2 * (q - 1),
    }
}

/// The first edge after `t` (where the counter is `d` edges past reading
/// `n`) at which OUT changes.
fn mode_next(mode: u8, n: u64, d: u64, t: u64) -> Option<u64> {
    match mode {
        0 | 1 => (d < n).then(|| t + (n - d)),
        4 | 5 if d < n => Some(t + (n - d)),
        4 | 5 => (d == n).then_some(t + 1),
        _ if n == 1 => None, // modes 2, 3 with count 1: OUT never moves
        2 => {
            let p = d % n;
            Some(if p < n - 1 { t + (n - 1 - p) } else { t + 1 })
        }
        _ => {
            let (p, high) = (d % n, n.div_ceil(2));
            Some(if p < high {
                t + (high - p)
            } else {
                t + (n - p)
            })
        }
    }
}

impl PitChannelState {
    fn wrap(&self) -> u32 {
        wrap(self.bcd)
    }

    /// Count and load edge in force at `tick` (a pending load counts once
    /// its edge has come).
    fn params(&self, tick: u64) -> (u64, u64) {
        match self.pending {
            Some(p) if tick >= p.at_tick => (p.count as u64, p.load_tick),
            _ => (self.n as u64, self.load_tick),
        }
    }

    /// Edges counted by `tick` (frozen while the gate holds counting).
    fn elapsed(&self, tick: u64) -> u64 {
        let (_, load) = self.params(tick);
        let t = self.paused_at.map_or(tick, |p| p.min(tick));
        // Before the load edge the counter holds its initial state.
        t.saturating_sub(load)
    }

    /// A count was written (or triggered) and its load edge has not come:
    /// the counter reads `n` and OUT keeps its level until then.
    fn before_load(&self, tick: u64) -> bool {
        self.running && tick < self.params(tick).1
    }

    fn gate_forces_high(&self) -> bool {
        self.paused_at.is_some() && matches!(self.mode, 2 | 3)
    }

    fn out_at(&self, tick: u64) -> bool {
        if !self.running {
            // After a control word (or the first byte of a mode 0 count),
            // OUT is low in mode 0 and high in every other mode.
            return self.mode != 0;
        }
        if self.gate_forces_high() {
            return true;
        }
        if self.before_load(tick) {
            return self.out_before_load;
        }
        let (n, _) = self.params(tick);
        mode_out(self.mode, n, self.elapsed(tick))
    }

    fn value_at(&self, tick: u64) -> u16 {
        let wrap = self.wrap() as u64;
        let v = if self.running {
            let (n, _) = self.params(tick);
            mode_value(self.mode, n, self.elapsed(tick), wrap)
        } else {
            self.n as u64
        };
        encode_value((v % wrap) as u32, self.bcd)
    }

    fn next_change(&self, tick: u64) -> Option<u64> {
        if !self.running || self.paused_at.is_some() {
            return None;
        }
        let (n, load) = self.params(tick);
        if tick < load {
            // Not loaded yet: OUT keeps its level up to the load edge and
            // takes the mode's level there.
            if mode_out(self.mode, n, 0) != self.out_before_load {
                return Some(load);
            }
            return mode_next(self.mode, n, 0, load);
        }
        let next = mode_next(self.mode, n, self.elapsed(tick), tick);
        let Some(p) = self.pending.filter(|p| tick < p.at_tick) else {
            return next;
        };
        if next.is_some_and(|c| c < p.at_tick) {
            return next;
        }
        // The pending count takes over at its edge.
        if self.out_at(p.at_tick) != self.out_at(tick) {
            return Some(p.at_tick);
        }
        let d = p.at_tick.wrapping_sub(p.load_tick);
        mode_next(self.mode, p.count as u64, d, p.at_tick)
    }

    fn status(&self, tick: u64) -> u8 {
        let out = if self.out_at(tick) { ST_OUT } else { 0 };
        let loading = self.null_before_load && self.before_load(tick);
        let null = if self.null_count || loading {
            ST_NULL_COUNT
        } else {
            0
        };
        out | null | self.access << CW_RW_SHIFT | self.mode << CW_MODE_SHIFT | self.bcd as u8
    }

    /// Make a pending load whose edge has come the current count.
    fn settle(&mut self, tick: u64) {
        if let Some(p) = self.pending.filter(|p| tick >= p.at_tick) {
            self.n = p.count;
            self.load_tick = p.load_tick;
            self.pending = None;
            self.null_count = false;
        }
    }

    /// A control word selecting this counter (not a latch command):
    /// everything restarts, OUT goes to the mode's initial level.
    fn program(&mut self, access: u8, mode: u8, bcd: bool) {
        *self = PitChannelState {
            mode: if mode > 5 { mode - 4 } else { mode },
            access,
            bcd,
            null_count: true,
            n: self.n,
            ..PitChannelState::reset(self.gate)
        };
    }

    fn latch_count(&mut self, tick: u64) {
        if self.count_latch.is_none() {
            self.count_latch = Some(self.value_at(tick));
        }
    }

    fn read_data(&mut self, tick: u64) -> u8 {
        self.settle(tick);
        if let Some(s) = self.status_latch.take() {
            return s;
        }
        let v = self.count_latch.unwrap_or_else(|| self.value_at(tick));
        let (byte, done) = match self.access {
            RW_LSB => (v as u8, true),
            RW_MSB => ((v >> 8) as u8, true),
            _ if !self.read_msb => (v as u8, false),
            _ => ((v >> 8) as u8, true),
        };
        self.read_msb = !done;
        if done {
            self.count_latch = None;
        }
        byte
    }

    fn write_data(&mut self, b: u8, tick: u64) {
        self.settle(tick);
        let raw = match self.access {
            RW_LSB => b as u16,
            RW_MSB => (b as u16) << 8,
            _ => match self.write_lsb.take() {
                Some(lo) => lo as u16 | (b as u16) << 8,
                None => {
                    self.write_lsb = Some(b);
                    if self.mode == 0 {
                        // Mode 0: the first byte stops counting, OUT low.
                        self.running = false;
                    }
                    return;
                }
            },
        };
        self.load(raw, tick);
    }

    /// A complete count was written.
    fn load(&mut self, raw: u16, tick: u64) {
        self.cr = Some(raw);
        self.null_count = true;
        let count = decode_count(raw, self.bcd);
        let counting = self.running && self.paused_at.is_none() && !self.before_load(tick);
        match self.mode {
            // Mode 0: a write sets OUT low at once (the datasheet says so
            // for the first byte; a one-byte count is its own first byte).
            0 => {
                self.running = false;
                self.start(count, tick);
            }
            2 | 3 if counting => self.defer(count, tick),
            // Modes 1 and 5 wait for a gate rising edge.
            1 | 5 => {}
            _ => self.start(count, tick),
        }
    }

    /// Mode 2/3: take `count` at the end of the current (half-)period.
    fn defer(&mut self, count: u32, tick: u64) {
        let (n, _) = self.params(tick);
        let d = self.elapsed(tick);
        let at_tick = if self.mode == 2 {
            tick + (n - d % n)
        } else {
            mode_next(3, n, d, tick).unwrap_or(tick + 1)
        };
        // Mode 3 entering its low half: the new count starts there.
        let into_low = self.mode == 3 && self.out_at(tick);
        let load_tick = if into_low {
            at_tick.wrapping_sub((count as u64).div_ceil(2))
        } else {
            at_tick
        };
        self.pending = Some(PendingLoad {
            count,
            at_tick,
            load_tick,
        });
    }

    /// A count written (or a trigger) during edge interval `tick`: the
    /// counter loads it at the next input edge and counts from there.
    /// A count written before an earlier one's load edge replaces it.
    fn start(&mut self, count: u32, tick: u64) {
        let load = tick + 1;
        self.out_before_load = self.out_at(tick);
        self.null_before_load = self.null_count;
        self.n = count;
        self.load_tick = load;
        self.running = true;
        self.pending = None;
        self.null_count = false;
        let gated = matches!(self.mode, 0 | 2 | 3 | 4);
        self.paused_at = (gated && !self.gate).then_some(load);
    }

    fn set_gate(&mut self, level: bool, tick: u64) {
        self.settle(tick);
        if level == self.gate {
            return;
        }
        self.gate = level;
        match (self.mode, level) {
            // Modes 0 and 4: the gate holds counting and lets it go on.
            (0 | 4, true) => {
                if let Some(p) = self.paused_at.take() {
                    self.load_tick = self.load_tick.wrapping_add(tick.saturating_sub(p));
                }
            }
            // (A pause before the load edge starts at it: the count loads
            // whatever the gate.)
            (0 | 4, false) if self.running => self.paused_at = Some(tick.max(self.load_tick)),
            // Modes 2 and 3: low holds counting with OUT high; rising reloads.
            (2 | 3, false) if self.running => {
                self.pending = None;
                self.paused_at = Some(tick);
            }
            // Rising edge: modes 2 and 3 reload, 1 and 5 trigger.
            // (`start` clears the pause after reading OUT as it was.)
            (1 | 2 | 3 | 5, true) => match self.cr {
                Some(raw) => self.start(decode_count(raw, self.bcd), tick),
                None => self.paused_at = None,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTRL: u64 = OFS_CONTROL;

    fn pit() -> Pit8254 {
        Pit8254::new(VirtualNow::new())
    }

    /// The moment input edge `t` happens.
    fn at(t: u64) -> VirtualNs {
        ns_of_tick(t)
    }

    /// Control word for counter `ch`, access `rw`, `mode`.
    fn cw(ch: u8, rw: u8, mode: u8) -> u8 {
        ch << 6 | rw << 4 | mode << 1
    }

    /// Program counter `ch` in `mode` with a 16-bit `count` at edge `t`.
    fn program(p: &mut Pit8254, ch: u8, mode: u8, count: u16, t: u64) {
        p.write_reg(CTRL, cw(ch, RW_WORD, mode), at(t));
        p.write_reg(ch as u64, count as u8, at(t));
        p.write_reg(ch as u64, (count >> 8) as u8, at(t));
    }

    /// OUT of `ch` at edges `from..to`, as a string of H and L.
    fn wave(p: &Pit8254, ch: usize, from: u64, to: u64) -> String {
        (from..to)
            .map(|t| if p.out(ch, at(t)) { 'H' } else { 'L' })
            .collect()
    }

    /// Status byte of counter `ch` by a read-back command at edge `t`.
    fn status(p: &mut Pit8254, ch: u8, t: u64) -> u8 {
        p.write_reg(CTRL, 0xc0 | RB_NO_COUNT | RB_COUNTER0 << ch, at(t));
        p.read_reg(ch as u64, at(t))
    }

    fn read_word(p: &mut Pit8254, ch: u64, t: u64) -> u16 {
        let lo = p.read_reg(ch, at(t)) as u16;
        lo | (p.read_reg(ch, at(t)) as u16) << 8
    }

    #[test]
    fn pit_tick_conversions_are_exact_inverses() {
        assert_eq!(tick_at(VirtualNs(1_000_000_000)), PIT_HZ);
        assert_eq!(ns_of_tick(PIT_HZ), VirtualNs(1_000_000_000));
        // One edge is 838.095… ns: edge 1 happens at 839 ns.
        assert_eq!(ns_of_tick(1), VirtualNs(839));
        assert_eq!(tick_at(VirtualNs(838)), 0);
        for t in [1u64, 2, 3, 1000, 65536, 1_193_181, 123_456_789_012] {
            let ns = ns_of_tick(t);
            assert_eq!(tick_at(ns), t);
            assert_eq!(tick_at(VirtualNs(ns.0 - 1)), t - 1);
        }
    }

    #[test]
    fn pit_reset_state() {
        let mut p = pit();
        assert_eq!(p.state(), PitState::default());
        assert!(p.out(0, at(100)), "mode 3, no count: OUT high");
        assert_eq!(p.next_out_change(0, at(0)), None, "nothing counts");
        assert!(p.state().channels[0].gate && !p.state().channels[2].gate);
        assert_eq!(p.read_reg(CTRL, at(0)), 0xff);
        assert_eq!(p.read_reg(7, at(0)), 0xff);
    }

    #[test]
    fn pit_mode0_interrupt_on_terminal_count() {
        let mut p = pit();
        p.write_reg(CTRL, cw(0, RW_WORD, 0), at(100));
        assert!(!p.out(0, at(100)), "control word: OUT low");
        p.write_reg(0, 10, at(100));
        p.write_reg(0, 0, at(100));
        // Loaded at edge 101, 0 at edge 111: high N+1 edges after the write.
        assert_eq!(wave(&p, 0, 100, 113), "LLLLLLLLLLLHH");
        assert_eq!(p.next_out_change(0, at(100)), Some(at(111)));
        assert_eq!(p.next_out_change(0, at(111)), None, "stays high");
        assert!(p.out(0, at(1_000_000)));
        assert_eq!(read_word(&mut p, 0, 105), 6);
        assert_eq!(read_word(&mut p, 0, 111), 0);
        assert_eq!(read_word(&mut p, 0, 112), 0xffff, "keeps counting");
        // Rewriting: the first byte drops OUT and stops the count.
        p.write_reg(0, 3, at(200));
        assert!(!p.out(0, at(300)));
        p.write_reg(0, 0, at(300));
        assert_eq!(wave(&p, 0, 300, 305), "LLLLH");
        // A one-byte count drops OUT at the write too, even after terminal
        // count; it loads at the next edge.
        p.write_reg(CTRL, cw(1, RW_LSB, 0), at(400));
        p.write_reg(1, 2, at(400));
        assert_eq!(wave(&p, 1, 400, 404), "LLLH");
        p.write_reg(1, 2, at(410));
        assert_eq!(wave(&p, 1, 410, 415), "LLLHH");
    }

    #[test]
    fn pit_mode0_gate_low_holds_the_count() {
        let mut p = pit();
        program(&mut p, 0, 0, 10, 0);
        // 10 at edge 1, 6 at edge 5; edge 6 sees the gate low.
        p.set_gate(0, false, at(5));
        assert_eq!(read_word(&mut p, 0, 50), 6);
        assert!(!p.out(0, at(50)));
        assert_eq!(p.next_out_change(0, at(50)), None);
        p.set_gate(0, true, at(100));
        assert_eq!(wave(&p, 0, 104, 108), "LLHH", "6 more edges: high at 106");
        assert_eq!(p.next_out_change(0, at(100)), Some(at(106)));
        // Gate low before the load edge: the count loads at edge 201 and
        // holds there; edge 301 is the first to count.
        program(&mut p, 1, 0, 10, 200);
        p.set_gate(1, false, at(200));
        assert_eq!(read_word(&mut p, 1, 250), 10);
        p.set_gate(1, true, at(300));
        assert_eq!(read_word(&mut p, 1, 305), 5);
        assert_eq!(p.next_out_change(1, at(300)), Some(at(310)));
    }

    #[test]
    fn pit_mode1_hardware_one_shot() {
        let mut p = pit();
        program(&mut p, 2, 1, 5, 0); // channel 2: gate low at reset
        assert!(p.out(2, at(50)), "no trigger yet");
        assert_eq!(p.read_reg(CTRL, at(0)), 0xff);
        p.write_reg(CTRL, 0xc0 | RB_NO_COUNT | RB_COUNTER0 << 2, at(10));
        assert_eq!(p.read_reg(2, at(10)) & ST_NULL_COUNT, ST_NULL_COUNT);
        // OUT goes low at the edge after the trigger (51) for 5 edges.
        p.set_gate(2, true, at(50));
        assert_eq!(wave(&p, 2, 49, 58), "HHLLLLLHH");
        assert_eq!(p.next_out_change(2, at(50)), Some(at(51)));
        assert_eq!(p.next_out_change(2, at(51)), Some(at(56)));
        assert_eq!(status(&mut p, 2, 50) & ST_NULL_COUNT, ST_NULL_COUNT);
        assert_eq!(status(&mut p, 2, 51) & ST_NULL_COUNT, 0, "loaded");
        // Retrigger during the pulse: loaded at edge 55, low 5 edges more.
        p.set_gate(2, false, at(53));
        p.set_gate(2, true, at(54));
        assert_eq!(wave(&p, 2, 54, 62), "LLLLLLHH");
        assert_eq!(status(&mut p, 2, 54) & ST_NULL_COUNT, 0, "no new count");
        // A new count waits for the next trigger.
        p.write_reg(2, 2, at(100));
        p.write_reg(2, 0, at(100));
        assert!(p.out(2, at(100)));
        assert_eq!(status(&mut p, 2, 100) & ST_NULL_COUNT, ST_NULL_COUNT);
        p.set_gate(2, false, at(101));
        p.set_gate(2, true, at(102));
        assert_eq!(wave(&p, 2, 101, 107), "HHLLHH");
        assert_eq!(status(&mut p, 2, 103) & ST_NULL_COUNT, 0);
    }

    #[test]
    fn pit_mode2_rate_generator() {
        let mut p = pit();
        program(&mut p, 0, 2, 4, 0);
        // Loaded at edge 1; low when the counter reads 1 (edges 4, 8, 12).
        assert_eq!(wave(&p, 0, 0, 13), "HHHHLHHHLHHHL");
        assert_eq!(p.next_out_change(0, at(0)), Some(at(4)));
        assert_eq!(p.next_out_change(0, at(4)), Some(at(5)));
        let values: Vec<u16> = (0..6).map(|t| read_word(&mut p, 0, t)).collect();
        assert_eq!(values, [4, 4, 3, 2, 1, 4]);
        // Gate low: OUT high at once and the count holds; rising reloads.
        p.set_gate(0, false, at(15));
        assert!(p.out(0, at(15)));
        assert_eq!(read_word(&mut p, 0, 40), 2);
        assert_eq!(p.next_out_change(0, at(40)), None);
        p.set_gate(0, true, at(100));
        assert_eq!(wave(&p, 0, 100, 106), "HHHHLH");
    }

    #[test]
    fn pit_count_loads_at_the_next_input_edge() {
        let mut p = pit();
        program(&mut p, 0, 2, 4, 10);
        // Before the load edge: reads N (our choice), OUT high, null count.
        assert_eq!(
            status(&mut p, 0, 10),
            ST_OUT | ST_NULL_COUNT | RW_WORD << 4 | 2 << 1
        );
        assert_eq!(read_word(&mut p, 0, 10), 4);
        assert_eq!(status(&mut p, 0, 11), ST_OUT | RW_WORD << 4 | 2 << 1);
        assert_eq!(read_word(&mut p, 0, 12), 3);
        // Mode 2 with the IRQ-style count 1193 written mid-interval: the
        // K-th rising edge comes K*N+1 edges after the write's interval.
        program(&mut p, 1, 2, 1193, 5);
        let mut now = at(5);
        for k in 1..=3u64 {
            now = p.next_out_change(1, now).unwrap(); // falls
            now = p.next_out_change(1, now).unwrap(); // rises
            assert_eq!(now, at(5 + k * 1193 + 1), "rising edge {k}");
        }
        // A second count written before the first one's load edge takes its
        // place (it does not wait for a period end).
        program(&mut p, 2, 2, 4, 20);
        p.set_gate(2, true, at(20));
        p.write_reg(2, 6, at(20));
        p.write_reg(2, 0, at(20));
        assert_eq!(read_word(&mut p, 2, 21), 6);
        assert_eq!(p.next_out_change(2, at(20)), Some(at(26)));
        assert_eq!(wave(&p, 2, 20, 28), "HHHHHHLH");
    }

    #[test]
    fn pit_mode2_new_count_waits_for_the_period_end() {
        let mut p = pit();
        program(&mut p, 0, 2, 4, 0);
        p.write_reg(0, 2, at(5));
        p.write_reg(0, 0, at(5));
        // Old period: edges 5–8 (low at 8); count 2 from edge 9.
        assert_eq!(wave(&p, 0, 4, 15), "LHHHLHLHLHL");
        assert_eq!(p.next_out_change(0, at(5)), Some(at(8)));
        assert_eq!(p.next_out_change(0, at(8)), Some(at(9)));
        assert_eq!(p.next_out_change(0, at(9)), Some(at(10)));
        assert_eq!(read_word(&mut p, 0, 9), 2);
        assert_eq!(read_word(&mut p, 0, 10), 1);
        assert_eq!(p.state().channels[0].n, 2, "settled");
    }

    #[test]
    fn pit_mode3_square_wave_even_and_odd() {
        let mut p = pit();
        // Loaded at edge 1: high on edges 1–2, low on 3–4, …
        program(&mut p, 0, 3, 4, 0);
        assert_eq!(wave(&p, 0, 0, 9), "HHHLLHHLL");
        let values: Vec<u16> = (0..5).map(|t| read_word(&mut p, 0, t)).collect();
        assert_eq!(values, [4, 4, 2, 4, 2]);
        // Odd: high on edges 1–3, low on 4–5, high on 6–8, …
        program(&mut p, 1, 3, 5, 0);
        assert_eq!(wave(&p, 1, 0, 11), "HHHHLLHHHLL");
        let values: Vec<u16> = (0..6).map(|t| read_word(&mut p, 1, t)).collect();
        assert_eq!(values, [5, 5, 4, 2, 5, 2]);
        assert_eq!(p.next_out_change(1, at(0)), Some(at(4)));
        assert_eq!(p.next_out_change(1, at(4)), Some(at(6)));
        // A new count starts at the end of the current half: the high half
        // of edges 11–13, then count 2 from its low half at edge 14.
        p.write_reg(1, 2, at(11));
        p.write_reg(1, 0, at(11));
        assert_eq!(wave(&p, 1, 10, 18), "LHHHLHLH");
        assert_eq!(p.next_out_change(1, at(11)), Some(at(14)));
    }

    #[test]
    fn pit_mode4_software_strobe() {
        let mut p = pit();
        program(&mut p, 0, 4, 3, 10);
        // Loaded at edge 11, 0 at edge 14: the strobe is N+1 edges late.
        assert_eq!(wave(&p, 0, 10, 17), "HHHHLHH");
        assert_eq!(p.next_out_change(0, at(10)), Some(at(14)));
        assert_eq!(p.next_out_change(0, at(14)), Some(at(15)));
        assert_eq!(p.next_out_change(0, at(15)), None, "one strobe");
        assert_eq!(read_word(&mut p, 0, 14 + 65536), 0, "wrapped to 0");
        assert!(p.out(0, at(14 + 65536)), "no strobe after wrapping");
    }

    #[test]
    fn pit_mode5_hardware_strobe() {
        let mut p = pit();
        program(&mut p, 2, 5, 3, 0);
        assert_eq!(wave(&p, 2, 0, 10), "HHHHHHHHHH", "waits for the gate");
        p.set_gate(2, true, at(10));
        assert_eq!(wave(&p, 2, 10, 17), "HHHHLHH");
        p.set_gate(2, false, at(20));
        p.set_gate(2, true, at(21));
        assert_eq!(p.next_out_change(2, at(21)), Some(at(25)));
        // A trigger during the strobe: the strobe keeps its edge, then
        // count 3 from edge 26.
        assert_eq!(wave(&p, 2, 21, 26), "HHHHL");
        p.set_gate(2, false, at(25));
        p.set_gate(2, true, at(25));
        assert_eq!(wave(&p, 2, 25, 31), "LHHHLH");
    }

    #[test]
    fn pit_latch_freezes_the_value_until_read() {
        let mut p = pit();
        program(&mut p, 0, 2, 1000, 0);
        p.write_reg(CTRL, cw(0, RW_LATCH, 0), at(10));
        p.write_reg(CTRL, cw(0, RW_LATCH, 0), at(20)); // ignored: latched
                                                       // 1000 at edge 1: 991 at edge 10, 971 at edge 30.
        assert_eq!(read_word(&mut p, 0, 30), 991);
        assert_eq!(read_word(&mut p, 0, 30), 971, "latch released");
        assert_eq!(p.state().channels[0].mode, 2, "latch keeps the mode");
    }

    #[test]
    fn pit_read_back_status_then_count() {
        let mut p = pit();
        program(&mut p, 0, 2, 100, 0);
        p.write_reg(CTRL, cw(2, RW_LSB, 4) | CW_BCD, at(0));
        // Latch count and status of counters 0 and 2.
        p.write_reg(CTRL, 0xc0 | RB_COUNTER0 | RB_COUNTER0 << 2, at(98));
        assert_eq!(p.read_reg(0, at(200)), ST_OUT | RW_WORD << 4 | 2 << 1);
        assert_eq!(read_word(&mut p, 0, 200), 3, "latched at edge 98");
        assert_eq!(
            p.read_reg(2, at(200)),
            ST_OUT | ST_NULL_COUNT | RW_LSB << 4 | 4 << 1 | CW_BCD,
            "no count written yet"
        );
        // Status only: the count stays live.
        p.write_reg(CTRL, 0xc0 | RB_NO_COUNT | RB_COUNTER0, at(300));
        // Loaded at edge 1: edge 300 is the low pulse of the third period.
        assert_eq!(p.read_reg(0, at(300)), RW_WORD << 4 | 2 << 1, "OUT low");
        assert_eq!(read_word(&mut p, 0, 350), 51);
        // Count only.
        p.write_reg(CTRL, 0xc0 | RB_NO_STATUS | RB_COUNTER0, at(360));
        assert_eq!(read_word(&mut p, 0, 380), 41);
    }

    #[test]
    fn pit_bcd_counts_in_decimal() {
        let mut p = pit();
        p.write_reg(CTRL, cw(0, RW_WORD, 2) | CW_BCD, at(0));
        p.write_reg(0, 0x00, at(0));
        p.write_reg(0, 0x01, at(0)); // 0100 decimal, loaded at edge 1
        assert_eq!(read_word(&mut p, 0, 2), 0x0099);
        assert_eq!(read_word(&mut p, 0, 100), 0x0001);
        assert_eq!(read_word(&mut p, 0, 101), 0x0100);
        assert_eq!(p.next_out_change(0, at(0)), Some(at(100)));
        // Count 0 is 10000 in BCD: reads 0000, 9999 one edge later, wraps
        // to 9999.
        p.write_reg(CTRL, cw(1, RW_WORD, 0) | CW_BCD, at(0));
        p.write_reg(1, 0, at(0));
        p.write_reg(1, 0, at(0));
        assert_eq!(read_word(&mut p, 1, 1), 0x0000);
        assert_eq!(read_word(&mut p, 1, 2), 0x9999);
        assert_eq!(p.next_out_change(1, at(0)), Some(at(10_001)));
        assert_eq!(read_word(&mut p, 1, 10_002), 0x9999);
    }

    #[test]
    fn pit_access_modes() {
        let mut p = pit();
        // MSB only: the count is 0x1200.
        p.write_reg(CTRL, cw(0, RW_MSB, 0), at(0));
        p.write_reg(0, 0x12, at(0)); // loaded at edge 1
        assert_eq!(p.next_out_change(0, at(0)), Some(at(0x1201)));
        assert_eq!(p.read_reg(0, at(0x102)), 0x10, "high byte of 0x10ff");
        // LSB only: the count is 0x34; reads give the low byte each time.
        p.write_reg(CTRL, cw(1, RW_LSB, 0), at(0));
        p.write_reg(1, 0x34, at(0));
        assert_eq!(p.next_out_change(1, at(0)), Some(at(0x35)));
        assert_eq!(p.read_reg(1, at(5)), 0x30);
        assert_eq!(p.read_reg(1, at(5)), 0x30);
        // LSB then MSB: the flip-flop alternates, per direction.
        p.write_reg(CTRL, cw(2, RW_WORD, 0), at(0));
        p.write_reg(2, 0x78, at(0));
        assert_eq!(p.read_reg(2, at(0)), 0, "no count yet, low byte");
        p.write_reg(2, 0x56, at(0));
        assert_eq!(p.read_reg(2, at(0)), 0x56, "reads are on their high byte");
        assert_eq!(p.read_reg(2, at(0)), 0x78);
        assert_eq!(p.next_out_change(2, at(0)), None, "gate 2 is low");
        // The gate rises before the load edge: counting starts there.
        p.set_gate(2, true, at(0));
        assert_eq!(p.next_out_change(2, at(0)), Some(at(0x5679)));
        // A control word resets the flip-flops.
        p.write_reg(2, 0x11, at(1));
        p.write_reg(CTRL, cw(2, RW_WORD, 0), at(1));
        assert_eq!(p.state().channels[2].write_lsb, None);
    }

    #[test]
    fn pit_counts_exactly_1193182_edges_per_virtual_second() {
        let mut p = pit();
        // Mode 3 with count 2: OUT changes at every input edge from the
        // one after the load edge; count them over a second from there.
        program(&mut p, 0, 3, 2, 0);
        let start = at(1);
        let end = VirtualNs(start.0 + 1_000_000_000);
        let (mut now, mut changes) = (start, 0u64);
        while let Some(next) = p.next_out_change(0, now) {
            if next > end {
                break;
            }
            changes += 1;
            now = next;
        }
        assert_eq!(changes, PIT_HZ);
        // Mode 2 with count 10000: 1193182 = 119 * 10000 + 3182 edges,
        // so the counter reads 10000 - 3182 a second after its load edge.
        program(&mut p, 1, 2, 10_000, 0);
        assert_eq!(read_word(&mut p, 1, tick_at(end)), 6818);
    }

    #[test]
    fn pit_state_round_trips_and_rejects_bad_values() {
        let mut p = pit();
        program(&mut p, 0, 2, 4, 0);
        p.write_reg(0, 2, at(5));
        p.write_reg(0, 0, at(5));
        let s = p.state();
        let mut q = Pit8254::from_state(&s, VirtualNow::new()).unwrap();
        assert_eq!(q.state(), s);
        assert_eq!(wave(&q, 0, 4, 14), wave(&p, 0, 4, 14));
        assert_eq!(read_word(&mut q, 0, 9), read_word(&mut p, 0, 9));
        let mut bad = PitState::default();
        bad.channels[1].mode = 6;
        assert!(matches!(
            Pit8254::from_state(&bad, VirtualNow::new()),
            Err(PitError::Mode {
                channel: 1,
                mode: 6
            })
        ));
        let mut bad = PitState::default();
        bad.channels[2].access = 0;
        assert!(matches!(
            Pit8254::from_state(&bad, VirtualNow::new()),
            Err(PitError::Access { channel: 2, .. })
        ));
        let mut bad = s;
        bad.channels[0].bcd = true;
        bad.channels[0].n = 20_000;
        assert!(matches!(
            Pit8254::from_state(&bad, VirtualNow::new()),
            Err(PitError::Count { channel: 0, .. })
        ));
        p.reset();
        assert_eq!(p.state(), PitState::default());
    }

    #[test]
    fn pit_state_hash_follows_the_state() {
        let mut p = pit();
        let reset = p.state().state_hash();
        assert_eq!(reset, PitState::default().state_hash());
        program(&mut p, 0, 2, 4, 0);
        let programmed = p.state().state_hash();
        assert_ne!(programmed, reset);
        p.read_reg(0, at(1)); // moves the read flip-flop
        assert_ne!(p.state().state_hash(), programmed);
    }

    #[test]
    fn pit_bus_access_uses_the_published_time() {
        let now = VirtualNow::new();
        let mut p = Pit8254::new(now.clone());
        now.set(at(100));
        p.write(OFS_CONTROL, &[cw(0, RW_WORD, 2)]);
        p.write(OFS_COUNTER0, &[0x00]);
        p.write(OFS_COUNTER0, &[0x01]); // count 0x100, loaded at edge 101
        now.set(at(101 + 0x40));
        let mut d = [0u8; 2];
        // A wide read touches consecutive registers: counter 0, counter 1.
        p.read(OFS_COUNTER0, &mut d);
        assert_eq!(d, [0xc0, 0x00], "low byte of 0xc0; counter 1 reads 0");
        let mut d = [0u8; 1];
        p.read(OFS_COUNTER0, &mut d);
        assert_eq!(d, [0x00], "high byte of 0xc0");
        let mut d = [0u8; 1];
        p.read(OFS_CONTROL, &mut d);
        assert_eq!(d, [0xff]);
    }
}
