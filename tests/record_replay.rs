//! Record and replay through the command line: a guest that takes PIT
//! interrupts and echoes typed serial input with the tick count and TSC at
//! which each byte arrived (`tests/kernels/rr_ticks_echo.c`), so its output
//! depends on the host's timing and only an exact replay reproduces it.

#[path = "kernels/harness.rs"]
mod harness;

use cjemu_replay::replay_log::{Event, Frame, LogReader, LogWriter};
use harness::build_c;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Typed input: a few bytes with pauses, then the terminator.
const TYPED: &[&[u8]] = &[b"h", b"e", b"l", b"lo", b"\n", b"#"];

fn cjemu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cjemu"))
}

fn kernel() -> PathBuf {
    build_c("rr_ticks_echo")
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("record_replay");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Record `kernel` with `extra` options, typing [`TYPED`] into stdin with
/// pauses of `pause`.
fn record(log: &Path, extra: &[&str], pause: Duration) -> Output {
    let mut child = cjemu()
        .arg("-kernel")
        .arg(kernel())
        .args(["-append", "ticks=4000", "--stats", "--record"])
        .arg(log)
        .args(["--checkpoint-every", "2000"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cjemu runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Collect stdout, and tell the typist when the guest is ready.
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        let mut told = false;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if !told && all.windows(6).any(|w| w == b"ready\n") {
                told = true;
                let _ = ready_tx.send(());
            }
        }
        all
    });
    let typist = std::thread::spawn(move || {
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            return;
        }
        for chunk in TYPED {
            std::thread::sleep(pause);
            // The guest may have ended already: a closed pipe is fine.
            let _ = stdin.write_all(chunk);
            let _ = stdin.flush();
        }
    });
    let mut out = child.wait_with_output().expect("cjemu finishes");
    out.stdout = reader.join().unwrap();
    typist.join().unwrap();
    out
}

fn replay(log: &Path, extra: &[&str]) -> Output {
    cjemu()
        .arg("-kernel")
        .arg(kernel())
        .args(["-append", "ticks=4000", "--stats", "--replay"])
        .arg(log)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("cjemu runs")
}

fn stat(o: &Output, key: &str) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    e.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{e}"))
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The same serial bytes, status, icount and state hash.
fn assert_same_run(a: &Output, b: &Output, what: &str) {
    assert_eq!(b.status.code(), a.status.code(), "{what}: {}", stderr(b));
    assert_eq!(
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&a.stdout),
        "{what}: serial output"
    );
    assert_eq!(stat(b, "icount"), stat(a, "icount"), "{what}");
    assert_eq!(stat(b, "state-hash"), stat(a, "state-hash"), "{what}");
}

fn recorded(extra: &[&str], name: &str) -> (PathBuf, Output) {
    let log = dir().join(name);
    let o = record(&log, extra, Duration::from_millis(40));
    assert_eq!(o.status.code(), Some(0x67), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("h t=") && text.contains("end=#"), "{text}");
    (log, o)
}

#[test]
fn replays_reproduce_a_recording_with_timer_interrupts_and_typed_input() {
    let (log, rec) = recorded(&["-icount", "shift=0"], "typed.rr");
    assert!(
        stat(&rec, "interrupts").parse::<u64>().unwrap() > 10,
        "timer interrupts were taken"
    );
    for i in 0..2 {
        let r = replay(&log, &[]);
        assert_same_run(&rec, &r, &format!("replay {i}"));
    }
    let r = replay(&log, &["--accel", "jit,threshold=0"]);
    assert_same_run(&rec, &r, "replay under the JIT");
}

#[test]
fn a_jit_recording_replays_under_the_interpreter() {
    let (log, rec) = recorded(
        &["-icount", "shift=0", "--accel", "jit,threshold=0"],
        "jit.rr",
    );
    let r = replay(&log, &["--accel", "interp"]);
    assert_same_run(&rec, &r, "interp replay of a jit recording");
}

