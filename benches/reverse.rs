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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{guest_args, guest_kernel};

/// Instructions between the snapshot and the reverse step's target.
const DISTANCE: u64 = 100_000_000;
/// intloop size: ~22,000 instructions per unit, so ~1.3·10^8 in all.
const SIZE: u64 = 6_000;

/// A minimal gdb remote-protocol client (acknowledged mode).
struct Rsp {
    s: TcpStream,
}

impl Rsp {
    fn connect(port: u16) -> Rsp {
        for _ in 0..1000 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                return Rsp { s };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the gdb stub never listened on {port}");
    }

    fn byte(&mut self) -> u8 {
        let mut b = [0u8; 1];
        self.s.read_exact(&mut b).expect("the stub answers");
        b[0]
    }

    fn packet(&mut self) -> String {
        while self.byte() != b'$' {}
        let mut p = Vec::new();
        loop {
            match self.byte() {
                b'#' => break,
                b => p.push(b),
            }
        }
        self.byte();
        self.byte();
        self.s.write_all(b"+").unwrap();
        String::from_utf8_lossy(&p).into_owned()
    }

    fn send(&mut self, payload: &str) {
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        self.s
            .write_all(format!("${payload}#{sum:02x}").as_bytes())
            .unwrap();
        assert_eq!(self.byte(), b'+', "acknowledged");
    }

    /// `monitor CMD`: the console output.
    fn monitor(&mut self, cmd: &str) -> String {
        let hex: String = cmd.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("qRcmd,{hex}"));
        let mut out = String::new();
        loop {
            let p = self.packet();
            if p == "OK" {
                return out;
            }
            match p.strip_prefix('O') {
                Some(h) if !h.is_empty() => {
                    let bytes: Vec<u8> = (0..h.len() / 2)
                        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => panic!("monitor {cmd}: {p}"),
            }
        }
    }

    /// The count `info replay` shows.
    fn icount(&mut self) -> u64 {
        let info = self.monitor("info replay");
        info.lines()
            .find_map(|l| l.strip_prefix("icount ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no icount in {info}"))
    }

    /// A reverse step; its wall time.
    fn reverse_step(&mut self) -> Duration {
        let t = Instant::now();
        self.send("bs");
        let stop = self.packet();
        let dt = t.elapsed();
        assert!(stop.starts_with('S') || stop.starts_with('T'), "{stop}");
        dt
    }
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
    let mut g = Rsp::connect(port);
    g.send("?");
    g.packet();
    let target = DISTANCE + 1;
    let t = Instant::now();
    g.monitor(&format!("replay-seek {target}"));
    assert_eq!(g.icount(), target, "the forward seek arrived");
    let forward = t.elapsed();
    let back = g.reverse_step();
    assert_eq!(g.icount(), DISTANCE, "one instruction back");
    let again = g.reverse_step();
    assert_eq!(g.icount(), DISTANCE - 1);
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
