//! x87 tests: every instruction under test runs both in the engine and on
//! the host's own x87 (the same machine code, copied to an executable page
//! and called in-process), from the same random FPU state, and the results
//! are compared bit for bit: the full FNSAVE image (control, status with
//! C0–C3/flags/TOP, tag word, FOP, all eight 80-bit registers), the memory
//! operand, RAX and the arithmetic flags. The random states cover all
//! rounding and precision settings, masked and unmasked exceptions, NaNs,
//! infinities, zeros, denormals, pseudo-denormals, unsupported encodings,
//! values near overflow/underflow and empty/full stacks.

mod common;
use common::Rng;

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{Engine, Exception, Exit, Gpr};
use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, MemoryOperand, Register};

const CODE: u64 = 0x1000;
const TABLES: u64 = 0x8000;
const STACK: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

/// Offsets in the data block (addressed through RDI).
const IN: usize = 0;
const OUT: usize = 0x100;
const MEM: usize = 0x200;
const FLAGS_OUT: usize = 0x300;
const RAX_OUT: usize = 0x308;
const FLAGS_IN: usize = 0x310;
const DATA_LEN: usize = 0x400;

type Asm = Result<(), IcedError>;
type Emit = fn(&mut CodeAssembler) -> Asm;

// ------------------------------------------------------------ random

fn f80_bytes(se: u16, sig: u64) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&sig.to_le_bytes());
    b[8..].copy_from_slice(&se.to_le_bytes());
    b
}

/// A random 80-bit value, biased toward the interesting encodings.
fn rand_f80(r: &mut Rng, near: Option<u16>) -> [u8; 10] {
    let sign = (r.bit() as u16) << 15;
    let int = 1u64 << 63;
    let (exp, sig): (u16, u64) = match r.below(40) {
        0 => (0, 0),
        1 => (0x7fff, int),
        2 => (0x7fff, int | 1 << 62 | r.next() >> (2 + r.below(62))),
        3 => (0x7fff, int | (r.next() >> (2 + r.below(61))).max(1)),
        4 | 5 => (0, r.next() >> (1 + r.below(63))),
        6 => (0, int | r.next() >> r.below(64)),
        7 => (1 + r.below(0x7ffe) as u16, r.next() >> 1),
        8 => (0x7fff, r.next() >> 1),
        9 | 10 => (0x7ffe - r.below(70) as u16, int | r.next()),
        11 | 12 => (1 + r.below(70) as u16, int | r.next()),
        13..=16 => {
            // Short significands: exact results and ties.
            let keep = r.below(64);
            (
                0x3fff + r.below(40) as u16 - 20,
                int | (r.next() & !(u64::MAX >> keep)) >> 1,
            )
        }
        17..=19 => (1 + r.below(0x7ffe) as u16, int | r.next()),
        20..=24 => (0x3fff + r.below(70) as u16, int | r.next() >> r.below(64)),
        _ => {
            let e = match near {
                Some(n) => (n as i32 + r.below(140) as i32 - 70).clamp(1, 0x7ffe) as u16,
                None => 0x3fff + r.below(400) as u16 - 200,
            };
            (e, int | r.next())
        }
    };
    f80_bytes(sign | exp, sig)
}

fn rand_f32(r: &mut Rng) -> u32 {
    let s = (r.bit() as u32) << 31;
    let f = r.next() as u32 & 0x7f_ffff;
    s | match r.below(10) {
        0 => 0,
        1 => 0x7f80_0000,
        2 => 0x7f80_0000 | f.max(1),
        3 | 4 => f >> r.below(23),
        _ => ((r.below(254) as u32 + 1) << 23) | f,
    }
}

fn rand_f64(r: &mut Rng) -> u64 {
    let s = (r.bit() as u64) << 63;
    let f = r.next() & 0xf_ffff_ffff_ffff;
    s | match r.below(10) {
        0 => 0,
        1 => 0x7ff0_0000_0000_0000,
        2 => 0x7ff0_0000_0000_0000 | f.max(1),
        3 | 4 => f >> r.below(52),
        _ => ((r.below(2046) + 1) << 52) | f,
    }
}

fn rand_int(r: &mut Rng, bits: u32) -> u64 {
    let v = match r.below(6) {
        0 => 0,
        1 => 1u64 << (bits - 1),
        2 => (1u64 << (bits - 1)) - 1,
        _ => r.next() >> r.below(bits as u64),
    };
    if r.bit() {
        v.wrapping_neg()
    } else {
        v
    }
}

