//! 32-bit and 16-bit code (compatibility mode: long mode active, CS
//! without L) and the legacy instructions that exist only there: PUSHA,
//! POPA, the BCD adjustments, BOUND, INTO, SALC; plus XLAT, operand- and
//! address-size prefixes and near branches wrapping at the operand size.
//! Expected values come from the Intel SDM's pseudo-code and examples;
//! the host-CPU oracle (`host_oracle_32`) checks the same instructions
//! against the host at random.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::state::seg_attr;
use cjemu_jit::{Engine, Exit, Gpr, Seg};
use iced_x86::code_asm::*;

const CODE: u64 = 0x1_2000;
const CODE16: u64 = 0x2000;
const TABLES: u64 = 0x30_0000;
const STACK: u64 = 0x8000;
const DATA: u64 = 0x2_0000;

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;

type Asm = Result<(), IcedError>;

/// Assemble `f` for `bits`-bit code at `at`, followed by HLT.
fn asm_at(bits: u32, at: u64, f: impl FnOnce(&mut CodeAssembler) -> Asm) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.hlt().unwrap();
    a.assemble(at).unwrap()
}

/// An engine running `bits`-bit code at `entry` (16 and 32: compatibility
/// mode with a flat CS of that size; the stack is 32-bit, or 16-bit for
/// 16-bit code). Exceptions exit.
fn machine_at(bits: u32, entry: u64, code: &[u8]) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.exceptions_exit = true;
    e.mem_mut().write_phys(GuestPhysAddr(entry), code).unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), entry, STACK).unwrap();
    let cpu = e.cpu_mut();
    let csa = &mut cpu.seg[Seg::Cs as usize].attrs;
    match bits {
        32 => *csa = (*csa & !seg_attr::L) | seg_attr::DB,
        16 => {
            *csa &= !(seg_attr::L | seg_attr::DB);
            cpu.seg[Seg::Ss as usize].attrs &= !seg_attr::DB;
        }
        _ => {}
    }
    assert_eq!(cpu.code_bitness(), bits);
    e
}

/// `machine_at` with the code assembled at CODE (16-bit code at CODE16,
/// below 64 KiB).
fn machine(bits: u32, f: impl FnOnce(&mut CodeAssembler) -> Asm) -> Engine {
    let at = if bits == 16 { CODE16 } else { CODE };
    machine_at(bits, at, &asm_at(bits, at, f))
}

fn poke(e: &mut Engine, addr: u64, bytes: &[u8]) {
    e.mem_mut().write_phys(GuestPhysAddr(addr), bytes).unwrap();
}

fn peek(e: &Engine, addr: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    e.mem().read_phys(GuestPhysAddr(addr), &mut v).unwrap();
    v
}

fn reg(e: &Engine, r: Gpr) -> u64 {
    e.cpu().reg(r)
}

fn set(e: &mut Engine, r: Gpr, v: u64) {
    e.cpu_mut().set_reg(r, v);
}

fn flags(e: &Engine) -> u64 {
    e.cpu().rflags()
}

fn run_halt(e: &mut Engine) {
    assert_eq!(e.run(10_000), Exit::Halted);
}

