//! Recording a run's inputs and replaying them (`--record FILE`,
//! `--replay FILE`).
//!
//! A run is a function of its machine (the log header's fingerprint) and
//! its inputs. The inputs are: the RTC's start time, the bytes handed to a
//! serial port, and the moves of the virtual clock that depend on the host
//! (idle time waited with `sleep=on`, `shift=auto`'s shift changes). Each
//! is written with the instruction count and the run loop's service round
//! at which it took effect (see [`cjemu_replay::replay_log`]). A replay
//! ignores every live source and injects the recorded inputs at the same
//! count and round; the run loop's budget ends at the next recorded count,
//! so it gets there exactly whatever the engine.
//!
//! Checkpoints (every `--checkpoint-every` instructions, exact counts) hold
//! a hash of each part of the machine's state; a replay compares them and
//! stops at the first mismatch, naming the parts that differ.

use crate::status::Error;
use cjemu_replay::clock::ClockAdjust;
use cjemu_replay::replay_log::{
    Event, Fingerprint, Frame, LogError, LogPos, LogReader, LogWriter, StopReason,
};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// Instructions between checkpoints by default (one second of guest time
/// at `shift=0`).
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1_000_000_000;

/// Fingerprint key naming the state parts a checkpoint hashes.
pub const PARTS_KEY: &str = "checkpoint-parts";

/// Fingerprint key of the recording's identity: a snapshot taken during a
/// recording (or its replay) names it, and only that log can go on from it.
pub const RECORDING_KEY: &str = "recording";

/// A place in a recording: its identity and the position of the first
/// frame at or after a snapshot's count (what a replay loaded from that
/// snapshot reads next).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMark {
    /// The log's [`RECORDING_KEY`].
    pub recording: String,
    /// Where its replay goes on.
    pub pos: LogPos,
}

/// A recording's identity: unique per run (host time, process, file).
fn new_recording_id(path: &Path) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{now} {} {}", std::process::id(), path.display());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// Writes the inputs of a run.
pub struct Recorder {
    log: LogWriter<BufWriter<File>>,
    path: PathBuf,
    every: u64,
    next_checkpoint: u64,
    id: String,
    /// The count of the last frame written and the position of the first
    /// frame at that count.
    first_at_last: (u64, LogPos),
}

impl Recorder {
    /// Start recording to `path`: the header, then the RTC start time.
    pub fn create(
        path: &Path,
        fp: &Fingerprint,
        rtc_start: i64,
        every: u64,
    ) -> Result<Recorder, Error> {
        let f = File::create(path)
            .map_err(|e| Error::Input(format!("--record {}: {e}", path.display())))?;
        let id = new_recording_id(path);
        let mut fp = fp.clone();
        fp.0.insert(RECORDING_KEY.into(), id.clone());
        let log = LogWriter::new(BufWriter::new(f), &fp).map_err(|e| write_error(path, e))?;
        let first_at_last = (0, log.position());
        let mut r = Recorder {
            log,
            path: path.to_path_buf(),
            every: every.max(1),
            next_checkpoint: every.max(1),
            id,
            first_at_last,
        };
        r.write(0, 0, Event::RtcStart(rtc_start))?;
        Ok(r)
    }

    fn write(&mut self, icount: u64, round: u32, event: Event) -> Result<(), Error> {
        if icount != self.first_at_last.0 {
            self.first_at_last = (icount, self.log.position());
        }
        let f = Frame {
            icount,
            round,
            event,
        };
        self.log.write(&f).map_err(|e| write_error(&self.path, e))
    }

    /// Bytes handed to serial port `port`.
    pub fn serial(&mut self, icount: u64, round: u32, port: u8, bytes: &[u8]) -> Result<(), Error> {
        let bytes = bytes.to_vec();
        self.write(icount, round, Event::SerialIn { port, bytes })
    }

    /// A host-dependent move of the clock.
    pub fn clock(&mut self, round: u32, adj: ClockAdjust) -> Result<(), Error> {
        self.write(adj.at_icount, round, Event::Clock(adj))
    }

