//! Machine snapshots (`--snapshot-every`, `--loadvm`): the whole machine in
//! one file, loaded back exactly.
//!
//! File layout (integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `CJEMUSNP` |
//! | 4 | format version ([`VERSION`]) |
//! | 8 | xxh3-64 of everything after this field |
//! | 8 | length of the state section |
//! | n | state section: [`Body`] in postcard |
//! | rest | RAM: the non-zero 4 KiB pages named in the state section, concatenated, LZ4 block-compressed |
//!
//! The state section holds the machine's description (checked against the
//! machine loading it: RAM size, UART count, debug-exit window, clock
//! mode), the CPU ([`CpuSnapshot`]: architectural state, icount, TSC
//! fields), every device's plain-data state, the virtual clock, the armed
//! timers, the serial input the guest has not taken yet, and the stop
//! period of the run that wrote it.
//!
//! Loading decodes and checks everything first (each device is built from
//! its state through its `from_state`, into temporaries), and only then
//! puts the new devices, CPU and RAM in place: a refused file leaves the
//! machine untouched. Nothing runs while loading: no timer fires, no
//! interrupt line is sampled; the PIC comes back with its saved IRR/ISR and
//! the run loop's next service round recomputes INTR. Each part is
//! restored on its own, so the order does not matter.

use crate::machine::Machine;
use crate::pc::{timer, Pc};
use crate::record_replay::{Journal, LogMark};
use crate::status::Error;
use cjemu_devices::debug_exit::{DebugExit, DebugExitState};
use cjemu_devices::i8042::{I8042State, I8042};
use cjemu_devices::pic8259::{Pic8259, Pic8259State};
use cjemu_devices::pit8254::{Pit8254, PitState};
use cjemu_devices::port61::{Port61, Port61State};
use cjemu_devices::rtc_cmos::{RtcCmos, RtcCmosState};
use cjemu_devices::testdev::{
    TestdevIoram, TestdevIoramState, TestdevPort, TestdevPortState, IORAM_SIZE,
};
use cjemu_devices::uart16550::{NullOutput, Uart16550, Uart16550State};
use cjemu_jit::cpu_snapshot::CpuSnapshot;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr};
use cjemu_jit::CpuState;
use cjemu_replay::clock::{ClockState, VirtualClock};
use cjemu_replay::timers::{Timers, TimersState};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"CJEMUSNP";
/// The format version this cjemu writes and reads.
pub const VERSION: u32 = 3;
/// Snapshot file names end in this.
pub const EXTENSION: &str = "cjsnap";
/// RAM is saved by pages of this size; all-zero pages are left out.
const PAGE: usize = 4096;
/// Magic, version, checksum, state length.
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// What a loading machine must be: its hardware
/// ([`Machine::hardware`]) and its clock's shift mode, as
/// (name, value) pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineDesc(pub Vec<(String, String)>);

impl MachineDesc {
    /// The description of `m`.
    pub fn of(m: &Machine) -> MachineDesc {
        let c = m.pc.borrow().clock.state();
        let clock = if c.auto {
            "shift=auto".into()
        } else {
            format!("shift={}", c.shift)
        };
        let mut d: Vec<(String, String)> = m
            .hardware()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        d.push(("clock".into(), clock));
        MachineDesc(d)
    }

    /// Every difference from `now`, as `what: saved X, now Y`.
    fn differences(&self, now: &MachineDesc) -> Vec<String> {
        let none = String::from("(none)");
        let value = |d: &MachineDesc, k: &str| {
            d.0.iter()
                .find(|(key, _)| key == k)
                .map_or(none.clone(), |(_, v)| v.clone())
        };
        let mut keys: Vec<&String> = Vec::new();
        for (k, _) in self.0.iter().chain(&now.0) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (value(self, k), value(now, k));
                (a != b).then(|| format!("{k}: snapshot {a}, now {b}"))
            })
            .collect()
    }
}

/// Where the RAM section's pages go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RamLayout {
    /// Indices of the saved (non-zero) pages, ascending.
    pages: Vec<u32>,
}