fn dwords(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const EIGHT: [Gpr; 8] = [
    Gpr::Rax,
    Gpr::Rcx,
    Gpr::Rdx,
    Gpr::Rbx,
    Gpr::Rsp,
    Gpr::Rbp,
    Gpr::Rsi,
    Gpr::Rdi,
];

/// PUSHAD stores EAX..EDI (ESP as it was) downwards; POPAD restores all
/// but ESP, which just moves up by 32.
#[test]
fn pushad_popad() {
    let mut e = machine(32, |a| {
        a.pushad()?;
        // Clobber everything PUSHAD saved except ESP.
        a.xor(eax, eax)?;
        a.xor(ecx, ecx)?;
        a.xor(edx, edx)?;
        a.xor(ebx, ebx)?;
        a.xor(ebp, ebp)?;
        a.xor(esi, esi)?;
        a.xor(edi, edi)?;
        a.popad()
    });
    for (n, r) in EIGHT.iter().enumerate() {
        if *r != Gpr::Rsp {
            set(&mut e, *r, 0x1111_1111 * (n as u64 + 1));
        }
    }
    run_halt(&mut e);
    let saved = dwords(&peek(&e, STACK - 32, 32));
    // Lowest address: EDI (pushed last) … highest: EAX.
    let expect: Vec<u32> = EIGHT
        .iter()
        .enumerate()
        .rev()
        .map(|(n, r)| {
            if *r == Gpr::Rsp {
                STACK as u32
            } else {
                0x1111_1111 * (n as u32 + 1)
            }
        })
        .collect();
    assert_eq!(saved, expect);
    for (n, r) in EIGHT.iter().enumerate() {
        let want = if *r == Gpr::Rsp {
            STACK
        } else {
            0x1111_1111 * (n as u64 + 1)
        };
        assert_eq!(reg(&e, *r), want, "{r:?}");
    }
}

/// PUSHA with a 66 prefix in 32-bit code pushes eight words; POPA
/// writes only the low halves.
#[test]
fn pushaw_popaw_in_32bit_code() {
    let mut e = machine(32, |a| {
        a.db(&[0x66, 0x60])?; // pushaw
        a.mov(eax, 0xdead_0000u32)?;
        a.db(&[0x66, 0x61]) // popaw
    });
    set(&mut e, Gpr::Rax, 0x1234_5678);
    set(&mut e, Gpr::Rdi, 0xaaaa_bbbb);
    run_halt(&mut e);
    let w = peek(&e, STACK - 16, 16);
    assert_eq!(&w[0..2], &[0xbb, 0xbb]); // DI
    assert_eq!(&w[14..16], &[0x78, 0x56]); // AX
    assert_eq!(&w[6..8], &(STACK as u16).to_le_bytes()); // SP
    assert_eq!(reg(&e, Gpr::Rax), 0xdead_5678);
    assert_eq!(reg(&e, Gpr::Rsp), STACK);
}

/// A PUSHAD that faults part-way (ESP wraps below zero into a 1 GiB
/// page made not-present) leaves ESP and memory as they were.
#[test]
fn pushad_fault_changes_nothing() {
    let mut e = machine(32, |a| a.pushad());
    // PDPT entry 3 maps 3..4 GiB: clear it.
    poke(&mut e, TABLES + 0x1000 + 3 * 8, &[0; 8]);
    e.flush_tlb();
    set(&mut e, Gpr::Rsp, 0x10);
    set(&mut e, Gpr::Rax, 0x5555_5555);
    let before = peek(&e, 0, 0x10);
    match e.run(10) {
        Exit::Exception(x) => {
            assert_eq!(x.vector, 14);
            // The lowest slot (EDI, 0x10 - 32) is written first.
            assert_eq!(x.address, 0xffff_fff0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reg(&e, Gpr::Rsp), 0x10);
    assert_eq!(peek(&e, 0, 0x10), before);
    assert_eq!(e.cpu().rip, CODE);
}

/// AAA after an unpacked-BCD add: AL = 0x0b (AH = 1) becomes AX = 0x0201
/// with CF = AF = 1; AL = 5 is left alone with CF = AF = 0.
#[test]
fn aaa_and_aas() {
    let mut e = machine(32, |a| {
        a.mov(ax, 0x010b)?;
        a.aaa()?;
        a.mov(ebx, eax)?;
        a.pushfd()?;
        a.mov(ax, 0x0105)?;
        a.add(al, 0)?; // AF = 0 (AAA set it)
        a.aaa()?;
        a.mov(ecx, eax)?;
        a.pushfd()?;
        // AAS: AL = 0x0f (> 9) → AX - 6, AH - 1, AL low nibble.
        a.mov(ax, 0x020f)?;
        a.aas()?;
        a.mov(edx, eax)?;
        a.pushfd()
    });
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx) & 0xffff, 0x0201);
    assert_eq!(reg(&e, Gpr::Rcx) & 0xffff, 0x0105);
    assert_eq!(reg(&e, Gpr::Rdx) & 0xffff, 0x0109);
    let f = dwords(&peek(&e, STACK - 12, 12));
    let (f_aas, f_aaa2, f_aaa1) = (f[0] as u64, f[1] as u64, f[2] as u64);
    assert_eq!(f_aaa1 & (CF | AF), CF | AF);
    assert_eq!(f_aaa2 & (CF | AF), 0);
    assert_eq!(f_aas & (CF | AF), CF | AF);
}

/// The SDM's DAA and DAS examples: 79h + 35h = AEh → DAA → 14h, CF = AF
/// = 1; 35h - 47h = EEh → DAS → 88h with SF AF PF CF set, ZF clear.
#[test]
fn daa_das_sdm_examples() {
    let mut e = machine(32, |a| {
        a.mov(al, 0x79)?;
        a.mov(bl, 0x35)?;
        a.add(al, bl)?;
        a.daa()?;
        a.mov(esi, eax)?;
        a.pushfd()?;
        a.mov(al, 0x35)?;
        a.mov(bl, 0x47)?;
        a.sub(al, bl)?;
        a.das()
    });
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rsi) & 0xff, 0x14);
    let f1 = dwords(&peek(&e, STACK - 4, 4))[0] as u64;
    assert_eq!(f1 & (SF | ZF | AF | PF | CF), AF | PF | CF, "DAA flags");
    assert_eq!(reg(&e, Gpr::Rax) & 0xff, 0x88);
    assert_eq!(flags(&e) & (SF | ZF | AF | PF | CF), SF | AF | PF | CF);
}

