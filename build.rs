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
//! 4. stores count, sum, hash, checksum and `DEMO_DONE` at `DEMO_RESULT`;
//! 5. prints them on COM1 (0x3f8, polling the line status register) as
//!    `demo guest: N primes below L, sum S, prime hash 0x…, sieve checksum 0x…`
//!    and powers off (HLT with interrupts disabled).
//!
//! It stays in the flat 64-bit mode cjemu sets up (no mode switch of its
//! own) and uses only integer instructions and port I/O.

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

/// Subroutines: `putc` (AL), `puts` (RSI: NUL-terminated), `put_dec`
/// (RAX, decimal) and `put_hex` (RAX, `0x` and 16 digits). They keep every
/// register but RAX, RCX, RDX, RSI and R8.
struct Print {
    putc: CodeLabel,
    puts: CodeLabel,
    put_dec: CodeLabel,
    put_hex: CodeLabel,
}

const COM1: i32 = 0x3f8;

fn serial_init(a: &mut CodeAssembler) -> Result<(), IcedError> {
    // 115200 8N1, FIFOs on, interrupts off.
    for (port, v) in [
        (1, 0x00),
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x03),
        (2, 0xc7),
        (4, 0x03),
    ] {
        a.mov(dx, COM1 as u32 + port)?;
        a.mov(al, v)?;
        a.out(dx, al)?;
    }
    Ok(())
}

fn print_routines(a: &mut CodeAssembler, p: &mut Print) -> Result<(), IcedError> {
    a.set_label(&mut p.putc)?;
    a.mov(r8d, eax)?;
    a.mov(dx, (COM1 + 5) as u32)?;
    let mut wait = a.create_label();
    a.set_label(&mut wait)?;
    a.in_(al, dx)?;
    a.test(al, 0x20)?;
    a.jz(wait)?;
    a.mov(eax, r8d)?;
    a.mov(dx, COM1 as u32)?;
    a.out(dx, al)?;
    a.ret()?;

    a.set_label(&mut p.puts)?;
    let mut done = a.create_label();
    a.movzx(eax, byte_ptr(rsi))?;
    a.test(al, al)?;
    a.jz(done)?;
    a.call(p.putc)?;
    a.inc(rsi)?;
    a.jmp(p.puts)?;
    a.set_label(&mut done)?;
    a.ret()?;

    // Digits are pushed, then popped most significant first.
    a.set_label(&mut p.put_dec)?;
    a.mov(ecx, 10)?;
    a.xor(esi, esi)?;
    let (mut div, mut out) = (a.create_label(), a.create_label());
    a.set_label(&mut div)?;
    a.xor(edx, edx)?;
    a.div(rcx)?;
    a.add(edx, b'0' as i32)?;
    a.push(rdx)?;
    a.inc(esi)?;
    a.test(rax, rax)?;
    a.jnz(div)?;
    a.set_label(&mut out)?;
    a.pop(rax)?;
    a.call(p.putc)?;
    a.dec(esi)?;
    a.jnz(out)?;
    a.ret()?;

    a.set_label(&mut p.put_hex)?;
    a.mov(rsi, rax)?;
    a.mov(al, b'0' as u32)?;
    a.call(p.putc)?;
    a.mov(al, b'x' as u32)?;
    a.call(p.putc)?;
    a.mov(ecx, 60)?;
    let (mut nib, mut letter, mut emit) = (a.create_label(), a.create_label(), a.create_label());
    a.set_label(&mut nib)?;
    a.mov(rax, rsi)?;
    a.shr(rax, cl)?;
    a.and(eax, 15)?;
    a.cmp(eax, 10)?;
    a.jae(letter)?;
    a.add(eax, b'0' as i32)?;
    a.jmp(emit)?;
    a.set_label(&mut letter)?;
    a.add(eax, b'a' as i32 - 10)?;
    a.set_label(&mut emit)?;
    a.push(rcx)?;
    a.call(p.putc)?;
    a.pop(rcx)?;
    a.sub(ecx, 4)?;
    a.jns(nib)?;
    a.ret()?;
    Ok(())
}

/// Print the results stored at `DEMO_RESULT` (R10 points there).
fn report(a: &mut CodeAssembler, p: &Print) -> Result<(), IcedError> {
    let texts: [&[u8]; 5] = [
        b"demo guest: \0",
        b" primes below \0",
        b", sum \0",
        b", prime hash \0",
        b", sieve checksum \0",
    ];
    let mut labels: Vec<CodeLabel> = texts.iter().map(|_| a.create_label()).collect();
    let mut after = a.create_label();
    let values: [(Option<i32>, bool); 5] = [
        (Some(0), false), // count
        (None, false),    // the limit, an immediate
        (Some(8), false), // sum
        (Some(16), true), // prime hash
        (Some(24), true), // checksum
    ];
    for (i, &(slot, hex)) in values.iter().enumerate() {
        a.lea(rsi, ptr(labels[i]))?;
        a.call(p.puts)?;
        match slot {
            Some(off) => a.mov(rax, qword_ptr(r10 + off))?,
            None => a.mov(eax, DEMO_LIMIT as u32)?,
        }
        a.call(if hex { p.put_hex } else { p.put_dec })?;
    }
    a.mov(al, b'\n' as u32)?;
    a.call(p.putc)?;
    a.jmp(after)?;
    for (l, t) in labels.iter_mut().zip(texts) {
        a.set_label(l)?;
        a.db(t)?;
    }
    a.set_label(&mut after)?;
    Ok(())
}

fn assemble() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut count = a.create_label();
    let mut p = Print {
        putc: a.create_label(),
        puts: a.create_label(),
        put_dec: a.create_label(),
        put_hex: a.create_label(),
    };
    serial_init(&mut a)?;
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
    report(&mut a, &p)?;
    // Power off: HLT with interrupts disabled.
    a.cli()?;
    a.hlt()?;
    count_primes(&mut a, &mut count)?;
    print_routines(&mut a, &mut p)?;
    a.assemble(DEMO_LOAD)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/demo_layout.rs");
    let bytes = assemble().unwrap_or_else(|e| panic!("assembling the demo guest: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("demo_guest.bin"), bytes).expect("writing demo_guest.bin");
}