fn rand_bcd(r: &mut Rng) -> [u8; 10] {
    let mut b = [0u8; 10];
    let digits = r.below(19);
    for (k, byte) in b.iter_mut().take(9).enumerate() {
        let lo = if (2 * k as u64) < digits {
            r.below(10)
        } else {
            0
        };
        let hi = if (2 * k as u64 + 1) < digits {
            r.below(10)
        } else {
            0
        };
        *byte = (lo | hi << 4) as u8;
    }
    b[9] = if r.bit() { 0x80 } else { 0 };
    b
}

// ------------------------------------------------------------ harness

/// What the memory operand holds before the instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MemIn {
    None,
    F32,
    F64,
    F80,
    I16,
    I32,
    I64,
    Bcd,
}

/// One instruction under test.
struct Spec {
    name: &'static str,
    emit: Emit,
    mem: MemIn,
    /// Stack registers given values (the rest are empty).
    regs: usize,
}

fn m(disp: usize) -> AsmMemoryOperand {
    ptr(rdi + disp as i32)
}

/// The test program: load flags and state, run the instruction, save.
fn program(spec: &Spec, host: bool) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(rax, qword_ptr(rdi + FLAGS_IN as i32)).unwrap();
    a.push(rax).unwrap();
    a.popfq().unwrap();
    a.frstor(m(IN)).unwrap();
    (spec.emit)(&mut a).unwrap();
    a.fnsave(m(OUT)).unwrap();
    a.mov(qword_ptr(rdi + RAX_OUT as i32), rax).unwrap();
    a.pushfq().unwrap();
    a.pop(rax).unwrap();
    a.mov(qword_ptr(rdi + FLAGS_OUT as i32), rax).unwrap();
    if host {
        a.ret().unwrap();
    } else {
        a.hlt().unwrap();
    }
    a.assemble(if host { 0 } else { CODE }).unwrap()
}

/// Machine code in an executable page of this process.
struct HostCode {
    page: *mut libc::c_void,
}

impl HostCode {
    fn new(code: &[u8]) -> HostCode {
        // SAFETY: a fresh private mapping, written before it is made
        // executable; unmapped in Drop.
        unsafe {
            let page = libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            core::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
            assert_eq!(
                libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC),
                0
            );
            HostCode { page }
        }
    }

    fn run(&self, data: &mut [u8; DATA_LEN]) {
        // SAFETY: the code only touches the data block through RDI and the
        // stack (balanced), clobbers RAX and the flags, and leaves the x87
        // in its initial state (FNSAVE) as the ABI expects.
        unsafe {
            core::arch::asm!(
                "call {f}",
                f = in(reg) self.page,
                in("rdi") data.as_mut_ptr(),
                out("rax") _,
            );
        }
    }
}

impl Drop for HostCode {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe {
            libc::munmap(self.page, 4096);
        }
    }
}

fn machine(code: &[u8]) -> Engine {
    common::flat_engine(code, CODE, TABLES, STACK)
}

fn run_guest(e: &mut Engine, data: &[u8; DATA_LEN]) -> Result<[u8; DATA_LEN], Exit> {
    e.mem_mut().write_phys(GuestPhysAddr(DATA), data).unwrap();
    let c = e.cpu_mut();
    c.rip = CODE;
    c.set_reg(Gpr::Rsp, STACK);
    c.set_reg(Gpr::Rdi, DATA);
    let x = e.run(1000);
    if x != Exit::Halted {
        return Err(x);
    }
    let mut out = [0u8; DATA_LEN];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut out).unwrap();
    Ok(out)
}

/// A random FNSAVE image and memory operand for `spec`.
fn random_input(r: &mut Rng, spec: &Spec, unmask: bool) -> [u8; DATA_LEN] {
    let mut d = [0u8; DATA_LEN];
    let rc = r.below(4) as u16;
    let pc = [0u16, 2, 3, 3][r.below(4) as usize];
    let masks = if unmask && r.chance(30) {
        r.below(64) as u16
    } else {
        0x3f
    };
    let fcw = 0x40 | masks | pc << 8 | rc << 10;
    let top = r.below(8) as u16;
    let cc = r.next() as u16 & 0x4700;
    let fsw = cc | top << 11;
    let mut ftw = 0u16;
    let mut near = None;
    for i in 0..8 {
        let used = if i < spec.regs {
            !r.chance(4)
        } else {
            i == 7 && r.chance(4)
        };
        let v = rand_f80(r, near);
        near = Some(u16::from_le_bytes([v[8], v[9]]) & 0x7fff);
        d[IN + 28 + 10 * i..IN + 38 + 10 * i].copy_from_slice(&v);
        let p = (top as usize + i) & 7;
        if !used {
            ftw |= 3 << (2 * p);
        }
    }
    for (k, w) in [fcw, fsw, ftw].into_iter().enumerate() {
        d[IN + 4 * k..IN + 4 * k + 4].copy_from_slice(&(w as u32 | 0xffff_0000).to_le_bytes());
    }
    let mem: Vec<u8> = match spec.mem {
        MemIn::None => (0..16).map(|_| r.next() as u8).collect(),
        MemIn::F32 => rand_f32(r).to_le_bytes().to_vec(),
        MemIn::F64 => rand_f64(r).to_le_bytes().to_vec(),
        MemIn::F80 => rand_f80(r, None).to_vec(),
        MemIn::I16 => rand_int(r, 16).to_le_bytes()[..2].to_vec(),
        MemIn::I32 => rand_int(r, 32).to_le_bytes()[..4].to_vec(),
        MemIn::I64 => rand_int(r, 64).to_le_bytes().to_vec(),
        MemIn::Bcd => rand_bcd(r).to_vec(),
    };
    d[MEM..MEM + mem.len()].copy_from_slice(&mem);
    let fl = 0x202 | (r.next() & 0x8d5);
    d[FLAGS_IN..FLAGS_IN + 8].copy_from_slice(&fl.to_le_bytes());
    d
}