#[test]
fn shift_auto_recordings_replay_exactly() {
    let (log, rec) = recorded(&["--icount", "shift=auto"], "auto.rr");
    let r = replay(&log, &[]);
    assert_same_run(&rec, &r, "shift=auto replay");
    // Asking for another clock than the recording's is refused.
    let r = replay(&log, &["--icount", "shift=3"]);
    assert_eq!(r.status.code(), Some(4));
    assert!(stderr(&r).contains("conflicts"), "{}", stderr(&r));
}

#[test]
fn twenty_replays_give_twenty_identical_state_hashes() {
    let (log, rec) = recorded(&["-icount", "shift=0"], "stress.rr");
    let want = stat(&rec, "state-hash");
    for i in 0..20 {
        let r = replay(&log, &[]);
        assert_eq!(r.status.code(), Some(0x67), "replay {i}: {}", stderr(&r));
        assert_eq!(stat(&r, "state-hash"), want, "replay {i}");
    }
}

fn read_frames(log: &Path) -> (cjemu_replay::replay_log::Fingerprint, Vec<Frame>) {
    let bytes = std::fs::read(log).unwrap();
    let (mut r, fp) = LogReader::open(bytes.as_slice()).unwrap();
    let mut v = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        v.push(f);
    }
    (fp, v)
}

/// One line of status-4 output and no panic.
fn assert_replay_error(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(4), "{e}");
    assert!(e.contains(needle), "expected '{needle}' in:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn tampered_cut_and_foreign_logs_are_refused_with_status_4() {
    let (log, _) = recorded(&["-icount", "shift=0"], "tamper.rr");
    let good = std::fs::read(&log).unwrap();
    let (fp, frames) = read_frames(&log);
    let d = dir();

    // A flipped byte in the middle of the frames: checksum error naming it.
    let mut bad = good.clone();
    let at = good.len() - good.len() / 3;
    bad[at] ^= 0x40;
    let f = d.join("flipped.rr");
    std::fs::write(&f, &bad).unwrap();
    let r = replay(&f, &[]);
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(4), "{e}");
    assert!(e.contains("frame") && !e.contains("panicked"), "{e}");

    // A changed recorded input: the replay diverges at the first
    // checkpoint after it.
    let changed_at = frames
        .iter()
        .position(|f| matches!(&f.event, Event::SerialIn { bytes, .. } if bytes.contains(&b'l')))
        .expect("the typed 'l' was recorded");
    let mut w = LogWriter::new(Vec::new(), &fp).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let mut f = f.clone();
        if i == changed_at {
            if let Event::SerialIn { bytes, .. } = &mut f.event {
                for b in bytes.iter_mut().filter(|b| **b == b'l') {
                    *b = b'L';
                }
            }
        }
        w.write(&f).unwrap();
    }
    let f = d.join("changed.rr");
    std::fs::write(&f, w.into_inner()).unwrap();
    let next_check = frames[changed_at..]
        .iter()
        .find(|f| matches!(f.event, Event::Checkpoint(_) | Event::End(_)))
        .unwrap()
        .icount;
    let r = replay(&f, &[]);
    assert_replay_error(&r, &format!("diverged at icount {next_check}"));

    // A cut log replays up to the cut, then says so.
    let f = d.join("cut.rr");
    std::fs::write(&f, &good[..good.len() * 2 / 3]).unwrap();
    let r = replay(&f, &[]);
    assert_replay_error(&r, "cut");
    assert!(
        stderr(&r).contains("replayed up to icount"),
        "{}",
        stderr(&r)
    );

    // Another kernel: refused by the fingerprint, naming it.
    let other = build_c("hello");
    let r = cjemu()
        .arg("-kernel")
        .arg(&other)
        .args(["-append", "ticks=4000", "--replay"])
        .arg(&log)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_replay_error(&r, "kernel");

    // Not a log at all.
    let r = replay(&other, &[]);
    assert_replay_error(&r, "not a cjemu record/replay log");
}

