//! The MC146818 real-time clock with its CMOS memory (Motorola MC146818A
//! datasheet), as on a PC: offset 0 is the index port (bit 7 masks NMI),
//! offset 1 the data port of the selected register.
//!
//! Time of day is derived, never counted: `clock_base_ns` (the epoch time at
//! virtual time 0, from the constructor's start time and the guest's later
//! settings) plus the virtual time `now_ns` each access passes in. The
//! registers 0x00–0x09 and the century byte are computed on read in the
//! format register B selects; only while the clock is halted (B.SET, or the
//! divider chain stopped in register A) do they live in CMOS memory, where
//! the guest writes the new time. Interrupt flags (register C) are brought
//! up to date lazily from the events between the last access and now, so
//! the state depends only on the access times; [`RtcCmos::next_event_ns`]
//! tells the machine when IRQ8 may next rise.

use crate::timed::TimedDevice;
use cjemu_replay::{StateHash, StateHasher};
use thiserror::Error;

/// Index port (write: register number, bit 7 = NMI mask).
pub const OFS_INDEX: u64 = 0;
/// Data port.
pub const OFS_DATA: u64 = 1;
/// Size of the window.
pub const RTC_SIZE: u64 = 2;
/// Bytes of CMOS memory, clock registers included.
pub const CMOS_LEN: usize = 128;

/// Clock registers.
pub const REG_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const REG_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const REG_MINUTES_ALARM: u8 = 0x03;
/// Hours (bit 7 = PM in 12-hour mode).
pub const REG_HOURS: u8 = 0x04;
/// Hours alarm.
pub const REG_HOURS_ALARM: u8 = 0x05;
/// Day of week, 1 = Sunday.
pub const REG_WEEKDAY: u8 = 0x06;
/// Day of month.
pub const REG_DAY: u8 = 0x07;
/// Month.
pub const REG_MONTH: u8 = 0x08;
/// Year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Register A: UIP, divider, rate select.
pub const REG_A: u8 = 0x0a;
/// Register B: SET, interrupt enables, formats.
pub const REG_B: u8 = 0x0b;
/// Register C: interrupt flags, cleared on read.
pub const REG_C: u8 = 0x0c;
/// Register D: valid RAM and time.
pub const REG_D: u8 = 0x0d;
/// The IBM PC's century byte.
pub const REG_CENTURY: u8 = 0x32;

/// A: update in progress.
pub const A_UIP: u8 = 0x80;
/// A: divider bits (6–4).
pub const A_DV_MASK: u8 = 0x70;
/// A: divider value for a running 32.768 kHz time base.
pub const A_DV_32K: u8 = 0x20;
/// A: rate select bits.
pub const A_RS_MASK: u8 = 0x0f;
/// B: halt updates so the time can be set.
pub const B_SET: u8 = 0x80;
/// B: periodic interrupt enable.
pub const B_PIE: u8 = 0x40;
/// B: alarm interrupt enable.
pub const B_AIE: u8 = 0x20;
/// B: update-ended interrupt enable.
pub const B_UIE: u8 = 0x10;
/// B: binary (not BCD) data mode.
pub const B_DM_BINARY: u8 = 0x04;
/// B: 24-hour mode.
pub const B_24H: u8 = 0x02;
/// C: an enabled flag is set (the IRQ line).
pub const C_IRQF: u8 = 0x80;
/// C: periodic flag.
pub const C_PF: u8 = 0x40;
/// C: alarm flag.
pub const C_AF: u8 = 0x20;
/// C: update-ended flag.
pub const C_UF: u8 = 0x10;
/// D: valid RAM and time (the battery is good).
pub const D_VRT: u8 = 0x80;
/// An alarm byte with both top bits set matches any value.
pub const ALARM_DONT_CARE: u8 = 0xc0;

/// Time-base ticks per second (32.768 kHz crystal).
const TICKS_PER_SEC: u64 = 32768;
/// UIP rises this many ticks (244 µs) before each update.
const UIP_TICKS: u64 = 8;
const NS_PER_SEC: i128 = 1_000_000_000;