fn u16_at(d: &[u8], k: usize) -> u16 {
    u16::from_le_bytes([d[k], d[k + 1]])
}

/// Compare what the test observes; `None` when equal.
fn diff(host: &[u8; DATA_LEN], emu: &[u8; DATA_LEN]) -> Option<String> {
    let mut why = Vec::new();
    for (k, name) in [(0, "fcw"), (4, "fsw"), (8, "ftw")] {
        let (h, g) = (u16_at(host, OUT + k), u16_at(emu, OUT + k));
        if h != g {
            why.push(format!("{name} host {h:#06x} emu {g:#06x}"));
        }
    }
    // The host's FOP survives a context switch only while an exception is
    // pending (the kernel's XSAVE/XRSTOR drop it otherwise on this CPU).
    let fop = |d: &[u8]| u16_at(d, OUT + 18) & 0x7ff;
    if u16_at(host, OUT + 4) & 0x80 != 0 && fop(host) != fop(emu) {
        why.push(format!("fop host {:#x} emu {:#x}", fop(host), fop(emu)));
    }
    for i in 0..8 {
        let k = OUT + 28 + 10 * i;
        if host[k..k + 10] != emu[k..k + 10] {
            why.push(format!(
                "st{i} host {} emu {}",
                hex80(&host[k..k + 10]),
                hex80(&emu[k..k + 10])
            ));
        }
    }
    if host[MEM..MEM + 16] != emu[MEM..MEM + 16] {
        why.push(format!(
            "mem host {:02x?} emu {:02x?}",
            &host[MEM..MEM + 10],
            &emu[MEM..MEM + 10]
        ));
    }
    if host[RAX_OUT..RAX_OUT + 8] != emu[RAX_OUT..RAX_OUT + 8] {
        why.push("rax".into());
    }
    let fl = |d: &[u8]| u64::from_le_bytes(d[FLAGS_OUT..FLAGS_OUT + 8].try_into().unwrap()) & 0x8d5;
    if fl(host) != fl(emu) {
        why.push(format!("rflags host {:#x} emu {:#x}", fl(host), fl(emu)));
    }
    if why.is_empty() {
        None
    } else {
        Some(why.join("; "))
    }
}

fn hex80(b: &[u8]) -> String {
    format!(
        "{:04x}:{:016x}",
        u16_at(b, 8),
        u64::from_le_bytes(b[..8].try_into().unwrap())
    )
}

fn describe_input(d: &[u8; DATA_LEN], spec: &Spec) -> String {
    let mut s = format!(
        "fcw {:#06x} fsw {:#06x} ftw {:#06x}",
        u16_at(d, IN),
        u16_at(d, IN + 4),
        u16_at(d, IN + 8)
    );
    for i in 0..spec.regs.max(2) {
        s += &format!(" st{i}={}", hex80(&d[IN + 28 + 10 * i..IN + 38 + 10 * i]));
    }
    if spec.mem != MemIn::None {
        s += &format!(" mem={:02x?}", &d[MEM..MEM + 10]);
    }
    s
}

