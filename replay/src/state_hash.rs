//! A stable 64-bit hash of machine state, for `--stats`, replay checkpoints
//! and comparing runs.
//!
//! The hash is XXH3-64 with a fixed seed over a byte stream that each
//! [`StateHash`] implementation writes in a fixed order, every integer
//! little-endian. It depends only on the values written, never on the host,
//! the engine (interpreter or JIT), the run's history or the time: two
//! machines in the same architectural state hash to the same value.
//!
//! Implementations must hash architectural state only: registers (with
//! lazily kept flags materialised), memory, device registers. Never caches
//! (TLB, decoded blocks), counters of the emulator (icount, budget) or host
//! pointers. Each implementation documents its field order; changing it
//! changes every hash, which is allowed but must be deliberate.

use xxhash_rust::xxh3::Xxh3;

/// The fixed seed: part of the hash's definition, never change it silently.
pub const STATE_HASH_SEED: u64 = 0x636a_656d_755f_7631; // "cjemu_v1"

/// Streaming hasher for machine state.
#[derive(Clone)]
pub struct StateHasher {
    inner: Xxh3,
}

impl Default for StateHasher {
    fn default() -> Self {
        StateHasher::new()
    }
}

impl StateHasher {
    /// A hasher with the fixed seed [`STATE_HASH_SEED`].
    pub fn new() -> StateHasher {
        StateHasher {
            inner: Xxh3::with_seed(STATE_HASH_SEED),
        }
    }

    /// Feed raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    /// Feed one byte.
    pub fn write_u8(&mut self, v: u8) {
        self.write(&[v]);
    }

    /// Feed a 16-bit value, little-endian.
    pub fn write_u16(&mut self, v: u16) {
        self.write(&v.to_le_bytes());
    }

    /// Feed a 32-bit value, little-endian.
    pub fn write_u32(&mut self, v: u32) {
        self.write(&v.to_le_bytes());
    }

    /// Feed a 64-bit value, little-endian.
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    /// Feed a 128-bit value, little-endian.
    pub fn write_u128(&mut self, v: u128) {
        self.write(&v.to_le_bytes());
    }

    /// Feed a section tag: a short name that keeps, for example, an empty
    /// device from hashing like a missing one.
    pub fn write_tag(&mut self, tag: &str) {
        self.write_u64(tag.len() as u64);
        self.write(tag.as_bytes());
    }

    /// The hash of everything fed so far (the hasher can keep going).
    pub fn finish(&self) -> u64 {
        self.inner.digest()
    }
}

/// Something whose architectural state can be hashed.
pub trait StateHash {
    /// Feed this object's architectural state into `h`, in a fixed order.
    fn hash_state(&self, h: &mut StateHasher);

    /// The hash of this object alone.
    fn state_hash(&self) -> u64 {
        let mut h = StateHasher::new();
        self.hash_state(&mut h);
        h.finish()
    }
}

impl<T: StateHash + ?Sized> StateHash for &T {
    fn hash_state(&self, h: &mut StateHasher) {
        (**self).hash_state(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair(u32, u64);
    impl StateHash for Pair {
        fn hash_state(&self, h: &mut StateHasher) {
            h.write_u32(self.0);
            h.write_u64(self.1);
        }
    }

    #[test]
    fn same_state_same_hash_different_state_different_hash() {
        assert_eq!(Pair(1, 2).state_hash(), Pair(1, 2).state_hash());
        assert_ne!(Pair(1, 2).state_hash(), Pair(1, 3).state_hash());
        assert_ne!(Pair(1, 2).state_hash(), Pair(2, 1).state_hash());
    }

    #[test]
    fn hash_is_xxh3_with_the_fixed_seed_over_little_endian_bytes() {
        // The definition, checked against the crate's one-shot function:
        // a streamed u32 + u64 equals XXH3 over their 12 LE bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7u32.to_le_bytes());
        bytes.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        let want = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, STATE_HASH_SEED);
        assert_eq!(Pair(7, 0x1122_3344_5566_7788).state_hash(), want);
    }

    #[test]
    fn chunking_does_not_change_the_hash() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut a = StateHasher::new();
        a.write(&data);
        let mut b = StateHasher::new();
        for chunk in data.chunks(333) {
            b.write(chunk);
        }
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn tags_separate_sections() {
        let mut a = StateHasher::new();
        a.write_tag("ab");
        a.write_tag("c");
        let mut b = StateHasher::new();
        b.write_tag("a");
        b.write_tag("bc");
        assert_ne!(a.finish(), b.finish());
    }
}
