//! Going back in time in a replay: gdb's `reverse-stepi` and
//! `reverse-continue`, the monitor's `replay-seek`.
//!
//! A replay is a deterministic function of its log, so any earlier moment
//! can be rebuilt: load the latest snapshot before it and run forward, with
//! the run loop's exact budget, to it (QEMU does the same). While a
//! debugger (gdb or the monitor) drives a replay, the machine keeps
//! snapshots in memory ([`History`]): one where the replay started and one
//! every `every` instructions (`--snapshot-every`, else [`DEFAULT_EVERY`]),
//! taken where the disk snapshots are (the start of a count's first service
//! round). Each carries the log position, so the replay goes on from it.
//!
//! A moment is a [`Position`]: the count, and the external interrupts
//! delivered at that count (a handler entered at count N comes after the
//! boundary at N). Travelling to a position loads the latest snapshot
//! strictly before its count (so the run reaches the count the way the
//! original run did, not from the middle of a service round) and runs to
//! the first loop top at that position.
//!
//! - `reverse-stepi` goes to the first loop top of the previous count: the
//!   moment a forward `stepi` from there would have stopped (a forward step
//!   runs until one instruction retired, as QEMU's does in replay mode).
//! - `reverse-continue` replays the segment between the latest snapshot
//!   and now for the last breakpoint or watchpoint hit (both stop the
//!   engine by themselves), then the segment before, and so on; it goes to
//!   the last hit, or to the start of the history.
//!
//! Serial output produced again while re-running what already ran is not
//! shown twice: the machine mutes its serial sinks below the furthest count
//! reached (the high-water mark), and the run loop's budget ends there.

use crate::machine::{Machine, Position};
use crate::monitor::PauseCause;
use crate::status::{Error, Outcome};
use std::collections::BTreeMap;

/// Instructions between kept snapshots unless `--snapshot-every` says.
pub const DEFAULT_EVERY: u64 = 100_000_000;
/// The most snapshots kept; past it every other one is dropped (the
/// first stays), so memory stays bounded and the spacing grows.
const MAX_KEPT: usize = 64;

/// Snapshots kept in memory during a replay driven by a debugger.
pub struct History {
    every: u64,
    /// Encoded snapshots by count.
    kept: BTreeMap<u64, Vec<u8>>,
    /// The furthest count the machine has reached.
    high_water: u64,
}

/// Where a travel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// At the position asked for.
    At,
    /// At a breakpoint (`reverse-continue`).
    Break(PauseCause),
    /// Nothing earlier is kept: at the start of the history.
    HistoryStart,
    /// The guest's run ended on the way (a seek past the recording's end).
    Ended(Outcome),
    /// The debugger interrupted the travel (gdb's Ctrl-C, the monitor's
    /// `stop`): the machine is wherever it had got to.
    Interrupted,
}

impl History {
    /// A history keeping a snapshot every `every` instructions.
    pub fn new(every: u64) -> History {
        History {
            every: every.max(1),
            kept: BTreeMap::new(),
            high_water: 0,
        }
    }

    /// The furthest count reached.
    pub fn high_water(&self) -> u64 {
        self.high_water
    }

    /// The count where the history starts (its first snapshot).
    pub fn start(&self) -> Option<u64> {
        self.kept.keys().next().copied()
    }

    /// Snapshots kept and their bytes, for `info replay`.
    pub fn kept(&self) -> (usize, usize) {
        (self.kept.len(), self.kept.values().map(Vec::len).sum())
    }

    /// Instructions the run loop may run from `icount`: to the next
    /// snapshot count, and to the high-water mark while below it (where
    /// serial output is shown again).
    pub fn until_next(&self, icount: u64) -> u64 {
        let snap = self.every - icount % self.every;
        if icount < self.high_water {
            snap.min(self.high_water - icount)
        } else {
            snap
        }
    }

    fn due(&self, icount: u64) -> bool {
        self.kept.is_empty()
            || (icount.is_multiple_of(self.every) && !self.kept.contains_key(&icount))
    }