/// Run `n` random cases of each spec in both CPUs; panic listing the
/// first mismatches.
fn check(specs: &[Spec], n: usize, seed: u64) {
    // X87_STRESS=k runs k times as many cases with other seeds.
    let k: usize = std::env::var("X87_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (n, seed) = (n * k, seed ^ (k as u64 - 1) << 32);
    let mut failures = Vec::new();
    let mut total = 0;
    for (k, spec) in specs.iter().enumerate() {
        let host = HostCode::new(&program(spec, true));
        let mut e = machine(&program(spec, false));
        let mut r = Rng(seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut bad = 0;
        for case in 0..n {
            let input = random_input(&mut r, spec, case % 2 == 1);
            let mut h = input;
            host.run(&mut h);
            let out = match run_guest(&mut e, &input) {
                Ok(o) => o,
                Err(x) => {
                    failures.push(format!(
                        "{}: exit {x:?}: {}",
                        spec.name,
                        describe_input(&input, spec)
                    ));
                    bad += 1;
                    continue;
                }
            };
            if let Some(why) = diff(&h, &out) {
                bad += 1;
                if failures.len() < 40 {
                    failures.push(format!(
                        "{}: {why}\n    in: {}",
                        spec.name,
                        describe_input(&input, spec)
                    ));
                }
            }
        }
        total += bad;
        if bad > 0 {
            failures.push(format!("{}: {bad}/{n} mismatches", spec.name));
        }
    }
    assert!(total == 0, "{} mismatches:\n{}", total, failures.join("\n"));
}

fn ins(a: &mut CodeAssembler, i: Instruction) -> Asm {
    a.add_instruction(i)
}

fn st(i: u32) -> Register {
    Register::try_from(Register::ST0 as usize + i as usize).unwrap()
}

/// `code` with ST(0), ST(1) or the reverse.
fn r2(a: &mut CodeAssembler, code: Code, x: u32, y: u32) -> Asm {
    ins(a, Instruction::with2(code, st(x), st(y))?)
}

fn mem_op() -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RDI, MEM as i64)
}

fn m1(a: &mut CodeAssembler, code: Code) -> Asm {
    ins(a, Instruction::with1(code, mem_op())?)
}

macro_rules! spec {
    ($name:expr, $mem:ident, $regs:expr, |$a:ident| $body:expr) => {
        Spec {
            name: $name,
            emit: |$a: &mut CodeAssembler| $body,
            mem: MemIn::$mem,
            regs: $regs,
        }
    };
}

// ------------------------------------------------------------ random tests

#[test]
fn arithmetic_register_forms() {
    let specs = [
        spec!("fadd st0,st1", None, 2, |a| r2(a, Code::Fadd_st0_sti, 0, 1)),
        spec!("fadd st1,st0", None, 2, |a| r2(a, Code::Fadd_sti_st0, 1, 0)),
        spec!("faddp st1,st0", None, 2, |a| r2(
            a,
            Code::Faddp_sti_st0,
            1,
            0
        )),
        spec!("fsub st0,st1", None, 2, |a| r2(a, Code::Fsub_st0_sti, 0, 1)),
        spec!("fsub st1,st0", None, 2, |a| r2(a, Code::Fsub_sti_st0, 1, 0)),
        spec!("fsubp st1,st0", None, 2, |a| r2(
            a,
            Code::Fsubp_sti_st0,
            1,
            0
        )),
        spec!("fsubr st0,st1", None, 2, |a| r2(
            a,
            Code::Fsubr_st0_sti,
            0,
            1
        )),
        spec!("fsubrp st1,st0", None, 2, |a| r2(
            a,
            Code::Fsubrp_sti_st0,
            1,
            0
        )),
        spec!("fmul st0,st1", None, 2, |a| r2(a, Code::Fmul_st0_sti, 0, 1)),
        spec!("fmulp st1,st0", None, 2, |a| r2(
            a,
            Code::Fmulp_sti_st0,
            1,
            0
        )),
        spec!("fdiv st0,st1", None, 2, |a| r2(a, Code::Fdiv_st0_sti, 0, 1)),
        spec!("fdiv st1,st0", None, 2, |a| r2(a, Code::Fdiv_sti_st0, 1, 0)),
        spec!("fdivr st0,st1", None, 2, |a| r2(
            a,
            Code::Fdivr_st0_sti,
            0,
            1
        )),
        spec!("fdivrp st1,st0", None, 2, |a| r2(
            a,
            Code::Fdivrp_sti_st0,
            1,
            0
        )),
        spec!("fadd st0,st0", None, 1, |a| r2(a, Code::Fadd_st0_sti, 0, 0)),
    ];
    check(&specs, 3000, 1);
}

