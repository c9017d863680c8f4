//! Snapshots through the command line: `--snapshot-every N` writes
//! `snap-<icount>.cjsnap` files during a run; `--loadvm FILE` in a fresh
//! process continues from one and must end exactly like the uninterrupted
//! run (status, icount, state hash, the rest of the serial output). The
//! guest (`tests/kernels/rr_ticks_echo.c`) takes PIT interrupts at ~1 kHz
//! and echoes serial input (from a file) with the tick count and TSC at
//! which each byte arrived, so timers, the PIC, the UART and RAM all carry
//! state across the snapshot point.

#[path = "kernels/harness.rs"]
mod harness;

use harness::build_c;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cjemu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cjemu"))
}

fn kernel() -> PathBuf {
    build_c("rr_ticks_echo")
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("snapshot")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bytes for COM1, echoed in the first ~80k instructions; then the guest
/// idles on PIT ticks until `ticks=`.
fn input_file(d: &Path) -> PathBuf {
    let p = d.join("input.txt");
    let mut text = Vec::new();
    for i in 0..200u8 {
        text.push(b'a' + i % 26);
        if i % 8 == 7 {
            text.push(b'\n');
        }
    }
    std::fs::write(&p, text).unwrap();
    p
}

const EVERY: u64 = 10_000;

fn base(accel: &str) -> Command {
    let mut c = cjemu();
    c.arg("-kernel")
        .arg(kernel())
        .args(["-append", "ticks=1000", "--stats"])
        .args(["-rtc", "base=2020-01-01", "--accel", accel]);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stat(o: &Output, key: &str) -> String {
    let e = stderr(o);
    e.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{e}"))
        .to_string()
}

/// The snapshots in `d`, by icount.
fn snapshots(d: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            let n = name.strip_prefix("snap-")?.strip_suffix(".cjsnap")?;
            Some((n.parse().ok()?, p))
        })
        .collect();
    v.sort();
    v
}

/// The uninterrupted run, writing snapshots into `d`.
fn full_run(d: &Path, accel: &str) -> Output {
    let o = base(accel)
        .arg("--serial-input")
        .arg(input_file(d))
        .args(["--snapshot-every", &EVERY.to_string(), "--snapshot-dir"])
        .arg(d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0x67), "{}", stderr(&o));
    o
}

fn loadvm(snap: &Path, accel: &str, extra: &[&str]) -> Output {
    base(accel)
        .arg("--loadvm")
        .arg(snap)
        .args(extra)
        .output()
        .unwrap()
}

/// Same end as `full`, and the serial output is the part of `full`'s that
/// came after the snapshot.
fn assert_continues(full: &Output, from: &Output, what: &str) {
    assert_eq!(
        from.status.code(),
        full.status.code(),
        "{what}: {}",
        stderr(from)
    );
    assert_eq!(stat(from, "icount"), stat(full, "icount"), "{what}");
    assert_eq!(stat(from, "state-hash"), stat(full, "state-hash"), "{what}");
    let (a, b) = (&full.stdout, &from.stdout);
    assert!(
        !b.is_empty() && b.len() < a.len() && a.ends_with(b),
        "{what}: the output after the snapshot is a proper tail of the full run's\nfull:\n{}\nloaded:\n{}",
        String::from_utf8_lossy(a),
        String::from_utf8_lossy(b)
    );
}

fn equivalence(accel: &str, load_accel: &str, name: &str) {
    let d = dir(name);
    let full = full_run(&d, accel);
    let text = String::from_utf8_lossy(&full.stdout).into_owned();
    assert!(text.contains(" t=") && text.contains("end=ticks"), "{text}");
    assert!(stat(&full, "interrupts").parse::<u64>().unwrap() >= 1000);
    let total: u64 = stat(&full, "icount").parse().unwrap();
    let snaps = snapshots(&d);
    let want = total / EVERY - u64::from(total.is_multiple_of(EVERY));
    assert_eq!(
        snaps.len() as u64,
        want,
        "one per multiple of {EVERY} below {total}"
    );
    for (i, (n, _)) in snaps.iter().enumerate() {
        assert_eq!(*n, (i as u64 + 1) * EVERY);
    }
    // Early (before the input is all echoed), middle, and last.
    for &k in &[0, snaps.len() / 2, snaps.len() - 1] {
        let (n, path) = &snaps[k];
        let o = loadvm(path, load_accel, &[]);
        assert_continues(&full, &o, &format!("{name}: from snap-{n}"));
    }
}

#[test]
fn a_run_from_a_snapshot_ends_like_the_uninterrupted_run_interp() {
    equivalence("interp", "interp", "interp");
}

#[test]
fn a_run_from_a_snapshot_ends_like_the_uninterrupted_run_jit() {
    equivalence("jit,threshold=0", "jit,threshold=0", "jit");
}

#[test]
fn a_jit_snapshot_loads_under_the_interpreter() {
    equivalence("jit,threshold=0", "interp", "jit-to-interp");
}

