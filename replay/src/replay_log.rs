//! The record/replay log: a header naming the machine, then one frame per
//! input of the run, each stamped with the instruction count at which it
//! took effect.
//!
//! Layout (all integers little-endian; "varint" is unsigned LEB128):
//!
//! ```text
//! header  MAGIC (8 bytes) | version u16 | fingerprint length u32 |
//!         fingerprint (UTF-8 "key=value\n" lines) | checksum u32
//! frame   tag u8 | icount delta varint | round varint |
//!         payload length varint | payload | checksum u32
//! ```
//!
//! The round orders events that share an instruction count: the machine's
//! run loop may service its devices several times at one count (an
//! interrupt delivered, an idle CPU waking), and an event belongs to the
//! service round in which it took effect.
//!
//! The header checksum covers every header byte before it; a frame's covers
//! its bytes before the checksum and the frame's index, so a frame moved
//! or repeated is caught too. Checksums are the low 32 bits of XXH3-64.
//! The writer flushes every frame to the file as it is written: a recording
//! killed with SIGKILL keeps every complete frame, and a reader tells a cut
//! in the middle of a frame ([`LogError::Truncated`]) from a damaged one
//! ([`LogError::Checksum`]).
//!
//! Frames are small: an instruction-count delta and a few bytes of payload.
//! A run without input costs only its checkpoints (4 bytes per part).

use crate::clock::{AdjustCause, ClockAdjust};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

/// The first bytes of every log.
pub const MAGIC: [u8; 8] = *b"CJEMURR\n";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// The largest payload a frame may have (a reader refuses more: a damaged
/// length must not make it allocate gigabytes).
pub const MAX_PAYLOAD: u64 = 1 << 20;
/// The largest fingerprint.
pub const MAX_FINGERPRINT: u32 = 1 << 16;

/// What the machine was: everything a replay must match. Keys and values
/// are free text (no newline in either, no `=` in a key); sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint(pub BTreeMap<String, String>);

impl Fingerprint {
    /// The keys whose values differ between `self` (the log) and `other`
    /// (this run), with both values; a key only one side has counts too.
    pub fn differences(&self, other: &Fingerprint) -> Vec<(String, String, String)> {
        let none = String::from("(none)");
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let a = self.0.get(k).unwrap_or(&none);
                let b = other.0.get(k).unwrap_or(&none);
                (a != b).then(|| (k.clone(), a.clone(), b.clone()))
            })
            .collect()
    }

    fn encode(&self) -> Vec<u8> {
        let mut s = String::new();
        for (k, v) in &self.0 {
            s.push_str(&k.replace(['=', '\n'], "_"));
            s.push('=');
            s.push_str(&v.replace('\n', " "));
            s.push('\n');
        }
        s.into_bytes()
    }

    fn decode(b: &[u8]) -> Result<Fingerprint, LogError> {
        let s = std::str::from_utf8(b).map_err(|_| malformed("fingerprint is not UTF-8"))?;
        let mut map = BTreeMap::new();
        for line in s.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| malformed("fingerprint line without '='"))?;
            map.insert(k.to_string(), v.to_string());
        }
        Ok(Fingerprint(map))
    }
}

/// Why something asked the run to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The user interrupted the run (Ctrl-C, SIGINT).
    Interrupt,
    /// SIGTERM or SIGHUP.
    Terminate,
}

/// One input of the run (or a checkpoint / the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Bytes handed to serial port `port` (0 = COM1).
    SerialIn {
        /// Port index.
        port: u8,
        /// The bytes, in order.
        bytes: Vec<u8>,
    },
    /// The virtual clock moved (`at_icount` is the frame's icount).
    Clock(ClockAdjust),
    /// The RTC's start time, seconds since the epoch (recorded once).
    RtcStart(i64),
    /// Hashes of the parts of architectural state (registers, RAM, each
    /// device; the fingerprint names the parts), low 32 bits each.
    Checkpoint(Vec<u32>),
    /// The user or the host asked the run to stop.
    Stop(StopReason),
    /// The recording ended here, with these part hashes.
    End(Vec<u32>),
}

const TAG_SERIAL: u8 = 1;
const TAG_CLOCK: u8 = 2;
const TAG_RTC: u8 = 3;
const TAG_CHECKPOINT: u8 = 4;
const TAG_STOP: u8 = 5;
const TAG_END: u8 = 6;

/// An event and the instruction count at which it took effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Instructions retired before the event.
    pub icount: u64,
    /// The run loop's service round at that count (0 = the first).
    pub round: u32,
    /// What happened.
    pub event: Event,
}

