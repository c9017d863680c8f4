//! `--stop-at` and the monitor (`--monitor unix:PATH`), through the
//! command line and the Unix socket.
//!
//! The guest of the replay tests is `tests/kernels/rr_ticks_echo.c`: PIT
//! interrupts at ~1 kHz and serial input (from a file) echoed with the tick
//! count and TSC at which each byte arrived, recorded with a checkpoint
//! every 2000 instructions. A replay paused and resumed from the monitor
//! must pass every checkpoint and end with the recording's state hash.

#[path = "kernels/harness.rs"]
mod harness;

use harness::build_c;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn cjemu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cjemu"))
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("monitor")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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

/// The echo guest with its input from a file, as in tests/snapshot.rs.
fn echo_guest(d: &Path) -> Command {
    let input = d.join("input.txt");
    let text: Vec<u8> = (0..120u8)
        .map(|i| if i % 8 == 7 { b'\n' } else { b'a' + i % 26 })
        .collect();
    std::fs::write(&input, text).unwrap();
    let mut c = cjemu();
    c.arg("-kernel")
        .arg(build_c("rr_ticks_echo"))
        .args(["-append", "ticks=300", "--stats", "-rtc", "base=2020-01-01"])
        .arg("--serial-input")
        .arg(input);
    c
}

/// Record the echo guest into `log`, a checkpoint every 2000
/// instructions.
fn record(d: &Path, log: &Path) -> Output {
    echo_guest(d)
        .arg("--record")
        .arg(log)
        .args(["--checkpoint-every", "2000"])
        .output()
        .unwrap()
}

/// A monitor client: each answer ends with the prompt.
struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Client {
    /// Connect to the monitor of `child` (it binds before the guest
    /// starts; wait for the socket to appear).
    fn connect(path: &Path, child: &mut Child) -> Client {
        let s = loop {
            if let Ok(s) = UnixStream::connect(path) {
                break s;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "cjemu ended before its monitor came up"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let banner = c.answer().expect("a banner");
        assert!(banner.contains("cjemu monitor"), "{banner}");
        c
    }

    /// Text up to the next prompt; `None` if the monitor went away.
    fn answer(&mut self) -> Option<String> {
        let prompt = b"(cjemu) ";
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(prompt) {
            match self.r.read(&mut b) {
                Ok(1) => got.push(b[0]),
                _ => return None,
            }
        }
        got.truncate(got.len() - prompt.len());
        Some(String::from_utf8_lossy(&got).into_owned())
    }

    fn cmd(&mut self, line: &str) -> Option<String> {
        self.w.write_all(format!("{line}\n").as_bytes()).ok()?;
        self.answer()
    }

    /// Ask until the machine reports itself paused.
    fn wait_paused(&mut self) -> Option<()> {
        while !self.cmd("info status")?.contains("paused") {}
        Some(())
    }
}

/// The first number after `key ` in `text`.
fn number_after(text: &str, key: &str) -> u64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key} in {text}")) + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn spawn(mut c: Command) -> Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_replay_paused_and_resumed_from_the_monitor_matches_every_checkpoint() {
    let d = dir("replay");
    let log = d.join("run.rr");
    let rec = record(&d, &log);
    let text = String::from_utf8_lossy(&rec.stdout).into_owned();
    assert!(text.contains(" t=") && text.contains("end="), "{text}");
    let total: u64 = stat(&rec, "icount").parse().unwrap();
    assert!(total > 50_000, "the run is long enough to pause in");
    for (i, stop_at) in [total / 3, 2 * total / 3 + 1].into_iter().enumerate() {
        let sock = d.join(format!("mon{i}.sock"));
        let mut c = echo_guest(&d);
        c.arg("--replay")
            .arg(&log)
            .args(["--stop-at", &stop_at.to_string()])
            .arg("-monitor")
            .arg(format!("unix:{},server,nowait", sock.display()));
        let mut child = spawn(c);
        let mut m = Client::connect(&sock, &mut child);
        m.wait_paused().expect("paused at --stop-at");
        let info = m.cmd("info replay").unwrap();
        assert_eq!(number_after(&info, "icount "), stop_at, "{info}");
        let frames = number_after(&info, "replaying: ");
        assert!(frames >= stop_at / 2000, "checkpoints consumed: {info}");
        let regs = m.cmd("info registers").unwrap();
        assert_eq!(number_after(&regs, "ICOUNT="), stop_at, "{regs}");
        assert_eq!(m.cmd("cont").as_deref(), Some(""));
        // Pause again wherever `stop` lands, a few times, until the end.
        for _ in 0..3 {
            if m.cmd("stop").is_none() || m.wait_paused().is_none() {
                break;
            }
            let at = number_after(&m.cmd("info replay").unwrap_or_default(), "icount ");
            assert!(at >= stop_at, "{at} < {stop_at}");
            if m.cmd("cont").is_none() {
                break;
            }
        }
        drop(m);
        let o = child.wait_with_output().unwrap();
        let what = format!("replay paused at {stop_at}: {}", stderr(&o));
        assert_eq!(o.status.code(), rec.status.code(), "{what}");
        assert!(!stderr(&o).contains("diverged"), "{what}");
        assert_eq!(stat(&o, "icount"), stat(&rec, "icount"), "{what}");
        assert_eq!(stat(&o, "state-hash"), stat(&rec, "state-hash"), "{what}");
        assert_eq!(o.stdout, rec.stdout, "{what}");
    }
}