/// AAM 10: AL = 63 → AH = 6, AL = 3; AAD 16: AX = 0x0603 → AL = 0x63;
/// AAM 0 raises #DE at the instruction and changes nothing.
#[test]
fn aam_aad_and_aam_zero() {
    let mut e = machine(32, |a| {
        a.mov(ax, 63)?;
        a.aam(10)?;
        a.mov(ebx, eax)?;
        a.aad(16)?;
        a.aam(0)
    });
    let r = e.run(100);
    assert_eq!(reg(&e, Gpr::Rbx) & 0xffff, 0x0603);
    assert_eq!(reg(&e, Gpr::Rax) & 0xffff, 0x0063);
    match r {
        Exit::Exception(x) => assert_eq!(x.vector, 0),
        other => panic!("{other:?}"),
    }
    // mov ax,imm16 (4 bytes) + aam (2) + mov ebx,eax (2) + aad (2).
    assert_eq!(e.cpu().rip, CODE + 10);
    assert_eq!(e.cpu().icount, 4);
}

/// BOUND: an index inside [lower, upper] (signed) passes, one outside
/// raises #BR at the BOUND; the 16-bit form reads two words.
#[test]
fn bound_in_and_out_of_range() {
    let mut e = machine(32, |a| {
        a.bound(eax, qword_ptr(DATA as u32))?;
        a.bound(cx, dword_ptr(DATA as u32 + 8))?;
        a.bound(edx, qword_ptr(DATA as u32))
    });
    poke(&mut e, DATA, &(-5i32).to_le_bytes());
    poke(&mut e, DATA + 4, &100i32.to_le_bytes());
    poke(&mut e, DATA + 8, &(-2i16).to_le_bytes());
    poke(&mut e, DATA + 10, &2i16.to_le_bytes());
    set(&mut e, Gpr::Rax, (-5i32) as u32 as u64);
    set(&mut e, Gpr::Rcx, 0xffff_0002); // CX = 2
    set(&mut e, Gpr::Rdx, 101);
    let r = e.run(100);
    match r {
        Exit::Exception(x) => assert_eq!(x.vector, 5, "#BR"),
        other => panic!("{other:?}"),
    }
    // bound eax,[disp32] is 6 bytes, the 16-bit one 7.
    assert_eq!(e.cpu().rip, CODE + 13);
    assert_eq!(e.cpu().icount, 2);
}