#[test]
fn arithmetic_memory_forms() {
    let specs = [
        spec!("fadd m32", F32, 1, |a| m1(a, Code::Fadd_m32fp)),
        spec!("fsub m64", F64, 1, |a| m1(a, Code::Fsub_m64fp)),
        spec!("fsubr m32", F32, 1, |a| m1(a, Code::Fsubr_m32fp)),
        spec!("fmul m64", F64, 1, |a| m1(a, Code::Fmul_m64fp)),
        spec!("fdiv m32", F32, 1, |a| m1(a, Code::Fdiv_m32fp)),
        spec!("fdivr m64", F64, 1, |a| m1(a, Code::Fdivr_m64fp)),
        spec!("fiadd m16", I16, 1, |a| m1(a, Code::Fiadd_m16int)),
        spec!("fisub m32", I32, 1, |a| m1(a, Code::Fisub_m32int)),
        spec!("fisubr m16", I16, 1, |a| m1(a, Code::Fisubr_m16int)),
        spec!("fimul m32", I32, 1, |a| m1(a, Code::Fimul_m32int)),
        spec!("fidiv m16", I16, 1, |a| m1(a, Code::Fidiv_m16int)),
        spec!("fidivr m32", I32, 1, |a| m1(a, Code::Fidivr_m32int)),
    ];
    check(&specs, 2000, 2);
}

#[test]
fn unary_and_misc_arithmetic() {
    let specs = [
        spec!("fsqrt", None, 1, |a| a.fsqrt()),
        spec!("frndint", None, 1, |a| a.frndint()),
        spec!("fchs", None, 1, |a| a.fchs()),
        spec!("fabs", None, 1, |a| a.fabs()),
        spec!("fscale", None, 2, |a| a.fscale()),
        spec!("fprem", None, 2, |a| a.fprem()),
        spec!("fprem1", None, 2, |a| a.fprem1()),
        spec!("fxtract", None, 1, |a| a.fxtract()),
    ];
    check(&specs, 3000, 3);
}

#[test]
fn loads_and_stores() {
    let specs = [
        spec!("fld m32", F32, 0, |a| m1(a, Code::Fld_m32fp)),
        spec!("fld m64", F64, 0, |a| m1(a, Code::Fld_m64fp)),
        spec!("fld m80", F80, 0, |a| m1(a, Code::Fld_m80fp)),
        spec!("fld st1", None, 2, |a| ins(
            a,
            Instruction::with1(Code::Fld_sti, st(1))?
        )),
        spec!("fst m32", None, 1, |a| m1(a, Code::Fst_m32fp)),
        spec!("fstp m64", None, 1, |a| m1(a, Code::Fstp_m64fp)),
        spec!("fstp m80", None, 1, |a| m1(a, Code::Fstp_m80fp)),
        spec!("fst st2", None, 3, |a| ins(
            a,
            Instruction::with1(Code::Fst_sti, st(2))?
        )),
        spec!("fstp st1", None, 2, |a| ins(
            a,
            Instruction::with1(Code::Fstp_sti, st(1))?
        )),
        spec!("fild m16", I16, 0, |a| m1(a, Code::Fild_m16int)),
        spec!("fild m32", I32, 0, |a| m1(a, Code::Fild_m32int)),
        spec!("fild m64", I64, 0, |a| m1(a, Code::Fild_m64int)),
        spec!("fist m16", None, 1, |a| m1(a, Code::Fist_m16int)),
        spec!("fistp m32", None, 1, |a| m1(a, Code::Fistp_m32int)),
        spec!("fistp m64", None, 1, |a| m1(a, Code::Fistp_m64int)),
        spec!("fisttp m16", None, 1, |a| m1(a, Code::Fisttp_m16int)),
        spec!("fisttp m64", None, 1, |a| m1(a, Code::Fisttp_m64int)),
        spec!("fbld", Bcd, 0, |a| m1(a, Code::Fbld_m80bcd)),
        spec!("fbstp", None, 1, |a| m1(a, Code::Fbstp_m80bcd)),
        spec!("fld1", None, 0, |a| a.fld1()),
        spec!("fldz", None, 0, |a| a.fldz()),
        spec!("fldpi", None, 0, |a| a.fldpi()),
        spec!("fldl2e", None, 0, |a| a.fldl2e()),
        spec!("fldl2t", None, 0, |a| a.fldl2t()),
        spec!("fldlg2", None, 0, |a| a.fldlg2()),
        spec!("fldln2", None, 0, |a| a.fldln2()),
    ];
    check(&specs, 1500, 4);
}

