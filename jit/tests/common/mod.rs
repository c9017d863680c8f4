//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::Engine;

/// xorshift64*: a small deterministic generator for test inputs.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A random bit.
    pub fn bit(&mut self) -> bool {
        self.next() & 1 != 0
    }
    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// An engine with 4 MiB of RAM in flat 64-bit mode (page tables at
/// `tables`), `code` placed and entered at `code_at`, RSP = `stack`, and
/// exceptions returned to the test instead of delivered.
pub fn flat_engine(code: &[u8], code_at: u64, tables: u64, stack: u64) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.exceptions_exit = true;
    e.mem_mut()
        .write_phys(GuestPhysAddr(code_at), code)
        .unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(tables), code_at, stack).unwrap();
    e
}
