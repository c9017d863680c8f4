//! Bytes from the host for a serial port: stdin (`-serial stdio`, also a
//! pipe) or a file (`--serial-input FILE`).
//!
//! The bytes wait here until the UART can take them (its receive FIFO has
//! room); the run loop hands them over at its service points, which are at
//! the same instruction counts on every run. A file's bytes are all there
//! from the start, so a run fed from a file is deterministic. Stdin's
//! arrive when the host delivers them: that timing is an input of the run
//! (the record/replay log keeps it). End of input is not a shutdown: the
//! guest simply gets no more bytes.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// Host input for one serial port.
#[derive(Debug, Default)]
pub struct SerialInput {
    /// Received from the host, not yet handed to the UART.
    pending: VecDeque<u8>,
    /// The reader thread of a live source, until it reports the end.
    live: Option<Receiver<Vec<u8>>>,
}

impl SerialInput {
    /// No input.
    pub fn none() -> SerialInput {
        SerialInput::default()
    }

    /// These bytes, all available at once (a file).
    pub fn from_bytes(bytes: Vec<u8>) -> SerialInput {
        SerialInput {
            pending: bytes.into(),
            live: None,
        }
    }

    /// The process's stdin, read by a background thread (it blocks in
    /// `read`; the process exits without waiting for it).
    pub fn stdin() -> SerialInput {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("serial-stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.send(buf[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            log::warn!("serial input from stdin: {e}");
                            break;
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => SerialInput {
                pending: VecDeque::new(),
                live: Some(rx),
            },
            Err(e) => {
                log::warn!("cannot read stdin for the serial port: {e}");
                SerialInput::none()
            }
        }
    }

    /// Collect what a live source delivered since the last call.
    pub fn poll(&mut self) {
        while let Some(rx) = &self.live {
            match rx.try_recv() {
                Ok(bytes) => self.pending.extend(bytes),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.live = None,
            }
        }
    }

    /// Wait up to `timeout` (forever with `None`) for a live source to
    /// deliver. True if bytes are pending afterwards.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        self.poll();
        if !self.pending.is_empty() {
            return true;
        }
        let Some(rx) = &self.live else {
            if let Some(t) = timeout {
                std::thread::sleep(t);
            }
            return false;
        };
        let got = match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(bytes) => self.pending.extend(bytes),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.live = None,
        }
        !self.pending.is_empty()
    }

    /// Bytes are waiting for the UART.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// More bytes may still arrive from the host.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The bytes received and not yet handed over (a snapshot keeps them).
    pub fn pending_bytes(&self) -> Vec<u8> {
        self.pending.iter().copied().collect()
    }

    /// Replace the pending bytes (loading a snapshot); a live source stays.
    pub fn set_pending(&mut self, bytes: &[u8]) {
        self.pending = bytes.iter().copied().collect();
    }

    /// Take up to `max` pending bytes, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.pending.len());
        self.pending.drain(..n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_input_from_bytes_hands_them_out_in_order_and_is_not_live() {
        let mut s = SerialInput::from_bytes(b"abc".to_vec());
        assert!(s.has_pending() && !s.is_live());
        assert_eq!(s.take(2), b"ab");
        assert_eq!(s.take(0), b"");
        assert_eq!(s.take(9), b"c");
        assert!(!s.has_pending());
        assert!(!s.wait(Some(Duration::ZERO)));
    }

    #[test]
    fn serial_input_live_channel_delivers_then_ends() {
        let (tx, rx) = mpsc::channel();
        let mut s = SerialInput {
            pending: VecDeque::new(),
            live: Some(rx),
        };
        s.poll();
        assert!(!s.has_pending() && s.is_live());
        tx.send(b"hi".to_vec()).unwrap();
        assert!(s.wait(Some(Duration::from_secs(5))));
        drop(tx);
        s.poll();
        assert!(!s.is_live(), "a closed source is not live");
        assert_eq!(s.take(10), b"hi", "bytes survive the end of the source");
    }
}
