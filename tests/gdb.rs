//! The gdb stub, driven by the real `gdb` in batch mode (Debian's `gdb`,
//! installed by `.ci/run`). The expected values come from QEMU: the same
//! gdb script against `qemu-system-x86_64 -S -gdb tcp::PORT` on the same
//! kernel must print the same registers and the same PCs.
//!
//! The kernel is `tests/kernels/hello.c` (prints a greeting over COM1 and
//! exits through the debug-exit port with 0x10, status 0x21); addresses
//! come from its ELF symbols (`nm`).

#[path = "support/gdb_remote.rs"]
mod gdb_remote;
#[path = "kernels/harness.rs"]
mod harness;

use harness::{args, build_c, QEMU};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The address of `sym` in the ELF `kernel`.
fn symbol(kernel: &Path, sym: &str) -> u64 {
    let o = Command::new("nm").arg(kernel).output().expect("nm runs");
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2] == sym).then(|| u64::from_str_radix(f[0], 16).unwrap())
        })
        .unwrap_or_else(|| panic!("no {sym} in {}", kernel.display()))
}

/// Start an emulator paused with its gdb stub on `port`.
fn start(program: &str, kernel: &Path, port: u16, extra: &[&str]) -> Child {
    let mut a = args(kernel, &["-S", "-gdb", &format!("tcp::{port}")]);
    a.extend(extra.iter().map(|s| s.to_string()));
    if program == QEMU {
        a.extend(["-serial", "null", "-nographic"].map(String::from));
    } else {
        a.extend(["-serial", "null"].map(String::from));
    }
    Command::new(program)
        .args(&a)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Run gdb in batch mode on `port` with these commands (gdb retries the
/// connection until the stub listens).
fn gdb(port: u16, cmds: &[String]) -> Output {
    let mut c = Command::new("gdb");
    c.args(["-batch", "-nx", "-q"])
        .args(["-ex", "set architecture i386:x86-64"])
        .args(["-ex", "set tcp connect-timeout 30"])
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")]);
    for cmd in cmds {
        c.args(["-ex", cmd]);
    }
    c.stdin(Stdio::null()).output().expect("gdb runs")
}

/// The values gdb printed with `p/x` (`$N = 0x…`), in order.
fn printed(o: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (lhs, v) = l.split_once(" = ")?;
            lhs.starts_with('$').then_some(())?;
            u64::from_str_radix(v.trim().strip_prefix("0x")?, 16).ok()
        })
        .collect()
}

/// The script: break at kmain, continue, print RIP, EAX, RSP, then step
/// 10 times printing the PC, then (`tail`) more.
fn script(kmain: u64, tail: &[&str]) -> Vec<String> {
    let mut s = vec![
        format!("break *{kmain:#x}"),
        "continue".into(),
        "p/x $rip".into(),
        "p/x $eax".into(),
        "p/x $esp".into(),
    ];
    for _ in 0..10 {
        s.push("stepi".into());
        s.push("p/x $pc".into());
    }
    s.extend(tail.iter().map(|t| t.to_string()));
    s
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn gdb_breaks_steps_reads_registers_and_continues_to_the_end_as_under_qemu() {
    let kernel = build_c("hello");
    let kmain = symbol(&kernel, "kmain");
    let cjemu = env!("CARGO_BIN_EXE_cjemu");

    // QEMU: the oracle for the registers and the PCs (then kill it).
    let port = free_port();
    let mut q = start(QEMU, &kernel, port, &[]);
    let qo = gdb(port, &script(kmain, &["kill"]));
    let _ = q.kill();
    let _ = q.wait();
    let want = printed(&qo);
    assert_eq!(want.len(), 13, "QEMU's session:\n{}", text(&qo));
    assert_eq!(want[0], kmain, "QEMU stopped at kmain");

    // cjemu: the same values, then `continue` runs to the guest's exit.
    let port = free_port();
    let child = start(cjemu, &kernel, port, &[]);
    let o = gdb(port, &script(kmain, &["continue"]));
    let done = child.wait_with_output().unwrap();
    let got = printed(&o);
    assert_eq!(got, want, "cjemu's session:\n{}", text(&o));
    let pcs = &got[3..];
    assert!(
        pcs.windows(2).all(|w| w[0] != w[1]),
        "each stepi moves: {pcs:x?}"
    );
    // gdb shows the exit code in octal: 0x21 = 041.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("exited with code 041"),
        "{}",
        text(&o)
    );
    assert_eq!(done.status.code(), Some(0x21), "status as without gdb");
}