    fn keep(&mut self, icount: u64, bytes: Vec<u8>) {
        self.kept.insert(icount, bytes);
        if self.kept.len() > MAX_KEPT {
            let drop: Vec<u64> = self.kept.keys().copied().skip(1).step_by(2).collect();
            for k in drop {
                self.kept.remove(&k);
            }
        }
    }

    /// The snapshot to rebuild `icount` from: the latest strictly before
    /// it, or the first if it is at `icount`.
    fn base_for(&self, icount: u64) -> Option<u64> {
        self.kept
            .range(..icount)
            .next_back()
            .map(|(&k, _)| k)
            .or_else(|| self.start().filter(|&s| s == icount))
    }
}

/// Keep a snapshot of `m` if one is due (the start of a count's first
/// service round).
pub fn keep_if_due(m: &mut Machine) -> Result<(), Error> {
    let icount = m.engine.cpu().icount;
    if !m.history.as_ref().is_some_and(|h| h.due(icount)) {
        return Ok(());
    }
    let bytes = crate::snapshot::encode(m)?;
    log::debug!(
        "history: snapshot at icount {icount} ({} bytes)",
        bytes.len()
    );
    if let Some(h) = &mut m.history {
        h.keep(icount, bytes);
    }
    Ok(())
}

/// At a loop top: move the high-water mark, mute serial output below it.
pub fn note_progress(m: &mut Machine) {
    let Some(h) = &mut m.history else {
        return;
    };
    let icount = m.engine.cpu().icount;
    h.high_water = h.high_water.max(icount);
    m.serial_muted.set(icount < h.high_water);
}

/// Load the kept snapshot taken at `icount`.
fn load_kept(m: &mut Machine, icount: u64) -> Result<(), Error> {
    let Some(h) = m.history.take() else {
        return Err(Error::Internal("no history to load from".into()));
    };
    let r = match h.kept.get(&icount) {
        Some(bytes) => crate::snapshot::load(m, &mut bytes.as_slice()).map(|_| ()),
        None => Err(Error::Internal(format!("no snapshot kept at {icount}"))),
    };
    m.history = Some(h);
    r
}

