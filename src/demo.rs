//! The built-in demo guest: what `cjemu` runs without `-kernel`.
//!
//! A flat 64-bit program assembled at build time by `build.rs` (see there
//! for what it does): a sieve of Eratosthenes below 100000, then the count,
//! sum and a hash of the primes, and a checksum over the sieve. After it
//! halts, cjemu reads the results from guest RAM, checks them against the
//! same computation done natively, and prints them on stderr. A mismatch is
//! a bug in cjemu (status 6). (When the serial port exists, the demo will
//! print through it.)

use crate::status::Error;

include!("demo_layout.rs");

/// The guest's machine code, loaded and entered at [`DEMO_LOAD`].
pub const DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo_guest.bin"));

/// What the demo computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoResult {
    /// Primes below [`DEMO_LIMIT`].
    pub count: u64,
    /// Their sum.
    pub sum: u64,
    /// `h = h * 33 ^ p` over the primes in increasing order, from [`DEMO_HASH_INIT`].
    pub prime_hash: u64,
    /// Fletcher-style `b ^ a` over the sieve bytes (1 = composite).
    pub checksum: u64,
}

/// The demo's computation done natively, as the guest does it.
pub fn reference() -> DemoResult {
    let n = DEMO_LIMIT as usize;
    let mut composite = vec![0u8; n];
    for i in 2..DEMO_SQRT_CEIL as usize {
        if composite[i] == 0 {
            for j in (2 * i..n).step_by(i) {
                composite[j] = 1;
            }
        }
    }
    let mut r = DemoResult {
        count: 0,
        sum: 0,
        prime_hash: DEMO_HASH_INIT,
        checksum: 0,
    };
    for (p, &c) in composite.iter().enumerate().skip(2) {
        if c == 0 {
            r.count += 1;
            r.sum += p as u64;
            r.prime_hash = r.prime_hash.wrapping_mul(33) ^ p as u64;
        }
    }
    let (mut a, mut b) = (0u64, 0u64);
    for &c in &composite {
        a = a.wrapping_add(c as u64);
        b = b.wrapping_add(a);
    }
    r.checksum = b ^ a;
    r
}

/// Read the results the guest left at [`DEMO_RESULT`].
pub fn read_result(e: &cjemu_jit::Engine) -> Result<DemoResult, Error> {
    let mut buf = [0u8; 40];
    e.mem()
        .read_phys(cjemu_jit::memory::GuestPhysAddr(DEMO_RESULT), &mut buf)
        .map_err(|err| Error::Internal(format!("reading the demo's results: {err}")))?;
    let word = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    if word(4) != DEMO_DONE {
        return Err(Error::Internal(
            "the demo guest stopped before storing its results".into(),
        ));
    }
    Ok(DemoResult {
        count: word(0),
        sum: word(1),
        prime_hash: word(2),
        checksum: word(3),
    })
}

/// Check the guest's results against [`reference`] and describe them.
pub fn report(got: &DemoResult) -> Result<String, Error> {
    let want = reference();
    if *got != want {
        return Err(Error::Internal(format!(
            "the demo guest computed {got:?}, natively computed {want:?}"
        )));
    }
    Ok(format!(
        "the demo guest's results ({} primes below {DEMO_LIMIT}) match the host's computation",
        got.count
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::load_flat;
    use cjemu_jit::{Engine, Exit};

    #[test]
    fn reference_matches_known_prime_facts() {
        // pi(10^5) = 9592, and the primes below 10^5 sum to 454396537.
        let r = reference();
        assert_eq!(r.count, 9592);
        assert_eq!(r.sum, 454_396_537);
    }

    #[test]
    fn the_guest_computes_what_the_host_computes() {
        let mut e = Engine::new(DEMO_MIN_RAM).unwrap();
        load_flat(&mut e, DEMO_GUEST, DEMO_LOAD, DEMO_LOAD).unwrap();
        let mut exit = Exit::BudgetExhausted;
        // Every serial port access returns to the caller (NoIo: LSR reads
        // all-ones, so the guest never waits).
        for _ in 0..100_000 {
            exit = e.run(1_000_000);
            if !matches!(exit, Exit::BudgetExhausted | Exit::Device) {
                break;
            }
        }
        assert_eq!(exit, Exit::Halted);
        assert_eq!(e.cpu().rflags() & (1 << 9), 0, "powers off: HLT with IF=0");
        let got = read_result(&e).unwrap();
        assert_eq!(got, reference());
        assert!(report(&got).unwrap().contains("9592 primes"));
    }

    #[test]
    fn a_wrong_result_is_an_internal_error() {
        let mut r = reference();
        r.checksum ^= 1;
        assert_eq!(report(&r).unwrap_err().status(), 6);
    }

    #[test]
    fn unfinished_demo_is_detected() {
        let e = Engine::new(DEMO_MIN_RAM).unwrap();
        assert!(read_result(&e).is_err());
    }
}