/// The state section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Body {
    machine: MachineDesc,
    cpu: CpuSnapshot,
    ram: RamLayout,
    pic: Pic8259State,
    pit: PitState,
    rtc: RtcCmosState,
    uarts: Vec<Uart16550State>,
    i8042: I8042State,
    port61: Port61State,
    debug_exit: DebugExitState,
    ioram: TestdevIoramState,
    testdev_port: TestdevPortState,
    clock: ClockState,
    timers: TimersState,
    /// COM1's input received from the host, not taken by the guest yet.
    serial_pending: Vec<u8>,
    /// `--snapshot-every` of the run that wrote it (stops there keep a
    /// loaded run on the same schedule of service rounds).
    stop_every: Option<u64>,
    /// Taken while recording or replaying: the recording, and where its
    /// replay goes on from here.
    log: Option<LogMark>,
}

/// `--snapshot-every N` (`--snapshot-dir DIR`): stop at every multiple of
/// `every` instructions and write a snapshot there when `dir` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPlan {
    /// The period, in instructions (at least 1).
    pub every: u64,
    /// Where to write; `None` keeps only the stops (a run loaded from a
    /// snapshot without `--snapshot-every` keeps its writer's schedule).
    pub dir: Option<PathBuf>,
}

impl SnapshotPlan {
    /// Instructions from `icount` to the next multiple of the period.
    pub fn until_next(&self, icount: u64) -> u64 {
        self.every - icount % self.every
    }

    /// A snapshot is due at `icount` (never at 0: nothing ran yet).
    pub fn due(&self, icount: u64) -> bool {
        icount != 0 && icount.is_multiple_of(self.every)
    }

    /// The file for the snapshot at `icount`.
    pub fn path(&self, icount: u64) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("snap-{icount}.{EXTENSION}")))
    }
}

/// What a load found in the file, besides the machine state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The instruction count the snapshot was taken at.
    pub icount: u64,
    /// The writer's `--snapshot-every`.
    pub stop_every: Option<u64>,
}

fn input(msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("snapshot: {msg}"))
}

/// Indices of the pages of `ram` that hold a non-zero byte.
fn nonzero_pages(ram: &[u8]) -> Vec<u32> {
    ram.chunks(PAGE)
        .enumerate()
        .filter(|(_, p)| !is_zero(p))
        .map(|(i, _)| i as u32)
        .collect()
}

/// Is every byte of `page` zero? An OR over 64-byte pieces with one early
/// exit per piece: the compiler turns each piece into a few vector ORs,
/// where a byte-by-byte `any` would not be vectorised.
fn is_zero(page: &[u8]) -> bool {
    let mut pieces = page.chunks_exact(64);
    let whole = pieces
        .by_ref()
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0);
    whole && pieces.remainder().iter().all(|&b| b == 0)
}

/// Save `m` to `w`. The CPU must be between instructions (the run loop
/// saves at the start of a service round).
pub fn save(m: &Machine, w: &mut impl Write) -> Result<(), Error> {
    let bytes = encode(m)?;
    w.write_all(&bytes)
        .and_then(|_| w.flush())
        .map_err(|e| input(format!("writing: {e}")))
}