/// What the machine tells the CMOS at construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcConfig {
    /// Time of day at virtual time 0, seconds since 1970-01-01 UTC
    /// (`-rtc base=`, or the host time recorded as an input).
    pub start_secs: i64,
    /// Guest RAM below 4 GiB, bytes.
    pub ram_below_4g: u64,
    /// Guest RAM above 4 GiB, bytes.
    pub ram_above_4g: u64,
}

/// Every guest-visible field. `Default` is the power-on state for a
/// default [`RtcConfig`] (epoch time, no memory).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RtcCmosState {
    /// The 128 CMOS bytes. Clock bytes 0x00–0x09 and 0x32 hold the time
    /// only while the clock is halted; register C holds PF/AF/UF.
    pub cmos: Vec<u8>,
    /// Selected register (index port bits 6–0).
    pub index: u8,
    /// Index port bit 7: NMI masked.
    pub nmi_masked: bool,
    /// Epoch time, in ns, at virtual time 0 (valid while running).
    pub clock_base_ns: i128,
    /// Virtual time up to which register C is up to date.
    pub synced_ns: u64,
}

impl Default for RtcCmosState {
    fn default() -> Self {
        RtcCmosState::power_on(&RtcConfig::default())
    }
}

impl RtcCmosState {
    /// The power-on state for `cfg`: 24-hour BCD, 32.768 kHz divider with
    /// the 1024 Hz rate (the values BIOSes program), valid RAM, and the
    /// memory-size bytes a PC BIOS reads.
    pub fn power_on(cfg: &RtcConfig) -> RtcCmosState {
        let mut cmos = vec![0u8; CMOS_LEN];
        cmos[REG_A as usize] = A_DV_32K | 0x06;
        cmos[REG_B as usize] = B_24H;
        cmos[REG_D as usize] = D_VRT;
        write_memory_sizes(&mut cmos, cfg);
        RtcCmosState {
            cmos,
            index: 0,
            nmi_masked: false,
            clock_base_ns: cfg.start_secs as i128 * NS_PER_SEC,
            synced_ns: 0,
        }
    }
}

impl StateHash for RtcCmosState {
    /// In order: cmos (length as u32, then the bytes), index, nmi_masked,
    /// clock_base_ns (i128 bits, little-endian), synced_ns.
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("rtc_cmos");
        h.write_u32(self.cmos.len() as u32);
        h.write(&self.cmos);
        h.write_u8(self.index);
        h.write_u8(self.nmi_masked as u8);
        h.write_u128(self.clock_base_ns as u128);
        h.write_u64(self.synced_ns);
    }
}

fn put_u16(cmos: &mut [u8], at: usize, v: u64) {
    let v = v.min(0xffff);
    cmos[at] = v as u8;
    cmos[at + 1] = (v >> 8) as u8;
}

/// The memory bytes of the PC CMOS map: base memory in KiB (0x15/0x16),
/// extended memory above 1 MiB in KiB (0x17/0x18, and again at 0x30/0x31
/// where BIOSes leave their own count), memory above 16 MiB in 64 KiB units
/// (0x34/0x35), memory above 4 GiB in 64 KiB units (0x5b–0x5d); each
/// clamped to what its bytes hold.
fn write_memory_sizes(cmos: &mut [u8], cfg: &RtcConfig) {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    put_u16(cmos, 0x15, 640);
    let ext_kib = cfg.ram_below_4g.saturating_sub(MIB) / KIB;
    put_u16(cmos, 0x17, ext_kib);
    put_u16(cmos, 0x30, ext_kib);
    let above_16m = cfg.ram_below_4g.saturating_sub(16 * MIB) / (64 * KIB);
    put_u16(cmos, 0x34, above_16m);
    let above_4g = (cfg.ram_above_4g / (64 * KIB)).min(0xff_ffff);
    cmos[0x5b] = above_4g as u8;
    cmos[0x5c] = (above_4g >> 8) as u8;
    cmos[0x5d] = (above_4g >> 16) as u8;
}