#[test]
fn gdb_reads_memory_segment_bases_and_control_registers_as_under_qemu() {
    // Memory read through the page walk (paging is off in this guest: the
    // linear address is the physical one): the first bytes of kmain as
    // gdb reads them equal the ELF's bytes there, which QEMU also shows.
    let kernel = build_c("hello");
    let kmain = symbol(&kernel, "kmain");
    let cmds = [
        format!("break *{kmain:#x}"),
        "continue".into(),
        format!("p/x *(unsigned int *){kmain:#x}"),
        "p/x $fs_base".into(),
        "p/x $cs".into(),
        "p/x $cr0 & 1".into(),
        "monitor info registers".into(),
        "kill".into(),
    ];
    let port = free_port();
    let mut q = start(QEMU, &kernel, port, &[]);
    let qo = gdb(port, &cmds);
    let _ = q.kill();
    let _ = q.wait();
    let want = printed(&qo);
    assert_eq!(want.len(), 4, "QEMU's session:\n{}", text(&qo));
    assert_eq!(want[3], 1, "protected mode at kmain");

    let port = free_port();
    let mut c = start(env!("CARGO_BIN_EXE_cjemu"), &kernel, port, &[]);
    let o = gdb(port, &cmds);
    let done = c.wait().unwrap();
    assert_eq!(printed(&o), want, "cjemu's session:\n{}", text(&o));
    // `monitor CMD` reaches cjemu's monitor.
    let rip = format!("RIP={kmain:016x}");
    assert!(text(&o).contains(&rip), "{}", text(&o));
    assert!(done.success(), "gdb's kill ends the run with status 0");
}

/// The echo guest (PIT interrupts at ~1 kHz, no input) under gdb with a
/// breakpoint in its timer handler: hit twice, then deleted, then run to
/// the end. The one-instruction steps that breakpoints take, the pauses
/// and the resumes change nothing the guest sees: the same serial output
/// (tick counts and TSC values) and status as without gdb, which gdb sees
/// as the exit code.
#[test]
fn a_breakpoint_in_an_interrupt_handler_changes_nothing_the_guest_sees() {
    let kernel = build_c("rr_ticks_echo");
    let on_pit = symbol(&kernel, "on_pit");
    let base = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cjemu"));
        c.arg("-kernel")
            .arg(&kernel)
            .args(["-append", "ticks=50", "-rtc", "base=2020-01-01"]);
        c
    };
    let plain = base().output().unwrap();
    let out = String::from_utf8_lossy(&plain.stdout).into_owned();
    assert!(out.contains("end=ticks"), "{out}");

    let port = free_port();
    let child = base()
        .args(["-S", "-gdb", &format!("tcp::{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = gdb(
        port,
        &[
            format!("break *{on_pit:#x}"),
            "continue".into(),
            "p/x $rip".into(),
            "continue".into(),
            "p/x $rip".into(),
            "delete".into(),
            "continue".into(),
        ],
    );
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(printed(&o), [on_pit, on_pit], "{}", text(&o));
    assert_eq!(done.status.code(), plain.status.code(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        out,
        "the same serial output"
    );
    // gdb prints the code in octal with a leading 0.
    let code = format!("exited with code 0{:o}", plain.status.code().unwrap());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&code),
        "{}",
        text(&o)
    );
}

#[test]
fn attaching_pauses_a_running_guest_and_ctrl_c_stops_it_again() {
    use std::io::Write;
    let kernel = build_c("rr_ticks_echo");
    let port = free_port();
    // No -S: the guest runs (a long run: 10^6 timer ticks) until gdb comes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_cjemu"))
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", "ticks=1000000", "-serial", "null"])
        .args(["-gdb", &format!("tcp::{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = gdb_remote::Rsp::connect(port, || child.try_wait().unwrap().is_none());
    r.send("?");
    let stop = r.packet();
    assert!(stop.starts_with('S') || stop.starts_with('T'), "{stop}");
    r.send("c");
    // Let the guest run a little (the stop is the same either way; this
    // makes the stub see Ctrl-C while running, polled from the run loop).
    std::thread::sleep(std::time::Duration::from_millis(100));
    r.s.write_all(&[0x03]).unwrap();
    // SIGINT, as QEMU reports an interrupt.
    let stop = r.packet();
    assert!(stop.starts_with("S02") || stop.starts_with("T02"), "{stop}");
    r.send("k");
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "kill ends the run with 0");
}

/// The echo guest (`tests/kernels/rr_ticks_echo.c`, 40 PIT ticks) with
/// `extra` options.
fn echo(kernel: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cjemu"));
    c.arg("-kernel")
        .arg(kernel)
        .args(["-append", "ticks=40"])
        .args(extra);
    c
}

/// The echo guest recorded (`--stats`) into `rec.log` of a fresh
/// directory: the kernel, the directory and the recording's output.
fn recorded_echo(name: &str, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf, Output) {
    let kernel = build_c("rr_ticks_echo");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let rec = echo(&kernel, extra)
        .arg("--record")
        .arg(dir.join("rec.log"))
        .arg("--stats")
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0x67), "{rec:?}");
    (kernel, dir, rec)
}

