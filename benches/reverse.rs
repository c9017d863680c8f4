//! The time of a gdb `reverse-stepi` 10^8 instructions after the nearest
//! snapshot (issue #8's closing figure).
//!
//! The integer-loop guest (`benches/guests/intloop.c`, ~1.3·10^8
//! instructions) is recorded, then replayed under the gdb stub with
//! snapshots kept every 10^9 instructions, so the only one before the
//! target is the replay's start (count 0). Over the gdb remote protocol
//! (a small client here, so the time is the stub's, not gdb's), the bench
//! goes forward to count 10^8 + 1 (`monitor replay-seek`), then times one
//! `bs` packet (reverse step): it loads the snapshot at 0 and replays
//! 10^8 instructions to count 10^8. Also shown: the forward seek's time
//! (the same instructions, run once without a snapshot load) and the run
//! in reverse again from the same place (a second `bs`, now to 10^8 − 1).
//!
//! `cargo bench --bench reverse`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{guest_args, guest_kernel};
#[path = "../tests/support/gdb_remote.rs"]
mod gdb_remote;
use gdb_remote::Rsp;

/// Instructions between the snapshot and the reverse step's target.
const DISTANCE: u64 = 100_000_000;
/// intloop size: ~22,000 instructions per unit, so ~1.3·10^8 in all.
const SIZE: u64 = 6_000;

/// The count `info replay` shows.
fn icount(g: &mut Rsp) -> u64 {
    let info = g.monitor("info replay");
    info.lines()
        .find_map(|l| l.strip_prefix("icount ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no icount in {info}"))
}

/// A reverse step (`bs`); its wall time.
fn reverse_step(g: &mut Rsp) -> Duration {
    let t = Instant::now();
    g.send("bs");
    let stop = g.packet();
    let dt = t.elapsed();
    assert!(stop.starts_with('S') || stop.starts_with('T'), "{stop}");
    dt
}

fn main() {
    let cjemu = env!("CARGO_BIN_EXE_cjemu");
    let kernel = guest_kernel("intloop");
    let dir = std::env::temp_dir().join(format!("cjemu-bench-reverse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("intloop.rr");
    let rec = Command::new(cjemu)
        .args(guest_args(&kernel, SIZE, &["-serial", "null", "--stats"]))
        .arg("--record")
        .arg(&log)
        .output()
        .expect("cjemu runs");
    assert_eq!(rec.status.code(), Some(0x21), "{rec:?}");

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(cjemu)
        .args(guest_args(&kernel, SIZE, &["-serial", "null"]))
        .arg("--replay")
        .arg(&log)
        .args(["--snapshot-every", "1000000000", "-S", "-gdb"])
        .arg(format!("tcp::{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("cjemu runs");
    let mut g = Rsp::connect(port, || child.try_wait().unwrap().is_none());
    g.send("?");
    g.packet();
    let target = DISTANCE + 1;
    let t = Instant::now();
    g.monitor(&format!("replay-seek {target}"));
    assert_eq!(icount(&mut g), target, "the forward seek arrived");
    let forward = t.elapsed();
    let back = reverse_step(&mut g);
    assert_eq!(icount(&mut g), DISTANCE, "one instruction back");
    let again = reverse_step(&mut g);
    assert_eq!(icount(&mut g), DISTANCE - 1);
    let info = g.monitor("info replay");
    g.send("k");
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!("reverse-stepi {DISTANCE} instructions after the nearest snapshot (intloop, JIT)");
    println!("  forward seek 0 -> {target}:          {forward:>10.3?}");
    println!("  reverse-stepi {target} -> {DISTANCE}:   {back:>10.3?}");
    println!("  reverse-stepi again:              {again:>10.3?}");
    print!(
        "{}",
        info.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
}