/// INTO: nothing when OF = 0; with OF = 1 a #OF trap reported after the
/// INTO, which has retired.
#[test]
fn into_traps_only_with_of() {
    let mut e = machine(32, |a| {
        a.into()?;
        a.mov(al, 0x7f)?;
        a.add(al, 1)?; // OF = 1
        a.into()?;
        a.nop()
    });
    let r = e.run(100);
    match r {
        Exit::Exception(x) => assert_eq!(x.vector, 4, "#OF"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.cpu().rip, CODE + 1 + 2 + 2 + 1);
    assert_eq!(e.cpu().icount, 4);
    assert_ne!(flags(&e) & OF, 0);
}

/// SALC: AL = 0xff with CF set, 0 without; other bits and flags kept.
#[test]
fn salc_copies_cf() {
    let mut e = machine(32, |a| {
        a.stc()?;
        a.salc()?;
        a.mov(ebx, eax)?;
        a.clc()?;
        a.salc()
    });
    set(&mut e, Gpr::Rax, 0x1234_5600);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), 0x1234_56ff);
    assert_eq!(reg(&e, Gpr::Rax), 0x1234_5600);
    assert_eq!(flags(&e) & CF, 0);
}

/// XLAT with 32-bit addressing, and with a 67 prefix (BX + AL wraps at
/// 16 bits; the upper half of EBX is ignored).
#[test]
fn xlat_address_sizes() {
    let mut code = asm_at(32, CODE, |a| {
        a.xlatb()?;
        a.mov(ecx, eax)?;
        a.mov(al, 0x20)?;
        a.mov(ebx, 0x1234_fff0u32)
    });
    code.pop(); // the HLT
    code.extend_from_slice(&[0x67, 0xd7, 0xf4]); // a16 xlat; hlt
    let mut e = machine_at(32, CODE, &code);
    poke(&mut e, DATA + 0x13, &[0xab]);
    poke(&mut e, 0x10, &[0xcd]);
    set(&mut e, Gpr::Rbx, DATA);
    set(&mut e, Gpr::Rax, 0x13);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rcx), 0xab);
    assert_eq!(reg(&e, Gpr::Rax), 0xcd);
}

/// The legacy opcodes are invalid in 64-bit mode (#UD), XLAT is not.
#[test]
fn legacy_opcodes_raise_ud_in_64bit_mode() {
    let cases: [&[u8]; 11] = [
        &[0x60],             // pusha
        &[0x61],             // popa
        &[0x37],             // aaa
        &[0x3f],             // aas
        &[0x27],             // daa
        &[0x2f],             // das
        &[0xd4, 0x0a],       // aam
        &[0xd5, 0x0a],       // aad
        &[0xce],             // into
        &[0xd6],             // salc
        &[0x62, 0x05, 0, 0], // bound (an EVEX prefix in 64-bit mode)
    ];
    for c in cases {
        let mut code = c.to_vec();
        code.push(0xf4);
        let mut e = machine_at(64, CODE, &code);
        match e.run(10) {
            Exit::Exception(x) => assert_eq!(x.vector, 6, "{c:02x?}"),
            other => panic!("{c:02x?}: {other:?}"),
        }
        assert_eq!(e.cpu().rip, CODE, "{c:02x?}");
    }
    // XLAT works in 64-bit mode: AL = [RBX + AL].
    let mut e = machine_at(64, CODE, &[0xd7, 0xf4]);
    poke(&mut e, DATA + 5, &[0x5a]);
    set(&mut e, Gpr::Rbx, DATA);
    set(&mut e, Gpr::Rax, 0xffff_ff05);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ff5a);
}