#[test]
fn compares_and_classes() {
    let specs = [
        spec!("fcom st1", None, 2, |a| r2(a, Code::Fcom_st0_sti, 0, 1)),
        spec!("fcomp st2", None, 3, |a| r2(a, Code::Fcomp_st0_sti, 0, 2)),
        spec!("fcompp", None, 2, |a| a.fcompp()),
        spec!("fucom st1", None, 2, |a| r2(a, Code::Fucom_st0_sti, 0, 1)),
        spec!("fucomp st1", None, 2, |a| r2(a, Code::Fucomp_st0_sti, 0, 1)),
        spec!("fucompp", None, 2, |a| a.fucompp()),
        spec!("fcom m32", F32, 1, |a| m1(a, Code::Fcom_m32fp)),
        spec!("fcomp m64", F64, 1, |a| m1(a, Code::Fcomp_m64fp)),
        spec!("ficom m16", I16, 1, |a| m1(a, Code::Ficom_m16int)),
        spec!("ficomp m32", I32, 1, |a| m1(a, Code::Ficomp_m32int)),
        spec!("fcomi", None, 2, |a| r2(a, Code::Fcomi_st0_sti, 0, 1)),
        spec!("fcomip", None, 2, |a| r2(a, Code::Fcomip_st0_sti, 0, 1)),
        spec!("fucomi", None, 2, |a| r2(a, Code::Fucomi_st0_sti, 0, 1)),
        spec!("fucomip", None, 2, |a| r2(a, Code::Fucomip_st0_sti, 0, 1)),
        spec!("ftst", None, 1, |a| a.ftst()),
        spec!("fxam", None, 1, |a| a.fxam()),
        spec!("fnstsw ax", None, 1, |a| {
            r2(a, Code::Fcom_st0_sti, 0, 1)?;
            a.fnstsw(ax)
        }),
    ];
    check(&specs, 1500, 5);
}

#[test]
fn stack_and_moves() {
    let specs = [
        spec!("fxch st1", None, 2, |a| r2(a, Code::Fxch_st0_sti, 0, 1)),
        spec!("fxch st3", None, 4, |a| r2(a, Code::Fxch_st0_sti, 0, 3)),
        spec!("ffree st1", None, 2, |a| ins(
            a,
            Instruction::with1(Code::Ffree_sti, st(1))?
        )),
        spec!("fincstp", None, 2, |a| a.fincstp()),
        spec!("fdecstp", None, 2, |a| a.fdecstp()),
        spec!("fnop", None, 1, |a| a.fnop()),
        spec!("fcmovb", None, 2, |a| r2(a, Code::Fcmovb_st0_sti, 0, 1)),
        spec!("fcmove", None, 2, |a| r2(a, Code::Fcmove_st0_sti, 0, 1)),
        spec!("fcmovbe", None, 2, |a| r2(a, Code::Fcmovbe_st0_sti, 0, 1)),
        spec!("fcmovu", None, 2, |a| r2(a, Code::Fcmovu_st0_sti, 0, 1)),
        spec!("fcmovnb", None, 2, |a| r2(a, Code::Fcmovnb_st0_sti, 0, 1)),
        spec!("fcmovne", None, 2, |a| r2(a, Code::Fcmovne_st0_sti, 0, 1)),
        spec!("fcmovnbe", None, 2, |a| r2(a, Code::Fcmovnbe_st0_sti, 0, 1)),
        spec!("fcmovnu", None, 2, |a| r2(a, Code::Fcmovnu_st0_sti, 0, 1)),
        spec!("fnclex", None, 2, |a| {
            a.fld1()?;
            a.fnclex()
        }),
        spec!("fnstenv+fldenv", None, 2, |a| {
            a.fnstenv(m(MEM))?;
            a.fldenv(m(MEM))
        }),
        spec!("fnstcw", None, 1, |a| a.fnstcw(m(MEM))),
        // The 16-bit layouts (66 prefix); the pointer words differ between
        // host and guest and are cleared before comparing.
        spec!("fnstenv m14", None, 2, |a| {
            m1(a, Code::Fnstenv_m14byte)?;
            a.mov(qword_ptr(rdi + (MEM + 6) as i32), 0)
        }),
        spec!("fnsave m94+frstor m94", None, 3, |a| {
            ins(
                a,
                Instruction::with1(
                    Code::Fnsave_m94byte,
                    MemoryOperand::with_base_displ(Register::RDI, 0x380),
                )?,
            )?;
            a.fld1()?;
            ins(
                a,
                Instruction::with1(
                    Code::Frstor_m94byte,
                    MemoryOperand::with_base_displ(Register::RDI, 0x380),
                )?,
            )
        }),
        spec!("fnstenv m28+fldenv m28", None, 2, |a| {
            a.fnstenv(m(0x380))?;
            a.fninit()?;
            a.fldenv(m(0x380))
        }),
        spec!("fldcw", I16, 1, |a| {
            a.fldcw(m(MEM))?;
            a.fnstcw(m(MEM + 2))
        }),
    ];
    check(&specs, 800, 6);
}

// ------------------------------------------------------------ directed tests

fn asm(f: impl FnOnce(&mut CodeAssembler) -> Asm) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE).unwrap()
}

fn x87_of(e: &Engine) -> cjemu_jit::state::X87State {
    e.cpu().x87
}