    /// A stop asked for by the user or the host.
    pub fn stop(&mut self, icount: u64, round: u32, reason: StopReason) -> Result<(), Error> {
        self.write(icount, round, Event::Stop(reason))
    }

    /// The count of the next checkpoint.
    pub fn next_checkpoint(&self) -> u64 {
        self.next_checkpoint
    }

    /// A checkpoint at `icount` if one is due (counts are exact: the run
    /// loop's budget ends there).
    pub fn checkpoint_due(&self, icount: u64) -> bool {
        icount >= self.next_checkpoint
    }

    /// Write a checkpoint.
    pub fn checkpoint(&mut self, icount: u64, round: u32, parts: Vec<u32>) -> Result<(), Error> {
        self.next_checkpoint = (icount / self.every + 1) * self.every;
        self.write(icount, round, Event::Checkpoint(parts))
    }

    /// The end of the recording.
    pub fn end(&mut self, icount: u64, round: u32, parts: Vec<u32>) -> Result<(), Error> {
        self.write(icount, round, Event::End(parts))
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.log.bytes()
    }

    /// Where a replay of this recording goes on from a snapshot taken at
    /// `icount` (the start of that count's first service round): the first
    /// frame at that count. A clock move at `icount` may already have been
    /// written (at the end of the slice that reached it), but its replay
    /// takes it in that round, after the snapshot.
    pub fn mark(&self, icount: u64) -> LogMark {
        let pos = if self.first_at_last.0 == icount {
            self.first_at_last.1
        } else {
            self.log.position()
        };
        LogMark {
            recording: self.id.clone(),
            pos,
        }
    }
}

fn write_error(path: &Path, e: LogError) -> Error {
    Error::Input(format!("--record {}: {e}", path.display()))
}

/// Reads a recorded run's inputs back.
pub struct Replayer {
    log: LogReader<BufReader<File>>,
    path: PathBuf,
    /// The recording's identity ([`RECORDING_KEY`]; empty for a log
    /// without one).
    id: String,
    /// The next frame, read ahead, and where it starts.
    next: Option<Frame>,
    next_pos: LogPos,
    /// The log ended without an end record (cut or killed).
    cut: Option<String>,
    /// Part names of the checkpoints.
    parts: Vec<String>,
}

impl Replayer {
    /// Open a log: its fingerprint and RTC start time.
    pub fn open(path: &Path) -> Result<(Replayer, Fingerprint, i64), Error> {
        let f = File::open(path)
            .map_err(|e| Error::Replay(format!("--replay {}: {e}", path.display())))?;
        let (log, fp) =
            LogReader::open(BufReader::new(f)).map_err(|e| read_error(path, &e.to_string()))?;
        let parts =
            fp.0.get(PARTS_KEY)
                .map(|p| p.split(',').map(String::from).collect())
                .unwrap_or_default();
        let mut r = Replayer {
            id: fp.0.get(RECORDING_KEY).cloned().unwrap_or_default(),
            next_pos: log.position(),
            log,
            path: path.to_path_buf(),
            next: None,
            cut: None,
            parts,
        };
        r.advance()?;
        let rtc = match r.next.take() {
            Some(Frame {
                icount: 0,
                event: Event::RtcStart(secs),
                ..
            }) => secs,
            _ => return Err(read_error(path, "the log does not start with the RTC time")),
        };
        r.advance()?;
        Ok((r, fp, rtc))
    }

    /// Read the next frame into `self.next` (`None` at the end, or after a
    /// cut, which `cut` then describes).
    fn advance(&mut self) -> Result<(), Error> {
        self.next_pos = self.log.position();
        self.next = match self.log.next_frame() {
            Ok(f) => f,
            Err(LogError::Truncated { frame, offset }) => {
                self.cut = Some(format!(
                    "the log ends inside frame {frame} (byte {offset}): the recording was cut"
                ));
                None
            }
            Err(e) => return Err(read_error(&self.path, &e.to_string())),
        };
        Ok(())
    }

    /// Where this replay stands, for a snapshot taken now (between
    /// service rounds, before the next frame is taken).
    pub fn mark(&self) -> LogMark {
        LogMark {
            recording: self.id.clone(),
            pos: self.next_pos,
        }
    }

