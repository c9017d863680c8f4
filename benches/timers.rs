//! The cost of timer deadlines: guest MIPS of a compute loop with no timer,
//! with a 1 kHz and with a 10 kHz PIT tick (IRQ0 handler: count, EOI,
//! IRET), under the interpreter and the JIT.
//!
//! `cargo bench --bench timers`. Each case spawns the cjemu binary built
//! for the bench (release profile) on the `timer_bench` test kernel
//! (tests/kernels/timer_bench.c, built as the tests build kernels) with
//! `--icount shift=0,sleep=off --stats`, and takes the best `guest MIPS`
//! of three runs (instructions retired per second of run time, from
//! `--stats`; process start and kernel loading are outside it). At 1 ns per
//! instruction a 1 kHz tick is one deadline per million instructions.
//! Prints one line per case plus the slowdown against no timer.

#[path = "../tests/kernels/harness.rs"]
mod harness;

/// Loop iterations (12 instructions each) per engine: about a second of
/// run time each.
const CASES: &[(&str, u32)] = &[("interp", 4_000_000), ("jit", 40_000_000)];
const RATES: &[u32] = &[0, 1000, 10000];
const RUNS: usize = 3;

fn stat(stderr: &str, key: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{key}:' in --stats output:\n{stderr}"))
}

fn main() {
    let kernel = harness::build_c("timer_bench");
    for &(accel, n) in CASES {
        let mut base = 0.0;
        for &hz in RATES {
            let append = format!("n={n} hz={hz}");
            let args = [
                "--accel",
                accel,
                "--icount",
                "shift=0,sleep=off",
                "--stats",
                "-append",
                &append,
            ];
            let mut best = 0.0f64;
            let mut icount = 0.0;
            let mut ticks = String::new();
            for _ in 0..RUNS {
                let r = harness::run_cjemu(&kernel, &args);
                assert_eq!(r.status, (0x35 << 1) | 1, "{accel} {hz} Hz: {}", r.stderr);
                best = best.max(stat(&r.stderr, "guest MIPS"));
                icount = stat(&r.stderr, "icount");
                ticks = r.text().trim().to_string();
            }
            if hz == 0 {
                base = best;
            }
            let rate = if hz == 0 {
                "no timer".to_string()
            } else {
                format!("{hz} Hz")
            };
            println!(
                "timers {accel:6} {rate:>8}: {best:8.1} guest MIPS ({:.0}M instructions, {ticks}, \
                 {:.1}% of no-timer speed, best of {RUNS})",
                icount / 1e6,
                100.0 * best / base,
            );
        }
    }
}