/// What is wrong with a log.
#[derive(Debug, Error)]
pub enum LogError {
    /// Not a cjemu record/replay log.
    #[error("not a cjemu record/replay log (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("log format version {0}, this cjemu reads version {VERSION}")]
    Version(u16),
    /// The header is damaged.
    #[error("the log header is damaged (checksum mismatch)")]
    HeaderChecksum,
    /// The log ends inside a frame (the recording was cut).
    #[error("the log ends inside frame {frame} (byte {offset}): the recording was cut")]
    Truncated {
        /// Index of the incomplete frame.
        frame: u64,
        /// Its byte offset.
        offset: u64,
    },
    /// A frame's checksum does not match.
    #[error("frame {frame} (byte {offset}) is damaged: checksum mismatch")]
    Checksum {
        /// Index of the frame.
        frame: u64,
        /// Its byte offset.
        offset: u64,
    },
    /// A structurally impossible log.
    #[error("malformed log: {0}")]
    Malformed(String),
    /// The writer was given frames out of order.
    #[error("frame at icount {got} after one at {last}: frames must be in icount order")]
    OutOfOrder {
        /// The previous frame's count.
        last: u64,
        /// The new frame's.
        got: u64,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn malformed(what: &str) -> LogError {
    LogError::Malformed(what.to_string())
}

fn checksum(bytes: &[u8]) -> u32 {
    xxh3_64(bytes) as u32
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Signed values as zigzag varints (small magnitudes stay short).
fn put_svarint(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn encode_event(e: &Event) -> (u8, Vec<u8>) {
    let mut p = Vec::new();
    let tag = match e {
        Event::SerialIn { port, bytes } => {
            p.push(*port);
            p.extend_from_slice(bytes);
            TAG_SERIAL
        }
        Event::Clock(adj) => {
            p.push(match adj.cause {
                AdjustCause::Idle => 0,
                AdjustCause::Shift => 1,
            });
            p.push(adj.shift);
            put_svarint(&mut p, adj.bias);
            TAG_CLOCK
        }
        Event::RtcStart(secs) => {
            put_svarint(&mut p, *secs);
            TAG_RTC
        }
        Event::Checkpoint(parts) => {
            put_parts(&mut p, parts);
            TAG_CHECKPOINT
        }
        Event::Stop(r) => {
            p.push(match r {
                StopReason::Interrupt => 0,
                StopReason::Terminate => 1,
            });
            TAG_STOP
        }
        Event::End(parts) => {
            put_parts(&mut p, parts);
            TAG_END
        }
    };
    (tag, p)
}

fn put_parts(out: &mut Vec<u8>, parts: &[u32]) {
    put_varint(out, parts.len() as u64);
    for h in parts {
        out.extend_from_slice(&h.to_le_bytes());
    }
}

/// A cursor over a payload.
struct Payload<'a>(&'a [u8]);

impl Payload<'_> {
    fn byte(&mut self) -> Result<u8, LogError> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or_else(|| malformed("short payload"))?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, LogError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 64 bits"))
    }

    fn svarint(&mut self) -> Result<i64, LogError> {
        let u = self.varint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32, LogError> {
        let mut b = [0u8; 4];
        for x in &mut b {
            *x = self.byte()?;
        }
        Ok(u32::from_le_bytes(b))
    }

    fn parts(&mut self) -> Result<Vec<u32>, LogError> {
        let n = self.varint()?;
        if n > self.0.len() as u64 / 4 {
            return Err(malformed("more state parts than bytes"));
        }
        (0..n).map(|_| self.u32()).collect()
    }

    fn done(&self) -> Result<(), LogError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes in a frame"))
        }
    }
}

fn decode_event(tag: u8, payload: &[u8], icount: u64) -> Result<Event, LogError> {
    let mut p = Payload(payload);
    let e = match tag {
        TAG_SERIAL => {
            let port = p.byte()?;
            let bytes = std::mem::take(&mut p.0).to_vec();
            Event::SerialIn { port, bytes }
        }
        TAG_CLOCK => {
            let cause = match p.byte()? {
                0 => AdjustCause::Idle,
                1 => AdjustCause::Shift,
                c => return Err(LogError::Malformed(format!("clock move cause {c}"))),
            };
            let shift = p.byte()?;
            let bias = p.svarint()?;
            Event::Clock(ClockAdjust {
                at_icount: icount,
                cause,
                bias,
                shift,
            })
        }
        TAG_RTC => Event::RtcStart(p.svarint()?),
        TAG_CHECKPOINT => Event::Checkpoint(p.parts()?),
        TAG_STOP => Event::Stop(match p.byte()? {
            0 => StopReason::Interrupt,
            1 => StopReason::Terminate,
            r => return Err(LogError::Malformed(format!("stop reason {r}"))),
        }),
        TAG_END => Event::End(p.parts()?),
        t => return Err(LogError::Malformed(format!("unknown frame tag {t}"))),
    };
    p.done()?;
    Ok(e)
}

