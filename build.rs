//! Assembles the built-in demo guest with iced-x86's code assembler, so
//! building cjemu needs no external assembler.
//!
//! The guest is a multiboot (v1) kernel image (a.out-kludge header, so it
//! needs no ELF wrapper), loaded at `DEMO_LOAD` by cjemu's multiboot loader
//! and entered at `DEMO_ENTRY32` the way every multiboot kernel is: 32-bit
//! protected mode, paging off, EAX = 0x2BADB002. It
//! 1. (32-bit) checks the multiboot magic, builds 4-level page tables at
//!    `DEMO_PAGING` identity-mapping the first GiB with 2 MiB pages, loads its
//!    own GDT (a 64-bit code segment and a flat data segment), enables PAE,
//!    sets EFER.LME with WRMSR, points CR3 at the tables, enables paging and
//!    far-jumps to the 64-bit code at `DEMO_LONG`;
//! 2. (64-bit) reloads the data segments, checks EFER.LMA, clears the sieve
//!    array and runs a sieve of Eratosthenes below `DEMO_LIMIT` (crossing out
//!    2p, 3p, … for every prime p < `DEMO_SQRT_CEIL`);
//! 3. walks the array counting the primes, summing them, and hashing them
//!    djb2-style (`h = h * 33 ^ p`, starting from `DEMO_HASH_INIT`), in a
//!    subroutine (CALL/RET);
//! 4. computes a Fletcher-style checksum over the sieve bytes
//!    (`a += byte; b += a`, both mod 2^64; the result is `b ^ a`);
//! 5. stores count, sum, hash, checksum and `DEMO_DONE` at `DEMO_RESULT`;
//! 6. prints a report on COM1 (0x3f8, polling the line status register's
//!    THR-empty bit before each byte; the text is `report_pieces` with the
//!    numbers filled in, what `demo::expected_serial` formats natively)
//!    and powers off (HLT with interrupts disabled).
//!
//! A wrong multiboot magic or a CPU not in long mode after the switch makes
//! the guest stop (CLI; HLT) without storing its results, which cjemu
//! reports as a failed demo.

use iced_x86::code_asm::*;
use std::path::PathBuf;

#[allow(dead_code)] // the loader's constants are not all needed here
mod layout {
    include!("src/demo_layout.rs");
}
use layout::*;

/// The multiboot header magic, the a.out-kludge flag and the magic a
/// multiboot loader leaves in EAX (the loader's tests check the demo image
/// is found as a multiboot kernel).
const MB_HEADER_MAGIC: u32 = 0x1bad_b002;
const MB_FLAG_AOUT_KLUDGE: u32 = 1 << 16;
const MB_BOOT_MAGIC: u32 = 0x2bad_b002;

/// The demo's GDT: null, 0x08 = 64-bit ring-0 code, 0x10 = flat data.
const GDT: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
const CODE64_SEL: u16 = 0x08;
const DATA_SEL: u32 = 0x10;

const CR0_PG: u32 = 1 << 31;
const CR4_PAE: i32 = 1 << 5;
const MSR_EFER: u32 = 0xc000_0080;
const EFER_LME: i32 = 1 << 8;
const EFER_LMA_BIT: i32 = 10;
/// Page-table entry bits: present, writable; PS marks a 2 MiB page.
const PTE_P_RW: u32 = 0x3;
const PDE_PS: u32 = 0x80;

/// The multiboot header, at the start of the image: magic, flags,
/// checksum, then header/load/load-end/BSS-end/entry addresses (load-end
/// and BSS-end 0: the whole file, no BSS).
fn multiboot_header() -> Vec<u8> {
    let words = [
        MB_HEADER_MAGIC,
        MB_FLAG_AOUT_KLUDGE,
        0u32.wrapping_sub(MB_HEADER_MAGIC)
            .wrapping_sub(MB_FLAG_AOUT_KLUDGE),
        DEMO_LOAD as u32,
        DEMO_LOAD as u32,
        0,
        0,
        DEMO_ENTRY32 as u32,
    ];
    let h: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(DEMO_LOAD + h.len() as u64, DEMO_ENTRY32);
    h
}

