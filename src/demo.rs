//! The built-in demo guest: what `cjemu` runs without `-kernel`.
//!
//! A multiboot kernel assembled at build time by `build.rs` (see there for
//! what it does) and booted by the same loader as `-kernel` files ([`load`]):
//! it starts in 32-bit protected mode, switches to long mode itself (page
//! tables, GDT, PAE, EFER.LME, paging, far jump), runs a sieve of
//! Eratosthenes below 100000, computes the count, sum and a hash of the
//! primes and a checksum over the sieve, prints a report over COM1
//! ([`expected_serial`] is that text) and powers off. cjemu then checks that
//! the CPU is in long mode, reads the results from guest RAM and compares
//! them with the same computation done natively; a mismatch is a bug in
//! cjemu (status 6).

use crate::loader::multiboot;
use crate::status::Error;
use cjemu_jit::state::efer;

include!("demo_layout.rs");

/// The guest: a multiboot kernel image (a.out-kludge header) loaded at
/// [`DEMO_LOAD`], entered at [`DEMO_ENTRY32`].
pub const DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo_guest.bin"));

/// The "kernel path" that starts the demo's multiboot command line.
pub const DEMO_NAME: &str = "cjemu-demo";

/// Boot the demo as a multiboot kernel: the loader writes it and the boot
/// information and sets up the 32-bit entry state, as for `-kernel`.
pub fn load(e: &mut cjemu_jit::Engine) -> Result<(), Error> {
    let ram = e.mem().ram_size();
    if ram < DEMO_MIN_RAM {
        return Err(Error::Usage(format!(
            "the built-in demo guest needs at least {} MiB of RAM (-m)",
            DEMO_MIN_RAM >> 20
        )));
    }
    let internal =
        |what: &str, err: String| Error::Internal(format!("{what} the demo guest: {err}"));
    let multiboot::Search::Found(header) = multiboot::find_header(DEMO_GUEST) else {
        return Err(internal("loading", "no multiboot header".into()));
    };
    let kernel = multiboot::kernel_image(DEMO_GUEST, &header, ram)
        .map_err(|err| internal("loading", err))?;
    let plan = multiboot::plan(&kernel, DEMO_NAME, "", None, &[], ram)
        .map_err(|err| internal("laying out", err))?;
    multiboot::apply(&plan, e).map_err(|err| internal("booting", err))
}

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

/// The report the guest prints over COM1 when it computed `r`.
pub fn expected_serial(r: &DemoResult) -> String {
    format!(
        "cjemu demo guest: hello! started in 32-bit protected mode by a multiboot loader\n\
         cjemu demo guest: switched to 64-bit long mode (4-level paging, 2 MiB pages)\n\
         cjemu demo guest: {} primes below {DEMO_LIMIT}, summing to {}\n\
         cjemu demo guest: prime hash {:#018x}, sieve checksum {:#018x}\n\
         cjemu demo guest: all done, powering off. Bye!\n",
        r.count, r.sum, r.prime_hash, r.checksum
    )
}

/// Read the results the guest left at [`DEMO_RESULT`], after checking that
/// it really ended in long mode.
pub fn read_result(e: &cjemu_jit::Engine) -> Result<DemoResult, Error> {
    if e.cpu().efer & efer::LMA == 0 {
        return Err(Error::Internal(
            "the demo guest stopped outside long mode".into(),
        ));
    }
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
    use crate::loader::{probe, KernelKind};
    use cjemu_jit::state::{cr0, cr4};
    use cjemu_jit::{Engine, Exit, Seg};

    #[test]
    fn reference_matches_known_prime_facts() {
        // pi(10^5) = 9592, and the primes below 10^5 sum to 454396537.
        let r = reference();
        assert_eq!(r.count, 9592);
        assert_eq!(r.sum, 454_396_537);
    }

    #[test]
    fn the_demo_image_is_a_multiboot_kernel() {
        // The same probe `-kernel` uses finds it, with the a.out kludge.
        let KernelKind::Multiboot(h) = probe(DEMO_GUEST) else {
            panic!("the demo image is not found as a multiboot kernel");
        };
        assert_eq!(h.offset, 0);
        assert_ne!(h.flags & multiboot::FLAG_AOUT_KLUDGE, 0);
        assert_eq!(h.load_addr as u64, DEMO_LOAD);
        assert_eq!(h.entry_addr as u64, DEMO_ENTRY32);
    }

    /// Boot the demo on an engine without devices and run it to its end.
    fn run_demo() -> (Engine, Exit) {
        let mut e = Engine::new(DEMO_MIN_RAM).unwrap();
        load(&mut e).unwrap();
        // It starts as a multiboot kernel: 32-bit protected mode, no paging.
        assert_eq!(e.cpu().cr0 & (cr0::PE | cr0::PG), cr0::PE);
        assert_eq!(e.cpu().efer, 0);
        assert_eq!(e.cpu().rip, DEMO_ENTRY32);
        let mut exit = Exit::BudgetExhausted;
        // Every serial port access returns to the caller (NoIo: LSR reads
        // all-ones, so the guest never waits).
        for _ in 0..100_000 {
            exit = e.run(1_000_000);
            if !matches!(exit, Exit::BudgetExhausted | Exit::Device) {
                break;
            }
        }
        (e, exit)
    }

    #[test]
    fn the_guest_switches_to_long_mode_and_computes_what_the_host_computes() {
        let (e, exit) = run_demo();
        assert_eq!(exit, Exit::Halted);
        let c = e.cpu();
        assert_eq!(c.rflags() & (1 << 9), 0, "powers off: HLT with IF=0");
        // What the guest set up itself.
        assert_ne!(c.cr0 & cr0::PG, 0);
        assert_ne!(c.cr4 & cr4::PAE, 0);
        assert_eq!(c.efer & (efer::LME | efer::LMA), efer::LME | efer::LMA);
        assert_eq!(c.cr3, DEMO_PAGING);
        assert_eq!(c.gdtr.base, DEMO_GDT);
        assert_eq!(c.seg[Seg::Cs as usize].selector, 0x08);
        assert!(c.rip > DEMO_LONG, "halted in the 64-bit part");
        let got = read_result(&e).unwrap();
        assert_eq!(got, reference());
        assert!(report(&got).unwrap().contains("9592 primes"));
    }

    #[test]
    fn the_expected_serial_text_has_the_numbers() {
        let text = expected_serial(&reference());
        assert!(text.contains("switched to 64-bit long mode"));
        assert!(text.contains("9592 primes below 100000, summing to 454396537\n"));
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with("Bye!\n"));
    }

    #[test]
    fn a_wrong_result_is_an_internal_error() {
        let mut r = reference();
        r.checksum ^= 1;
        assert_eq!(report(&r).unwrap_err().status(), 6);
    }

    #[test]
    fn unfinished_demo_is_detected() {
        let mut e = Engine::new(DEMO_MIN_RAM).unwrap();
        assert!(read_result(&e).is_err(), "not in long mode");
        e.cpu_mut().efer = efer::LME | efer::LMA;
        assert!(read_result(&e).is_err(), "no results stored");
    }

    #[test]
    fn too_little_ram_is_a_usage_error() {
        let mut e = Engine::new(DEMO_MIN_RAM / 2).unwrap();
        assert_eq!(load(&mut e).unwrap_err().status(), 2);
    }
}
