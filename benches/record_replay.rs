//! What recording costs: for a compute-bound guest and for a timer-driven
//! guest with serial input, the same run plain, recorded and replayed.
//!
//! `cargo bench --bench record_replay`. Spawns the bench-profile cjemu on
//! two test kernels (built as the tests build them):
//! - compute: `timer_bench` without a timer (a 12-instruction ALU loop);
//! - timer + serial: `rr_ticks_echo` with a 1 kHz PIT tick and COM1 fed from
//!   a file (`--serial-input`), 20000 ticks, idle time skipped.
//!
//! Both with `--icount shift=0,sleep=off`. Per case: wall time of each of
//! plain, `--record` and `--replay` (best of 3), the recording's overhead,
//! replay speed against recording, the log's size and its bytes per second
//! of guest (virtual) time, from `--stats`.

#[path = "../tests/kernels/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn stat(stderr: &str, key: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .and_then(|v| v.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no '{key}:' in --stats output:\n{stderr}"))
}

/// Best wall time of `RUNS` runs, and the last run's stderr.
fn best(kernel: &Path, extra: &[&str], status: i32, out: &Path) -> (Duration, String) {
    let mut best = Duration::MAX;
    let mut err = String::new();
    for _ in 0..RUNS {
        let a = harness::args(kernel, extra);
        let t0 = Instant::now();
        let r = harness::run(env!("CARGO_BIN_EXE_cjemu"), &a, out);
        best = best.min(t0.elapsed());
        assert_eq!(r.status, status, "{extra:?}: {}", r.stderr);
        err = r.stderr;
    }
    (best, err)
}

fn case(name: &str, kernel: &Path, extra: &[&str], status: i32) {
    let dir = kernel.parent().unwrap();
    let log: PathBuf = dir.join(format!("{name}.rr"));
    let log_s = log.to_string_lossy().to_string();
    let out = dir.join(format!("{name}-rr-bench.out"));
    let with = |more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let strs = |v: &[String]| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let plain_args = with(&["--stats"]);
    let rec_args = with(&["--stats", "--record", &log_s]);
    let rep_args = with(&["--stats", "--replay", &log_s]);
    let run = |v: &Vec<String>| {
        let joined = strs(v);
        let args: Vec<&str> = joined.split('\u{0}').collect();
        best(kernel, &args, status, &out)
    };
    let (plain, e0) = run(&plain_args);
    let (rec, e1) = run(&rec_args);
    let (rep, e2) = run(&rep_args);
    let bytes = std::fs::metadata(&log).unwrap().len();
    let guest_s = stat(&e1, "virtual time") / 1e9;
    let icount = stat(&e0, "icount");
    assert_eq!(icount, stat(&e2, "icount"), "replay ran as far");
    println!(
        "rr {name:14} plain {:7.3} s | record {:7.3} s ({:+.1}%) | replay {:7.3} s \
         ({:.2}x record's speed) | log {bytes} B for {guest_s:.3} s of guest time = {:.0} B/s \
         | {:.0}M instructions",
        plain.as_secs_f64(),
        rec.as_secs_f64(),
        100.0 * (rec.as_secs_f64() / plain.as_secs_f64() - 1.0),
        rep.as_secs_f64(),
        rec.as_secs_f64() / rep.as_secs_f64(),
        bytes as f64 / guest_s,
        icount / 1e6,
    );
}

fn main() {
    let icount = ["--icount", "shift=0,sleep=off"];
    let compute = harness::build_c("timer_bench");
    let mut extra = icount.to_vec();
    extra.extend(["--accel", "jit", "-append", "n=40000000 hz=0"]);
    case("compute", &compute, &extra, (0x35 << 1) | 1);

    let echo = harness::build_c("rr_ticks_echo");
    let input = harness::data_file("rr_ticks_echo", "typed.txt", b"the quick brown fox\n");
    let input_s = input.to_string_lossy().to_string();
    let mut extra = icount.to_vec();
    extra.extend(["-append", "ticks=20000", "--serial-input", &input_s]);
    case("timer+serial", &echo, &extra, (0x33 << 1) | 1);
}