/// CR0.TS (or EM) makes every x87 instruction raise #NM; WAIT only when MP
/// is also set.
#[test]
fn device_not_available() {
    use cjemu_jit::state::cr0;
    let mut e = machine(&asm(|a| a.fld1()));
    e.cpu_mut().cr0 |= cr0::TS;
    assert_eq!(e.run(10), Exit::Exception(Exception::nm()));
    assert_eq!(e.cpu().rip, CODE);
    assert_eq!(x87_of(&e).ftw, 0xffff, "nothing loaded");

    let mut e = machine(&asm(|a| a.fld1()));
    e.cpu_mut().cr0 |= cr0::EM;
    assert_eq!(e.run(10), Exit::Exception(Exception::nm()));

    // WAIT with TS but not MP runs; with MP it faults.
    let mut e = machine(&asm(|a| a.wait()));
    e.cpu_mut().cr0 = (e.cpu().cr0 | cr0::TS) & !cr0::MP;
    assert_eq!(e.run(10), Exit::Halted);
    let mut e = machine(&asm(|a| a.wait()));
    e.cpu_mut().cr0 |= cr0::TS | cr0::MP;
    assert_eq!(e.run(10), Exit::Exception(Exception::nm()));
}

/// An unmasked zero divide is recorded (ES, B) and the destination kept;
/// the next waiting instruction raises #MF (CR0.NE = 1), a non-waiting one
/// does not. With CR0.NE = 0 nothing is raised.
#[test]
fn unmasked_exception_raises_mf_on_next_waiting_insn() {
    use cjemu_jit::state::cr0;
    let code = asm(|a| {
        a.fldcw(m(0))?; // all masked but ZE
        a.fld1()?;
        a.fldz()?;
        r2(a, Code::Fdivp_sti_st0, 1, 0)?; // 1 / 0
        a.fnstsw(ax)?;
        a.fld1()
    });
    let mut e = machine(&code);
    e.mem_mut()
        .write_phys(GuestPhysAddr(DATA), &0x037bu16.to_le_bytes())
        .unwrap();
    e.cpu_mut().set_reg(Gpr::Rdi, DATA);
    assert_eq!(e.run(100), Exit::Exception(Exception::mf()));
    let sw = e.cpu().reg(Gpr::Rax) as u16;
    assert_eq!(sw & 0x3f, 0x04, "ZE");
    assert_ne!(sw & 0x80, 0, "ES");
    assert_ne!(sw & 0x8000, 0, "B");
    // The divide was suppressed: ST(0) = 0, ST(1) = 1, TOP = 6.
    let f = x87_of(&e);
    assert_eq!((f.fsw >> 11) & 7, 6);
    // Faulted on the last FLD1 (6 bytes of FLDCW+…): RIP is at it.
    let fld1_at = CODE + code.len() as u64 - 3;
    assert_eq!(e.cpu().rip, fld1_at);

    let mut e = machine(&code);
    e.mem_mut()
        .write_phys(GuestPhysAddr(DATA), &0x037bu16.to_le_bytes())
        .unwrap();
    e.cpu_mut().set_reg(Gpr::Rdi, DATA);
    e.cpu_mut().cr0 &= !cr0::NE;
    assert_eq!(e.run(100), Exit::Halted);
}

/// FNSAVE stores everything and re-initialises; FRSTOR brings it back.
#[test]
fn fnsave_frstor_round_trip() {
    let code = asm(|a| {
        a.fldpi()?;
        a.fld1()?;
        a.fldz()?;
        a.fnsave(m(0))?;
        a.fnstsw(ax)?;
        a.mov(rbx, rax)?;
        a.frstor(m(0))?;
        a.fnstsw(ax)
    });
    let mut e = machine(&code);
    e.cpu_mut().set_reg(Gpr::Rdi, DATA);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rbx) & 0xffff, 0, "FNSAVE re-initialised");
    assert_eq!((e.cpu().reg(Gpr::Rax) >> 11) & 7, 5, "TOP restored");
    let f = x87_of(&e);
    assert_eq!(f.ftw, 0x07ff, "R5 zero (01), R6 R7 valid, the rest empty");
    assert_eq!(f.fcw, 0x037f);
    let mut img = vec![0u8; 108];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut img).unwrap();
    assert_eq!(&img[28..38], &f80_bytes(0, 0)[..], "ST0 = 0");
    assert_eq!(&img[38..48], &f80_bytes(0x3fff, 1 << 63)[..], "ST1 = 1");
    assert_eq!(
        &img[48..58],
        &f80_bytes(0x4000, 0xc90f_daa2_2168_c235)[..],
        "ST2 = pi"
    );
}