/// Run from here to the first loop top at `to` (which must be ahead).
/// With `scan`, also collect the loop tops at a breakpoint on the way:
/// those before `to`, and `to` itself when `inclusive`.
fn run_to(
    m: &mut Machine,
    to: Position,
    scan: Option<(&mut Vec<(Position, PauseCause)>, bool)>,
) -> Result<Arrival, Error> {
    m.control.travel = Some(crate::monitor::Travel { to: to.icount });
    let mut scan = scan;
    let start = m.position();
    let end = loop {
        note_progress(m);
        let p = m.position();
        // A watchpoint hit ends the engine's run right after the accessing
        // instruction. Going back, the machine stops before that
        // instruction, as gdb expects in reverse: the first moment of its
        // count after the interrupts delivered there.
        let watched = m.engine.take_watch_hit();
        if let Some((hits, inclusive)) = scan.as_mut() {
            if let Some(hit) = watched.filter(|_| p.icount > 0) {
                let began = m.position_at(p.icount - 1);
                hits.push((began, PauseCause::Watch(hit)));
            }
            if p != start && (p < to || (*inclusive && p == to)) {
                if let Some(cause) = m.control.breakpoint_at(m.engine.cpu().rip) {
                    hits.push((p, cause));
                }
            }
        }
        if p.icount > to.icount || (p.icount == to.icount && p.delivered >= to.delivered) {
            break if p.icount == to.icount {
                Ok(Arrival::At)
            } else {
                Err(Error::Internal(format!(
                    "travelling to icount {} (+{} interrupts) passed it: at {}",
                    to.icount, to.delivered, p.icount
                )))
            };
        }
        if crate::monitor::interrupted_while_travelling(m) {
            break Ok(Arrival::Interrupted);
        }
        match m.iterate() {
            Ok(Some(o)) => break Ok(Arrival::Ended(o)),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    m.control.travel = None;
    end
}

/// Go to `to`: forward from here when it is ahead, else from the latest
/// kept snapshot before it.
pub fn go_to(m: &mut Machine, to: Position) -> Result<Arrival, Error> {
    let here = m.position();
    if to == here {
        return Ok(Arrival::At);
    }
    if to < here {
        let Some(h) = &m.history else {
            return Err(Error::Usage(
                "going back needs a replay with a debugger".into(),
            ));
        };
        let Some(base) = h.base_for(to.icount) else {
            let Some(start) = h.start() else {
                return Ok(Arrival::HistoryStart);
            };
            load_kept(m, start)?;
            return Ok(Arrival::HistoryStart);
        };
        load_kept(m, base)?;
    }
    run_to(m, to, None)
}

/// gdb's `reverse-stepi`: to the first loop top of the previous count.
pub fn reverse_step(m: &mut Machine) -> Result<Arrival, Error> {
    let here = m.position();
    let start = m.history.as_ref().and_then(History::start).unwrap_or(0);
    if here.icount <= start {
        return go_to(
            m,
            Position {
                icount: start,
                delivered: 0,
            },
        )
        .map(|_| Arrival::HistoryStart);
    }
    go_to(
        m,
        Position {
            icount: here.icount - 1,
            delivered: 0,
        },
    )
}

/// gdb's `reverse-continue`: to the last breakpoint hit before now, or to
/// the start of the history.
pub fn reverse_continue(m: &mut Machine) -> Result<Arrival, Error> {
    let here = m.position();
    let bases: Vec<u64> = match &m.history {
        Some(h) => h
            .kept
            .range(..=here.icount)
            .map(|(&k, _)| k)
            .rev()
            .collect(),
        None => {
            return Err(Error::Usage(
                "going back needs a replay with a debugger".into(),
            ))
        }
    };
    // Segments newest first: [base, here), then [older base, base], ...
    let mut until = (here, false);
    for base in bases {
        if (Position {
            icount: base,
            delivered: 0,
        }) >= until.0
        {
            continue;
        }
        load_kept(m, base)?;
        let mut hits = Vec::new();
        // (From the end of the recording the scan ends with the guest's
        // run, at `until`: the hits before it are what counts.)
        if run_to(m, until.0, Some((&mut hits, until.1)))? == Arrival::Interrupted {
            return Ok(Arrival::Interrupted);
        }
        if let Some(&(pos, cause)) = hits.last() {
            return match go_to(m, pos)? {
                Arrival::At => Ok(Arrival::Break(cause)),
                other => Ok(other),
            };
        }
        until = (
            Position {
                icount: base,
                delivered: 0,
            },
            true,
        );
    }
    let start = m.history.as_ref().and_then(History::start).unwrap_or(0);
    load_kept(m, start)?;
    Ok(Arrival::HistoryStart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_picks_the_snapshot_strictly_before_a_count() {
        let mut h = History::new(100);
        for k in [0, 100, 200] {
            h.keep(k, vec![k as u8]);
        }
        assert_eq!(h.base_for(0), Some(0), "the start rebuilds itself");
        assert_eq!(
            h.base_for(100),
            Some(0),
            "not from the middle of 100's round"
        );
        assert_eq!(h.base_for(150), Some(100));
        assert_eq!(h.base_for(10_000), Some(200));
    }

    #[test]
    fn history_budget_stops_at_snapshots_and_the_high_water_mark() {
        let mut h = History::new(100);
        assert_eq!(h.until_next(30), 70);
        h.high_water = 50;
        assert_eq!(h.until_next(30), 20, "output resumes exactly at 50");
        assert_eq!(h.until_next(50), 50);
    }

    #[test]
    fn history_thins_out_but_keeps_its_start() {
        let mut h = History::new(1);
        for k in 0..=MAX_KEPT as u64 {
            h.keep(k * 10, vec![0; 3]);
        }
        assert!(h.kept.len() <= MAX_KEPT);
        assert_eq!(h.start(), Some(0));
        assert_eq!(h.kept().1, h.kept.len() * 3);
    }
}