#[test]
fn replay_dump_prints_header_and_events() {
    let (log, _) = recorded(&["-icount", "shift=0"], "dump.rr");
    let o = cjemu().arg("replay-dump").arg(&log).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    for want in [
        "clock: shift=0,sleep=on,align=off",
        "rtc-start",
        "serial COM1 \"h\"",
        "checkpoint",
        "end ",
    ] {
        assert!(t.contains(want), "no {want:?} in:\n{t}");
    }
}

#[test]
fn a_recording_stopped_by_sigint_replays_to_the_same_stop() {
    let log = dir().join("sigint.rr");
    let child = cjemu()
        .arg("-kernel")
        .arg(kernel())
        .args(["-append", "ticks=100000", "--stats", "-icount", "shift=0"])
        .arg("--record")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cjemu runs");
    // Let it take some timer interrupts in real time, then Ctrl-C.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let rec = child.wait_with_output().unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", stderr(&rec));
    assert!(
        stderr(&rec).contains("stopped (interrupted)"),
        "{}",
        stderr(&rec)
    );
    let r = cjemu()
        .arg("-kernel")
        .arg(kernel())
        .args(["-append", "ticks=100000", "--stats", "--replay"])
        .arg(&log)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_same_run(&rec, &r, "replay of a stopped recording");
    assert!(
        stderr(&r).contains("stopped (interrupted)"),
        "{}",
        stderr(&r)
    );
}

#[test]
fn a_recording_killed_with_sigkill_replays_to_its_last_frame() {
    let log = dir().join("sigkill.rr");
    let mut child = cjemu()
        .arg("-kernel")
        .arg(kernel())
        .args(["-append", "ticks=4000", "-icount", "shift=0"])
        .args(["--checkpoint-every", "1000", "--record"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cjemu runs");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no chance to finish the log
    child.wait().unwrap();
    let (_, frames) = read_frames(&log);
    let last = frames
        .last()
        .expect("frames were flushed as written")
        .icount;
    assert!(frames.len() > 10, "{} frames", frames.len());
    let r = replay(&log, &[]);
    assert_replay_error(&r, "no end record");
    assert!(
        stderr(&r).contains(&format!("replayed up to icount {last}")),
        "{}",
        stderr(&r)
    );
}

#[test]
fn stopping_at_every_instruction_does_not_change_the_state_hash() {
    // A checkpoint at every instruction makes the run loop stop and
    // service the devices 4000-odd times more; devices catch up lazily,
    // and the hash must not see where the loop happened to stop.
    let run = |extra: &[&str]| {
        cjemu()
            .arg("-kernel")
            .arg(kernel())
            .args(["-append", "ticks=20", "-rtc", "base=2024-01-01", "--stats"])
            .args(["-m", "8"])
            .args(["-serial", "null"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let plain = run(&[]);
    let log = dir().join("every-insn.rr");
    let log_s = log.to_string_lossy().to_string();
    let stopped = run(&["--record", &log_s, "--checkpoint-every", "1"]);
    assert_eq!(
        stopped.status.code(),
        plain.status.code(),
        "{}",
        stderr(&stopped)
    );
    assert_eq!(stat(&stopped, "icount"), stat(&plain, "icount"));
    assert_eq!(stat(&stopped, "state-hash"), stat(&plain, "state-hash"));
}

#[test]
fn qemu_rr_spelling_records_and_replays_the_demo() {
    let log = dir().join("demo-rr.rr");
    let spec = format!("shift=auto,rr=record,rrfile={}", log.display());
    let rec = cjemu()
        .args(["--icount", &spec, "--stats"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", stderr(&rec));
    let spec = format!("shift=auto,rr=replay,rrfile={}", log.display());
    for args in [
        vec!["--icount", spec.as_str()],
        vec!["--replay", log.to_str().unwrap()],
    ] {
        let r = cjemu()
            .args(&args)
            .arg("--stats")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_same_run(&rec, &r, &format!("{args:?}"));
    }
}
