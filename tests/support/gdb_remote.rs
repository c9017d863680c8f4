//! A bare gdb remote-protocol client (acknowledged mode), for what gdb in
//! batch mode cannot do on cue (Ctrl-C while the guest runs) and for timing
//! the stub itself (`benches/reverse.rs`). Shared by path by the tests and
//! the benches that need it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Rsp {
    pub s: TcpStream,
}

impl Rsp {
    /// Connect to the stub on `port`, retrying while `alive()` says the
    /// emulator still runs.
    pub fn connect(port: u16, mut alive: impl FnMut() -> bool) -> Rsp {
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                return Rsp { s };
            }
            assert!(alive(), "the emulator ended before its gdb stub listened");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn byte(&mut self) -> u8 {
        let mut b = [0u8; 1];
        self.s.read_exact(&mut b).expect("the stub answers");
        b[0]
    }

    /// The next packet's payload (acknowledged).
    pub fn packet(&mut self) -> String {
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

    /// Send a packet and wait for its acknowledgement.
    pub fn send(&mut self, payload: &str) {
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        self.s
            .write_all(format!("${payload}#{sum:02x}").as_bytes())
            .unwrap();
        assert_eq!(self.byte(), b'+', "acknowledged");
    }

    /// `monitor CMD` (qRcmd): the console output.
    pub fn monitor(&mut self, cmd: &str) -> String {
        let hex: String = cmd.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("qRcmd,{hex}"));
        let mut out = String::new();
        loop {
            let p = self.packet();
            if p == "OK" {
                return out;
            }
            let Some(h) = p.strip_prefix('O') else {
                panic!("monitor {cmd}: {p}");
            };
            let bytes: Vec<u8> = (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}
