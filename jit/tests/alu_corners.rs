//! Corner cases of the integer ALU families (shifts and rotates, MUL/DIV,
//! bit instructions, SETcc/CMOVcc, conversions), run through the engine in
//! flat 64-bit mode.
//!
//! Expected values come from the SDM's definitions (bit-by-bit reference
//! models below) or, where the SDM leaves a result undefined, from the host
//! CPU (an AMD EPYC; each such case says "host").

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::{Engine, Exception, Exit, Gpr};
use iced_x86::code_asm::*;

const CODE: u64 = 0x1000;
const TABLES: u64 = 0x3000;
const DATA: u64 = 0x8000;
const STACK: u64 = 0x10_0000;

const CF: u64 = 0x1;
const PF: u64 = 0x4;
const AF: u64 = 0x10;
const ZF: u64 = 0x40;
const SF: u64 = 0x80;
const OF: u64 = 0x800;
const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// RFLAGS with every arithmetic flag set (bit 1 is always 1).
const ALL_SET: u64 = ARITH | 2;

type Asm = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// Assemble `body` followed by HLT at `CODE`.
fn assemble(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    body(&mut a).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE).unwrap()
}

/// An engine in flat long mode with `code` at `CODE`, the given registers
/// and RFLAGS.
fn machine(code: &[u8], regs: &[(Gpr, u64)], rflags: u64) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.exceptions_exit = true;
    e.mem_mut().write_phys(GuestPhysAddr(CODE), code).unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
    for &(r, v) in regs {
        e.cpu_mut().set_reg(r, v);
    }
    e.cpu_mut().set_rflags(rflags);
    e
}

/// Run code to its HLT and return the engine.
fn run_bytes(code: &[u8], regs: &[(Gpr, u64)], rflags: u64) -> Engine {
    let mut e = machine(code, regs, rflags);
    let exit = e.run(1000);
    assert_eq!(exit, Exit::Halted, "rip {:#x}", e.cpu().rip);
    e
}

fn run(
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    regs: &[(Gpr, u64)],
    rflags: u64,
) -> Engine {
    run_bytes(&assemble(body), regs, rflags)
}

fn reg(e: &Engine, r: Gpr) -> u64 {
    e.cpu().reg(r)
}

fn flags(e: &Engine) -> u64 {
    e.cpu().rflags() & ARITH
}

fn write_mem(e: &mut Engine, addr: u64, v: u64) {
    e.mem_mut()
        .write_phys(GuestPhysAddr(addr), &v.to_le_bytes())
        .unwrap();
}

fn read_mem(e: &Engine, addr: u64) -> u64 {
    let mut b = [0u8; 8];
    e.mem().read_phys(GuestPhysAddr(addr), &mut b).unwrap();
    u64::from_le_bytes(b)
}

// ---------------------------------------------------------------- shifts

#[test]
fn shift_and_rotate_by_zero_keep_flags() {
    // CL = 0x20 and 0x40 mask to 0 for 32-bit and 64-bit operands.
    let cases: [(Asm, u64); 8] = [
        (|a| a.shl(eax, cl), 0x20),
        (|a| a.shr(eax, cl), 0x20),
        (|a| a.sar(eax, cl), 0x20),
        (|a| a.rol(eax, cl), 0x20),
        (|a| a.ror(eax, cl), 0x20),
        (|a| a.rcl(eax, cl), 0x20),
        (|a| a.rcr(eax, cl), 0x20),
        (|a| a.shld(eax, edx, cl), 0x20),
    ];
    for (n, (body, count)) in cases.into_iter().enumerate() {
        let e = run(
            body,
            &[
                (Gpr::Rax, 0xffff_ffff_1234_5678),
                (Gpr::Rcx, count),
                (Gpr::Rdx, 0x5555_5555),
            ],
            ALL_SET,
        );
        // Host: the 32-bit destination is still written (upper half
        // cleared) although nothing is shifted.
        assert_eq!(reg(&e, Gpr::Rax), 0x1234_5678, "case {n}");
        assert_eq!(flags(&e), ARITH, "case {n}");
    }
    // 64-bit: count 64 masks to 0; nothing changes at all.
    let e = run(
        |a| {
            a.sar(rbx, cl)?;
            a.shrd(rbx, rdx, 0)
        },
        &[(Gpr::Rbx, 0x8000_0000_0000_0001), (Gpr::Rcx, 64)],
        2 | ZF | CF,
    );
    assert_eq!(reg(&e, Gpr::Rbx), 0x8000_0000_0000_0001);
    assert_eq!(flags(&e), ZF | CF);
    // Immediate counts of 0 and 32 in memory: memory unchanged.
    let code = assemble(|a| {
        a.shl(byte_ptr(rbx), 0)?;
        a.rol(dword_ptr(rbx), 32)
    });
    let mut e = machine(&code, &[(Gpr::Rbx, DATA)], 2 | SF | PF);
    write_mem(&mut e, DATA, 0x8765_4321);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(read_mem(&e, DATA), 0x8765_4321);
    assert_eq!(flags(&e), SF | PF);
}