/// `icount: N` from `--stats`.
fn stat_icount(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("icount: ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no icount in {stderr}"))
}

/// `icount N` from the monitor's `info replay` answers gdb printed (on
/// stderr in batch mode), in order.
fn icounts(o: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("icount ")?.trim().parse().ok())
        .collect()
}

/// Reverse debugging in a replay of the echo guest (PIT interrupts at
/// ~1 kHz): at the second hit of a breakpoint in the timer handler, step
/// forward 10 times recording the PCs, `reverse-stepi` 10 times, which
/// must visit them in reverse and end at the same instruction count;
/// `reverse-continue` goes back to the first hit (its count, as seen going
/// forward), once more to the start of the history ("No more
/// reverse-execution history"), and the replay then runs forward to the
/// recording's end: same status and the same serial output, shown once.
/// Snapshots every 700 instructions make the travels start from several
/// of them. Without a replay, reverse execution is not offered.
#[test]
fn reverse_stepi_and_reverse_continue_in_a_replay() {
    let extra = ["-rtc", "base=2020-01-01"];
    let (kernel, dir, rec) = recorded_echo("gdb-reverse", &extra);
    let on_pit = symbol(&kernel, "on_pit");
    let log = dir.join("rec.log");
    let base = || echo(&kernel, &extra);

    let port = free_port();
    let child = base()
        .arg("--replay")
        .arg(&log)
        .args(["--snapshot-every", "700", "--snapshot-dir"])
        .arg(dir.join("snaps"))
        .args(["-S", "-gdb", &format!("tcp::{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cmds: Vec<String> = vec![
        format!("break *{on_pit:#x}"),
        "continue".into(),
        "monitor info replay".into(),
        "continue".into(),
        "monitor info replay".into(),
        "p/x $pc".into(),
    ];
    for _ in 0..10 {
        cmds.push("stepi".into());
        cmds.push("p/x $pc".into());
    }
    for _ in 0..10 {
        cmds.push("reverse-stepi".into());
        cmds.push("p/x $pc".into());
    }
    cmds.extend(
        [
            "monitor info replay",
            "reverse-continue",
            "p/x $pc",
            "monitor info replay",
            "reverse-continue",
            "monitor info replay",
            "delete",
            // To the end of the recording, where the replay pauses (gdb
            // says there is no more history that way); back one
            // instruction, then forward to the end and past it.
            "continue",
            "monitor info replay",
            "reverse-stepi",
            "monitor info replay",
            "continue",
            "continue",
        ]
        .map(String::from),
    );
    let o = gdb(port, &cmds);
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    let pcs = printed(&o);
    assert_eq!(pcs.len(), 22, "{}", text(&o));
    assert_eq!(pcs[0], on_pit, "{}", text(&o));
    let forward = &pcs[0..11];
    let back: Vec<u64> = pcs[11..21].iter().rev().copied().collect();
    assert_eq!(
        &back[..],
        &forward[..10],
        "reverse-stepi visits the PCs in reverse"
    );
    assert_eq!(pcs[21], on_pit, "reverse-continue stops at the breakpoint");
    let counts = icounts(&o);
    assert_eq!(counts.len(), 7, "{}", text(&o));
    let total = stat_icount(&String::from_utf8_lossy(&rec.stderr));
    assert_eq!(counts[5], total, "paused at the recording's end");
    assert_eq!(counts[6], total - 1, "one back from the end");
    let (first_hit, second_hit) = (counts[0], counts[1]);
    assert!(first_hit < second_hit);
    assert_eq!(counts[2], second_hit, "10 steps forward, 10 back");
    assert_eq!(counts[3], first_hit, "reverse-continue finds the first hit");
    assert_eq!(counts[4], 0, "then the start of the history");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.matches("No more reverse-execution history").count(),
        3,
        "the start, then the end twice: {}",
        text(&o)
    );
    let code = format!("exited with code 0{:o}", rec.status.code().unwrap());
    assert!(out.contains(&code), "{}", text(&o));
    assert_eq!(done.status.code(), rec.status.code(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&rec.stdout),
        "the serial output once, as recorded"
    );

    // Not replaying: gdb is not offered reverse execution.
    let port = free_port();
    let mut child = base()
        .args(["-S", "-gdb", &format!("tcp::{port}")])
        .args(["-serial", "null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let o = gdb(port, &["reverse-stepi".into(), "kill".into()]);
    let _ = child.wait();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not support"),
        "{}",
        text(&o)
    );
}

/// The lines gdb prints for a watchpoint hit (`Old value = …`,
/// `New value = …`, `Value = …`), in order.
fn watch_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("Old value") || l.starts_with("New value") || l.starts_with("Value")
        })
        .map(String::from)
        .collect()
}

