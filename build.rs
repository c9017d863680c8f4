//! Assembles the built-in demo guest (a flat 64-bit program) with iced-x86's
//! code assembler, so building cjemu needs no external assembler.
//!
//! The guest, loaded and entered at `DEMO_LOAD` in 64-bit mode with RAM
//! identity-mapped:
//! 1. clears the sieve array and runs a sieve of Eratosthenes below
//!    `DEMO_LIMIT` (crossing out 2p, 3p, … for every prime p < `DEMO_SQRT_CEIL`);
//! 2. walks the array counting the primes, summing them, and hashing them
//!    djb2-style (`h = h * 33 ^ p`, starting from `DEMO_HASH_INIT`), in a
//!    subroutine (CALL/RET);
//! 3. computes a Fletcher-style checksum over the sieve bytes
//!    (`a += byte; b += a`, both mod 2^64; the result is `b ^ a`);
//! 4. stores count, sum, hash, checksum and `DEMO_DONE` at `DEMO_RESULT`
//!    and halts.
//!
//! It uses only integer instructions the interpreter implements today
//! (MOV, MOVZX, LEA, ADD, XOR, INC, CMP, Jcc, JMP, CALL, RET, HLT).

use iced_x86::code_asm::*;
use std::path::PathBuf;

#[allow(dead_code)] // the loader's constants are not all needed here
mod layout {
    include!("src/demo_layout.rs");
}
use layout::*;

fn sieve(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rdi, DEMO_SIEVE)?;
    // Clear the array (RAM starts zeroed, but the program should not rely on it).
    a.xor(ecx, ecx)?;
    let mut clear = a.create_label();
    a.set_label(&mut clear)?;
    a.mov(byte_ptr(rdi + rcx), 0)?;
    a.inc(rcx)?;
    a.cmp(rcx, DEMO_LIMIT as i32)?;
    a.jb(clear)?;

    let mut outer = a.create_label();
    let mut mark = a.create_label();
    let mut next = a.create_label();
    let mut sieved = a.create_label();
    a.mov(ecx, 2)?;
    a.set_label(&mut outer)?;
    a.cmp(rcx, DEMO_SQRT_CEIL as i32)?;
    a.jae(sieved)?;
    a.cmp(byte_ptr(rdi + rcx), 0)?;
    a.jne(next)?;
    a.lea(rdx, ptr(rcx + rcx))?;
    a.set_label(&mut mark)?;
    a.cmp(rdx, DEMO_LIMIT as i32)?;
    a.jae(next)?;
    a.mov(byte_ptr(rdi + rdx), 1)?;
    a.add(rdx, rcx)?;
    a.jmp(mark)?;
    a.set_label(&mut next)?;
    a.inc(rcx)?;
    a.jmp(outer)?;
    a.set_label(&mut sieved)?;
    Ok(())
}

/// Subroutine: RAX = count, RBX = sum, RSI = hash of the primes in the sieve.
fn count_primes(a: &mut CodeAssembler, entry: &mut CodeLabel) -> Result<(), IcedError> {
    a.set_label(entry)?;
    a.xor(eax, eax)?;
    a.xor(ebx, ebx)?;
    a.mov(esi, DEMO_HASH_INIT as u32)?;
    a.mov(ecx, 2)?;
    let mut lp = a.create_label();
    let mut skip = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut lp)?;
    a.cmp(rcx, DEMO_LIMIT as i32)?;
    a.jae(done)?;
    a.cmp(byte_ptr(rdi + rcx), 0)?;
    a.jne(skip)?;
    a.inc(rax)?;
    a.add(rbx, rcx)?;
    // h = h * 33 ^ p, as 8h, then 4 * 8h + h.
    a.lea(rdx, ptr(rsi * 8))?;
    a.lea(rsi, ptr(rsi + rdx * 4))?;
    a.xor(rsi, rcx)?;
    a.set_label(&mut skip)?;
    a.inc(rcx)?;
    a.jmp(lp)?;
    a.set_label(&mut done)?;
    a.ret()?;
    Ok(())
}

/// R8 = a, R9 = b of the Fletcher-style sum over the whole sieve array.
fn checksum(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.xor(r8d, r8d)?;
    a.xor(r9d, r9d)?;
    a.xor(ecx, ecx)?;
    let mut lp = a.create_label();
    a.set_label(&mut lp)?;
    a.movzx(edx, byte_ptr(rdi + rcx))?;
    a.add(r8, rdx)?;
    a.add(r9, r8)?;
    a.inc(rcx)?;
    a.cmp(rcx, DEMO_LIMIT as i32)?;
    a.jb(lp)?;
    a.xor(r9, r8)?;
    Ok(())
}

fn assemble() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut count = a.create_label();
    sieve(&mut a)?;
    a.call(count)?;
    checksum(&mut a)?;
    a.mov(r10, DEMO_RESULT)?;
    a.mov(qword_ptr(r10), rax)?;
    a.mov(qword_ptr(r10 + 8), rbx)?;
    a.mov(qword_ptr(r10 + 16), rsi)?;
    a.mov(qword_ptr(r10 + 24), r9)?;
    a.mov(r11, DEMO_DONE)?;
    a.mov(qword_ptr(r10 + 32), r11)?;
    a.hlt()?;
    count_primes(&mut a, &mut count)?;
    a.assemble(DEMO_LOAD)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/demo_layout.rs");
    let bytes = assemble().unwrap_or_else(|e| panic!("assembling the demo guest: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("demo_guest.bin"), bytes).expect("writing demo_guest.bin");
}