    /// Does `mark` belong to this recording?
    pub fn is_recording(&self, mark: &LogMark) -> bool {
        !self.id.is_empty() && mark.recording == self.id
    }

    /// Go on from `mark`, which a snapshot of this recording carried.
    pub fn seek(&mut self, mark: &LogMark) -> Result<(), Error> {
        if !self.is_recording(mark) {
            return Err(Error::Replay(format!(
                "{}: the snapshot was taken during another recording ({}; this log is {})",
                self.path.display(),
                mark.recording,
                if self.id.is_empty() {
                    "unnamed"
                } else {
                    &self.id
                }
            )));
        }
        self.log
            .seek(mark.pos)
            .map_err(|e| read_error(&self.path, &e.to_string()))?;
        self.cut = None;
        self.advance()
    }

    /// Log frames taken so far (the read-ahead one is not yet taken).
    pub fn frames_taken(&self) -> u64 {
        self.log.frames() - u64::from(self.next.is_some())
    }

    /// The count at which the next recorded event takes effect.
    pub fn next_icount(&self) -> Option<u64> {
        self.next.as_ref().map(|f| f.icount)
    }

    /// Is the next event due in service round `round` at `icount`?
    pub fn due(&self, icount: u64, round: u32) -> bool {
        matches!(&self.next, Some(f) if f.icount == icount && f.round == round
            && !matches!(f.event, Event::End(_)))
    }

    /// Is any event left for a later round at `icount`?
    pub fn pending_at(&self, icount: u64) -> bool {
        matches!(&self.next, Some(f) if f.icount == icount && !matches!(f.event, Event::End(_)))
    }

    /// Take the next event if it is due at (`icount`, `round`). An event
    /// for an earlier count was never reached: the replay diverged.
    pub fn take(&mut self, icount: u64, round: u32) -> Result<Option<Event>, Error> {
        match &self.next {
            Some(f) if f.icount < icount || (f.icount == icount && f.round < round) => {
                Err(Error::Replay(format!(
                    "replay diverged: the recording had {} at icount {} (round {}), \
                     which this run passed without reaching (now icount {icount}, round {round})",
                    describe(&f.event),
                    f.icount,
                    f.round
                )))
            }
            Some(_) if self.due(icount, round) => {
                let f = self.next.take().map(|f| f.event);
                self.advance()?;
                Ok(f)
            }
            _ => Ok(None),
        }
    }

    /// Compare a recorded checkpoint with this run's parts.
    pub fn check(&self, icount: u64, recorded: &[u32], now: &[u32]) -> Result<(), Error> {
        if recorded == now {
            return Ok(());
        }
        let differ: Vec<&str> = (0..recorded.len().max(now.len()))
            .filter(|&i| recorded.get(i) != now.get(i))
            .map(|i| self.parts.get(i).map_or("?", String::as_str))
            .collect();
        Err(Error::Replay(format!(
            "replay diverged at icount {icount}: the state differs from the recording in: {}",
            differ.join(", ")
        )))
    }

    /// The run ended at `icount` with these parts: the log must end there.
    pub fn finish(&mut self, icount: u64, now: &[u32]) -> Result<(), Error> {
        match self.next.take() {
            Some(Frame {
                icount: at,
                event: Event::End(parts),
                ..
            }) if at == icount => self.check(icount, &parts, now),
            Some(f) => Err(Error::Replay(format!(
                "replay diverged: the run ended at icount {icount}, but the recording goes on \
                 ({} at icount {})",
                describe(&f.event),
                f.icount
            ))),
            None => Err(self.ended_early(icount)),
        }
    }

    /// The log has nothing more (no end record): say so.
    pub fn ended_early(&self, icount: u64) -> Error {
        let why = self
            .cut
            .clone()
            .unwrap_or_else(|| "the log has no end record: the recording was cut".into());
        Error::Replay(format!(
            "{}: {why}; replayed up to icount {icount}",
            self.path.display()
        ))
    }

    /// The recording ended at `icount`.
    pub fn ends_at(&self, icount: u64) -> bool {
        matches!(&self.next, Some(f) if f.icount == icount && matches!(f.event, Event::End(_)))
    }

