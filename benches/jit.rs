//! Interpreter against JIT on the same CPU-bound guests, in one run: guest
//! MIPS of each tier, their ratio, and how much of a cold JIT run goes to
//! compiling.
//!
//! `cargo bench --bench jit`. Criterion reports throughput as "Melem/s"
//! (guest MIPS); the last lines print the figures plainly:
//! - warm: best of five runs once every block is decoded (and compiled);
//! - cold: the first run on a fresh engine (decoding, and for the JIT
//!   compiling every block at first sight, threshold 0), with the compile
//!   time and its share of that run.
//!
//! Guests: `alu_loop` (the interpreter benchmark's loop: 12 inline
//! instructions per iteration), `mixed_loop` (a call, pushes and pops,
//! a DIV and a non-REP MOVSQ, which compiled code runs through the
//! interpreter's handlers, and flag-heavy ALU work), and two region
//! shapes: `nested_loops` (three nested counted loops) and `call_loop` (a
//! loop calling a leaf function with a branch).

use cjemu_jit::Accel;
use criterion::{criterion_group, Criterion, Throughput};
use std::time::{Duration, Instant};

mod common;
use common::{alu_loop, call_loop, engine, mixed_loop, nested_loops, run_once};

const JIT: Accel = Accel::Jit { threshold: 0 };

type Guest = (&'static str, fn() -> Vec<u8>);
const GUESTS: [Guest; 4] = [
    ("alu_loop", alu_loop),
    ("mixed_loop", mixed_loop),
    ("nested_loops", nested_loops),
    ("call_loop", call_loop),
];

fn bench_tiers(c: &mut Criterion) {
    for (name, guest) in GUESTS {
        let code = guest();
        let mut g = c.benchmark_group(name);
        for (tier, accel) in [("interp", Accel::Interp), ("jit", JIT)] {
            let mut e = engine(&code, accel);
            let insns = run_once(&mut e);
            g.throughput(Throughput::Elements(insns));
            g.bench_function(tier, |b| b.iter(|| run_once(&mut e)));
        }
        g.finish();
    }
}

/// Cold run (fresh engine), then best of five warm runs.
struct Figures {
    insns: u64,
    cold: Duration,
    warm: Duration,
    compile: Duration,
    /// Regions compiled, and the blocks in them.
    regions: u64,
    blocks: u64,
    compile_max: Duration,
}

fn measure(code: &[u8], accel: Accel) -> Figures {
    let mut e = engine(code, accel);
    let t = Instant::now();
    let insns = run_once(&mut e);
    let cold = t.elapsed();
    let mut warm = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(run_once(&mut e), insns, "every run retires the same count");
        warm = warm.min(t.elapsed());
    }
    Figures {
        insns,
        cold,
        warm,
        compile: Duration::from_nanos(e.stats.compile_ns),
        regions: e.stats.blocks_compiled,
        blocks: e.stats.region_blocks,
        compile_max: Duration::from_nanos(e.stats.compile_ns_max),
    }
}

fn mips(insns: u64, d: Duration) -> f64 {
    insns as f64 / d.as_secs_f64() / 1e6
}

fn print_figures() {
    for (name, guest) in GUESTS {
        let code = guest();
        let i = measure(&code, Accel::Interp);
        let j = measure(&code, JIT);
        assert_eq!(i.insns, j.insns, "both tiers retire the same count");
        let (im, jm) = (mips(i.insns, i.warm), mips(j.insns, j.warm));
        println!(
            "{name}: {} instructions; warm: interp {im:.1} MIPS, jit {jm:.1} MIPS, jit/interp {:.2}x",
            i.insns,
            jm / im
        );
        println!(
            "{name}: cold: interp {:.1} MIPS, jit {:.1} MIPS; {} regions ({} blocks) compiled in \
             {:.2?} ({:.1} us/region mean, {:.1} us max), {:.1}% of the cold JIT run",
            mips(i.insns, i.cold),
            mips(j.insns, j.cold),
            j.regions,
            j.blocks,
            j.compile,
            j.compile.as_secs_f64() * 1e6 / j.regions.max(1) as f64,
            j.compile_max.as_secs_f64() * 1e6,
            100.0 * j.compile.as_secs_f64() / j.cold.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_tiers
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_figures();
}