/// `watch` and `rwatch` on the echo guest's tick counter: the same stops,
/// values and PCs as QEMU's (its PIT runs on another clock, but the
/// counter's values and the instructions touching it are the guest's).
#[test]
fn watchpoints_stop_after_the_access_as_under_qemu() {
    let kernel = build_c("rr_ticks_echo");
    let ticks = symbol(&kernel, "pit_ticks");
    let var = format!("*(unsigned int *){ticks:#x}");
    let cmds = [
        format!("watch {var}"),
        "continue".into(),
        "p/x $pc".into(),
        "continue".into(),
        "p/x $pc".into(),
        format!("rwatch {var}"),
        "delete 1".into(),
        "continue".into(),
        "p/x $pc".into(),
        "kill".into(),
    ];
    let run = |program: &str| {
        let port = free_port();
        let mut c = start(program, &kernel, port, &["-append", "ticks=40"]);
        let o = gdb(port, &cmds);
        let _ = c.kill();
        let _ = c.wait();
        o
    };
    let q = run(QEMU);
    let want = (printed(&q), watch_lines(&q));
    assert_eq!(want.0.len(), 3, "QEMU's session:\n{}", text(&q));
    assert_eq!(want.1.len(), 5, "QEMU's session:\n{}", text(&q));
    let o = run(env!("CARGO_BIN_EXE_cjemu"));
    assert_eq!(
        (printed(&o), watch_lines(&o)),
        want,
        "cjemu's session:\n{}",
        text(&o)
    );
}

/// `reverse-continue` with a write watchpoint in a replay stops before
/// each earlier write, newest first (gdb shows the counter going back
/// 3 → 2 → 1 → 0, at the writing instruction), then at the start.
#[test]
fn reverse_continue_stops_at_earlier_writes_to_a_watched_variable() {
    let extra = ["-serial", "null"];
    let (kernel, dir, _) = recorded_echo("gdb-reverse-watch", &extra);
    let ticks = symbol(&kernel, "pit_ticks");
    let log = dir.join("rec.log");
    let port = free_port();
    let child = echo(&kernel, &extra)
        .arg("--replay")
        .arg(&log)
        .args([
            "--snapshot-every",
            "600",
            "-S",
            "-gdb",
            &format!("tcp::{port}"),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cmds = vec![format!("watch *(unsigned int *){ticks:#x}")];
    for _ in 0..3 {
        cmds.push("continue".into());
        cmds.push("p/x $pc".into());
    }
    for _ in 0..4 {
        cmds.push("reverse-continue".into());
        cmds.push("p/x $pc".into());
    }
    cmds.push("kill".into());
    let o = gdb(port, &cmds);
    let _ = child.wait_with_output();
    let pcs = printed(&o);
    assert_eq!(pcs.len(), 7, "{}", text(&o));
    let after = pcs[0];
    assert!(pcs[..3].iter().all(|&p| p == after), "{}", text(&o));
    let write = pcs[3];
    assert!(
        write < after && after - write <= 15,
        "the writing instruction: {}",
        text(&o)
    );
    assert_eq!(&pcs[3..6], &[write; 3], "{}", text(&o));
    let lines = watch_lines(&o);
    let news: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("New value = "))
        .collect();
    assert_eq!(news, ["1", "2", "3", "2", "1", "0"], "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No more reverse-execution history"),
        "{}",
        text(&o)
    );
}