/// Identity-map the first GiB: PML4[0] -> PDPT, PDPT[0] -> PD, and 512
/// 2 MiB pages in the PD. Clobbers EAX, ECX, EDI.
fn page_tables(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let (pml4, pdpt, pd) = (DEMO_PAGING, DEMO_PAGING + 0x1000, DEMO_PAGING + 0x2000);
    a.cld()?;
    a.mov(edi, pml4 as u32)?;
    a.xor(eax, eax)?;
    a.mov(ecx, 3 * 4096 / 4)?;
    a.rep().stosd()?;
    a.mov(dword_ptr(pml4), (pdpt as u32 | PTE_P_RW) as i32)?;
    a.mov(dword_ptr(pdpt), (pd as u32 | PTE_P_RW) as i32)?;
    a.mov(edi, pd as u32)?;
    a.mov(eax, PTE_P_RW | PDE_PS)?;
    a.xor(ecx, ecx)?;
    let mut lp = a.create_label();
    a.set_label(&mut lp)?;
    a.mov(dword_ptr(edi + ecx * 8), eax)?;
    a.add(eax, 2 << 20)?;
    a.inc(ecx)?;
    a.cmp(ecx, 512)?;
    a.jb(lp)?;
    Ok(())
}

/// Write the GDT at `DEMO_GDT` and its pseudo-descriptor (limit, base)
/// right after it.
fn build_gdt(a: &mut CodeAssembler) -> Result<(), IcedError> {
    for (i, d) in GDT.iter().enumerate() {
        let at = DEMO_GDT + 8 * i as u64;
        a.mov(dword_ptr(at), *d as u32 as i32)?;
        a.mov(dword_ptr(at + 4), (*d >> 32) as u32 as i32)?;
    }
    let gdtr = DEMO_GDT + 8 * GDT.len() as u64;
    a.mov(word_ptr(gdtr), (GDT.len() * 8 - 1) as u32)?;
    a.mov(dword_ptr(gdtr + 2), DEMO_GDT as u32 as i32)?;
    a.lgdt(ptr(gdtr))?;
    Ok(())
}

/// The 32-bit entry: from the multiboot state to the far jump into long mode.
fn startup32() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut fail = a.create_label();
    a.cmp(eax, MB_BOOT_MAGIC as i32)?;
    a.jne(fail)?;
    a.mov(esp, DEMO_STACK as u32)?;
    page_tables(&mut a)?;
    build_gdt(&mut a)?;
    a.mov(eax, cr4)?;
    a.or(eax, CR4_PAE)?;
    a.mov(cr4, eax)?;
    a.mov(eax, DEMO_PAGING as u32)?;
    a.mov(cr3, eax)?;
    a.mov(ecx, MSR_EFER)?;
    a.rdmsr()?;
    a.or(eax, EFER_LME)?;
    a.wrmsr()?;
    // Paging on with EFER.LME set activates long mode (compatibility mode
    // until CS is a 64-bit segment).
    a.mov(eax, cr0)?;
    a.or(eax, CR0_PG as i32)?;
    a.mov(cr0, eax)?;
    a.jmp_far(CODE64_SEL, DEMO_LONG as u32)?;
    a.set_label(&mut fail)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(fail)?;
    a.assemble(DEMO_ENTRY32)
}
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