/// The whole file for `m`.
pub fn encode(m: &Machine) -> Result<Vec<u8>, Error> {
    let ram = m.engine.mem().ram();
    let pages = nonzero_pages(ram);
    let mut raw = Vec::with_capacity(pages.len() * PAGE);
    for &p in &pages {
        let start = p as usize * PAGE;
        raw.extend_from_slice(&ram[start..(start + PAGE).min(ram.len())]);
    }
    let packed = lz4_flex::block::compress(&raw);
    let body = body_of(m, RamLayout { pages });
    let state = postcard::to_stdvec(&body)
        .map_err(|e| Error::Internal(format!("encoding a snapshot: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + state.len() + packed.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // checksum, below
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(&state);
    out.extend_from_slice(&packed);
    let sum = xxhash_rust::xxh3::xxh3_64(&out[20..]);
    out[12..20].copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

fn body_of(m: &Machine, ram: RamLayout) -> Body {
    let pc = m.pc.borrow();
    let body = Body {
        machine: MachineDesc::of(m),
        cpu: m.engine.cpu().snapshot(),
        ram,
        pic: pc.pic.borrow().state(),
        pit: pc.pit.borrow().state(),
        rtc: pc.rtc.borrow().state(),
        uarts: pc.uarts.iter().map(|u| u.borrow().state()).collect(),
        i8042: pc.i8042.borrow().state(),
        port61: pc.port61.borrow().state(),
        debug_exit: pc.debug_exit.borrow().state(),
        ioram: pc.ioram.borrow().state().clone(),
        testdev_port: pc.testdev_port.borrow().state(),
        clock: pc.clock.state(),
        timers: pc.timers.state(),
        serial_pending: m.serial_input.pending_bytes(),
        stop_every: m.snapshots.as_ref().map(|p| p.every),
        log: match &m.journal {
            Journal::Off => None,
            Journal::Record(r) => Some(r.mark(m.engine.cpu().icount)),
            Journal::Replay(r) => Some(r.mark()),
        },
    };
    body
}

/// Write the snapshot of `m` at its current count into `plan`'s directory.
pub fn write_due(m: &Machine, plan: &SnapshotPlan) -> Result<(), Error> {
    let icount = m.engine.cpu().icount;
    let Some(path) = plan.path(icount) else {
        return Ok(());
    };
    let bytes = encode(m)?;
    // Written aside and renamed: a run killed mid-write leaves no torn file.
    let tmp = path.with_extension(format!("{EXTENSION}.tmp"));
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::Input(format!("--snapshot-dir: {}: {e}", path.display())))?;
    log::info!(
        "snapshot at icount {icount}: {} ({} bytes)",
        path.display(),
        bytes.len()
    );
    Ok(())
}

/// Read a snapshot file into `m` (`--loadvm FILE`).
pub fn load_file(m: &mut Machine, path: &Path) -> Result<Loaded, Error> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::Input(format!("--loadvm {}: {e}", path.display())))?;
    load(m, &mut f).map_err(|e| match e {
        Error::Input(msg) => Error::Input(format!("--loadvm {}: {msg}", path.display())),
        other => other,
    })
}

/// Load the snapshot read from `r` into `m`. A foreign, damaged or
/// mismatched file is refused (`Error::Input`) and `m` is left as it was.
pub fn load(m: &mut Machine, r: &mut impl Read) -> Result<Loaded, Error> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .map_err(|e| input(format!("reading: {e}")))?;
    decode_into(m, &bytes)
}