#[test]
fn stop_at_without_monitor_or_gdb_prints_the_registers_and_exits_0() {
    let k = build_c("hello");
    let o = cjemu()
        .arg("-kernel")
        .arg(&k)
        .args(["--stop-at", "500", "--stats", "-serial", "null"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The guest alone exits with 0x21 (status 0x21 here would mean it ran
    // fewer than 500 instructions): it stopped exactly at the count.
    assert_eq!(stat(&o, "icount"), "500");
    let e = stderr(&o);
    assert!(e.contains("ICOUNT=500") && e.contains("RIP="), "{e}");
}

#[test]
fn savevm_from_the_monitor_then_loadvm_ends_like_the_uninterrupted_run() {
    let d = dir("savevm");
    let k = build_c("rr_ticks_echo");
    let base = || {
        let mut c = cjemu();
        c.arg("-kernel")
            .arg(&k)
            .args(["-append", "ticks=300", "--stats", "-rtc", "base=2020-01-01"])
            .args(["-serial", "null"]);
        c
    };
    let full = base().output().unwrap();
    let total: u64 = stat(&full, "icount").parse().unwrap();
    let sock = d.join("m.sock");
    let snap = d.join("mid.cjsnap");
    let mut c = base();
    c.args(["--stop-at", &(total / 2).to_string()])
        .arg("--monitor")
        .arg(format!("unix:{}", sock.display()));
    let mut child = spawn(c);
    let mut m = Client::connect(&sock, &mut child);
    m.wait_paused().unwrap();
    let saved = m.cmd(&format!("savevm {}", snap.display())).unwrap();
    assert!(saved.contains("saved"), "{saved}");
    assert_eq!(m.cmd("quit").as_deref(), Some(""));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "quit: {}", stderr(&o));
    assert_eq!(stat(&o, "icount"), (total / 2).to_string());

    let from = base().arg("--loadvm").arg(&snap).output().unwrap();
    assert_eq!(from.status.code(), full.status.code(), "{}", stderr(&from));
    assert_eq!(stat(&from, "icount"), stat(&full, "icount"));
    assert_eq!(stat(&from, "state-hash"), stat(&full, "state-hash"));
}

#[test]
fn a_monitor_connection_sees_the_prompt_and_unknown_commands_are_named() {
    let d = dir("unknown");
    let sock = d.join("m.sock");
    let mut c = cjemu();
    c.arg("-kernel")
        .arg(build_c("hello"))
        .args(["-S", "-serial", "null", "--monitor"])
        .arg(format!("unix:{}", sock.display()));
    let mut child = spawn(c);
    let mut m = Client::connect(&sock, &mut child);
    m.wait_paused().unwrap();
    assert!(m.cmd("frob").unwrap().contains("unknown command: 'frob'"));
    assert_eq!(number_after(&m.cmd("info replay").unwrap(), "icount "), 0);
    m.cmd("cont");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0x21), "-S then cont runs to the end");
    let mut lines = BufReader::new(o.stdout.as_slice()).lines();
    assert!(lines.next().is_none(), "serial went to null");
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn a_recording_ended_by_stop_at_replays_to_the_same_stop() {
    let d = dir("stop-rec");
    let log = d.join("run.rr");
    let rec = echo_guest(&d)
        .arg("--record")
        .arg(&log)
        .args(["--checkpoint-every", "1000", "--stop-at", "30000"])
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", stderr(&rec));
    assert_eq!(stat(&rec, "icount"), "30000");
    assert!(stderr(&rec).contains("ICOUNT=30000"), "{}", stderr(&rec));
    // The replay needs no --stop-at: the log holds the stop.
    let rep = echo_guest(&d).arg("--replay").arg(&log).output().unwrap();
    assert_eq!(rep.status.code(), Some(0), "{}", stderr(&rep));
    assert_eq!(stat(&rep, "icount"), "30000");
    assert_eq!(stat(&rep, "state-hash"), stat(&rec, "state-hash"));
    assert_eq!(rep.stdout, rec.stdout);
}

/// `replay-seek` and `replay-break` in a replay of the echo guest: the
/// machine reaches the same state at a count whether it got there going
/// forward or back (from the snapshots kept in memory), a break stops
/// exactly at its count, and the replay then runs on to the recording's
/// end: every checkpoint matched, the same state hash, the serial output
/// shown once. Outside a replay the commands are refused.
#[test]
fn replay_seek_goes_back_and_forth_and_replay_break_stops_ahead() {
    let d = dir("seek");
    let log = d.join("run.rr");
    let rec = record(&d, &log);
    let total: u64 = stat(&rec, "icount").parse().unwrap();
    let (a, b, c) = (2 * total / 3, total / 3 + 7, total / 2);
    let sock = d.join("m.sock");
    let mut cmd = echo_guest(&d);
    cmd.arg("--replay")
        .arg(&log)
        .args(["-S", "--snapshot-every", "5000"])
        .arg("-monitor")
        .arg(format!("unix:{}", sock.display()))
        // Without --snapshot-dir the history stays in memory: no file here.
        .current_dir(&d);
    let mut child = spawn(cmd);
    let mut m = Client::connect(&sock, &mut child);
    m.wait_paused().unwrap();
    let seek = |m: &mut Client, to: u64| {
        assert_eq!(m.cmd(&format!("replay-seek {to}")).as_deref(), Some(""));
        m.wait_paused().unwrap();
        let info = m.cmd("info replay").unwrap();
        assert_eq!(number_after(&info, "icount "), to, "{info}");
        m.cmd("info registers").unwrap()
    };
    let at_a = seek(&mut m, a);
    let at_b = seek(&mut m, b);
    assert_ne!(at_a, at_b);
    assert_eq!(seek(&mut m, a), at_a, "forward again from b");
    assert_eq!(seek(&mut m, b), at_b, "back again from a");
    let info = m.cmd("info replay").unwrap();
    assert!(info.contains("snapshot(s) in memory"), "{info}");
    assert!(
        m.cmd(&format!("replay-break {}", b - 1))
            .unwrap()
            .contains("not ahead"),
        "a break behind is refused"
    );
    assert_eq!(m.cmd(&format!("replay-break {c}")).as_deref(), Some(""));
    assert_eq!(m.cmd("cont").as_deref(), Some(""));
    m.wait_paused().unwrap();
    let info = m.cmd("info replay").unwrap();
    assert_eq!(number_after(&info, "icount "), c, "{info}");
    // Past the end: the replay stops at the end of its recording, and can
    // go back from there.
    assert_eq!(
        m.cmd(&format!("replay-seek {}", total + 1000)).as_deref(),
        Some("")
    );
    m.wait_paused().unwrap();
    let info = m.cmd("info replay").unwrap();
    assert_eq!(number_after(&info, "icount "), total, "{info}");
    assert_eq!(seek(&mut m, a), at_a, "back from the end");
    m.cmd("cont");
    drop(m);
    let o = child.wait_with_output().unwrap();
    let what = stderr(&o);
    assert_eq!(o.status.code(), rec.status.code(), "{what}");
    assert!(!what.contains("diverged"), "{what}");
    assert_eq!(stat(&o, "icount"), stat(&rec, "icount"), "{what}");
    assert_eq!(stat(&o, "state-hash"), stat(&rec, "state-hash"), "{what}");
    assert_eq!(o.stdout, rec.stdout, "the serial output once");
    let files: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cjsnap"))
        .collect();
    assert!(files.is_empty(), "no snapshot files: {files:?}");

    // Not a replay: refused.
    let sock = d.join("plain.sock");
    let mut cmd = echo_guest(&d);
    cmd.args(["-S", "-monitor"])
        .arg(format!("unix:{}", sock.display()));
    let mut child = spawn(cmd);
    let mut m = Client::connect(&sock, &mut child);
    m.wait_paused().unwrap();
    assert!(m.cmd("replay-seek 10").unwrap().contains("not replaying"));
    assert!(m.cmd("replay-break 10").unwrap().contains("not replaying"));
    m.cmd("quit");
    let _ = child.wait_with_output();
}