/// Loading onto a full stack: IE + SF, C1 = 1, ST(0) becomes the
/// indefinite; reading an empty register: IE + SF, C1 = 0.
#[test]
fn stack_overflow_and_underflow() {
    let code = asm(|a| {
        for _ in 0..9 {
            a.fld1()?;
        }
        a.fnstsw(ax)
    });
    let mut e = machine(&code);
    assert_eq!(e.run(100), Exit::Halted);
    let sw = e.cpu().reg(Gpr::Rax) as u16;
    assert_eq!(sw & 0x41, 0x41, "IE and SF");
    assert_ne!(sw & 0x200, 0, "C1 = 1 on overflow");
    let f = x87_of(&e);
    let p = (f.fsw >> 11) as usize & 7;
    assert_eq!(
        &f.regs[p][..10],
        &f80_bytes(0xffff, 0xc000_0000_0000_0000)[..]
    );

    let code = asm(|a| {
        r2(a, Code::Fadd_st0_sti, 0, 1)?;
        a.fnstsw(ax)
    });
    let mut e = machine(&code);
    assert_eq!(e.run(100), Exit::Halted);
    let sw = e.cpu().reg(Gpr::Rax) as u16;
    assert_eq!(sw & 0x241, 0x41, "IE, SF, C1 = 0");
}

/// The last-instruction pointers: FIP is the instruction's RIP, FDP the
/// memory operand's offset, FOP the 11-bit opcode.
#[test]
fn last_instruction_pointers() {
    let code = asm(|a| {
        a.nop()?;
        a.fld(dword_ptr(rdi + 0x10))?;
        a.fnop()
    });
    let mut e = machine(&code);
    e.cpu_mut().set_reg(Gpr::Rdi, DATA);
    assert_eq!(e.run(100), Exit::Halted);
    let f = x87_of(&e);
    // FNOP is D9 D0, at CODE + 1 + 3.
    assert_eq!(f.fip, CODE + 4);
    assert_eq!(f.fop, 0x1d0);
    assert_eq!(f.fdp, DATA + 0x10, "FNOP has no operand: FDP kept");
}

/// CPUID advertises the FPU.
#[test]
fn cpuid_has_fpu() {
    let code = asm(|a| {
        a.mov(eax, 1)?;
        a.cpuid()
    });
    let mut e = machine(&code);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(e.cpu().reg(Gpr::Rdx) & 1, 1);
}

/// A store that faults (#GP for a non-canonical address) changes nothing
/// in the FPU: no pop, no flags, no last-instruction pointers.
#[test]
fn faulting_store_leaves_fpu_unchanged() {
    let code = asm(|a| {
        a.fld1()?;
        a.fldpi()?;
        a.fstp(tword_ptr(rbx))
    });
    let mut e = machine(&code);
    e.cpu_mut().set_reg(Gpr::Rbx, 0x8000_0000_0000_0000);
    assert_eq!(e.run(100), Exit::Exception(Exception::gp(0)));
    let f = x87_of(&e);
    assert_eq!((f.fsw >> 11) & 7, 6, "not popped");
    assert_eq!(f.ftw, 0x0fff);
    assert_eq!(f.fop, 0x1eb, "FOP still FLDPI (D9 EB)");
    // An FLD from an unmapped page above RAM in a 4 KiB … here: a
    // non-canonical load faults before the push.
    let code = asm(|a| a.fld(qword_ptr(rbx)));
    let mut e = machine(&code);
    e.cpu_mut().set_reg(Gpr::Rbx, 0x8000_0000_0000_0000);
    assert_eq!(e.run(100), Exit::Exception(Exception::gp(0)));
    assert_eq!(x87_of(&e).ftw, 0xffff);
}

/// FLDPI and friends follow the rounding control (round up / nearest
/// give ...C235, down / toward zero ...C234; pi's dropped bits are above
/// half an ulp).
#[test]
fn constants_follow_rounding_control() {
    for (rc, sig) in [
        (0u16, 0xc90f_daa2_2168_c235u64),
        (1, 0xc90f_daa2_2168_c234),
        (2, 0xc90f_daa2_2168_c235),
        (3, 0xc90f_daa2_2168_c234),
    ] {
        let code = asm(|a| {
            a.fldcw(m(0))?;
            a.fldpi()
        });
        let mut e = machine(&code);
        let cw = 0x037f | rc << 10;
        e.mem_mut()
            .write_phys(GuestPhysAddr(DATA), &cw.to_le_bytes())
            .unwrap();
        e.cpu_mut().set_reg(Gpr::Rdi, DATA);
        assert_eq!(e.run(100), Exit::Halted);
        let f = x87_of(&e);
        assert_eq!(&f.regs[7][..10], &f80_bytes(0x4000, sig)[..], "rc {rc}");
    }
}
