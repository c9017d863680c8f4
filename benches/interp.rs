//! Interpreter throughput: guest MIPS (instructions retired per second of
//! wall time, in millions) on a CPU-bound integer loop.
//!
//! `cargo bench --bench interp`. Criterion reports the throughput as
//! "Melem/s", which is guest MIPS; a last line prints the figure plainly.
//! The loop uses only instructions the interpreter implements today
//! (MOV, LEA, ADD, SUB, XOR, AND, INC, DEC, CMP, Jcc, loads, stores).

use cjemu::flat::load_flat;
use cjemu_jit::{Engine, Exit};
use criterion::{criterion_group, Criterion, Throughput};
use iced_x86::code_asm::*;
use std::time::{Duration, Instant};

const LOAD: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const ITERATIONS: u32 = 200_000;

/// The loop guest: 12 instructions per iteration, then HLT.
fn guest() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut bad = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ecx, ITERATIONS)?;
        a.xor(eax, eax)?;
        a.mov(ebx, 1)?;
        a.mov(rdi, DATA)?;
        a.set_label(&mut top)?;
        a.add(rax, rbx)?;
        a.xor(rbx, rax)?;
        a.and(rbx, 0x7fff_ffff)?;
        a.lea(rsi, ptr(rax + rbx * 2 + 7))?;
        a.sub(rsi, rcx)?;
        a.mov(qword_ptr(rdi), rsi)?;
        a.mov(rdx, qword_ptr(rdi))?;
        a.inc(rbx)?;
        a.cmp(rdx, rsi)?;
        a.jne(bad)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut bad)?;
        a.ud2()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

fn engine() -> Engine {
    let mut e = Engine::new(16 << 20).unwrap();
    load_flat(&mut e, &guest(), LOAD, LOAD).unwrap();
    e
}

/// Run the guest from the top once; returns instructions retired.
fn run_once(e: &mut Engine) -> u64 {
    let cpu = e.cpu_mut();
    cpu.rip = LOAD;
    cpu.gpr = [0; 16];
    let start = cpu.icount;
    loop {
        match e.run(10_000_000) {
            Exit::Halted => break,
            Exit::BudgetExhausted => continue,
            other => panic!("benchmark guest ended with {other:?}"),
        }
    }
    e.cpu().icount - start
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