/// Why a saved state cannot be restored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RtcError {
    /// CMOS memory of the wrong size.
    #[error("CMOS memory has {0} bytes, not {CMOS_LEN}")]
    CmosSize(usize),
    /// An index outside the 128 registers.
    #[error("RTC index {0:#x} is past the CMOS")]
    Index(u8),
}

/// A calendar date and time of day (UTC, proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year.
    pub year: i64,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
    /// 1 = Sunday … 7 = Saturday.
    pub weekday: u8,
}

/// Days since 1970-01-01 of a civil date (era arithmetic: 400-year cycles
/// of 146097 days, years starting in March so the leap day comes last).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

impl DateTime {
    /// The date and time `secs` seconds after the epoch.
    pub fn from_epoch(secs: i64) -> DateTime {
        let days = secs.div_euclid(86400);
        let tod = secs.rem_euclid(86400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (tod / 3600) as u8,
            minute: (tod / 60 % 60) as u8,
            second: (tod % 60) as u8,
            // 1970-01-01 was a Thursday (5).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }

    /// Seconds since the epoch (the weekday is not used).
    pub fn to_epoch(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86400
            + self.hour as i64 * 3600
            + self.minute as i64 * 60
            + self.second as i64
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// The MC146818 RTC and CMOS.
#[derive(Debug)]
pub struct RtcCmos {
    s: RtcCmosState,
}

impl RtcCmos {
    /// The RTC at power-on for `cfg`.
    pub fn new(cfg: &RtcConfig) -> RtcCmos {
        RtcCmos::from_state(&RtcCmosState::power_on(cfg)).expect("the power-on state is valid")
    }

    /// The RTC with a saved state.
    pub fn from_state(s: &RtcCmosState) -> Result<RtcCmos, RtcError> {
        if s.cmos.len() != CMOS_LEN {
            return Err(RtcError::CmosSize(s.cmos.len()));
        }
        if s.index as usize >= CMOS_LEN {
            return Err(RtcError::Index(s.index));
        }
        Ok(RtcCmos { s: s.clone() })
    }

    /// The saved state.
    pub fn state(&self) -> RtcCmosState {
        self.s.clone()
    }

    fn reg(&self, r: u8) -> u8 {
        self.s.cmos[r as usize]
    }

    /// Index port bit 7: the machine gates NMI with it.
    pub fn nmi_masked(&self) -> bool {
        self.s.nmi_masked
    }

    /// The clock counts: divider running and SET clear.
    fn running(&self) -> bool {
        self.reg(REG_A) & A_DV_MASK == A_DV_32K && self.reg(REG_B) & B_SET == 0
    }

    fn divider_running(&self) -> bool {
        self.reg(REG_A) & A_DV_MASK == A_DV_32K
    }

    /// Epoch time in ns at virtual time `now_ns` (running clock).
    fn clock_ns(&self, now_ns: u64) -> i128 {
        self.s.clock_base_ns + now_ns as i128
    }

    /// Whole epoch seconds at `now_ns`.
    fn clock_secs(&self, now_ns: u64) -> i64 {
        self.clock_ns(now_ns).div_euclid(NS_PER_SEC) as i64
    }

    fn encode(&self, v: u8) -> u8 {
        if self.reg(REG_B) & B_DM_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.reg(REG_B) & B_DM_BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.encode(h);
        }
        let pm = if h >= 12 { 0x80 } else { 0 };
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    }

    /// The clock byte `r` for the time `t` in the current format.
    fn time_byte(&self, t: &DateTime, r: u8) -> u8 {
        let year = t.year.rem_euclid(10000);
        match r {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => self.encode_hour(t.hour),
            REG_WEEKDAY => self.encode(t.weekday),
            REG_DAY => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode((year % 100) as u8),
            _ => self.encode((year / 100) as u8), // REG_CENTURY
        }
    }

    fn is_time_reg(r: u8) -> bool {
        matches!(
            r,
            REG_SECONDS
                | REG_MINUTES
                | REG_HOURS
                | REG_WEEKDAY
                | REG_DAY
                | REG_MONTH
                | REG_YEAR
                | REG_CENTURY
        )
    }

    /// The time the halted clock's bytes hold (what the guest set).
    fn held_time(&self) -> i64 {
        let year = self.decode(self.reg(REG_CENTURY)) as i64 * 100
            + self.decode(self.reg(REG_YEAR)) as i64;
        DateTime {
            year,
            month: self.decode(self.reg(REG_MONTH)).clamp(1, 12),
            day: self.decode(self.reg(REG_DAY)).clamp(1, 31),
            hour: self.decode_hour(self.reg(REG_HOURS)).min(23),
            minute: self.decode(self.reg(REG_MINUTES)).min(59),
            second: self.decode(self.reg(REG_SECONDS)).min(59),
            weekday: 1,
        }
        .to_epoch()
    }

    /// The clock stops: its current time moves into the CMOS bytes.
    fn halt(&mut self, now_ns: u64) {
        let t = DateTime::from_epoch(self.clock_secs(now_ns));
        for r in [
            REG_SECONDS,
            REG_MINUTES,
            REG_HOURS,
            REG_WEEKDAY,
            REG_DAY,
            REG_MONTH,
            REG_YEAR,
            REG_CENTURY,
        ] {
            self.s.cmos[r as usize] = self.time_byte(&t, r);
        }
    }

    /// The clock restarts from the time in the CMOS bytes. After SET the
    /// next update comes one second later; after a divider reset, half a
    /// second later (datasheet).
    fn resume(&mut self, now_ns: u64, from_divider_reset: bool) {
        let phase = if from_divider_reset {
            NS_PER_SEC / 2
        } else {
            0
        };
        self.s.clock_base_ns = self.held_time() as i128 * NS_PER_SEC + phase - now_ns as i128;
    }

    /// Periodic interval in 32.768 kHz ticks (None: rate 0 or divider off).
    fn periodic_ticks(&self) -> Option<u64> {
        let rs = self.reg(REG_A) & A_RS_MASK;
        if rs == 0 || !self.divider_running() {
            return None;
        }
        // Rates 1 and 2 repeat rates 8 and 9 (the datasheet's table).
        let rs = if rs < 3 { rs + 7 } else { rs };
        Some(1 << (rs - 1))
    }

    fn ticks(ns: u64) -> u64 {
        (ns as u128 * TICKS_PER_SEC as u128 / NS_PER_SEC as u128) as u64
    }

    fn ticks_to_ns(ticks: u64) -> u64 {
        // Round up: the first ns at which `ticks` have elapsed.
        (ticks as u128 * NS_PER_SEC as u128).div_ceil(TICKS_PER_SEC as u128) as u64
    }

    fn alarm_matches(&self, t: &DateTime) -> bool {
        let hit = |alarm: u8, now: u8| alarm & ALARM_DONT_CARE == ALARM_DONT_CARE || alarm == now;
        hit(self.reg(REG_SECONDS_ALARM), self.time_byte(t, REG_SECONDS))
            && hit(self.reg(REG_MINUTES_ALARM), self.time_byte(t, REG_MINUTES))
            && hit(self.reg(REG_HOURS_ALARM), self.time_byte(t, REG_HOURS))
    }

    /// Set the flags of register C for the events in (synced, now].
    fn sync(&mut self, now_ns: u64) {
        let from = self.s.synced_ns;
        if now_ns <= from {
            return;
        }
        let mut flags = 0;
        if let Some(p) = self.periodic_ticks() {
            if Self::ticks(now_ns) / p != Self::ticks(from) / p {
                flags |= C_PF;
            }
        }
        if self.running() {
            let (s0, s1) = (self.clock_secs(from), self.clock_secs(now_ns));
            if s1 > s0 {
                flags |= C_UF;
                // The alarm pattern repeats daily: a day of updates covers it.
                let first = (s0 + 1).max(s1 - 86399);
                if self.reg(REG_C) & C_AF == 0
                    && (first..=s1).any(|s| self.alarm_matches(&DateTime::from_epoch(s)))
                {
                    flags |= C_AF;
                }
            }
        }
        self.s.cmos[REG_C as usize] |= flags;
        self.s.synced_ns = now_ns;
    }

    fn irqf(&self) -> bool {
        // The enables in B sit at the same bits as their flags in C.
        let enabled = self.reg(REG_B) & (B_PIE | B_AIE | B_UIE);
        self.reg(REG_C) & enabled != 0
    }

    /// Bring the flags up to `now_ns`: the machine calls this at
    /// [`RtcCmos::next_event_ns`] and then samples [`RtcCmos::irq_level`].
    pub fn advance(&mut self, now_ns: u64) {
        self.sync(now_ns);
    }

    /// The IRQ8 output (register C's IRQF) as of the last access/advance.
    pub fn irq_level(&self) -> bool {
        self.irqf()
    }

    /// The next virtual time after `now_ns` at which an enabled interrupt
    /// may be raised (a periodic tick, or a once-a-second update for the
    /// update and alarm interrupts), or None if none is enabled.
    pub fn next_event_ns(&self, now_ns: u64) -> Option<u64> {
        let b = self.reg(REG_B);
        let periodic = self
            .periodic_ticks()
            .filter(|_| b & B_PIE != 0)
            .map(|p| Self::ticks_to_ns((Self::ticks(now_ns) / p + 1) * p));
        let update = (self.running() && b & (B_UIE | B_AIE) != 0).then(|| {
            let next = (self.clock_secs(now_ns) as i128 + 1) * NS_PER_SEC;
            (next - self.s.clock_base_ns) as u64
        });
        [periodic, update].into_iter().flatten().min()
    }

    /// UIP: the 244 µs before an update of the running clock.
    fn uip(&self, now_ns: u64) -> bool {
        if !self.running() {
            return false;
        }
        let in_sec = self.clock_ns(now_ns).rem_euclid(NS_PER_SEC) as u64;
        Self::ticks(in_sec) >= TICKS_PER_SEC - UIP_TICKS
    }

    fn read_reg(&mut self, now_ns: u64) -> u8 {
        self.sync(now_ns);
        let r = self.s.index;
        match r {
            REG_A => self.reg(REG_A) | if self.uip(now_ns) { A_UIP } else { 0 },
            REG_C => {
                let v = self.reg(REG_C) | if self.irqf() { C_IRQF } else { 0 };
                self.s.cmos[REG_C as usize] = 0;
                v
            }
            _ if Self::is_time_reg(r) && self.running() => {
                self.time_byte(&DateTime::from_epoch(self.clock_secs(now_ns)), r)
            }
            _ => self.reg(r),
        }
    }

    fn write_reg(&mut self, now_ns: u64, v: u8) {
        self.sync(now_ns);
        let r = self.s.index;
        let was_running = self.running();
        let divider_was = self.divider_running();
        match r {
            REG_A => self.s.cmos[REG_A as usize] = v & !A_UIP,
            // Setting SET ends any update-ended interrupt enable.
            REG_B if v & B_SET != 0 => self.s.cmos[REG_B as usize] = v & !B_UIE,
            REG_B => self.s.cmos[REG_B as usize] = v,
            REG_C | REG_D => {}
            // A write to the running clock's time is lost at the next
            // update; halting first is the protocol.
            _ if Self::is_time_reg(r) && was_running => {}
            _ => self.s.cmos[r as usize] = v,
        }
        match (was_running, self.running()) {
            (true, false) => self.halt(now_ns),
            (false, true) => self.resume(now_ns, !divider_was),
            _ => {}
        }
    }
}

impl TimedDevice for RtcCmos {
    fn read_at(&mut self, now_ns: u64, offset: u64, data: &mut [u8]) {
        let v = match offset {
            OFS_DATA => self.read_reg(now_ns),
            _ => 0xff, // the index port is write-only
        };
        data.fill(0xff);
        if let Some(d) = data.first_mut() {
            *d = v;
        }
    }

    fn write_at(&mut self, now_ns: u64, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            OFS_INDEX => {
                self.s.index = v & 0x7f;
                self.s.nmi_masked = v & 0x80 != 0;
            }
            OFS_DATA => self.write_reg(now_ns, v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;
    /// 2024-02-29 23:59:58 UTC, a Thursday: leap day, day and month roll.
    const START: i64 = 1_709_251_198;

    fn rtc() -> RtcCmos {
        RtcCmos::new(&RtcConfig {
            start_secs: START,
            ram_below_4g: 128 << 20,
            ram_above_4g: 0,
        })
    }

    fn rd(r: &mut RtcCmos, now: u64, reg: u8) -> u8 {
        r.write_at(now, OFS_INDEX, &[reg]);
        let mut d = [0u8];
        r.read_at(now, OFS_DATA, &mut d);
        d[0]
    }

    fn wr(r: &mut RtcCmos, now: u64, reg: u8, v: u8) {
        r.write_at(now, OFS_INDEX, &[reg]);
        r.write_at(now, OFS_DATA, &[v]);
    }

    fn time(r: &mut RtcCmos, now: u64) -> [u8; 8] {
        [
            REG_YEAR,
            REG_MONTH,
            REG_DAY,
            REG_HOURS,
            REG_MINUTES,
            REG_SECONDS,
            REG_WEEKDAY,
            REG_CENTURY,
        ]
        .map(|reg| rd(r, now, reg))
    }

    #[test]
    fn rtc_calendar_conversion_round_trips() {
        let t = DateTime::from_epoch(START);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2024, 2, 29, 23, 59, 58)
        );
        assert_eq!(t.weekday, 5, "Thursday");
        assert_eq!(t.to_epoch(), START);
        assert_eq!(DateTime::from_epoch(0).weekday, 5);
        let y2k = DateTime::from_epoch(946_684_800);
        assert_eq!((y2k.year, y2k.month, y2k.day, y2k.weekday), (2000, 1, 1, 7));
        for s in [-86_400 * 400, -1, 0, 951_782_400, 4_102_444_800] {
            assert_eq!(DateTime::from_epoch(s).to_epoch(), s);
        }
    }

    #[test]
    fn rtc_reads_the_base_time_in_bcd_and_binary() {
        let mut r = rtc();
        assert_eq!(
            time(&mut r, 0),
            [0x24, 0x02, 0x29, 0x23, 0x59, 0x58, 0x05, 0x20]
        );
        wr(&mut r, 0, REG_B, B_24H | B_DM_BINARY);
        assert_eq!(time(&mut r, 0), [24, 2, 29, 23, 59, 58, 5, 20]);
        // 12-hour mode: 23h is 11 PM.
        wr(&mut r, 0, REG_B, 0);
        assert_eq!(rd(&mut r, 0, REG_HOURS), 0x80 | 0x11);
        wr(&mut r, 0, REG_B, B_DM_BINARY);
        assert_eq!(rd(&mut r, 0, REG_HOURS), 0x80 | 11);
    }

    #[test]
    fn rtc_advances_with_virtual_time() {
        let mut r = rtc();
        assert_eq!(rd(&mut r, SEC - 1, REG_SECONDS), 0x58);
        assert_eq!(rd(&mut r, SEC, REG_SECONDS), 0x59);
        // Two seconds in: 2024-03-01 00:00:00, a Friday.
        assert_eq!(
            time(&mut r, 2 * SEC),
            [0x24, 0x03, 0x01, 0x00, 0x00, 0x00, 0x06, 0x20]
        );
        // 12-hour mode shows midnight as 12 AM.
        wr(&mut r, 2 * SEC, REG_B, 0);
        assert_eq!(rd(&mut r, 2 * SEC, REG_HOURS), 0x12);
    }

    #[test]
    fn rtc_set_halts_and_the_written_time_runs_on() {
        let mut r = rtc();
        wr(&mut r, 0, REG_B, B_24H | B_SET);
        assert_eq!(rd(&mut r, 5 * SEC, REG_SECONDS), 0x58, "halted");
        wr(&mut r, 5 * SEC, REG_HOURS, 0x07);
        wr(&mut r, 5 * SEC, REG_MINUTES, 0x30);
        wr(&mut r, 5 * SEC, REG_SECONDS, 0x00);
        wr(&mut r, 5 * SEC, REG_B, B_24H);
        assert_eq!(rd(&mut r, 5 * SEC, REG_HOURS), 0x07);
        assert_eq!(rd(&mut r, 6 * SEC - 1, REG_SECONDS), 0x00);
        assert_eq!(rd(&mut r, 6 * SEC, REG_SECONDS), 0x01);
        assert_eq!(rd(&mut r, 6 * SEC, REG_DAY), 0x29, "the date stayed");
        // Writes to a running clock's time are lost.
        wr(&mut r, 6 * SEC, REG_MINUTES, 0x45);
        assert_eq!(rd(&mut r, 6 * SEC, REG_MINUTES), 0x30);
    }

    #[test]
    fn rtc_divider_reset_halts_and_restarts_half_a_second_early() {
        let mut r = rtc();
        wr(&mut r, 0, REG_A, 0x70 | 0x06); // divider chain in reset
        assert_eq!(rd(&mut r, 3 * SEC, REG_SECONDS), 0x58, "halted");
        assert_eq!(rd(&mut r, 3 * SEC, REG_C) & C_PF, 0, "no periodic ticks");
        wr(&mut r, 3 * SEC, REG_A, A_DV_32K | 0x06);
        // The first update comes 500 ms after the divider restarts.
        assert_eq!(rd(&mut r, 3 * SEC + SEC / 2 - 1, REG_SECONDS), 0x58);
        assert_eq!(rd(&mut r, 3 * SEC + SEC / 2, REG_SECONDS), 0x59);
    }

    #[test]
    fn rtc_uip_in_the_244us_before_an_update() {
        let mut r = rtc();
        // 244.140625 µs = 8 ticks before the second at 1 s.
        assert_eq!(rd(&mut r, SEC - 245_000, REG_A), 0x26);
        assert_eq!(rd(&mut r, SEC - 244_000, REG_A), 0xa6);
        assert_eq!(rd(&mut r, SEC - 1, REG_A), 0xa6);
        assert_eq!(rd(&mut r, SEC, REG_A), 0x26);
        // Halted: never in progress.
        wr(&mut r, SEC, REG_B, B_24H | B_SET);
        assert_eq!(rd(&mut r, 2 * SEC - 1000, REG_A), 0x26);
        // UIP is read-only.
        wr(&mut r, SEC, REG_A, 0xa6);
        assert_eq!(r.state().cmos[REG_A as usize], 0x26);
    }

    #[test]
    fn rtc_periodic_rate_from_register_a() {
        let mut r = rtc();
        // Rate 6 = 1024 Hz: 32 ticks, 976562.5 ns.
        wr(&mut r, 0, REG_B, B_24H | B_PIE);
        assert_eq!(r.next_event_ns(0), Some(976_563));
        r.advance(976_562);
        assert!(!r.irq_level());
        r.advance(976_563);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, 976_563, REG_C), C_IRQF | C_PF);
        assert!(!r.irq_level(), "reading C drops IRQ8");
        // Rate 15 = 2 Hz.
        wr(&mut r, MS, REG_A, A_DV_32K | 15);
        assert_eq!(r.next_event_ns(MS), Some(SEC / 2));
        // Rate 1 repeats rate 8 (256 Hz, 128 ticks).
        wr(&mut r, MS, REG_A, A_DV_32K | 1);
        assert_eq!(r.next_event_ns(0), Some(3_906_250));
        // Rate 0: off.
        wr(&mut r, MS, REG_A, A_DV_32K);
        assert_eq!(r.next_event_ns(MS), None);
    }

    #[test]
    fn rtc_register_c_clears_on_read_and_flags_need_no_enable() {
        let mut r = rtc();
        // The update flag is set each second even with UIE clear.
        assert_eq!(rd(&mut r, SEC, REG_C), C_UF | C_PF, "PF too: 1024 Hz");
        assert_eq!(rd(&mut r, SEC, REG_C), 0);
        assert!(!r.irq_level());
        wr(&mut r, SEC, REG_B, B_24H | B_UIE);
        assert_eq!(r.next_event_ns(SEC), Some(2 * SEC));
        r.advance(2 * SEC);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, 2 * SEC, REG_C) & (C_IRQF | C_UF), C_IRQF | C_UF);
        // Register D reads VRT; writes to C and D are ignored.
        wr(&mut r, 2 * SEC, REG_D, 0);
        assert_eq!(rd(&mut r, 2 * SEC, REG_D), D_VRT);
    }

    #[test]
    fn rtc_alarm_fires_at_the_matching_second() {
        let mut r = rtc();
        wr(&mut r, 0, REG_A, A_DV_32K); // no periodic noise
        wr(&mut r, 0, REG_B, B_24H | B_AIE);
        wr(&mut r, 0, REG_SECONDS_ALARM, 0x05);
        wr(&mut r, 0, REG_MINUTES_ALARM, ALARM_DONT_CARE);
        wr(&mut r, 0, REG_HOURS_ALARM, 0x00);
        r.advance(6 * SEC);
        assert!(!r.irq_level(), "00:00:04 does not match");
        r.advance(7 * SEC);
        assert!(r.irq_level(), "00:00:05 matches");
        assert_eq!(rd(&mut r, 7 * SEC, REG_C), C_IRQF | C_AF | C_UF);
        // A jump over the next match (00:01:05) still sets AF.
        r.advance(200 * SEC);
        assert!(r.irq_level());
    }

    #[test]
    fn rtc_memory_sizes_and_nmi_bit() {
        let mut r = RtcCmos::new(&RtcConfig {
            start_secs: 0,
            ram_below_4g: 0xc000_0000,
            ram_above_4g: 1 << 32,
        });
        let w = |r: &mut RtcCmos, lo: u8| rd(r, 0, lo) as u32 | (rd(r, 0, lo + 1) as u32) << 8;
        assert_eq!(w(&mut r, 0x15), 640);
        assert_eq!(w(&mut r, 0x17), 0xffff, "3 GiB of KiB is clamped");
        assert_eq!(w(&mut r, 0x30), 0xffff);
        assert_eq!(w(&mut r, 0x34), (0xc000_0000 - (16 << 20)) / 65536);
        assert_eq!(rd(&mut r, 0, 0x5d), 0x01, "4 GiB = 0x10000 x 64 KiB");
        // 32 MiB: 31 MiB above 1 MiB in KiB, 16 MiB above 16 MiB in 64 KiB.
        let s = RtcCmosState::power_on(&RtcConfig {
            ram_below_4g: 32 << 20,
            ..RtcConfig::default()
        });
        assert_eq!(u16::from_le_bytes([s.cmos[0x17], s.cmos[0x18]]), 31 * 1024);
        assert_eq!(u16::from_le_bytes([s.cmos[0x34], s.cmos[0x35]]), 256);
        assert_eq!(s.cmos[0x5b..0x5e], [0, 0, 0]);
        let mut r = rtc();
        r.write_at(0, OFS_INDEX, &[0x80 | REG_D]);
        assert!(r.nmi_masked());
        let mut d = [0u8];
        r.read_at(0, OFS_DATA, &mut d);
        assert_eq!(d[0], D_VRT, "bit 7 is not part of the index");
        let bad = RtcCmosState {
            cmos: vec![0; 64],
            ..r.state()
        };
        assert_eq!(
            RtcCmos::from_state(&bad).unwrap_err(),
            RtcError::CmosSize(64)
        );
    }
}