/// The header checks, in order: magic, version, checksum, section length.
fn sections(bytes: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err(input("not a cjemu snapshot (bad magic)"));
    }
    if bytes.len() < HEADER_LEN {
        return Err(input("truncated header"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(input(format!(
            "format version {version}; this cjemu reads version {VERSION}"
        )));
    }
    let sum = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
    if xxhash_rust::xxh3::xxh3_64(&bytes[20..]) != sum {
        return Err(input("damaged or truncated (checksum mismatch)"));
    }
    let len = u64::from_le_bytes(bytes[20..28].try_into().unwrap_or_default());
    let rest = &bytes[HEADER_LEN..];
    if len > rest.len() as u64 {
        return Err(input("the state section runs past the end of the file"));
    }
    Ok(rest.split_at(len as usize))
}

fn decode_into(m: &mut Machine, bytes: &[u8]) -> Result<Loaded, Error> {
    let (state, packed) = sections(bytes)?;
    let body: Body =
        postcard::from_bytes(state).map_err(|e| input(format!("bad state section: {e}")))?;
    let d = body.machine.differences(&MachineDesc::of(m));
    if !d.is_empty() {
        return Err(input(format!(
            "taken on a different machine: {}",
            d.join("; ")
        )));
    }
    let ram = unpack_ram(&body.ram, packed, m.engine.mem().ram_size())?;
    let cpu = CpuState::from_snapshot(&body.cpu).map_err(input)?;
    let devices = Devices::build(&body, &m.pc.borrow())?;
    let seek = log_to_follow(m, &body)?;
    // Everything checked: put it in place.
    devices.install(&m.pc.borrow_mut());
    {
        let mut pc = m.pc.borrow_mut();
        pc.clock = VirtualClock::from_state(&body.clock).map_err(input)?;
        pc.timers = Timers::from_state(&body.timers);
    }
    *m.engine.cpu_mut() = cpu;
    m.engine.flush_tlb();
    restore_ram(m.engine.mem_mut(), &ram)?;
    // Every loaded guest delivers its exceptions through its IDT.
    m.engine.config.exceptions_exit = false;
    m.serial_input.set_pending(&body.serial_pending);
    m.snapshot_loaded(body.cpu.icount);
    if let (Journal::Replay(r), Some(mark)) = (&mut m.journal, seek) {
        r.seek(&mark)?;
    }
    Ok(Loaded {
        icount: body.cpu.icount,
        stop_every: body.stop_every,
    })
}

/// A replay goes on from a snapshot only if it was taken during that
/// recording (or a replay of it): the log position it carries. Other
/// journals ignore the position.
fn log_to_follow(m: &Machine, body: &Body) -> Result<Option<LogMark>, Error> {
    let Journal::Replay(r) = &m.journal else {
        return Ok(None);
    };
    match &body.log {
        Some(mark) if r.is_recording(mark) => Ok(Some(mark.clone())),
        Some(mark) => Err(input(format!(
            "taken during another recording ({}), not the one replayed",
            mark.recording
        ))),
        None => Err(input(
            "taken outside record/replay: a replay can only start from a snapshot taken \
             during its recording",
        )),
    }
}

/// The RAM section, decompressed and checked.
struct SavedRam {
    /// The saved (non-zero) pages, ascending; every other page is zero.
    pages: Vec<u32>,
    /// Their bytes, concatenated.
    raw: Vec<u8>,
}

/// Put the saved RAM in place. Only pages whose contents differ are
/// written (through `write_phys`, so translations of a rewritten code page
/// go; code on an unchanged page stays compiled, which keeps a debugger's
/// trips back in time cheap).
fn restore_ram(mem: &mut GuestMemory, saved: &SavedRam) -> Result<(), Error> {
    let ram_size = mem.ram_size() as usize;
    let zeros = [0u8; PAGE];
    let mut saved_pages = saved.pages.iter().peekable();
    let mut at = 0;
    for start in (0..ram_size).step_by(PAGE) {
        let len = PAGE.min(ram_size - start);
        let page = (start / PAGE) as u32;
        let want = if saved_pages.next_if_eq(&&page).is_some() {
            at += len;
            &saved.raw[at - len..at]
        } else {
            &zeros[..len]
        };
        if mem.ram()[start..start + len] != *want {
            mem.write_phys(GuestPhysAddr(start as u64), want)
                .map_err(|e| Error::Internal(format!("restoring RAM: {e}")))?;
        }
    }
    Ok(())
}

/// RAM from its section, checked: the saved pages and their bytes.
fn unpack_ram(layout: &RamLayout, packed: &[u8], ram_size: u64) -> Result<SavedRam, Error> {
    let pages_total = (ram_size as usize).div_ceil(PAGE);
    let mut last = None;
    for &p in &layout.pages {
        if p as usize >= pages_total || last.is_some_and(|l| p <= l) {
            return Err(input("bad RAM page list"));
        }
        last = Some(p);
    }
    let len_of = |p: u32| PAGE.min(ram_size as usize - p as usize * PAGE);
    let raw_len: usize = layout.pages.iter().map(|&p| len_of(p)).sum();
    let mut raw = vec![0u8; raw_len];
    let n = lz4_flex::block::decompress_into(packed, &mut raw)
        .map_err(|e| input(format!("bad RAM section: {e}")))?;
    if n != raw_len {
        return Err(input("the RAM section is short"));
    }
    Ok(SavedRam {
        pages: layout.pages.clone(),
        raw,
    })
}

/// Every device built from its saved state, not yet in the machine.
struct Devices {
    pic: Pic8259,
    pit: Pit8254,
    rtc: RtcCmos,
    uarts: Vec<Uart16550State>,
    i8042: I8042,
    port61: Port61,
    debug_exit: DebugExit,
    ioram: TestdevIoram,
    testdev_port: TestdevPort,
}

impl Devices {
    /// Build (and so check) every device of `body`, wired as in `pc`.
    fn build(body: &Body, pc: &Pc) -> Result<Devices, Error> {
        if body.ioram.bytes.len() as u64 != IORAM_SIZE {
            return Err(input("pc-testdev IORAM state has the wrong size"));
        }
        for s in &body.uarts {
            Uart16550::from_state(s, Box::new(NullOutput)).map_err(input)?;
        }
        check_timers(&body.timers, pc.uarts.len())?;
        VirtualClock::from_state(&body.clock).map_err(input)?;
        Ok(Devices {
            pic: Pic8259::from_state(&body.pic).map_err(input)?,
            pit: Pit8254::from_state(&body.pit, pc.now.clone()).map_err(input)?,
            rtc: RtcCmos::from_state(&body.rtc).map_err(input)?,
            uarts: body.uarts.clone(),
            i8042: I8042::from_state(&body.i8042).map_err(input)?,
            port61: Port61::from_state(&body.port61, pc.port61_link()),
            debug_exit: DebugExit::from_state(&body.debug_exit),
            ioram: TestdevIoram::from_state(&body.ioram),
            testdev_port: TestdevPort::from_state(&body.testdev_port),
        })
    }

    /// Replace the machine's devices (the buses keep pointing at the same
    /// cells). UARTs are rebuilt around their own output sinks.
    fn install(self, pc: &Pc) {
        *pc.pic.borrow_mut() = self.pic;
        *pc.pit.borrow_mut() = self.pit;
        *pc.rtc.borrow_mut() = self.rtc;
        *pc.i8042.borrow_mut() = self.i8042;
        *pc.port61.borrow_mut() = self.port61;
        *pc.debug_exit.borrow_mut() = self.debug_exit;
        *pc.ioram.borrow_mut() = self.ioram;
        *pc.testdev_port.borrow_mut() = self.testdev_port;
        for (cell, s) in pc.uarts.iter().zip(&self.uarts) {
            let mut u = cell.borrow_mut();
            let old = std::mem::replace(&mut *u, Uart16550::new(Box::new(NullOutput)));
            let out = old.into_output();
            // Checked in `build`; on the impossible failure keep the sink.
            match Uart16550::from_state(s, out) {
                Ok(new) => *u = new,
                Err(e) => log::error!("UART state checked, then refused: {e}"),
            }
        }
    }
}

/// Armed timers must belong to this machine's devices.
fn check_timers(t: &TimersState, uarts: usize) -> Result<(), Error> {
    let owned =
        |id| id == timer::PIT0 || id == timer::RTC || (0..uarts).any(|i| timer::com(i) == id);
    match t.armed.iter().find(|(id, _)| !owned(*id)) {
        Some((id, _)) => Err(input(format!("timer {} has no device", id.0))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    //! Each device round trip: bring it into a non-trivial state through
    //! its ports, save the machine to bytes, load the bytes into a fresh
    //! machine; the device's state and its next guest-visible read must be
    //! the same on both.
    use super::*;
    use crate::cli::Accel;
    use crate::machine::MachineConfig;
    use crate::pc::PcIo;
    use cjemu_devices::uart16550::VecOutput;
    use cjemu_jit::emit::Width;
    use cjemu_jit::memory::IoBus;
    use cjemu_replay::clock::VirtualNs;
    use cjemu_replay::timers::TimerId;

    fn machine() -> Machine {
        Machine::build(MachineConfig {
            serial: vec![Box::new(VecOutput::default())],
            ..MachineConfig::new(1 << 20, Accel::Interp)
        })
        .unwrap()
    }

    fn outb(m: &Machine, port: u16, v: u8, icount: u64) {
        PcIo(m.pc.clone()).port_write(port, Width::B, v as u32, icount);
    }

    fn inb(m: &Machine, port: u16, icount: u64) -> u8 {
        PcIo(m.pc.clone()).port_read(port, Width::B, icount) as u8
    }

    /// `m` saved to bytes and loaded into a fresh machine.
    fn reloaded(m: &Machine) -> Machine {
        let bytes = encode(m).unwrap();
        let mut fresh = machine();
        load(&mut fresh, &mut bytes.as_slice()).unwrap();
        assert_eq!(fresh.state_parts(), m.state_parts(), "every part");
        fresh
    }

    #[test]
    fn pic_round_trip_keeps_irr_isr_and_the_next_vector() {
        let m = machine();
        for (base, vector, icw3) in [(0x20, 0x20, 0x04), (0xa0, 0x28, 0x02)] {
            outb(&m, base, 0x11, 0);
            outb(&m, base + 1, vector, 0);
            outb(&m, base + 1, icw3, 0);
            outb(&m, base + 1, 0x01, 0);
        }
        outb(&m, 0x21, 0xf0, 0);
        m.pc.borrow().pic.borrow_mut().set_irq(1, true);
        m.pc.borrow().pic.borrow_mut().set_irq(3, true);
        outb(&m, 0x20, 0x0a, 0); // OCW3: read IRR
        let b = reloaded(&m);
        let (pa, pb) = (m.pc.borrow().pic.clone(), b.pc.borrow().pic.clone());
        assert_eq!(pb.borrow().state(), pa.borrow().state());
        assert!(pb.borrow().intr(), "INTR follows the restored IRR");
        assert_eq!(b.engine.cpu().intr, 0, "loading raised nothing");
        assert_eq!(inb(&b, 0x20, 0), inb(&m, 0x20, 0));
        let v = pa.borrow_mut().acknowledge();
        assert_eq!(pb.borrow_mut().acknowledge(), v);
        assert_eq!(v, 0x21);
    }

    #[test]
    fn pit_round_trip_keeps_the_count_and_a_pending_latch() {
        let m = machine();
        outb(&m, 0x43, 0x34, 0); // channel 0, LSB then MSB, mode 2
        outb(&m, 0x40, 0xe8, 0);
        outb(&m, 0x40, 0x03, 0); // 1000
        outb(&m, 0x43, 0x00, 123_456); // latch channel 0
        let b = reloaded(&m);
        for icount in [200_000, 200_000, 300_000] {
            assert_eq!(inb(&b, 0x40, icount), inb(&m, 0x40, icount));
        }
        outb(&m, 0x43, 0xe2, 300_000); // read back status of channel 0
        outb(&b, 0x43, 0xe2, 300_000);
        assert_eq!(inb(&b, 0x40, 300_000), inb(&m, 0x40, 300_000));
    }

    #[test]
    fn rtc_round_trip_keeps_cmos_index_and_time() {
        let m = machine();
        outb(&m, 0x70, 0x40, 0);
        outb(&m, 0x71, 0x5a, 0);
        outb(&m, 0x70, 0x0b, 0);
        outb(&m, 0x71, 0x42, 0); // periodic interrupt on, 24-hour
        outb(&m, 0x70, 0x40, 0);
        let b = reloaded(&m);
        assert_eq!(inb(&b, 0x71, 10), 0x5a, "the selected index survived");
        assert_eq!(inb(&m, 0x71, 10), 0x5a);
        outb(&m, 0x70, 0x00, 3_000_000_000);
        outb(&b, 0x70, 0x00, 3_000_000_000);
        assert_eq!(inb(&b, 0x71, 3_000_000_000), inb(&m, 0x71, 3_000_000_000));
    }

    #[test]
    fn uart_round_trip_keeps_received_bytes_and_registers() {
        let m = machine();
        outb(&m, 0x3fa, 0x07, 0); // FIFO on
        outb(&m, 0x3f9, 0x01, 0); // IER: received data
        outb(&m, 0x3fb, 0x03, 0);
        m.pc.borrow_mut().feed_bytes(0, b"xyz", 5).unwrap();
        let b = reloaded(&m);
        for port in [0x3fa, 0x3fd, 0x3f8, 0x3f8, 0x3fd, 0x3f8, 0x3fd] {
            assert_eq!(inb(&b, port, 50), inb(&m, port, 50), "port {port:#x}");
        }
        assert_eq!(inb(&b, 0x3fb, 50), 0x03);
    }

    #[test]
    fn i8042_and_port61_round_trip() {
        let m = machine();
        outb(&m, 0x64, 0xaa, 0); // self-test: 0x55 queued
        outb(&m, 0x61, 0x03, 0);
        let b = reloaded(&m);
        assert_eq!(inb(&b, 0x64, 1), inb(&m, 0x64, 1));
        assert_eq!(inb(&b, 0x60, 1), 0x55);
        assert_eq!(inb(&m, 0x60, 1), 0x55);
        assert_eq!(inb(&b, 0x61, 40_000), inb(&m, 0x61, 40_000));
    }

    #[test]
    fn testdev_debug_exit_clock_and_timers_round_trip() {
        let mut m = machine();
        let io = PcIo(m.pc.clone());
        let mut io = io;
        io.port_write(0xe0, Width::D, 0x1234_5678, 0);
        io.mmio_write(
            GuestPhysAddr(crate::pc::IORAM_BASE + 8),
            Width::Q,
            0x1122_3344_5566_7788,
            0,
        );
        outb(&m, 0xf4, 0x21, 0); // a debug-exit request not taken yet
        {
            let mut pc = m.pc.borrow_mut();
            pc.clock = VirtualClock::from_state(&ClockState {
                bias: -40,
                shift: 3,
                auto: false,
            })
            .unwrap();
            pc.timers.arm(timer::RTC, VirtualNs(777));
        }
        m.engine.cpu_mut().tsc_shift = 3;
        let bytes = encode(&m).unwrap();
        let mut b = Machine::build(MachineConfig {
            serial: vec![Box::new(VecOutput::default())],
            shift: cjemu_replay::clock::ShiftMode::Fixed(3),
            ..MachineConfig::new(1 << 20, Accel::Interp)
        })
        .unwrap();
        load(&mut b, &mut bytes.as_slice()).unwrap();
        assert_eq!(b.state_parts(), m.state_parts());
        let mut bio = PcIo(b.pc.clone());
        assert_eq!(bio.port_read(0xe0, Width::D, 0), 0x1234_5678);
        assert_eq!(
            bio.mmio_read(GuestPhysAddr(crate::pc::IORAM_BASE + 12), Width::D, 0),
            0x1122_3344
        );
        let req = |x: &Machine| x.pc.borrow().debug_exit.borrow_mut().take_request();
        assert_eq!(req(&b), Some(0x21));
        assert_eq!(req(&m), Some(0x21));
        let pc = b.pc.borrow();
        assert_eq!(pc.clock.ns_at(100), VirtualNs(800 - 40));
        assert_eq!(pc.timers.state().armed, vec![(TimerId(1), VirtualNs(777))]);
    }

    #[test]
    fn ram_cpu_and_pending_input_round_trip() {
        let mut m = machine();
        let ram = m.engine.mem_mut();
        ram.write_phys(GuestPhysAddr(0x3000), b"page three")
            .unwrap();
        ram.write_phys(GuestPhysAddr((1 << 20) - 1), &[0xee])
            .unwrap();
        let cpu = m.engine.cpu_mut();
        cpu.gpr[3] = 0xfeed;
        cpu.icount = 4242;
        m.serial_input.set_pending(b"later");
        let bytes = encode(&m).unwrap();
        let mut b = machine();
        b.engine
            .mem_mut()
            .write_phys(GuestPhysAddr(0x8000), b"old")
            .unwrap();
        load(&mut b, &mut bytes.as_slice()).unwrap();
        assert_eq!(b.state_parts(), m.state_parts());
        assert_eq!(
            b.engine.mem().ram(),
            m.engine.mem().ram(),
            "stale page zeroed"
        );
        assert_eq!(b.engine.cpu().icount, 4242);
        assert_eq!(b.serial_input.pending_bytes(), b"later");
        // Two pages of 256 saved, so the file is small.
        assert!(bytes.len() < 80_000, "{} bytes", bytes.len());
    }

    #[test]
    fn damaged_files_are_refused_and_leave_the_machine_as_it_was() {
        let mut m = machine();
        m.engine
            .mem_mut()
            .write_phys(GuestPhysAddr(0x2000), b"abc")
            .unwrap();
        m.engine.cpu_mut().icount = 99;
        let good = encode(&m).unwrap();
        let mut target = machine();
        let before = target.state_parts();
        let mut refuse = |bytes: &[u8], what: &str| {
            match load(&mut target, &mut &bytes[..]) {
                Err(Error::Input(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
            assert_eq!(target.state_parts(), before, "{what}: untouched");
        };
        // Every truncation (a stride through the file, and the last bytes).
        let n = good.len();
        for cut in (0..n).step_by(97).chain(n - 40..n) {
            refuse(&good[..cut], &format!("cut at {cut}"));
        }
        // Flipped bits all over (xorshift positions, deterministic).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = good.clone();
            let at = (x % n as u64) as usize;
            v[at] ^= 1 << (x >> 60 & 7);
            refuse(&v, &format!("bit flip at {at}"));
        }
        // A valid checksum over a damaged state section: decoding refuses.
        let mut v = good.clone();
        v[HEADER_LEN + 3] ^= 0xff;
        let sum = xxhash_rust::xxh3::xxh3_64(&v[20..]);
        v[12..20].copy_from_slice(&sum.to_le_bytes());
        let _ = load(&mut target, &mut v.as_slice());
        assert!(load(&mut target, &mut good.as_slice()).is_ok());
        assert_eq!(target.state_parts(), m.state_parts());
    }
}