#[test]
fn a_loaded_run_writes_the_same_later_snapshots() {
    let d = dir("again");
    let full = full_run(&d, "interp");
    let snaps = snapshots(&d);
    assert!(snaps.len() >= 3, "{snaps:?}");
    let d2 = dir("again2");
    let (_, first) = &snaps[0];
    let o = loadvm(
        first,
        "interp",
        &[
            "--snapshot-every",
            &EVERY.to_string(),
            "--snapshot-dir",
            d2.to_str().unwrap(),
        ],
    );
    assert_continues(&full, &o, "reloaded with --snapshot-every");
    let later = snapshots(&d2);
    assert_eq!(
        later.len(),
        snaps.len() - 1,
        "all but the one it started from"
    );
    for ((n1, p1), (n2, p2)) in snaps[1..].iter().zip(&later) {
        assert_eq!(n1, n2);
        assert!(
            std::fs::read(p1).unwrap() == std::fs::read(p2).unwrap(),
            "snap-{n1} differs byte for byte"
        );
    }
}

/// Status 2, one clear line, no panic.
fn assert_refused(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(needle), "expected '{needle}' in:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn foreign_damaged_truncated_and_mismatched_snapshots_are_refused() {
    let d = dir("refuse");
    full_run(&d, "interp");
    let (_, snap) = snapshots(&d).remove(0);
    let good = std::fs::read(&snap).unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };

    let p = write("foreign", b"#!/bin/sh\necho this is not a snapshot\n");
    assert_refused(&loadvm(&p, "interp", &[]), "not a cjemu snapshot");
    let mut v = good.clone();
    v[8] = 99;
    let p = write("version", &v);
    assert_refused(&loadvm(&p, "interp", &[]), "format version 99");
    let mut v = good.clone();
    let mid = v.len() / 2;
    v[mid] ^= 0x10;
    let p = write("flipped", &v);
    assert_refused(&loadvm(&p, "interp", &[]), "checksum");
    let p = write("cut", &good[..good.len() - 100]);
    assert_refused(&loadvm(&p, "interp", &[]), "checksum");
    let p = write("header", &good[..15]);
    assert_refused(&loadvm(&p, "interp", &[]), "truncated");
    assert_refused(
        &loadvm(&snap, "interp", &["-m", "64"]),
        "RAM: snapshot 128 MiB, now 64 MiB",
    );
    assert_refused(
        &loadvm(&snap, "interp", &["-serial", "stdio", "-serial", "null"]),
        "serial ports: snapshot 1, now 2",
    );
    assert_refused(
        &loadvm(&snap, "interp", &["-icount", "shift=2"]),
        "clock: snapshot shift=0, now shift=2",
    );
    assert_refused(&loadvm(&d.join("missing"), "interp", &[]), "missing");
}

#[test]
fn snapshot_options_are_checked() {
    let o = cjemu().args(["--snapshot-every", "0"]).output().unwrap();
    assert_refused(&o, "at least 1");
    let o = cjemu().args(["--snapshot-dir", "x"]).output().unwrap();
    assert_refused(&o, "needs --snapshot-every");
    let o = cjemu()
        .args(["--loadvm", "a.cjsnap", "--serial-input", "x"])
        .output()
        .unwrap();
    assert_refused(&o, "--serial-input with --loadvm");
    let o = cjemu()
        .args(["--loadvm", "a.cjsnap", "--record", "r.log"])
        .output()
        .unwrap();
    assert_refused(&o, "--loadvm cannot be combined with --record");
}

/// A replay can start from a snapshot taken during its recording (or
/// during a replay of it): the snapshot carries the log position. The
/// end is the full replay's; a snapshot from another recording, or from
/// a run that recorded nothing, is refused.
#[test]
fn a_replay_starts_from_a_snapshot_taken_during_its_recording() {
    let d = dir("replay-from");
    let log = d.join("rec.log");
    let rec = base("jit")
        .arg("--serial-input")
        .arg(input_file(&d))
        .args(["--checkpoint-every", "3000", "--record"])
        .arg(&log)
        .args(["--snapshot-every", &EVERY.to_string(), "--snapshot-dir"])
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0x67), "{}", stderr(&rec));
    let snaps = snapshots(&d);
    assert!(snaps.len() >= 6, "{} snapshots", snaps.len());
    let replay = |snap: Option<&Path>, accel: &str| {
        let mut c = base(accel);
        c.arg("--replay").arg(&log);
        if let Some(s) = snap {
            c.arg("--loadvm").arg(s);
        }
        c.output().unwrap()
    };
    let full = replay(None, "jit");
    assert_eq!(stat(&full, "state-hash"), stat(&rec, "state-hash"));
    // Early (during the input), middle, last: each replays the rest of the
    // log, checkpoints included, to the recording's end.
    for (n, snap) in [&snaps[0], &snaps[snaps.len() / 2], &snaps[snaps.len() - 1]] {
        for accel in ["interp", "jit"] {
            let o = replay(Some(snap.as_path()), accel);
            assert_continues(&full, &o, &format!("replay from snap-{n} under {accel}"));
        }
    }
    // A snapshot of a run that recorded nothing.
    let plain = dir("replay-from-plain");
    full_run(&plain, "jit");
    let (_, foreign) = snapshots(&plain).remove(0);
    assert_refused(
        &replay(Some(foreign.as_path()), "jit"),
        "only start from a snapshot taken during its recording",
    );
    // A snapshot of another recording of the same guest.
    let other = dir("replay-from-other");
    let rec2 = base("jit")
        .args(["--record"])
        .arg(other.join("other.log"))
        .args(["--snapshot-every", &EVERY.to_string(), "--snapshot-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(rec2.status.code(), Some(0x67), "{}", stderr(&rec2));
    let (_, foreign) = snapshots(&other).remove(0);
    assert_refused(
        &replay(Some(foreign.as_path()), "jit"),
        "taken during another recording",
    );
}