    /// Nothing is left to replay and the log was cut.
    pub fn exhausted(&self) -> bool {
        self.next.is_none()
    }
}

fn read_error(path: &Path, what: &str) -> Error {
    Error::Replay(format!("--replay {}: {what}", path.display()))
}

/// One event in words, for messages.
pub fn describe(e: &Event) -> String {
    match e {
        Event::SerialIn { port, bytes } => {
            format!("{} serial byte(s) for COM{}", bytes.len(), port + 1)
        }
        Event::Clock(a) => format!(
            "a clock move ({:?}: bias {}, shift {})",
            a.cause, a.bias, a.shift
        ),
        Event::RtcStart(s) => format!("the RTC start time {s}"),
        Event::Checkpoint(_) => "a checkpoint".into(),
        Event::Stop(r) => format!("a stop request ({r:?})"),
        Event::End(_) => "the end of the recording".into(),
    }
}

/// What the run does with its inputs.
#[derive(Default)]
pub enum Journal {
    /// Nothing recorded or replayed.
    #[default]
    Off,
    /// Record inputs.
    Record(Recorder),
    /// Replay recorded inputs.
    Replay(Replayer),
}

/// The low 32 bits of each part hash, as checkpoints store them.
pub fn checkpoint_parts(parts: &[(&'static str, u64)]) -> Vec<u32> {
    parts.iter().map(|&(_, h)| h as u32).collect()
}

/// The part names, as the fingerprint's [`PARTS_KEY`] lists them.
pub fn part_names(parts: &[(&'static str, u64)]) -> String {
    parts.iter().map(|&(n, _)| n).collect::<Vec<_>>().join(",")
}

/// `cjemu replay-dump FILE`: the header, then one line per frame. A damaged
/// or cut log prints what could be read, then the problem (status 4).
pub fn dump(path: &Path) -> Result<String, Error> {
    use std::fmt::Write;
    let f = File::open(path)
        .map_err(|e| Error::Replay(format!("replay-dump {}: {e}", path.display())))?;
    let (mut log, fp) = LogReader::open(BufReader::new(f))
        .map_err(|e| Error::Replay(format!("replay-dump {}: {e}", path.display())))?;
    let mut out = String::new();
    let _ = writeln!(out, "log: {}", path.display());
    let _ = writeln!(out, "format: {}", cjemu_replay::replay_log::VERSION);
    for (k, v) in &fp.0 {
        let _ = writeln!(out, "{k}: {v}");
    }
    let mut frames = 0u64;
    let mut ended = false;
    loop {
        match log.next_frame() {
            Ok(Some(f)) => {
                frames += 1;
                ended |= matches!(f.event, Event::End(_));
                let _ = writeln!(out, "{:>14} r{:<2} {}", f.icount, f.round, show(&f.event));
            }
            Ok(None) => break,
            Err(e) => {
                print!("{out}");
                return Err(Error::Replay(format!(
                    "replay-dump {}: after {frames} good frame(s): {e}",
                    path.display()
                )));
            }
        }
    }
    let _ = writeln!(out, "frames: {frames}");
    if !ended {
        print!("{out}");
        return Err(Error::Replay(format!(
            "replay-dump {}: no end record (the recording was cut)",
            path.display()
        )));
    }
    Ok(out)
}

/// An event with its data, for `replay-dump`.
fn show(e: &Event) -> String {
    let hex = |p: &[u32]| {
        p.iter()
            .map(|h| format!("{h:08x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match e {
        Event::SerialIn { port, bytes } => {
            format!(
                "serial COM{} {:?}",
                port + 1,
                String::from_utf8_lossy(bytes)
            )
        }
        Event::Clock(a) => format!("clock {:?} bias {} shift {}", a.cause, a.bias, a.shift),
        Event::RtcStart(s) => format!("rtc-start {s}"),
        Event::Checkpoint(p) => format!("checkpoint {}", hex(p)),
        Event::Stop(r) => format!("stop {r:?}"),
        Event::End(p) => format!("end {}", hex(p)),
    }
}