#[test]
fn shifts_by_width_or_more() {
    // 8-bit: 0x81 shifted by 8 or more. AH and the upper bits stay.
    let e = run(|a| a.shl(al, cl), &[(Gpr::Rax, 0x1181), (Gpr::Rcx, 8)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x1100);
    // The last bit out is bit 0 (host agrees; the SDM leaves CF undefined).
    assert_eq!(flags(&e) & (ZF | CF | SF), ZF | CF);
    let e = run(|a| a.shl(al, cl), &[(Gpr::Rax, 0x1181), (Gpr::Rcx, 9)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x1100);
    assert_eq!(flags(&e) & (ZF | CF | SF), ZF);
    let e = run(|a| a.shr(al, 8), &[(Gpr::Rax, 0x1181)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x1100);
    assert_eq!(flags(&e) & (ZF | CF), ZF | CF);
    let e = run(|a| a.sar(al, cl), &[(Gpr::Rax, 0x1181), (Gpr::Rcx, 31)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x11ff);
    assert_eq!(flags(&e) & (ZF | CF | SF), SF | CF);
    // 16-bit (66 prefix): bits 63:16 are kept.
    let e = run(
        |a| a.shl(ax, cl),
        &[(Gpr::Rax, 0xdead_beef_0011_8001), (Gpr::Rcx, 16)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xdead_beef_0011_0000);
    assert_eq!(flags(&e) & (ZF | CF), ZF | CF);
    let e = run(|a| a.sar(ax, 17), &[(Gpr::Rax, 0xdead_beef_0011_8001)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0xdead_beef_0011_ffff);
    // Counts below the width follow the SDM exactly.
    let e = run(|a| a.shr(ax, 15), &[(Gpr::Rax, 0x0011_8001)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x0011_0001);
    assert_eq!(flags(&e) & (ZF | CF | SF), 0); // CF = bit 14 = 0
    let e = run(|a| a.shl(rax, 63), &[(Gpr::Rax, 3)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x8000_0000_0000_0000);
    assert_eq!(flags(&e) & (ZF | CF | SF), SF | CF); // CF = bit 1
}

#[test]
fn shift_by_one_flags() {
    // SHL by 1: OF = MSB(result) ^ CF.
    let e = run(|a| a.shl(eax, 1), &[(Gpr::Rax, 0x4000_0000)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x8000_0000);
    assert_eq!(flags(&e) & (OF | CF | SF | ZF), OF | SF);
    // SHR by 1: OF = MSB of the original.
    let e = run(|a| a.shr(bl, 1), &[(Gpr::Rbx, 0x81)], 2);
    assert_eq!(reg(&e, Gpr::Rbx), 0x40);
    assert_eq!(flags(&e) & (OF | CF | SF | ZF), OF | CF);
    // SAR by 1: OF = 0.
    let e = run(|a| a.sar(bx, 1), &[(Gpr::Rbx, 0x8001)], 2 | OF);
    assert_eq!(reg(&e, Gpr::Rbx), 0xc000);
    assert_eq!(flags(&e) & (OF | CF | SF | ZF), CF | SF);
}

/// SDM pseudo-code models of the rotates on a `bits`-wide value: result,
/// and CF/OF if the flags change (masked count non-zero).
fn rotate_model(
    kind: &str,
    bits: u32,
    v: u64,
    cf: bool,
    count: u64,
) -> (u64, Option<(bool, bool)>) {
    let mask = u64::MAX >> (64 - bits);
    let msb = |x: u64| x >> (bits - 1) & 1 == 1;
    let c = count & if bits == 64 { 63 } else { 31 };
    let (mut x, mut carry) = (v, cf);
    let steps = match kind {
        "rcl" | "rcr" => c % (bits as u64 + 1),
        _ => c % bits as u64,
    };
    for _ in 0..steps {
        match kind {
            "rol" => x = (x << 1 | x >> (bits - 1)) & mask,
            "ror" => x = (x >> 1 | (x & 1) << (bits - 1)) & mask,
            "rcl" => {
                let out = msb(x);
                x = (x << 1 | carry as u64) & mask;
                carry = out;
            }
            _ => {
                let out = x & 1 == 1;
                x = x >> 1 | (carry as u64) << (bits - 1);
                carry = out;
            }
        }
    }
    if c == 0 {
        return (x, None);
    }
    let (cf, of) = match kind {
        "rol" => (x & 1 == 1, msb(x) ^ (x & 1 == 1)),
        "ror" => (msb(x), msb(x) ^ (x >> (bits - 2) & 1 == 1)),
        "rcl" => (carry, msb(x) ^ carry),
        _ => (carry, msb(x) ^ (x >> (bits - 2) & 1 == 1)),
    };
    (x, Some((cf, of)))
}

#[test]
fn rotates_match_the_sdm_model() {
    let ops: [(&str, u32, Asm); 12] = [
        ("rol", 8, |a| a.rol(bl, cl)),
        ("ror", 8, |a| a.ror(bl, cl)),
        ("rcl", 8, |a| a.rcl(bl, cl)),
        ("rcr", 8, |a| a.rcr(bl, cl)),
        ("rol", 16, |a| a.rol(bx, cl)),
        ("ror", 16, |a| a.ror(bx, cl)),
        ("rcl", 16, |a| a.rcl(bx, cl)),
        ("rcr", 16, |a| a.rcr(bx, cl)),
        ("rcl", 32, |a| a.rcl(ebx, cl)),
        ("rcr", 32, |a| a.rcr(ebx, cl)),
        ("rcl", 64, |a| a.rcl(rbx, cl)),
        ("rcr", 64, |a| a.rcr(rbx, cl)),
    ];
    let value = 0xa5c3_96e1_0f78_d2b4u64;
    for (kind, bits, body) in ops {
        let code = assemble(body);
        let v = if bits == 64 {
            value
        } else {
            value & ((1 << bits) - 1)
        };
        let upper = if bits < 32 {
            0x1234_5678_9abc_0000 & !((1u64 << bits) - 1)
        } else {
            0
        };
        for count in [0u64, 1, 2, 7, 8, 9, 15, 16, 17, 18, 19, 31, 32, 33, 63] {
            for cf in [false, true] {
                let start = 2 | PF | ZF | if cf { CF | OF } else { 0 };
                let e = run_bytes(&code, &[(Gpr::Rbx, upper | v), (Gpr::Rcx, count)], start);
                let (want, fl) = rotate_model(kind, bits, v, cf, count);
                let what = format!("{kind}{bits} {v:#x} by {count} cf={cf}");
                assert_eq!(reg(&e, Gpr::Rbx), upper | want, "{what}");
                let got = flags(&e);
                match fl {
                    None => assert_eq!(got, start & ARITH, "{what}: flags kept"),
                    Some((c, o)) => {
                        assert_eq!(got & CF != 0, c, "{what}: CF");
                        // OF is defined for a masked count of 1 only.
                        if count & if bits == 64 { 63 } else { 31 } == 1 {
                            assert_eq!(got & OF != 0, o, "{what}: OF");
                        }
                        assert_eq!(got & (PF | ZF), PF | ZF, "{what}: others kept");
                    }
                }
            }
        }
    }
}

#[test]
fn rcl_rcr_8bit_host_values() {
    // Host: AL = 0xa5 with CF = 1 (and OF set before).
    for (count, rcl, rcl_f, rcr, rcr_f) in [
        (1u64, 0x4b, CF | OF, 0xd2, CF),
        (2, 0x97, OF, 0xe9, 0),
        (3, 0x2e, CF | OF, 0x74, CF | OF),
        (8, 0xd2, CF, 0x4b, CF | OF),
        (9, 0xa5, CF, 0xa5, CF | OF),
        (13, 0x5d, 0, 0xba, OF),
    ] {
        let e = run(
            |a| a.rcl(ah, cl),
            &[(Gpr::Rax, 0xa511), (Gpr::Rcx, count)],
            2 | CF | OF,
        );
        assert_eq!(reg(&e, Gpr::Rax), rcl << 8 | 0x11, "rcl by {count}");
        assert_eq!(flags(&e) & (CF | OF), rcl_f, "rcl by {count}");
        let e = run(
            |a| a.rcr(ah, cl),
            &[(Gpr::Rax, 0xa511), (Gpr::Rcx, count)],
            2 | CF | OF,
        );
        assert_eq!(reg(&e, Gpr::Rax), rcr << 8 | 0x11, "rcr by {count}");
        assert_eq!(flags(&e) & (CF | OF), rcr_f, "rcr by {count}");
    }
}

#[test]
fn rotate_memory_operand() {
    let code = assemble(|a| {
        a.rol(word_ptr(rbx + 2), 4)?;
        a.rcr(qword_ptr(rbx + 8), 1)
    });
    let mut e = machine(&code, &[(Gpr::Rbx, DATA)], 2 | CF);
    write_mem(&mut e, DATA, 0x0000_0000_1234_0000);
    write_mem(&mut e, DATA + 8, 0x2);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(read_mem(&e, DATA), 0x0000_0000_2341_0000);
    // RCR by 1 of 2 with CF=1: 0x8000_0000_0000_0001, CF = 0.
    assert_eq!(read_mem(&e, DATA + 8), 0x8000_0000_0000_0001);
    assert_eq!(flags(&e) & (CF | OF), OF);
}

#[test]
fn shld_shrd_32_and_64() {
    let e = run(
        |a| a.shld(eax, edx, 4),
        &[(Gpr::Rax, 0xffff_ffff_1234_5678), (Gpr::Rdx, 0x9abc_def0)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0x2345_6789);
    assert_eq!(flags(&e) & (CF | ZF | SF), CF); // CF = bit 28 of 0x12345678
    let e = run(
        |a| a.shrd(eax, edx, 4),
        &[(Gpr::Rax, 0x1234_5678), (Gpr::Rdx, 0x9abc_def1)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0x1123_4567);
    assert_eq!(flags(&e) & (CF | ZF | SF), CF); // CF = bit 3
                                                // Against the concatenation model for 32 and 64 bits, all counts.
    let (d, s) = (0x8123_4567_89ab_cdefu64, 0xfedc_ba98_7654_3210u64);
    let shld64 = assemble(|a| a.shld(rbx, rdx, cl));
    let shrd64 = assemble(|a| a.shrd(rbx, rdx, cl));
    let shld32 = assemble(|a| a.shld(ebx, edx, cl));
    let shrd32 = assemble(|a| a.shrd(ebx, edx, cl));
    for c in 1..64u64 {
        let regs = [(Gpr::Rbx, d), (Gpr::Rdx, s), (Gpr::Rcx, c)];
        let cat = (d as u128) << 64 | s as u128;
        let e = run_bytes(&shld64, &regs, 2);
        assert_eq!(reg(&e, Gpr::Rbx), (cat << c >> 64) as u64, "shld64 {c}");
        assert_eq!(flags(&e) & CF != 0, d >> (64 - c) & 1 == 1, "shld64 {c} CF");
        let cat = (s as u128) << 64 | d as u128;
        let e = run_bytes(&shrd64, &regs, 2);
        assert_eq!(reg(&e, Gpr::Rbx), (cat >> c) as u64, "shrd64 {c}");
        assert_eq!(flags(&e) & CF != 0, d >> (c - 1) & 1 == 1, "shrd64 {c} CF");
        if c < 32 {
            let (d, s) = (d & 0xffff_ffff, s & 0xffff_ffff);
            let e = run_bytes(&shld32, &regs, 2);
            assert_eq!(
                reg(&e, Gpr::Rbx),
                ((d << 32 | s) << c >> 32) & 0xffff_ffff,
                "shld32 {c}"
            );
            assert_eq!(flags(&e) & CF != 0, d >> (32 - c) & 1 == 1, "shld32 {c} CF");
            let e = run_bytes(&shrd32, &regs, 2);
            assert_eq!(
                reg(&e, Gpr::Rbx),
                ((s << 32 | d) >> c) & 0xffff_ffff,
                "shrd32 {c}"
            );
            assert_eq!(flags(&e) & CF != 0, d >> (c - 1) & 1 == 1, "shrd32 {c} CF");
        }
    }
    // OF for a count of 1: set when the sign changes.
    let e = run(|a| a.shld(ebx, edx, 1), &[(Gpr::Rbx, 0x4000_0000)], 2);
    assert_eq!(flags(&e) & (OF | SF), OF | SF);
    let e = run(
        |a| a.shrd(ebx, edx, 1),
        &[(Gpr::Rbx, 0x8000_0000), (Gpr::Rdx, 0)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rbx), 0x4000_0000);
    assert_eq!(flags(&e) & (OF | SF), OF);
    let e = run(
        |a| a.shrd(ebx, edx, 1),
        &[(Gpr::Rbx, 0x8000_0000), (Gpr::Rdx, 1)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rbx), 0xc000_0000);
    assert_eq!(flags(&e) & (OF | SF), SF);
}

#[test]
fn shld_shrd_16bit_counts_past_16() {
    // Host values for AX = 0xa5c3, DX = 0xe817. Counts up to 16 follow the
    // SDM; past 16 (undefined) the host rotates the source by count - 16.
    for (c, shld, shrd) in [
        (1u64, 0x4b87, 0xd2e1),
        (4, 0x5c3e, 0x7a5c),
        (15, 0xf40b, 0xd02f),
        (16, 0xe817, 0xe817),
        (17, 0xd02f, 0xf40b),
        (20, 0x817e, 0x7e81),
        (24, 0x17e8, 0x17e8),
        (31, 0xf40b, 0xd02f),
    ] {
        let regs = [
            (Gpr::Rax, 0x5555_0000_1111_a5c3),
            (Gpr::Rdx, 0xe817),
            (Gpr::Rcx, c),
        ];
        let e = run(|a| a.shld(ax, dx, cl), &regs, 2);
        assert_eq!(reg(&e, Gpr::Rax), 0x5555_0000_1111_0000 | shld, "shld {c}");
        let e = run(|a| a.shrd(ax, dx, cl), &regs, 2);
        assert_eq!(reg(&e, Gpr::Rax), 0x5555_0000_1111_0000 | shrd, "shrd {c}");
    }
    // Count 1 flags (host): SHLD CF=1 OF=1; SHRD CF=1 OF=0 SF=1.
    let regs = [(Gpr::Rax, 0xa5c3), (Gpr::Rdx, 0xe817)];
    let e = run(|a| a.shld(ax, dx, 1), &regs, 2);
    assert_eq!(flags(&e) & (CF | OF | SF | ZF), CF | OF);
    let e = run(|a| a.shrd(ax, dx, 1), &regs, 2);
    assert_eq!(flags(&e) & (CF | OF | SF | ZF), CF | SF);
}

// ---------------------------------------------------------------- mul/div

#[test]
fn mul_high_halves_and_flags() {
    // 64-bit unsigned: (2^64 - 1) * 2 = 1:fffffffffffffffe.
    let e = run(|a| a.mul(rbx), &[(Gpr::Rax, u64::MAX), (Gpr::Rbx, 2)], 2);
    assert_eq!(reg(&e, Gpr::Rdx), 1);
    assert_eq!(reg(&e, Gpr::Rax), u64::MAX - 1);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // Fits: CF = OF = 0, RDX cleared.
    let e = run(
        |a| a.mul(rbx),
        &[(Gpr::Rax, 1 << 40), (Gpr::Rbx, 1 << 20), (Gpr::Rdx, 7)],
        2 | CF | OF,
    );
    assert_eq!((reg(&e, Gpr::Rdx), reg(&e, Gpr::Rax)), (0, 1 << 60));
    assert_eq!(flags(&e) & (CF | OF), 0);
    // 64-bit signed: -1 * 2 = -2 fits; RDX = all ones.
    let e = run(|a| a.imul(rbx), &[(Gpr::Rax, u64::MAX), (Gpr::Rbx, 2)], 2);
    assert_eq!(
        (reg(&e, Gpr::Rdx), reg(&e, Gpr::Rax)),
        (u64::MAX, u64::MAX - 1)
    );
    assert_eq!(flags(&e) & (CF | OF), 0);
    // 2^62 * 4 = 2^64: high = 1, low = 0, overflow.
    let e = run(|a| a.imul(rbx), &[(Gpr::Rax, 1 << 62), (Gpr::Rbx, 4)], 2);
    assert_eq!((reg(&e, Gpr::Rdx), reg(&e, Gpr::Rax)), (1, 0));
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // 32-bit: EDX:EAX, both upper halves cleared.
    let e = run(
        |a| a.mul(ebx),
        &[
            (Gpr::Rax, 0xdead_0000_ffff_ffff),
            (Gpr::Rbx, 0x10),
            (Gpr::Rdx, u64::MAX),
        ],
        2,
    );
    assert_eq!((reg(&e, Gpr::Rdx), reg(&e, Gpr::Rax)), (0xf, 0xffff_fff0));
    // 16-bit: DX:AX, upper bits kept.
    let e = run(
        |a| a.imul(bx),
        &[
            (Gpr::Rax, 0x1111_0000_0000_8000),
            (Gpr::Rbx, 2),
            (Gpr::Rdx, 0x2222_0000_0000_0000),
        ],
        2,
    );
    // -32768 * 2 = -65536 = 0xffff:0000.
    assert_eq!(reg(&e, Gpr::Rax), 0x1111_0000_0000_0000);
    assert_eq!(reg(&e, Gpr::Rdx), 0x2222_0000_0000_ffff);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // 8-bit with high-byte registers: MUL AH: AX = AL * AH.
    let e = run(|a| a.mul(ah), &[(Gpr::Rax, 0x7777_2010)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x7777_0200);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // IMUL BH: -128 * -1 = 128 does not fit a signed byte.
    let e = run(|a| a.imul(bh), &[(Gpr::Rax, 0x5580), (Gpr::Rbx, 0xff00)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x0080);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // -2 * -3 = 6 fits.
    let e = run(|a| a.imul(bl), &[(Gpr::Rax, 0x55fe), (Gpr::Rbx, 0xfd)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x0006);
    assert_eq!(flags(&e) & (CF | OF), 0);
}

#[test]
fn imul_two_and_three_operands() {
    // 3-operand with a sign-extended imm8: 0x40000000 * -3 overflows 32 bits.
    let e = run(
        |a| a.imul_3(ecx, ebx, -3),
        &[(Gpr::Rbx, 0x4000_0000), (Gpr::Rcx, u64::MAX)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rcx), (-(3i64 << 30) as u64) & 0xffff_ffff);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // imm32, 64-bit, fits.
    let e = run(
        |a| a.imul_3(rcx, rbx, 100_000),
        &[(Gpr::Rbx, (-5i64) as u64)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rcx), (-500_000i64) as u64);
    assert_eq!(flags(&e) & (CF | OF), 0);
    // 2-operand 16-bit keeps bits 63:16.
    let e = run(
        |a| a.imul_2(cx, bx),
        &[(Gpr::Rcx, 0xabcd_0000_0000_0100), (Gpr::Rbx, 0x0100)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rcx), 0xabcd_0000_0000_0000);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
    // 2-operand 64-bit with a memory source.
    let code = assemble(|a| a.imul_2(rcx, qword_ptr(rbx)));
    let mut e = machine(&code, &[(Gpr::Rbx, DATA), (Gpr::Rcx, 1 << 32)], 2);
    write_mem(&mut e, DATA, 1 << 31);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(reg(&e, Gpr::Rcx), 1 << 63);
    assert_eq!(flags(&e) & (CF | OF), CF | OF);
}

#[test]
fn div_idiv_results() {
    // 128-bit dividend: (5 << 64 | 7) / 6.
    let n = 5u128 << 64 | 7;
    let e = run(
        |a| a.div(rbx),
        &[(Gpr::Rdx, 5), (Gpr::Rax, 7), (Gpr::Rbx, 6)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), (n / 6) as u64);
    assert_eq!(reg(&e, Gpr::Rdx), (n % 6) as u64);
    // IDIV rounds toward zero; the remainder takes the dividend's sign.
    let e = run(
        |a| a.idiv(rbx),
        &[
            (Gpr::Rdx, u64::MAX),
            (Gpr::Rax, (-7i64) as u64),
            (Gpr::Rbx, 2),
        ],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), (-3i64) as u64);
    assert_eq!(reg(&e, Gpr::Rdx), (-1i64) as u64);
    // 32-bit: both results zero-extended.
    let e = run(
        |a| a.idiv(ecx),
        &[(Gpr::Rdx, 0), (Gpr::Rax, 100), (Gpr::Rcx, (-7i64) as u64)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), (-14i32) as u32 as u64);
    assert_eq!(reg(&e, Gpr::Rdx), 2);
    // 16-bit: DX:AX / CX, upper bits kept.
    let e = run(
        |a| a.div(cx),
        &[
            (Gpr::Rdx, 0x9999_0000_0000_0001),
            (Gpr::Rax, 0x8888_0000_0000_0003),
            (Gpr::Rcx, 0x10),
        ],
        2,
    );
    // 0x1_0003 / 0x10 = 0x1000 rem 3.
    assert_eq!(reg(&e, Gpr::Rax), 0x8888_0000_0000_1000);
    assert_eq!(reg(&e, Gpr::Rdx), 0x9999_0000_0000_0003);
    // 8-bit: AX / BH -> AL quotient, AH remainder.
    let e = run(|a| a.idiv(bh), &[(Gpr::Rax, 0xfff9), (Gpr::Rbx, 0x0200)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0xfffd); // -7 / 2 = -3 rem -1
    let e = run(
        |a| a.div(bl),
        &[(Gpr::Rax, 0x1234_00ff), (Gpr::Rbx, 0x10)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0x1234_0f0f);
    // DIV leaves the (undefined) flags as they were.
    let e = run(
        |a| a.div(bl),
        &[(Gpr::Rax, 10), (Gpr::Rbx, 3)],
        2 | ZF | OF | PF,
    );
    assert_eq!(flags(&e), ZF | OF | PF);
}

/// Run `body` and expect #DE at CODE with the given registers unchanged.
fn expect_de(body: Asm, regs: &[(Gpr, u64)]) {
    let code = assemble(body);
    let mut e = machine(&code, regs, 2 | CF);
    let exit = e.run(100);
    assert_eq!(exit, Exit::Exception(Exception::de()), "regs {regs:x?}");
    assert_eq!(e.cpu().rip, CODE);
    assert_eq!(e.cpu().icount, 0);
    for &(r, v) in regs {
        assert_eq!(reg(&e, r), v, "{r:?}");
    }
    assert_eq!(flags(&e), CF);
}

#[test]
fn divide_errors() {
    let min64 = 1u64 << 63;
    // Divide by zero.
    expect_de(
        |a| a.div(rbx),
        &[(Gpr::Rax, 5), (Gpr::Rdx, 0), (Gpr::Rbx, 0)],
    );
    expect_de(|a| a.idiv(bl), &[(Gpr::Rax, 5), (Gpr::Rbx, 0x100)]);
    // Quotient too wide.
    expect_de(|a| a.div(bl), &[(Gpr::Rax, 0x1000), (Gpr::Rbx, 0x10)]);
    expect_de(
        |a| a.div(ecx),
        &[(Gpr::Rax, 0), (Gpr::Rdx, 1), (Gpr::Rcx, 1)],
    );
    expect_de(
        |a| a.div(rcx),
        &[(Gpr::Rax, 0), (Gpr::Rdx, 7), (Gpr::Rcx, 7)],
    );
    // Most negative dividend over -1.
    expect_de(
        |a| a.idiv(ecx),
        &[
            (Gpr::Rax, 0x8000_0000),
            (Gpr::Rdx, 0xffff_ffff),
            (Gpr::Rcx, 0xffff_ffff),
        ],
    );
    expect_de(
        |a| a.idiv(rcx),
        &[
            (Gpr::Rax, min64),
            (Gpr::Rdx, u64::MAX),
            (Gpr::Rcx, u64::MAX),
        ],
    );
    // The whole 128-bit dividend most negative.
    expect_de(
        |a| a.idiv(rcx),
        &[(Gpr::Rax, 0), (Gpr::Rdx, min64), (Gpr::Rcx, u64::MAX)],
    );
    expect_de(|a| a.idiv(cl), &[(Gpr::Rax, 0x8000), (Gpr::Rcx, 0xff)]);
    // Positive quotient one past the signed maximum: 128 / 1 in 8 bits.
    expect_de(|a| a.idiv(cl), &[(Gpr::Rax, 0x0080), (Gpr::Rcx, 1)]);
    // ...while -128 / 1 fits.
    let e = run(|a| a.idiv(cl), &[(Gpr::Rax, 0xff80), (Gpr::Rcx, 1)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x0080);
}

// ---------------------------------------------------------------- bits

#[test]
fn bsf_bsr_of_zero() {
    for body in [
        (|a| a.bsf(eax, ebx)) as Asm,
        |a| a.bsr(eax, ebx),
        |a| a.bsf(ax, bx),
        |a| a.bsr(rax, rbx),
    ] {
        // Host: the destination keeps all 64 bits, ZF = 1.
        let e = run(body, &[(Gpr::Rax, 0xffff_ffff_1234_5678), (Gpr::Rbx, 0)], 2);
        assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_1234_5678);
        assert_ne!(flags(&e) & ZF, 0);
    }
    let regs = [(Gpr::Rax, u64::MAX), (Gpr::Rbx, 0x00f0_0100)];
    let e = run(|a| a.bsf(eax, ebx), &regs, 2 | ZF);
    assert_eq!((reg(&e, Gpr::Rax), flags(&e) & ZF), (8, 0));
    let e = run(|a| a.bsr(eax, ebx), &regs, 2 | ZF);
    assert_eq!((reg(&e, Gpr::Rax), flags(&e) & ZF), (23, 0));
    let e = run(
        |a| a.bsr(ax, bx),
        &[(Gpr::Rax, u64::MAX), (Gpr::Rbx, 0x8000)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_000f);
    let e = run(|a| a.bsr(rax, rbx), &[(Gpr::Rbx, 1 << 63)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 63);
}

#[test]
fn tzcnt_lzcnt_popcnt() {
    // Source 0: the operand width, CF = 1, ZF = 0.
    let e = run(|a| a.tzcnt(eax, ebx), &[(Gpr::Rax, u64::MAX)], 2 | ZF);
    assert_eq!(reg(&e, Gpr::Rax), 32);
    assert_eq!(flags(&e) & (CF | ZF), CF);
    let e = run(|a| a.lzcnt(ax, bx), &[(Gpr::Rax, u64::MAX)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_0010);
    assert_eq!(flags(&e) & (CF | ZF), CF);
    let e = run(|a| a.lzcnt(rax, rbx), &[], 2);
    assert_eq!(reg(&e, Gpr::Rax), 64);
    // Result 0: ZF = 1, CF = 0.
    let e = run(|a| a.tzcnt(rax, rbx), &[(Gpr::Rbx, 1)], 2 | CF);
    assert_eq!((reg(&e, Gpr::Rax), flags(&e) & (CF | ZF)), (0, ZF));
    let e = run(|a| a.lzcnt(eax, ebx), &[(Gpr::Rbx, 0x8000_0000)], 2);
    assert_eq!((reg(&e, Gpr::Rax), flags(&e) & (CF | ZF)), (0, ZF));
    // Ordinary values; LZCNT counts within the operand width.
    let e = run(|a| a.lzcnt(ax, bx), &[(Gpr::Rbx, 0xffff_0001)], 2);
    assert_eq!((reg(&e, Gpr::Rax), flags(&e) & (CF | ZF)), (15, 0));
    let e = run(
        |a| a.tzcnt(ebx, dword_ptr(rcx)),
        &[(Gpr::Rcx, DATA + 0x10)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rbx), 32); // memory there is zero
                                       // POPCNT: ZF = source is zero, every other arithmetic flag cleared.
    let e = run(|a| a.popcnt(eax, ebx), &[(Gpr::Rax, u64::MAX)], ALL_SET);
    assert_eq!((reg(&e, Gpr::Rax), flags(&e)), (0, ZF));
    let e = run(
        |a| a.popcnt(rax, rbx),
        &[(Gpr::Rbx, 0xff00_ff00_0000_0007)],
        ALL_SET,
    );
    assert_eq!((reg(&e, Gpr::Rax), flags(&e)), (19, 0));
    let e = run(
        |a| a.popcnt(ax, bx),
        &[(Gpr::Rax, u64::MAX), (Gpr::Rbx, 0xffff_ffff)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_0010);
}

#[test]
fn bt_family_registers_and_immediates() {
    // Register destination: the offset is masked to the width; ZF and the
    // other flags are kept.
    let e = run(
        |a| a.bt(eax, ecx),
        &[(Gpr::Rax, 0x8000_0000), (Gpr::Rcx, 63)],
        2 | ZF | SF,
    );
    assert_eq!(flags(&e), CF | ZF | SF);
    let e = run(
        |a| a.btr(eax, 35),
        &[(Gpr::Rax, 0xffff_ffff_ffff_ffff)],
        2 | ZF,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_fff7);
    assert_eq!(flags(&e), CF | ZF);
    let e = run(|a| a.bts(rax, 40), &[], 2 | CF);
    assert_eq!(reg(&e, Gpr::Rax), 1 << 40);
    assert_eq!(flags(&e), 0);
    let e = run(|a| a.btc(ax, 17), &[(Gpr::Rax, 0x1_0002)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x1_0000);
    assert_eq!(flags(&e), CF);
    // Memory with an imm8: masked to the width, no address change.
    let code = assemble(|a| {
        a.bts(dword_ptr(rbx), 33)?;
        a.bt(qword_ptr(rbx), 1)
    });
    let mut e = machine(&code, &[(Gpr::Rbx, DATA)], 2);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(read_mem(&e, DATA), 2);
    assert_eq!(flags(&e), CF);
}

#[test]
fn bt_register_offset_reaches_outside_the_operand() {
    let base = DATA + 0x2000;
    // BT dword [rbx], ecx with ecx = -1: bit 31 of the dword at rbx - 4.
    let code = assemble(|a| a.bt(dword_ptr(rbx), ecx));
    let mut e = machine(&code, &[(Gpr::Rbx, base), (Gpr::Rcx, 0xffff_ffff)], 2);
    write_mem(&mut e, base - 4, 0x8000_0000);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(flags(&e), CF);
    // BTS qword [rbx], rcx with rcx = -65: qword at rbx - 16, bit 63.
    let code = assemble(|a| a.bts(qword_ptr(rbx), rcx));
    let mut e = machine(
        &code,
        &[(Gpr::Rbx, base), (Gpr::Rcx, (-65i64) as u64)],
        2 | CF,
    );
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(read_mem(&e, base - 16), 1 << 63);
    assert_eq!(read_mem(&e, base), 0);
    assert_eq!(flags(&e), 0);
    // BTC word [rbx+2], cx with cx = 0x8000 (-32768; the upper bits of RCX
    // are ignored): word at rbx + 2 - 4096, bit 0.
    let code = assemble(|a| a.btc(word_ptr(rbx + 2), cx));
    let mut e = machine(
        &code,
        &[(Gpr::Rbx, base), (Gpr::Rcx, 0x7777_0000_0000_8000)],
        2,
    );
    write_mem(&mut e, base + 2 - 4096, 0xffff_0001);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(read_mem(&e, base + 2 - 4096) & 0xffff_ffff, 0xffff_0000);
    assert_eq!(flags(&e), CF);
    // A large positive offset: BTR dword [rbx], ecx with ecx = 100 →
    // dword at rbx + 12, bit 4.
    let code = assemble(|a| a.btr(dword_ptr(rbx), ecx));
    let mut e = machine(&code, &[(Gpr::Rbx, base), (Gpr::Rcx, 100)], 2);
    write_mem(&mut e, base + 12, 0xff);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(read_mem(&e, base + 12), 0xef);
    assert_eq!(flags(&e), CF);
}

#[test]
fn bmi1_instructions() {
    // ANDN: !src1 & src2; SF ZF from the result, CF OF cleared.
    let e = run(
        |a| a.andn(eax, ebx, ecx),
        &[(Gpr::Rbx, 0xf0f0_f0f0), (Gpr::Rcx, 0x0ff0_0ff0)],
        2 | CF | OF,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0x0f00_0f00);
    assert_eq!(flags(&e) & (CF | OF | ZF | SF), 0);
    let e = run(
        |a| a.andn(rax, rbx, rcx),
        &[(Gpr::Rbx, 0x0f), (Gpr::Rcx, 0xffff_ffff_ffff_fff0)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_fff0);
    assert_eq!(flags(&e) & (ZF | SF), SF);
    // BEXTR: control = len << 8 | start (host values).
    let src = 0xf234_5678_8765_4321u64;
    for (ctl, r32, r64) in [
        (0x0804u64, 0x32u64, 0x32u64),
        (0x2004, 0x0876_5432, 0x8876_5432),
        (0x0420, 0, 0x8),
        (0x0000, 0, 0),
        (0xff00, 0x8765_4321, src),
        (0x3f3c, 0, 0xf),
    ] {
        let regs = [(Gpr::Rbx, src), (Gpr::Rcx, ctl), (Gpr::Rax, u64::MAX)];
        let e = run(|a| a.bextr(eax, ebx, ecx), &regs, 2 | CF | OF);
        assert_eq!(reg(&e, Gpr::Rax), r32, "bextr32 {ctl:#x}");
        assert_eq!(flags(&e) & (CF | OF | ZF), if r32 == 0 { ZF } else { 0 });
        let e = run(|a| a.bextr(rax, rbx, rcx), &regs, 2);
        assert_eq!(reg(&e, Gpr::Rax), r64, "bextr64 {ctl:#x}");
    }
    // BLSI / BLSMSK / BLSR, flags as the host gives (AF PF masked out).
    let fl = |e: &Engine| flags(e) & (CF | OF | ZF | SF);
    let e = run(|a| a.blsi(eax, ebx), &[(Gpr::Rbx, 0)], 2 | OF);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0, ZF));
    let e = run(|a| a.blsi(eax, ebx), &[(Gpr::Rbx, 0x8000_0000)], 2);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0x8000_0000, CF | SF));
    let e = run(|a| a.blsi(rax, rbx), &[(Gpr::Rbx, 0x0ff0)], 2);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0x10, CF));
    let e = run(|a| a.blsmsk(eax, ebx), &[(Gpr::Rbx, 0)], 2);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0xffff_ffff, CF | SF));
    let e = run(|a| a.blsmsk(eax, ebx), &[(Gpr::Rbx, 8)], 2 | ZF);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0xf, 0));
    let e = run(|a| a.blsr(eax, ebx), &[(Gpr::Rbx, 0)], 2);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0, CF | ZF));
    let e = run(|a| a.blsr(eax, ebx), &[(Gpr::Rbx, 0x8000_0000)], 2);
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (0, ZF));
    let e = run(
        |a| a.blsr(rax, rbx),
        &[(Gpr::Rbx, 0xc000_0000_0000_0000)],
        2,
    );
    assert_eq!((reg(&e, Gpr::Rax), fl(&e)), (1 << 63, SF));
}

// ---------------------------------------------------------------- cond

/// SETcc of all 16 conditions (encoding order) after `cmp a, b`.
fn expected_conditions(a: u32, b: u32) -> [u8; 16] {
    let r = a.wrapping_sub(b);
    let of = (a as i32).checked_sub(b as i32).is_none();
    let cf = a < b;
    let zf = a == b;
    let sf = (r as i32) < 0;
    let pf = (r as u8).count_ones().is_multiple_of(2);
    let l = (a as i32) < (b as i32);
    let base = [of, cf, zf, cf || zf, sf, pf, l, l || zf];
    let mut out = [0u8; 16];
    for (n, &c) in base.iter().enumerate() {
        out[2 * n] = c as u8;
        out[2 * n + 1] = !c as u8;
    }
    out
}

#[test]
fn setcc_all_conditions_after_cmp() {
    let code = assemble(|a| {
        a.cmp(eax, ebx)?;
        a.seto(byte_ptr(rdi))?;
        a.setno(byte_ptr(rdi + 1))?;
        a.setb(byte_ptr(rdi + 2))?;
        a.setae(byte_ptr(rdi + 3))?;
        a.sete(byte_ptr(rdi + 4))?;
        a.setne(byte_ptr(rdi + 5))?;
        a.setbe(byte_ptr(rdi + 6))?;
        a.seta(byte_ptr(rdi + 7))?;
        a.sets(byte_ptr(rdi + 8))?;
        a.setns(byte_ptr(rdi + 9))?;
        a.setp(byte_ptr(rdi + 10))?;
        a.setnp(byte_ptr(rdi + 11))?;
        a.setl(byte_ptr(rdi + 12))?;
        a.setge(byte_ptr(rdi + 13))?;
        a.setle(byte_ptr(rdi + 14))?;
        a.setg(byte_ptr(rdi + 15))
    });
    let pairs = [
        (5u32, 7u32),
        (7, 5),
        (3, 3),
        (0x8000_0000, 1),
        (0x7fff_ffff, 0xffff_ffff),
        (0, 0x8000_0000),
        (0xffff_ffff, 0),
        (0x100, 0x1),
    ];
    for (x, y) in pairs {
        let mut e = machine(
            &code,
            &[(Gpr::Rax, x as u64), (Gpr::Rbx, y as u64), (Gpr::Rdi, DATA)],
            2,
        );
        write_mem(&mut e, DATA, u64::MAX);
        write_mem(&mut e, DATA + 8, u64::MAX);
        assert_eq!(e.run(100), Exit::Halted);
        let mut got = [0u8; 16];
        e.mem().read_phys(GuestPhysAddr(DATA), &mut got).unwrap();
        assert_eq!(got, expected_conditions(x, y), "cmp {x:#x}, {y:#x}");
    }
}

#[test]
fn setcc_high_byte_register() {
    // CMP 0, 1 sets CF and clears ZF; SETB AH / SETE BH write bits 15:8.
    let e = run(
        |a| {
            a.cmp(ecx, edx)?;
            a.setb(ah)?;
            a.sete(bh)
        },
        &[
            (Gpr::Rax, 0xffff_ffff_ffff_ffff),
            (Gpr::Rbx, 0xffff),
            (Gpr::Rdx, 1),
        ],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_01ff);
    assert_eq!(reg(&e, Gpr::Rbx), 0x00ff);
}

#[test]
fn cmov_taken_and_not_taken() {
    // Not taken, 32-bit: the destination is still zero-extended (host).
    let e = run(
        |a| {
            a.cmp(ecx, ecx)?;
            a.cmovne(eax, ebx)
        },
        &[(Gpr::Rax, 0xffff_ffff_1234_5678), (Gpr::Rbx, 7)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0x1234_5678);
    // Taken, 32-bit.
    let e = run(
        |a| {
            a.cmp(ecx, ecx)?;
            a.cmove(eax, ebx)
        },
        &[
            (Gpr::Rax, 0xffff_ffff_1234_5678),
            (Gpr::Rbx, 0xaaaa_aaaa_0000_0007),
        ],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 7);
    // 16-bit and 64-bit, not taken: nothing changes.
    let e = run(
        |a| {
            a.cmp(ecx, ecx)?;
            a.cmovb(ax, bx)?;
            a.cmova(rdx, rbx)
        },
        &[
            (Gpr::Rax, u64::MAX),
            (Gpr::Rdx, u64::MAX - 1),
            (Gpr::Rbx, 0),
        ],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), u64::MAX);
    assert_eq!(reg(&e, Gpr::Rdx), u64::MAX - 1);
    // 16-bit taken keeps bits 63:16.
    let e = run(
        |a| a.cmovae(ax, bx),
        &[(Gpr::Rax, u64::MAX), (Gpr::Rbx, 0x1234)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_1234);
}

#[test]
fn cmov_memory_source_faults_even_when_not_taken() {
    // A non-canonical source address: #GP(0) although ZF = 0 makes CMOVZ
    // a no-op, and RAX keeps its upper half.
    let code = assemble(|a| a.cmovz(eax, dword_ptr(rbx)));
    let mut e = machine(
        &code,
        &[
            (Gpr::Rax, 0xffff_ffff_0000_0001),
            (Gpr::Rbx, 0x8000_0000_0000_0000),
        ],
        2,
    );
    assert_eq!(e.run(100), Exit::Exception(Exception::gp(0)));
    assert_eq!(e.cpu().rip, CODE);
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_0000_0001);
}

// ---------------------------------------------------------------- convert

#[test]
fn sign_extensions() {
    let e = run(|a| a.cbw(), &[(Gpr::Rax, 0x1111_2222_3333_4480)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x1111_2222_3333_ff80);
    let e = run(|a| a.cwde(), &[(Gpr::Rax, 0x1111_2222_3333_8000)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_8000);
    let e = run(|a| a.cwde(), &[(Gpr::Rax, 0x1111_2222_3333_7000)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x7000);
    let e = run(|a| a.cdqe(), &[(Gpr::Rax, 0x1111_2222_8000_0000)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_8000_0000);
    let regs = [
        (Gpr::Rax, 0x8000_8000_8000_8000),
        (Gpr::Rdx, 0x5555_5555_5555_5555),
    ];
    let e = run(|a| a.cwd(), &regs, 2);
    assert_eq!(reg(&e, Gpr::Rdx), 0x5555_5555_5555_ffff);
    let e = run(|a| a.cdq(), &regs, 2);
    assert_eq!(reg(&e, Gpr::Rdx), 0xffff_ffff);
    let e = run(|a| a.cqo(), &regs, 2);
    assert_eq!(reg(&e, Gpr::Rdx), u64::MAX);
    let regs = [(Gpr::Rax, 0x7000_7000_7000_7000), (Gpr::Rdx, u64::MAX)];
    let e = run(|a| a.cdq(), &regs, 2);
    assert_eq!(reg(&e, Gpr::Rdx), 0);
    let e = run(|a| a.cqo(), &regs, 2);
    assert_eq!(reg(&e, Gpr::Rdx), 0);
    // None of them touches the flags.
    let e = run(|a| a.cqo(), &regs, ALL_SET);
    assert_eq!(flags(&e), ARITH);
}

#[test]
fn bswap_forms() {
    let e = run(|a| a.bswap(eax), &[(Gpr::Rax, 0xffff_ffff_1234_5678)], 2);
    assert_eq!(reg(&e, Gpr::Rax), 0x7856_3412);
    let e = run(|a| a.bswap(r9), &[(Gpr::R9, 0x0102_0304_0506_0708)], 2);
    assert_eq!(reg(&e, Gpr::R9), 0x0807_0605_0403_0201);
    // 66 0F C8 (BSWAP AX, undefined): the host zeroes the low 16 bits.
    let e = run_bytes(
        &[0x66, 0x0f, 0xc8, 0xf4],
        &[(Gpr::Rax, 0xffff_ffff_1234_5678)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_1234_0000);
    // 66 REX.W 0F C8: REX.W wins, a 64-bit swap (host).
    let e = run_bytes(
        &[0x66, 0x48, 0x0f, 0xc8, 0xf4],
        &[(Gpr::Rax, 0xffff_ffff_1234_5678)],
        2,
    );
    assert_eq!(reg(&e, Gpr::Rax), 0x7856_3412_ffff_ffff);
}
