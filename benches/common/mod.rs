//! Guests and the runner shared by the benchmarks (`interp.rs`, `jit.rs`),
//! so both measure exactly the same code.
#![allow(dead_code)]

use cjemu::flat::load_flat;
use cjemu_jit::{Accel, Engine, Exit};
use iced_x86::code_asm::*;

pub const LOAD: u64 = 0x10_0000;
pub const DATA: u64 = 0x20_0000;
pub const ITERATIONS: u32 = 200_000;

/// The interpreter benchmark's loop: 12 instructions per iteration.
pub fn alu_loop() -> Vec<u8> {
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

/// A loop with helper instructions (DIV, MOVSQ), a call and stack traffic.
pub fn mixed_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut sub = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ecx, ITERATIONS / 4)?;
        a.mov(r8, DATA)?;
        a.mov(rsp, DATA + 0x8000)?;
        a.mov(eax, 12345)?;
        a.set_label(&mut top)?;
        a.push(rcx)?;
        a.call(sub)?;
        a.pop(rcx)?;
        a.lea(rsi, qword_ptr(r8 + 0x100))?;
        a.lea(rdi, qword_ptr(r8 + 0x200))?;
        a.movsq()?;
        a.add(qword_ptr(r8 + 0x300), rax)?;
        a.adc(rax, 3)?;
        a.shl(rax, 1)?;
        a.shr(rax, 1)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut sub)?;
        a.mov(rbx, rcx)?;
        a.or(rbx, 1)?;
        a.xor(edx, edx)?;
        a.div(rbx)?;
        a.add(rax, rdx)?;
        a.add(rax, 1000)?;
        a.ret()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

/// Nested loops (a 3-deep counter nest with a short inner body): the
/// inner loop's exits and the outer loops' heads stay inside one region.
pub fn nested_loops() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut outer = a.create_label();
    let mut middle = a.create_label();
    let mut inner = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(r8d, 50u32)?;
        a.xor(eax, eax)?;
        a.mov(rdi, DATA)?;
        a.set_label(&mut outer)?;
        a.mov(r9d, 40u32)?;
        a.set_label(&mut middle)?;
        a.mov(ecx, 25u32)?;
        a.set_label(&mut inner)?;
        a.add(rax, rcx)?;
        a.imul_3(rdx, rax, 7)?;
        a.xor(rax, rdx)?;
        a.mov(qword_ptr(rdi + rcx * 8), rax)?;
        a.dec(ecx)?;
        a.jnz(inner)?;
        a.add(rax, r9)?;
        a.dec(r9d)?;
        a.jnz(middle)?;
        a.dec(r8d)?;
        a.jnz(outer)?;
        a.hlt()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

/// A loop calling a small leaf function (CALL rel in, RET out) that has a
/// branch of its own.
pub fn call_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut func = a.create_label();
    let mut even = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ecx, ITERATIONS)?;
        a.mov(rsp, DATA + 0x8000)?;
        a.xor(eax, eax)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        a.mov(rdi, rcx)?;
        a.call(func)?;
        a.add(rbx, rax)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut func)?;
        a.lea(rax, ptr(rdi + rdi * 2 + 1))?;
        a.test(dil, 1)?;
        a.jz(even)?;
        a.shr(rax, 1)?;
        a.set_label(&mut even)?;
        a.xor(rax, rdi)?;
        a.ret()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

pub fn engine(code: &[u8], accel: Accel) -> Engine {
    let mut e = Engine::new(16 << 20).unwrap();
    e.config.accel = accel;
    load_flat(&mut e, code, LOAD, LOAD).unwrap();
    e
}

/// Run the guest from the top once; returns instructions retired.
pub fn run_once(e: &mut Engine) -> u64 {
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