/// One piece of the report.
enum Piece {
    Text(&'static str),
    /// The u64 at `DEMO_RESULT + offset`, in decimal.
    Dec(i32),
    /// The same in hexadecimal (`0x` and 16 digits).
    Hex(i32),
    /// A constant, in decimal.
    DecImm(u32),
}

/// The report, piece by piece. `src/demo.rs` formats the same text
/// (`expected_serial`); the tests compare the two.
fn report_pieces() -> Vec<Piece> {
    use Piece::*;
    vec![
        Text("cjemu demo guest: hello! started in 32-bit protected mode by a multiboot loader\n"),
        Text("cjemu demo guest: switched to 64-bit long mode (4-level paging, 2 MiB pages)\n"),
        Text("cjemu demo guest: "),
        Dec(0),
        Text(" primes below "),
        DecImm(DEMO_LIMIT as u32),
        Text(", summing to "),
        Dec(8),
        Text("\ncjemu demo guest: prime hash "),
        Hex(16),
        Text(", sieve checksum "),
        Hex(24),
        Text("\ncjemu demo guest: all done, powering off. Bye!\n"),
    ]
}

/// Print the report (R10 points at `DEMO_RESULT`). Returns the texts to
/// place (with [`strings`]) after the code.
fn report(a: &mut CodeAssembler, p: &Print) -> Result<Vec<(CodeLabel, &'static str)>, IcedError> {
    let pieces = report_pieces();
    let mut texts = Vec::new();
    for piece in &pieces {
        match piece {
            Piece::Text(t) => {
                let label = a.create_label();
                a.lea(rsi, ptr(label))?;
                a.call(p.puts)?;
                texts.push((label, *t));
            }
            Piece::Dec(off) | Piece::Hex(off) => {
                a.mov(rax, qword_ptr(r10 + *off))?;
                let hex = matches!(piece, Piece::Hex(_));
                a.call(if hex { p.put_hex } else { p.put_dec })?;
            }
            Piece::DecImm(v) => {
                a.mov(eax, *v)?;
                a.call(p.put_dec)?;
            }
        }
    }
    Ok(texts)
}

/// NUL-terminated strings at their labels.
fn strings(a: &mut CodeAssembler, texts: Vec<(CodeLabel, &str)>) -> Result<(), IcedError> {
    for (mut l, t) in texts {
        a.set_label(&mut l)?;
        a.db(t.as_bytes())?;
        a.db(&[0])?;
    }
    Ok(())
}

/// The 64-bit part, entered by the far jump at `DEMO_LONG`.
fn long_mode() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut count = a.create_label();
    let mut fail = a.create_label();
    let mut p = Print {
        putc: a.create_label(),
        puts: a.create_label(),
        put_dec: a.create_label(),
        put_hex: a.create_label(),
    };
    a.mov(eax, DATA_SEL)?;
    for s in [ds, es, ss, fs, gs] {
        a.mov(s, ax)?;
    }
    a.mov(esp, DEMO_STACK as u32)?;
    // Long mode is active only if the CPU says so.
    a.mov(ecx, MSR_EFER)?;
    a.rdmsr()?;
    a.bt(eax, EFER_LMA_BIT)?;
    a.jnc(fail)?;
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
    let texts = report(&mut a, &p)?;
    // Power off: HLT with interrupts disabled.
    a.set_label(&mut fail)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(fail)?;
    count_primes(&mut a, &mut count)?;
    print_routines(&mut a, &mut p)?;
    strings(&mut a, texts)?;
    a.assemble(DEMO_LONG)
}

/// The whole image: header, 32-bit entry, padding, 64-bit part.
fn image() -> Result<Vec<u8>, IcedError> {
    let mut bytes = multiboot_header();
    bytes.extend(startup32()?);
    let long_at = (DEMO_LONG - DEMO_LOAD) as usize;
    assert!(
        bytes.len() <= long_at,
        "the 32-bit entry code ({} bytes) overlaps DEMO_LONG",
        bytes.len()
    );
    bytes.resize(long_at, 0xcc);
    bytes.extend(long_mode()?);
    // The loader puts its information page after the image; the stack
    // (growing down from DEMO_STACK) must stay clear of both.
    assert!(DEMO_LOAD + bytes.len() as u64 + 0x2000 <= DEMO_STACK - 0x1_0000);
    Ok(bytes)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/demo_layout.rs");
    let bytes = image().unwrap_or_else(|e| panic!("assembling the demo guest: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("demo_guest.bin"), bytes).expect("writing demo_guest.bin");
}
