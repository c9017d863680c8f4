//! Interpreter throughput: guest MIPS (instructions retired per second of
//! wall time, in millions) on a CPU-bound integer loop.
//!
//! `cargo bench --bench interp`. Criterion reports the throughput as
//! "Melem/s", which is guest MIPS; a last line prints the figure plainly.
//! The loop uses only instructions the interpreter implements today
//! (MOV, LEA, ADD, SUB, XOR, AND, INC, DEC, CMP, Jcc, loads, stores).

use cjemu_jit::{Accel, Engine};
use criterion::{criterion_group, Criterion, Throughput};
use std::time::{Duration, Instant};

mod common;
use common::{alu_loop, run_once, ITERATIONS};

fn engine() -> Engine {
    common::engine(&alu_loop(), Accel::Interp)
}

fn bench_interp(c: &mut Criterion) {
    let mut e = engine();
    let insns = run_once(&mut e);
    assert_eq!(insns, 4 + 12 * ITERATIONS as u64 + 1, "guest length");
    let mut g = c.benchmark_group("interp");
    g.throughput(Throughput::Elements(insns));
    g.bench_function("alu_loop", |b| b.iter(|| run_once(&mut e)));
    g.finish();
}

/// The plain figure: best of five runs.
fn print_mips() {
    let mut e = engine();
    run_once(&mut e); // decode the blocks first
    let mut best = Duration::MAX;
    let mut insns = 0;
    for _ in 0..5 {
        let t = Instant::now();
        insns = run_once(&mut e);
        best = best.min(t.elapsed());
    }
    let mips = insns as f64 / best.as_secs_f64() / 1e6;
    println!("interp guest MIPS: {mips:.1} ({insns} instructions in {best:.2?}, best of 5)");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_interp
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_mips();
}