/// A place between two frames of a log: where the next frame starts.
/// Frames store their count as a delta and their checksum covers their
/// index, so a reader needs all three to go on from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPos {
    /// Byte offset of the next frame.
    pub offset: u64,
    /// Index of the next frame.
    pub frame: u64,
    /// The count of the frame before it (0 before the first).
    pub icount: u64,
}

/// Writes a log, one flushed frame at a time.
pub struct LogWriter<W: Write> {
    out: W,
    frames: u64,
    last_icount: u64,
    bytes: u64,
}

impl<W: Write> LogWriter<W> {
    /// Start a log on `out` for the machine `fp`.
    pub fn new(mut out: W, fp: &Fingerprint) -> Result<LogWriter<W>, LogError> {
        let body = fp.encode();
        let mut h = Vec::with_capacity(body.len() + 18);
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(body.len() as u32).to_le_bytes());
        h.extend_from_slice(&body);
        let sum = checksum(&h);
        h.extend_from_slice(&sum.to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(LogWriter {
            out,
            frames: 0,
            last_icount: 0,
            bytes: h.len() as u64,
        })
    }

    /// Append `f` and flush it.
    pub fn write(&mut self, f: &Frame) -> Result<(), LogError> {
        if f.icount < self.last_icount {
            return Err(LogError::OutOfOrder {
                last: self.last_icount,
                got: f.icount,
            });
        }
        let (tag, payload) = encode_event(&f.event);
        let mut b = vec![tag];
        put_varint(&mut b, f.icount - self.last_icount);
        put_varint(&mut b, f.round as u64);
        put_varint(&mut b, payload.len() as u64);
        b.extend_from_slice(&payload);
        let sum = frame_checksum(&b, self.frames);
        b.extend_from_slice(&sum.to_le_bytes());
        self.out.write_all(&b)?;
        self.out.flush()?;
        self.frames += 1;
        self.last_icount = f.icount;
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Bytes written so far (header included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the next frame will go.
    pub fn position(&self) -> LogPos {
        LogPos {
            offset: self.bytes,
            frame: self.frames,
            icount: self.last_icount,
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn frame_checksum(bytes: &[u8], index: u64) -> u32 {
    let mut b = bytes.to_vec();
    b.extend_from_slice(&index.to_le_bytes());
    checksum(&b)
}

/// Reads a log frame by frame.
pub struct LogReader<R: Read> {
    input: R,
    frames: u64,
    last_icount: u64,
    offset: u64,
}

impl<R: Read> LogReader<R> {
    /// Read and check the header.
    pub fn open(mut input: R) -> Result<(LogReader<R>, Fingerprint), LogError> {
        let mut fixed = [0u8; 14];
        read_exact_or(&mut input, &mut fixed, || LogError::BadMagic)?;
        if fixed[..8] != MAGIC {
            return Err(LogError::BadMagic);
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != VERSION {
            return Err(LogError::Version(version));
        }
        let len = u32::from_le_bytes([fixed[10], fixed[11], fixed[12], fixed[13]]);
        if len > MAX_FINGERPRINT {
            return Err(LogError::HeaderChecksum);
        }
        let mut rest = vec![0u8; len as usize + 4];
        read_exact_or(&mut input, &mut rest, || LogError::Truncated {
            frame: 0,
            offset: 0,
        })?;
        let (body, sum) = rest.split_at(len as usize);
        let mut all = fixed.to_vec();
        all.extend_from_slice(body);
        if checksum(&all) != u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]) {
            return Err(LogError::HeaderChecksum);
        }
        let fp = Fingerprint::decode(body)?;
        let reader = LogReader {
            input,
            frames: 0,
            last_icount: 0,
            offset: (fixed.len() + rest.len()) as u64,
        };
        Ok((reader, fp))
    }

    /// The next frame; `None` at the end of the file (complete frames
    /// only: a cut frame is [`LogError::Truncated`]).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, LogError> {
        let start = self.offset;
        let mut raw = Vec::new();
        let Some(tag) = self.byte_or_eof(&mut raw)? else {
            return Ok(None);
        };
        let delta = self.varint(&mut raw, start)?;
        let round = self.varint(&mut raw, start)?;
        let len = self.varint(&mut raw, start)?;
        if len > MAX_PAYLOAD {
            return Err(LogError::Checksum {
                frame: self.frames,
                offset: start,
            });
        }
        let mut payload = vec![0u8; len as usize];
        self.fill(&mut payload, start)?;
        raw.extend_from_slice(&payload);
        let mut sum = [0u8; 4];
        self.fill(&mut sum, start)?;
        if frame_checksum(&raw, self.frames) != u32::from_le_bytes(sum) {
            return Err(LogError::Checksum {
                frame: self.frames,
                offset: start,
            });
        }
        let icount = self
            .last_icount
            .checked_add(delta)
            .ok_or_else(|| malformed("instruction count overflows"))?;
        let event = decode_event(tag, &payload, icount)?;
        let round = u32::try_from(round).map_err(|_| malformed("round out of range"))?;
        self.frames += 1;
        self.last_icount = icount;
        Ok(Some(Frame {
            icount,
            round,
            event,
        }))
    }

    /// Frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Where the next frame starts.
    pub fn position(&self) -> LogPos {
        LogPos {
            offset: self.offset,
            frame: self.frames,
            icount: self.last_icount,
        }
    }

    fn byte_or_eof(&mut self, raw: &mut Vec<u8>) -> Result<Option<u8>, LogError> {
        let mut b = [0u8; 1];
        loop {
            match self.input.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += 1;
        raw.push(b[0]);
        Ok(Some(b[0]))
    }

    fn varint(&mut self, raw: &mut Vec<u8>, start: u64) -> Result<u64, LogError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8; 1];
            self.fill(&mut b, start)?;
            raw.push(b[0]);
            v |= ((b[0] & 0x7f) as u64) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(LogError::Checksum {
            frame: self.frames,
            offset: start,
        })
    }

    fn fill(&mut self, buf: &mut [u8], start: u64) -> Result<(), LogError> {
        let frame = self.frames;
        read_exact_or(&mut self.input, buf, || LogError::Truncated {
            frame,
            offset: start,
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }
}

impl<R: Read + Seek> LogReader<R> {
    /// Go on reading from `pos` (one this log's reader or writer gave).
    /// A position that is not a frame start makes the next read fail its
    /// checksum.
    pub fn seek(&mut self, pos: LogPos) -> Result<(), LogError> {
        self.input.seek(SeekFrom::Start(pos.offset))?;
        self.offset = pos.offset;
        self.frames = pos.frame;
        self.last_icount = pos.icount;
        Ok(())
    }
}

/// `read_exact`, with end of file turned into `eof()`.
fn read_exact_or(
    r: &mut impl Read,
    buf: &mut [u8],
    eof: impl FnOnce() -> LogError,
) -> Result<(), LogError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(eof()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        let mut m = BTreeMap::new();
        m.insert("kernel".into(), "xxh3:0123".into());
        m.insert("memory".into(), "134217728".into());
        Fingerprint(m)
    }

    fn frames() -> Vec<Frame> {
        let f = |icount, round, event| Frame {
            icount,
            round,
            event,
        };
        vec![
            f(0, 0, Event::RtcStart(-86_400)),
            f(
                1_000,
                0,
                Event::SerialIn {
                    port: 0,
                    bytes: b"ls\n".to_vec(),
                },
            ),
            f(
                1_000,
                1,
                Event::Clock(ClockAdjust {
                    at_icount: 1_000,
                    cause: AdjustCause::Shift,
                    bias: -12_345,
                    shift: 4,
                }),
            ),
            f(5_000_000_000, 0, Event::Checkpoint(vec![1, 0xdead_beef, 7])),
            f(5_000_000_001, 3, Event::Stop(StopReason::Interrupt)),
            f(5_000_000_001, 3, Event::End(vec![2, 3])),
        ]
    }

    fn record() -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new(), &fp()).unwrap();
        for f in frames() {
            w.write(&f).unwrap();
        }
        let n = w.bytes();
        let v = w.into_inner();
        assert_eq!(n, v.len() as u64);
        v
    }

    fn read_all(b: &[u8]) -> Result<(Fingerprint, Vec<Frame>), LogError> {
        let (mut r, fp) = LogReader::open(b)?;
        let mut out = Vec::new();
        while let Some(f) = r.next_frame()? {
            out.push(f);
        }
        Ok((fp, out))
    }

    #[test]
    fn replay_log_round_trips_every_event() {
        let (f, got) = read_all(&record()).unwrap();
        assert_eq!(f, fp());
        assert_eq!(got, frames());
    }

    #[test]
    fn replay_log_frames_are_compact() {
        let header = LogWriter::new(Vec::new(), &fp()).unwrap().bytes();
        let mut w = LogWriter::new(Vec::new(), &fp()).unwrap();
        w.write(&Frame {
            icount: 1_000_000_000,
            round: 0,
            event: Event::Checkpoint(vec![1, 2]),
        })
        .unwrap();
        // tag, 5-byte varint delta, round, length, count + two 4-byte
        // hashes, checksum.
        assert_eq!(w.bytes() - header, 1 + 5 + 1 + 1 + 9 + 4);
    }

    #[test]
    fn replay_log_every_flipped_byte_is_caught() {
        let good = record();
        let header = LogWriter::new(Vec::new(), &fp()).unwrap().bytes() as usize;
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            match read_all(&bad) {
                Err(LogError::BadMagic) => assert!(i < 8),
                Err(LogError::Version(_)) => assert!((8..10).contains(&i)),
                Err(LogError::HeaderChecksum) | Err(LogError::Truncated { .. }) if i < header => {}
                Err(LogError::Checksum { .. }) | Err(LogError::Truncated { .. }) => {
                    assert!(i >= header)
                }
                other => panic!("byte {i} flipped: {other:?}"),
            }
        }
    }

