// Memory layout of the built-in demo guest. Shared by `build.rs` (which
// assembles the guest) and `src/demo.rs` (which loads it and reads the
// results), through `include!`, so the two can never disagree.

/// Guest-physical address the demo image (a multiboot kernel: header
/// first) is loaded at.
pub const DEMO_LOAD: u64 = 0x10_0000;
/// The multiboot entry point: the 32-bit code right after the 32-byte header.
pub const DEMO_ENTRY32: u64 = DEMO_LOAD + 0x20;
/// The 64-bit code, entered by the far jump into long mode.
pub const DEMO_LONG: u64 = DEMO_LOAD + 0x400;
/// Top of the guest's stack (it grows down, below the results).
pub const DEMO_STACK: u64 = 0x18_0000;
/// Where the guest writes its results: four u64 (count, sum, prime hash,
/// sieve checksum), then the magic [`DEMO_DONE`].
pub const DEMO_RESULT: u64 = 0x18_0000;
/// The page tables the guest builds: PML4, PDPT, PD (4 KiB each).
pub const DEMO_PAGING: u64 = 0x19_0000;
/// The GDT the guest builds (three descriptors), then its pseudo-descriptor.
pub const DEMO_GDT: u64 = DEMO_PAGING + 0x3000;
/// Start of the sieve array (one byte per number: 0 = prime candidate).
pub const DEMO_SIEVE: u64 = 0x20_0000;
/// The sieve counts primes below this bound.
pub const DEMO_LIMIT: u64 = 100_000;
/// Smallest integer whose square reaches [`DEMO_LIMIT`]: crossing-out stops there.
pub const DEMO_SQRT_CEIL: u64 = 317;
/// Initial value of the djb2-style hash over the primes.
pub const DEMO_HASH_INIT: u64 = 5381;
/// Written after the results, so a run that stopped early is recognised.
pub const DEMO_DONE: u64 = 0x454e_4f44_4f4d_4544; // "DEMODONE"
/// RAM the demo needs: the sieve, the page tables and a little stack.
pub const DEMO_MIN_RAM: u64 = 4 << 20;