/// 16-bit code: default operand size 16 (66 selects 32), 16-bit
/// addressing (67 selects 32), a 16-bit stack, LOOP on CX.
#[test]
fn sixteen_bit_code_basics() {
    let mut e = machine(16, |a| {
        a.mov(ax, 0x1234)?; // no prefix in 16-bit code
        a.mov(ebx, 0x8765_4321u32)?; // 66 prefix
        a.mov(si, 4)?;
        a.mov(bx, 0x100)?;
        a.mov(word_ptr(bx + si + 2), ax)?; // 16-bit addressing: 0x106
        a.mov(edx, dword_ptr(esi + 0x100))?; // 67 prefix: 0x104
        a.push(ax)?;
        a.mov(cx, 3)?;
        a.xor(di, di)?;
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.inc(di)?;
        a.loop_(top)
    });
    set(&mut e, Gpr::Rcx, 0xabcd_0000);
    set(&mut e, Gpr::Rsp, 0x5555_8000);
    run_halt(&mut e);
    assert_eq!(peek(&e, 0x106, 2), vec![0x34, 0x12]);
    assert_eq!(reg(&e, Gpr::Rdx) & 0xffff_0000, 0x1234_0000);
    assert_eq!(reg(&e, Gpr::Rbx), 0x8765_0100);
    // The 16-bit stack: SP moved by 2, the upper half of ESP kept.
    assert_eq!(reg(&e, Gpr::Rsp), 0x5555_7ffe);
    assert_eq!(peek(&e, 0x7ffe, 2), vec![0x34, 0x12]);
    assert_eq!(reg(&e, Gpr::Rdi) & 0xffff, 3);
    assert_eq!(reg(&e, Gpr::Rcx), 0xabcd_0000);
}

/// IP wraps at 16 bits in 16-bit code: a short jump near the top of the
/// segment lands at the bottom.
#[test]
fn sixteen_bit_ip_wraps() {
    // jmp short +0x10 at 0xfffc: next IP 0xfffe, target 0x1000e → 0x000e.
    let mut e = machine_at(16, 0xfffc, &[0xeb, 0x10]);
    poke(&mut e, 0x0e, &[0x40, 0xf4]); // inc ax; hlt
    run_halt(&mut e);
    assert_eq!(e.cpu().rip, 0x10);
    assert_eq!(reg(&e, Gpr::Rax), 1);
}

/// Near branches with a 66 prefix in 32-bit code use 16-bit targets and
/// 16-bit return addresses: CALL rel16 pushes a word and truncates EIP,
/// RET (66 C3) pops a word.
#[test]
fn o16_branches_in_32bit_code() {
    // At 0x1_2000: 66 e8 rel16 → target (0x2004 + rel) & 0xffff.
    // call to 0x3000 (low 16 bits), pushing the word 0x2004.
    let rel = 0x3000u16.wrapping_sub(0x2004);
    let mut code = vec![0x66, 0xe8];
    code.extend_from_slice(&rel.to_le_bytes());
    let mut e = machine_at(32, CODE, &code);
    // At 0x3000: add esp, 0 … pop the word back with `66 c3` to 0x2004+?:
    // write a word return address 0x4000 over it, then o16 ret.
    poke(
        &mut e,
        0x3000,
        &[0x66, 0xc7, 0x04, 0x24, 0x00, 0x40, 0x66, 0xc3], // mov word [esp],0x4000; retw
    );
    poke(&mut e, 0x4000, &[0xf4]);
    run_halt(&mut e);
    assert_eq!(e.cpu().rip, 0x4001);
    assert_eq!(reg(&e, Gpr::Rsp), STACK);
    // The call pushed exactly one word: 0x2004 (before it was replaced).
    assert_eq!(e.cpu().icount, 4);
}

/// 32-bit code: 32-bit register writes clear bits 63:32 as in 64-bit
/// mode, 16-bit ones keep them; EIP wraps at 4 GiB is covered by
/// `mask_ip`; a Jcc with a 66 prefix truncates EIP to 16 bits.
#[test]
fn o16_jcc_truncates_eip() {
    // 66 0f 84 rel16 (je) at CODE with ZF = 1: target (CODE + 5 + rel) & 0xffff.
    let rel = 0x0100u16.wrapping_sub((CODE + 5) as u16);
    let mut code = vec![0x66, 0x0f, 0x84];
    code.extend_from_slice(&rel.to_le_bytes());
    let mut e = machine_at(32, CODE, &code);
    poke(&mut e, 0x0100, &[0xf4]);
    e.cpu_mut().set_rflags(0x2 | ZF);
    run_halt(&mut e);
    assert_eq!(e.cpu().rip, 0x0101);
}