    #[test]
    fn replay_log_cut_anywhere_keeps_complete_frames() {
        let good = record();
        let header = LogWriter::new(Vec::new(), &fp()).unwrap().bytes() as usize;
        let all = frames();
        for cut in header..good.len() {
            let (mut r, _) = LogReader::open(&good[..cut]).unwrap();
            let mut n = 0;
            let end = loop {
                match r.next_frame() {
                    Ok(Some(f)) => {
                        assert_eq!(f, all[n]);
                        n += 1;
                    }
                    other => break other,
                }
            };
            match end {
                Ok(None) => {}
                Err(LogError::Truncated { frame, .. }) => assert_eq!(frame, n as u64),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn replay_log_refuses_foreign_and_future_files() {
        assert!(matches!(read_all(b"\x7fELF...."), Err(LogError::BadMagic)));
        assert!(matches!(read_all(b""), Err(LogError::BadMagic)));
        let mut v = record();
        v[8] = 9;
        assert!(matches!(read_all(&v), Err(LogError::Version(9))));
    }

    #[test]
    fn replay_log_seeks_back_to_a_position_of_the_writer_or_the_reader() {
        let mut w = LogWriter::new(Vec::new(), &fp()).unwrap();
        let all = frames();
        let mut written = Vec::new();
        for f in &all {
            written.push(w.position());
            w.write(f).unwrap();
        }
        let bytes = w.into_inner();
        let (mut r, _) = LogReader::open(io::Cursor::new(bytes)).unwrap();
        let mut read = Vec::new();
        while {
            read.push(r.position());
            r.next_frame().unwrap().is_some()
        } {}
        assert_eq!(&read[..all.len()], &written[..], "both agree on positions");
        for (i, pos) in written.iter().enumerate().rev() {
            r.seek(*pos).unwrap();
            assert_eq!(r.next_frame().unwrap().as_ref(), Some(&all[i]));
        }
        // Off a frame start: the checksum (which covers the index) says so.
        r.seek(LogPos {
            frame: written[2].frame + 1,
            ..written[2]
        })
        .unwrap();
        assert!(matches!(r.next_frame(), Err(LogError::Checksum { .. })));
    }

    #[test]
    fn replay_log_writer_refuses_frames_out_of_order() {
        let mut w = LogWriter::new(Vec::new(), &fp()).unwrap();
        w.write(&Frame {
            icount: 10,
            round: 0,
            event: Event::Checkpoint(vec![0]),
        })
        .unwrap();
        let e = w.write(&Frame {
            icount: 9,
            round: 0,
            event: Event::Checkpoint(vec![0]),
        });
        assert!(matches!(e, Err(LogError::OutOfOrder { last: 10, got: 9 })));
    }

    #[test]
    fn replay_log_fingerprint_differences_name_the_keys() {
        let a = fp();
        let mut b = fp();
        b.0.insert("memory".into(), "268435456".into());
        b.0.insert("append".into(), "console=ttyS0".into());
        let d = a.differences(&b);
        assert_eq!(
            d,
            vec![
                ("append".into(), "(none)".into(), "console=ttyS0".into()),
                ("memory".into(), "134217728".into(), "268435456".into()),
            ]
        );
        assert!(a.differences(&fp()).is_empty());
    }
}
