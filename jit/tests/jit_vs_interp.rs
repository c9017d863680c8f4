//! The Cranelift backend against the interpreter: the same decoded block,
//! run from the same state by both, must leave the same registers, RIP,
//! RFLAGS, instruction count, budget and memory.
//!
//! Blocks are random (MOV ADD SUB CMP AND XOR INC on registers, immediates
//! and memory, ending in Jcc, JMP or UD2), with random lazy-flags state at
//! entry so conditions go both ways and the run-time fallback is used, and
//! memory operands that sometimes fault (non-canonical → #GP, not present
//! → #PF, crossing into a not-present page) in the middle of a block.

use cjemu_jit::block::{Block, BlockCache, Insn};
use cjemu_jit::cranelift::{CompiledBlock, Jit, JitExit, JitOptions, OptLevel, SemSource};
use cjemu_jit::emit::{Emitter, SemResult, Width};
use cjemu_jit::flags::{CcKind, CcOp, FlagSet};
use cjemu_jit::interp::Interp;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, NoIo};
use cjemu_jit::semantics::{self, Sem};
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::state::exit_req;
use cjemu_jit::{Engine, Exception, Exit, Gpr};
use iced_x86::code_asm::*;
use iced_x86::{Instruction, Mnemonic};
use std::rc::Rc;
use std::time::Instant;

const RAM: u64 = 0x40000;
const TABLES: u64 = 0x1000;
const CODE: u64 = 0x10000;
/// The data window: two pages, so accesses can cross a page boundary.
const DATA: u64 = 0x20000;
const DATA_LEN: usize = 0x2000;
const STACK: u64 = 0x30000;

/// Values for R13, the base register of "dangerous" memory operands.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
/// PML4[1] is empty in `flat_long_mode`'s tables: not present.
const NOT_PRESENT: u64 = 0x80_0000_0000;
/// Mapped, but the last bytes of the mapping: wider accesses cross into
/// the not-present page.
const BEFORE_HOLE: u64 = 0x7f_ffff_fffc;
/// Mapped, but no RAM behind it: reads all-ones, writes are dropped.
const UNASSIGNED: u64 = 0x1_0000_0000;

// ---- a small deterministic generator ---------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// A value with a bias towards the edges arithmetic cares about.
    fn value(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(4),
            1 => u64::MAX - self.below(4),
            2 => (1u64 << [7, 15, 31, 63][self.below(4) as usize]).wrapping_sub(self.below(3)),
            3 => self.below(0x100),
            _ => self.next(),
        }
    }
}

// ---- machines ----------------------------------------------------------------

/// Initial state of one case.
#[derive(Clone)]
struct Case {
    code: Vec<u8>,
    gpr: [u64; 16],
    /// Either RFLAGS (EFLAGS lazy state) or a lazy operation.
    flags: FlagsInit,
    data: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
enum FlagsInit {
    Eflags(u64),
    Lazy {
        op: CcOp,
        dst: u64,
        src: u64,
        src2: u64,
    },
}

/// The interpreter's engine set up for `case`.
fn engine_for(case: &Case) -> Engine {
    let mut e = Engine::new(RAM).unwrap();
    e.config.exceptions_exit = true;
    e.mem_mut()
        .write_phys(GuestPhysAddr(CODE), &case.code)
        .unwrap();
    e.mem_mut()
        .write_phys(GuestPhysAddr(DATA), &case.data)
        .unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
    let cpu = e.cpu_mut();
    cpu.gpr = case.gpr;
    match case.flags {
        FlagsInit::Eflags(f) => cpu.set_rflags(f),
        FlagsInit::Lazy { op, dst, src, src2 } => {
            cpu.cc_op = op.raw() as u64;
            cpu.cc_dst = dst;
            cpu.cc_src = src;
            cpu.cc_src2 = src2;
        }
    }
    e
}

/// An independent copy of the engine's machine (fresh RAM, empty TLB) for
/// the compiled code to run on.
fn interp_copy(e: &Engine) -> Interp {
    let mut mem = GuestMemory::new(RAM).unwrap();
    mem.write_phys(GuestPhysAddr(0), e.mem().ram()).unwrap();
    let mut cpu = Box::new(e.cpu().clone());
    cpu.tlb.flush_all();
    Interp::new(cpu, mem, Box::new(NoIo))
}

fn decode(mach: &mut Interp) -> Rc<Block> {
    BlockCache::new().get(mach).expect("block decodes")
}

fn data_of(mem: &GuestMemory) -> Vec<u8> {
    let mut v = vec![0; DATA_LEN];
    mem.read_phys(GuestPhysAddr(DATA), &mut v).unwrap();
    v
}

/// Architectural state to compare.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    gpr: [u64; 16],
    rip: u64,
    rflags: u64,
    icount: u64,
    budget: u64,
    data: Vec<u8>,
}

fn snap(cpu: &cjemu_jit::CpuState, mem: &GuestMemory) -> Snapshot {
    Snapshot {
        gpr: cpu.gpr,
        rip: cpu.rip,
        rflags: cpu.rflags(),
        icount: cpu.icount,
        budget: cpu.budget,
        data: data_of(mem),
    }
}

fn describe(block: &Block) -> String {
    block.insns.iter().map(|i| format!("  {i:?}\n")).collect()
}

/// Run `case` in the interpreter and compiled; assert identical results.
/// Returns the JIT's exit.
fn check_case(jit: &mut Jit, case: &Case, tag: &str) -> JitExit {
    let mut e = engine_for(case);
    let mut jx = interp_copy(&e);
    let block = decode(&mut jx);
    let n = block.insns.len() as u64;
    let compiled = match jit.compile(&block) {
        Ok(c) => c,
        Err(err) => panic!("{tag}: compile failed: {err}\n{}", describe(&block)),
    };
    let iexit = e.run(n);
    jx.cpu.budget = n;
    let jexit = compiled.run(&mut jx);
    match (iexit, jexit) {
        (Exit::BudgetExhausted, JitExit::Completed) => {}
        (Exit::Exception(a), JitExit::Fault(b)) if a == b => {}
        (i, j) => panic!(
            "{tag}: exits differ: interpreter {i:?}, JIT {j:?}\n{}",
            describe(&block)
        ),
    }
    let want = snap(e.cpu(), e.mem());
    let got = snap(&jx.cpu, &jx.mem);
    if want != got {
        let diff: Vec<String> = (0..16)
            .filter(|&r| want.gpr[r] != got.gpr[r])
            .map(|r| {
                format!(
                    "{}: {:#x} vs {:#x}",
                    Gpr::from_index(r).name(),
                    want.gpr[r],
                    got.gpr[r]
                )
            })
            .collect();
        panic!(
            "{tag}: state differs (interpreter vs JIT)\nregs {diff:?}\nrip {:#x} vs {:#x}\n\
             rflags {:#x} vs {:#x}\nicount {} vs {}\nbudget {} vs {}\ndata equal: {}\n{}",
            want.rip,
            got.rip,
            want.rflags,
            got.rflags,
            want.icount,
            got.icount,
            want.budget,
            got.budget,
            want.data == got.data,
            describe(&block)
        );
    }
    jexit
}

// ---- random blocks -------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Op {
    Mov,
    Add,
    Sub,
    Cmp,
    And,
    Xor,
}

/// A memory operand: `[r14 + r15*scale + disp]` into the data window, or
/// `[r13 + disp]` (R13 holds the case's dangerous address).
#[derive(Clone, Copy, Debug)]
struct Mem {
    dangerous: bool,
    scale: Option<u32>,
    disp: i32,
}

#[derive(Clone, Copy, Debug)]
enum Loc {
    Reg(usize),
    /// AH, CH, DH, BH.
    High(usize),
    Mem(Mem),
    Imm(i64),
}

const R64: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];
const R32: [AsmRegister32; 16] = [
    eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
];
const R16: [AsmRegister16; 16] = [
    ax, cx, dx, bx, sp, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w,
];
const R8: [AsmRegister8; 16] = [
    al, cl, dl, bl, spl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b,
];
const H8: [AsmRegister8; 4] = [ah, ch, dh, bh];

fn mem_operand(m: Mem) -> AsmMemoryOperand {
    if m.dangerous {
        return r13 + m.disp;
    }
    match m.scale {
        Some(s) => r14 + r15 * s + m.disp,
        None => r14 + m.disp,
    }
}

fn sized(m: Mem, w: Width) -> AsmMemoryOperand {
    let o = mem_operand(m);
    match w {
        Width::B => byte_ptr(o),
        Width::W => word_ptr(o),
        Width::D => dword_ptr(o),
        Width::Q => qword_ptr(o),
    }
}

/// `op dst, src` for the ALU ops other than MOV.
macro_rules! alu {
    ($a:expr, $op:expr, $d:expr, $s:expr) => {
        match $op {
            Op::Add => $a.add($d, $s),
            Op::Sub => $a.sub($d, $s),
            Op::Cmp => $a.cmp($d, $s),
            Op::And => $a.and($d, $s),
            Op::Xor => $a.xor($d, $s),
            Op::Mov => $a.mov($d, $s),
        }
    };
}

/// Emit `op dst, src` at width `w`.
fn emit2(a: &mut CodeAssembler, op: Op, w: Width, d: Loc, s: Loc) -> Result<(), IcedError> {
    use Loc::*;
    match (w, d, s) {
        (Width::Q, Reg(x), Reg(y)) => alu!(a, op, R64[x], R64[y]),
        (Width::Q, Reg(x), Mem(m)) => alu!(a, op, R64[x], sized(m, w)),
        (Width::Q, Mem(m), Reg(y)) => alu!(a, op, sized(m, w), R64[y]),
        (Width::Q, Reg(x), Imm(i)) => match op {
            Op::Mov => a.mov(R64[x], i),
            Op::Add => a.add(R64[x], i as i32),
            Op::Sub => a.sub(R64[x], i as i32),
            Op::Cmp => a.cmp(R64[x], i as i32),
            Op::And => a.and(R64[x], i as i32),
            Op::Xor => a.xor(R64[x], i as i32),
        },
        (_, Mem(m), Imm(i)) => alu!(a, op, sized(m, w), i as i32),
        (Width::D, Reg(x), Reg(y)) => alu!(a, op, R32[x], R32[y]),
        (Width::D, Reg(x), Mem(m)) => alu!(a, op, R32[x], sized(m, w)),
        (Width::D, Mem(m), Reg(y)) => alu!(a, op, sized(m, w), R32[y]),
        (Width::D, Reg(x), Imm(i)) => alu!(a, op, R32[x], i as i32),
        (Width::W, Reg(x), Reg(y)) => alu!(a, op, R16[x], R16[y]),
        (Width::W, Reg(x), Mem(m)) => alu!(a, op, R16[x], sized(m, w)),
        (Width::W, Mem(m), Reg(y)) => alu!(a, op, sized(m, w), R16[y]),
        (Width::W, Reg(x), Imm(i)) => alu!(a, op, R16[x], i as i32),
        (Width::B, d, s) => {
            let byte_reg = |l: Loc| match l {
                Reg(x) => Some(R8[x]),
                High(x) => Some(H8[x]),
                _ => None,
            };
            match (byte_reg(d), byte_reg(s), d, s) {
                (Some(x), Some(y), _, _) => alu!(a, op, x, y),
                (Some(x), None, _, Mem(m)) => alu!(a, op, x, sized(m, w)),
                (Some(x), None, _, Imm(i)) => alu!(a, op, x, i as i32),
                (None, Some(y), Mem(m), _) => alu!(a, op, sized(m, w), y),
                _ => unreachable!("generator made {d:?}, {s:?}"),
            }
        }
        _ => unreachable!("generator made {w:?} {d:?}, {s:?}"),
    }
}

fn emit_inc(a: &mut CodeAssembler, w: Width, d: Loc) -> Result<(), IcedError> {
    match (w, d) {
        (_, Loc::Mem(m)) => a.inc(sized(m, w)),
        (Width::Q, Loc::Reg(x)) => a.inc(R64[x]),
        (Width::D, Loc::Reg(x)) => a.inc(R32[x]),
        (Width::W, Loc::Reg(x)) => a.inc(R16[x]),
        (Width::B, Loc::Reg(x)) => a.inc(R8[x]),
        (Width::B, Loc::High(x)) => a.inc(H8[x]),
        _ => unreachable!(),
    }
}

/// Per-case values of the address registers.
struct Addr {
    r15: u64,
}

fn gen_mem(r: &mut Rng, addr: &Addr, w: Width, danger_pct: u64) -> Mem {
    if r.chance(danger_pct) {
        return Mem {
            dangerous: true,
            scale: None,
            disp: r.below(8) as i32,
        };
    }
    // An offset in the window, often right at the page boundary.
    let off = if r.chance(25) {
        0xff8 + r.below(16)
    } else {
        r.below(DATA_LEN as u64 - 8)
    };
    let off = off.min(DATA_LEN as u64 - w.bytes() as u64) as i64;
    let scale = [None, Some(1), Some(2), Some(4), Some(8)][r.below(5) as usize];
    let idx = scale.map_or(0, |s| addr.r15 as i64 * s as i64);
    Mem {
        dangerous: false,
        scale,
        disp: (off - idx) as i32,
    }
}

/// Destination registers: R13–R15 hold addresses and are never written.
fn gen_dst_reg(r: &mut Rng) -> usize {
    r.below(13) as usize
}

fn gen_imm(r: &mut Rng, w: Width) -> i64 {
    let v = r.value() as i64;
    match w {
        Width::B => v as i8 as i64,
        Width::W => v as i16 as i64,
        Width::D => v as i32 as i64,
        // MOV r64 takes 64 bits; the others take a sign-extended imm32.
        Width::Q => v,
    }
}

/// One random body instruction.
fn gen_insn(
    r: &mut Rng,
    a: &mut CodeAssembler,
    addr: &Addr,
    danger_pct: u64,
) -> Result<(), IcedError> {
    let w = [Width::B, Width::W, Width::D, Width::Q][r.below(4) as usize];
    if r.chance(12) {
        let d = if r.chance(40) {
            Loc::Mem(gen_mem(r, addr, w, danger_pct))
        } else if w == Width::B && r.chance(25) {
            Loc::High(r.below(4) as usize)
        } else {
            Loc::Reg(gen_dst_reg(r))
        };
        return emit_inc(a, w, d);
    }
    let op = [Op::Mov, Op::Add, Op::Sub, Op::Cmp, Op::And, Op::Xor][r.below(6) as usize];
    // High-byte registers cannot be encoded with a REX prefix: pair them
    // only with AL–BL, AH–BH or an immediate.
    if w == Width::B && r.chance(15) {
        let d = Loc::High(r.below(4) as usize);
        let s = match r.below(3) {
            0 => Loc::High(r.below(4) as usize),
            1 => Loc::Reg(r.below(4) as usize),
            _ => Loc::Imm(gen_imm(r, w)),
        };
        let (d, s) = if r.chance(50) && !matches!(s, Loc::Imm(_)) {
            (s, d)
        } else {
            (d, s)
        };
        return emit2(a, op, w, d, s);
    }
    let (d, s) = match r.below(5) {
        0 => (
            Loc::Mem(gen_mem(r, addr, w, danger_pct)),
            Loc::Reg(r.below(16) as usize),
        ),
        1 => (
            Loc::Reg(gen_dst_reg(r)),
            Loc::Mem(gen_mem(r, addr, w, danger_pct)),
        ),
        2 => (
            Loc::Mem(gen_mem(r, addr, w, danger_pct)),
            Loc::Imm(gen_imm(r, w).clamp(i32::MIN as i64, i32::MAX as i64)),
        ),
        3 => (Loc::Reg(gen_dst_reg(r)), Loc::Imm(gen_imm(r, w))),
        _ => (Loc::Reg(gen_dst_reg(r)), Loc::Reg(r.below(16) as usize)),
    };
    let s = match (op, w, s) {
        // Only MOV has a 64-bit immediate form.
        (Op::Mov, _, s) => s,
        (_, Width::Q, Loc::Imm(i)) => Loc::Imm(i as i32 as i64),
        (_, _, s) => s,
    };
    emit2(a, op, w, d, s)
}

fn gen_jcc(a: &mut CodeAssembler, cc: u64, t: u64) -> Result<(), IcedError> {
    match cc {
        0 => a.jo(t),
        1 => a.jno(t),
        2 => a.jb(t),
        3 => a.jae(t),
        4 => a.je(t),
        5 => a.jne(t),
        6 => a.jbe(t),
        7 => a.ja(t),
        8 => a.js(t),
        9 => a.jns(t),
        10 => a.jp(t),
        11 => a.jnp(t),
        12 => a.jl(t),
        13 => a.jge(t),
        14 => a.jle(t),
        _ => a.jg(t),
    }
}

fn gen_flags(r: &mut Rng) -> FlagsInit {
    if r.chance(50) {
        return FlagsInit::Eflags(0x2 | (r.next() & FlagSet::ARITH.bits()));
    }
    let kinds = [
        CcKind::Add,
        CcKind::Adc,
        CcKind::Sub,
        CcKind::Sbb,
        CcKind::Logic,
        CcKind::Inc,
        CcKind::Dec,
        CcKind::Shl,
        CcKind::Shr,
        CcKind::Sar,
        CcKind::Mul,
    ];
    let kind = kinds[r.below(kinds.len() as u64) as usize];
    let w = [Width::B, Width::W, Width::D, Width::Q][r.below(4) as usize];
    let bit = matches!(kind, CcKind::Adc | CcKind::Sbb | CcKind::Inc | CcKind::Dec);
    FlagsInit::Lazy {
        op: CcOp::new(kind, w),
        dst: r.value() & w.mask(),
        src: r.value() & w.mask(),
        src2: if bit {
            r.below(2)
        } else {
            r.value() & w.mask()
        },
    }
}

/// A random case: 1–10 body instructions and a Jcc, JMP or UD2.
fn gen_case(r: &mut Rng, danger_pct: u64) -> Case {
    loop {
        let addr = Addr {
            r15: r.below(0x100),
        };
        let mut a = CodeAssembler::new(64).unwrap();
        let body = 1 + r.below(10);
        let mut ok = (0..body).all(|_| gen_insn(r, &mut a, &addr, danger_pct).is_ok());
        let target = CODE + 0x800 + r.below(0x400);
        ok &= match r.below(10) {
            0..=5 => gen_jcc(&mut a, r.below(16), target).is_ok(),
            6 | 7 => a.jmp(target).is_ok(),
            _ => a.ud2().is_ok(),
        };
        let Ok(code) = a.assemble(CODE) else { continue };
        if !ok {
            continue;
        }
        let mut gpr = [0u64; 16];
        for g in gpr.iter_mut() {
            *g = r.value();
        }
        gpr[13] = [
            DATA + 0x800,
            NON_CANONICAL,
            NOT_PRESENT,
            BEFORE_HOLE,
            UNASSIGNED,
        ][r.below(5) as usize];
        gpr[14] = DATA;
        gpr[15] = addr.r15;
        let data = (0..DATA_LEN).map(|_| r.next() as u8).collect();
        return Case {
            code,
            gpr,
            flags: gen_flags(r),
            data,
        };
    }
}

fn run_random(jit: &mut Jit, seed: u64, cases: usize, danger_pct: u64) -> (usize, usize) {
    let mut r = Rng(seed);
    let (mut completed, mut faulted) = (0, 0);
    for k in 0..cases {
        let case = gen_case(&mut r, danger_pct);
        match check_case(jit, &case, &format!("seed {seed:#x} case {k}")) {
            JitExit::Completed => completed += 1,
            JitExit::Fault(_) => faulted += 1,
            JitExit::NotEntered => panic!("case {k}: not entered with a full budget"),
            JitExit::Restart => panic!("case {k}: no REP instruction was generated"),
        }
    }
    (completed, faulted)
}

#[test]
fn random_blocks_match_interpreter() {
    let mut jit = Jit::new().unwrap();
    let (completed, faulted) = run_random(&mut jit, 0x5eed_0001, 3000, 6);
    eprintln!("random blocks: {completed} completed, {faulted} faulted");
    // Both outcomes must really be exercised.
    assert!(completed > 1000, "{completed}");
    assert!(faulted > 300, "{faulted}");
}

#[test]
fn random_blocks_match_interpreter_optimised() {
    let mut jit = Jit::with_opt(OptLevel::Speed).unwrap();
    let (completed, faulted) = run_random(&mut jit, 0x5eed_0002, 1000, 6);
    assert!(completed > 300 && faulted > 100, "{completed} {faulted}");
}

// ---- explicit cases --------------------------------------------------------------

fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

fn plain_case(code: Vec<u8>, gpr: [u64; 16]) -> Case {
    Case {
        code,
        gpr,
        flags: FlagsInit::Eflags(0x2),
        data: vec![0x5a; DATA_LEN],
    }
}

/// A fault in the middle of a block: the instructions before it retired,
/// the faulting one changed nothing, RIP points at it.
#[test]
fn fault_mid_block_retires_exactly_the_instructions_before() {
    let code = assemble(|a| {
        a.mov(rax, 5i64)?;
        a.cmp(rbx, rcx)?;
        a.add(rdx, qword_ptr(r13))?;
        a.mov(rsi, 7i64)?;
        a.jmp(CODE + 0x800)
    });
    let mut gpr = [0u64; 16];
    gpr[Gpr::Rbx as usize] = 1;
    gpr[Gpr::Rcx as usize] = 2;
    gpr[Gpr::Rdx as usize] = 0x1234;
    gpr[Gpr::Rsi as usize] = 0x99;
    gpr[Gpr::R13 as usize] = NON_CANONICAL;
    let case = plain_case(code, gpr);
    let mut jit = Jit::new().unwrap();
    let exit = check_case(&mut jit, &case, "non-canonical load");
    assert_eq!(exit, JitExit::Fault(Exception::gp(0)));

    // Independently of the interpreter: re-run compiled and look.
    let e = engine_for(&case);
    let mut jx = interp_copy(&e);
    let block = decode(&mut jx);
    let fault_ip = block.insns[2].i.ip();
    let c = jit.compile(&block).unwrap();
    jx.cpu.budget = 10;
    assert_eq!(c.run(&mut jx), JitExit::Fault(Exception::gp(0)));
    assert_eq!(jx.cpu.icount, 2, "two instructions retired");
    assert_eq!(jx.cpu.budget, 8);
    assert_eq!(jx.cpu.rip, fault_ip);
    assert_eq!(jx.cpu.reg(Gpr::Rax), 5, "MOV before the fault retired");
    assert_eq!(jx.cpu.reg(Gpr::Rdx), 0x1234, "faulting ADD wrote nothing");
    assert_eq!(
        jx.cpu.reg(Gpr::Rsi),
        0x99,
        "MOV after the fault did not run"
    );
    // Flags of CMP 1, 2: 1 - 2 = all ones: CF (borrow), PF (0xff has eight
    // ones), AF (borrow out of bit 3), SF; not ZF, not OF.
    assert_eq!(jx.cpu.rflags(), 0x2 | 0x1 | 0x4 | 0x10 | 0x80);
}

/// A store to a not-present page and an INC of memory crossing into one:
/// #PF with the right address and error code, and no partial write.
#[test]
fn page_faults_mid_block() {
    let code = assemble(|a| {
        a.add(rax, 1)?;
        a.mov(qword_ptr(r13), rax)?;
        a.ud2()
    });
    let mut gpr = [0u64; 16];
    gpr[Gpr::R13 as usize] = NOT_PRESENT;
    let mut jit = Jit::new().unwrap();
    let exit = check_case(&mut jit, &plain_case(code, gpr), "store to not present");
    // Not present, write, supervisor.
    assert_eq!(
        exit,
        JitExit::Fault(Exception::pf(NOT_PRESENT, 2)),
        "error code: write to a not-present page"
    );

    let code = assemble(|a| {
        a.xor(ecx, ecx)?;
        a.inc(qword_ptr(r13))?;
        a.jmp(CODE)
    });
    gpr[Gpr::R13 as usize] = BEFORE_HOLE;
    let exit = check_case(&mut jit, &plain_case(code, gpr), "INC across into a hole");
    assert_eq!(exit, JitExit::Fault(Exception::pf(NOT_PRESENT, 0)));
}

/// A budget shorter than the block: nothing happens. Exactly enough: all.
#[test]
fn short_budget_is_not_entered() {
    let code = assemble(|a| {
        a.mov(rax, 1i64)?;
        a.add(rax, 2)?;
        a.mov(qword_ptr(r14), rax)?;
        a.jmp(CODE + 0x100)
    });
    let mut gpr = [0u64; 16];
    gpr[Gpr::R14 as usize] = DATA;
    let case = plain_case(code, gpr);
    let e = engine_for(&case);
    let mut jx = interp_copy(&e);
    let block = decode(&mut jx);
    assert_eq!(block.insns.len(), 4);
    let mut jit = Jit::new().unwrap();
    let c = jit.compile(&block).unwrap();
    jx.cpu.budget = 3;
    let before = snap(&jx.cpu, &jx.mem);
    assert_eq!(c.run(&mut jx), JitExit::NotEntered);
    assert_eq!(snap(&jx.cpu, &jx.mem), before, "nothing changed");
    jx.cpu.budget = 4;
    assert_eq!(c.run(&mut jx), JitExit::Completed);
    assert_eq!(jx.cpu.icount, 4);
    assert_eq!(jx.cpu.budget, 0);
    assert_eq!(jx.cpu.rip, CODE + 0x100);
    assert_eq!(jx.cpu.reg(Gpr::Rax), 3);
    assert_eq!(&data_of(&jx.mem)[..8], &3u64.to_le_bytes());
}

/// A store into the block's own code page takes the slow path, which asks
/// to leave the block: the compiled code stops right after that
/// instruction with exact counts, and leaves `exit_req` for the engine.
#[test]
fn code_write_leaves_the_block_after_the_instruction() {
    let code = assemble(|a| {
        a.mov(byte_ptr(r12), al)?;
        a.add(rax, 1)?;
        a.jmp(CODE + 0x100)
    });
    let mut gpr = [0u64; 16];
    gpr[Gpr::R12 as usize] = CODE + 0x200;
    gpr[Gpr::Rax as usize] = 0x41;
    let case = plain_case(code, gpr);
    let mut e = engine_for(&case);
    let mut jx = interp_copy(&e);
    let block = decode(&mut jx);
    let next = block.insns[1].i.ip();
    let mut jit = Jit::new().unwrap();
    let c = jit.compile(&block).unwrap();
    jx.cpu.budget = 3;
    assert_eq!(c.run(&mut jx), JitExit::Completed);
    assert_ne!(jx.cpu.exit_req & exit_req::CODE_WRITE, 0);
    assert_eq!(jx.cpu.icount, 1);
    assert_eq!(jx.cpu.budget, 2);
    assert_eq!(jx.cpu.rip, next);
    assert_eq!(
        jx.cpu.reg(Gpr::Rax),
        0x41,
        "ADD after the store did not run"
    );
    assert_eq!(jx.mem.ram()[(CODE + 0x200) as usize], 0x41);
    // The interpreter, one instruction: the same state.
    assert_eq!(e.run(1), Exit::BudgetExhausted);
    assert_eq!(e.cpu().gpr, jx.cpu.gpr);
    assert_eq!(e.cpu().rip, jx.cpu.rip);
    assert_eq!(e.cpu().rflags(), jx.cpu.rflags());
}

/// An access that crosses from one linear page into the next, where the
/// two pages are *not* adjacent in guest-physical memory, after both pages
/// are in the TLB: the inline fast path must not take it (it would read
/// the wrong host bytes), the slow path must combine the right ones.
#[test]
fn page_crossing_access_with_non_adjacent_frames() {
    const LIN: u64 = 0x40_0000;
    let code = assemble(|a| {
        a.mov(rdx, qword_ptr(r14))?; // fills the TLB entry of page 0
        a.mov(rsi, qword_ptr(r14 + 0x1000))?; // ... and of page 1
        a.mov(rax, qword_ptr(r14 + 0xffc))?; // crosses
        a.mov(qword_ptr(r14 + 0xffa), rbx)?; // crosses
        a.add(cx, word_ptr(r14 + 0xfff))?; // crosses
        a.jmp(CODE)
    });
    let mut e = Engine::new(RAM).unwrap();
    e.config.exceptions_exit = true;
    let w = |e: &mut Engine, a: u64, v: u64| {
        e.mem_mut()
            .write_phys(GuestPhysAddr(a), &v.to_le_bytes())
            .unwrap()
    };
    // PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000; PD[0] -> PT 0x4000 (code,
    // identity), PD[2] -> PT 0x5000: LIN -> 0x20000, LIN + 0x1000 -> 0x22000.
    w(&mut e, 0x1000, 0x2003);
    w(&mut e, 0x2000, 0x3003);
    w(&mut e, 0x3000, 0x4003);
    w(&mut e, 0x3000 + 2 * 8, 0x5003);
    w(&mut e, 0x4000 + (CODE >> 12) * 8, CODE | 3);
    w(&mut e, 0x5000, 0x20003);
    w(&mut e, 0x5008, 0x22003);
    e.mem_mut().write_phys(GuestPhysAddr(CODE), &code).unwrap();
    let bytes: Vec<u8> = (0..0x3000u32)
        .map(|i| (i * 7 + 3 + (i >> 12) * 0x55) as u8)
        .collect();
    e.mem_mut()
        .write_phys(GuestPhysAddr(0x20000), &bytes)
        .unwrap();
    let cpu = e.cpu_mut();
    cpu.enter_long_mode_flat(0x1000);
    cpu.rip = CODE;
    cpu.set_reg(Gpr::R14, LIN);
    cpu.set_reg(Gpr::Rbx, 0x1122_3344_5566_7788);
    cpu.set_reg(Gpr::Rcx, 0xffff_0001);
    cpu.set_rflags(0x2);
    e.flush_tlb();
    let mut jx = interp_copy(&e);
    let block = decode(&mut jx);
    let mut jit = Jit::new().unwrap();
    let c = jit.compile(&block).unwrap();
    assert_eq!(e.run(6), Exit::BudgetExhausted);
    jx.cpu.budget = 6;
    assert_eq!(c.run(&mut jx), JitExit::Completed);
    assert_eq!(e.cpu().gpr, jx.cpu.gpr);
    assert_eq!(e.cpu().rflags(), jx.cpu.rflags());
    assert_eq!(e.mem().ram(), jx.mem.ram());
    // Independently: bytes 0x20ffc..0x20fff then 0x22000..0x22003.
    let at = |p: u64| bytes[(p - 0x20000) as usize];
    let want = [
        0x20ffc, 0x20ffd, 0x20ffe, 0x20fff, 0x22000, 0x22001, 0x22002, 0x22003,
    ]
    .map(at);
    assert_eq!(jx.cpu.reg(Gpr::Rax), u64::from_le_bytes(want));
    let ram = jx.mem.ram();
    assert_eq!(
        &ram[0x20ffa..0x21000],
        &0x1122_3344_5566_7788u64.to_le_bytes()[..6]
    );
    assert_eq!(&ram[0x22000..0x22002], &[0x22, 0x11]);
    assert_eq!(ram[0x21000], at(0x21000), "the adjacent frame is untouched");
    // The store put RBX's bytes 5 and 6 (0x33, 0x22) at 0x20fff and 0x22000.
    let word = u16::from_le_bytes([0x33, 0x22]);
    assert_eq!(
        jx.cpu.reg(Gpr::Rcx),
        0xffff_0000 | (1u16.wrapping_add(word)) as u64
    );
}

fn block_of(code: Vec<u8>) -> (Engine, Interp, Rc<Block>) {
    let e = engine_for(&plain_case(code, [0; 16]));
    let mut jx = interp_copy(&e);
    let block = decode(&mut jx);
    (e, jx, block)
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// `cmp; jl` with the flags' producer known at compile time: one signed
/// compare, no flag materialisation, no helper call.
#[test]
fn cmp_jl_is_one_signed_compare() {
    let mut jit = Jit::new().unwrap();
    for (name, code) in [
        (
            "64-bit",
            assemble(|a| {
                a.cmp(rax, rbx)?;
                a.jl(CODE + 0x40)
            }),
        ),
        (
            "32-bit",
            assemble(|a| {
                a.cmp(eax, 5)?;
                a.jl(CODE + 0x40)
            }),
        ),
    ] {
        let (_, _, block) = block_of(code);
        let clif = jit.clif(&block).unwrap();
        println!("CLIF of cmp; jl ({name}):\n{clif}");
        assert_eq!(count(&clif, "icmp slt"), 1, "one signed compare");
        // The other compare is the entry's budget check.
        assert_eq!(count(&clif, "icmp ult"), 1, "budget check");
        assert_eq!(count(&clif, "icmp "), 2, "and no other compare");
        assert_eq!(count(&clif, "popcnt"), 0, "no PF materialised");
        assert_eq!(count(&clif, "call_indirect"), 0, "no helper");
    }
}

/// The same `jl` at the start of a block does not know the producer: it
/// calls the run-time helper (and still agrees with the interpreter).
#[test]
fn jl_without_known_producer_calls_helper() {
    let code = assemble(|a| a.jl(CODE + 0x40));
    let (_, _, block) = block_of(code);
    let mut jit = Jit::new().unwrap();
    let clif = jit.clif(&block).unwrap();
    assert_eq!(count(&clif, "call_indirect"), 1);
    assert_eq!(count(&clif, "icmp slt"), 0);
}

/// Helper instructions (CPUID, DIV) compile as calls to the interpreter's
/// handler, in the middle and at the end of a block, and leave the state the
/// interpreter leaves, also when the helper faults (#DE) mid-block.
#[test]
fn helper_forms_compile_as_interpreter_calls() {
    let mut jit = Jit::new().unwrap();
    let ok = assemble(|a| {
        a.mov(rax, 100i64)?;
        a.add(rcx, 7)?;
        a.xor(edx, edx)?;
        a.div(rcx)?; // helper mid-block: 100 / 7
        a.add(rax, rdx)?; // registers written by the helper are reloaded
        a.cmp(rax, 16)?;
        a.cpuid() // helper ending the block, flags set before it
    });
    let (_, _, block) = block_of(ok.clone());
    let clif = jit.clif(&block).unwrap();
    assert_eq!(count(&clif, "call_indirect"), 2, "{clif}");
    let exit = check_case(&mut jit, &plain_case(ok, [0; 16]), "div+cpuid");
    assert_eq!(exit, JitExit::Completed);

    let de = assemble(|a| {
        a.mov(rax, 100i64)?;
        a.div(rcx)?; // RCX = 0: #DE, RAX already written by the block
        a.mov(rbx, 1i64)?;
        a.jmp(CODE)
    });
    let exit = check_case(&mut jit, &plain_case(de, [0; 16]), "div by zero");
    assert_eq!(exit, JitExit::Fault(Exception::de()));
}

// ---- `when`, `raise_if` and unknown flags, through custom semantics -----------------

/// Test semantics for `BT r64, r64` (op0 = a, op1 = b), built to exercise
/// `raise_if` (also inside `when`), memory under `when`, registers first
/// touched inside `when`, flags set on one path only, `rflags`/`set_rflags`
/// inside `when`, and nested `when`.
fn bt_test<E: Emitter>(e: &mut E, insn: &Insn) -> SemResult {
    let i = &insn.i;
    let ra = semantics::operand::reg_view(i.op0_register()).unwrap().gpr;
    let rb = semantics::operand::reg_view(i.op1_register()).unwrap().gpr;
    let a = e.reg(ra);
    let b = e.reg(rb);
    let k = e.imm(0xdead);
    let c = e.eq(b, k);
    e.raise_if(c, Exception::de())?;
    let base = e.reg(Gpr::R14);
    let v = e.load(base, Width::Q)?;
    let bit0 = e.bit(a, 0);
    e.when(bit0, |e| {
        let k = e.imm(0xbad);
        let c = e.eq(b, k);
        e.raise_if(c, Exception::ud())?;
        let w = e.add_imm(base, 8);
        let extra = e.load(w, Width::D)?;
        let x = e.reg(Gpr::Rcx);
        let y = e.add(x, v);
        let y = e.add(y, extra);
        e.set_reg(Gpr::Rcx, y);
        let s = e.add(v, extra);
        let z = e.imm(0);
        e.set_cc(CcOp::new(CcKind::Add, Width::Q), y, s, z);
        Ok(())
    })?;
    let bit1 = e.bit(a, 1);
    e.when(bit1, |e| {
        let f = e.rflags();
        let flip = e.imm((FlagSet::CF | FlagSet::ZF | FlagSet::SF).bits());
        let f = e.xor(f, flip);
        e.set_rflags(f);
        let bit2 = e.bit(a, 2);
        e.when(bit2, |e| {
            e.set_reg(Gpr::R9, v);
            Ok(())
        })
    })
}

struct WithBtTest;

impl SemSource for WithBtTest {
    fn sem<E: Emitter>(&self, i: &Instruction) -> Option<Sem<E>> {
        if i.mnemonic() == Mnemonic::Bt {
            Some(Sem::Emit(bt_test::<E>))
        } else {
            semantics::lookup(i)
        }
    }
}

/// The interpreter running the block with the test semantics for BT.
fn interp_with_bt(mach: &mut Interp, block: &Block) -> Result<(), Exception> {
    mach.cpu.budget = block.insns.len() as u64;
    for insn in &block.insns {
        let mut insn = insn.clone();
        if insn.i.mnemonic() == Mnemonic::Bt {
            insn.exec = bt_test::<Interp>;
        }
        match mach.step(&insn, 64, true) {
            Ok(()) => {}
            Err(cjemu_jit::emit::Stop::Fault(ex)) => return Err(ex),
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    Ok(())
}

#[test]
fn when_raise_if_and_dynamic_flags_match_interpreter() {
    let mut jit = Jit::new().unwrap();
    let mut r = Rng(0x0b7_7e57);
    type Tail = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let tails: [Tail; 3] = [
        |a| a.jl(CODE + 0x40),
        |a| {
            a.add(rdx, 1)?;
            a.jb(CODE + 0x40)
        },
        |a| {
            a.inc(rdx)?;
            a.jbe(CODE + 0x40)
        },
    ];
    let mut seen_fault = [false; 2];
    for k in 0..600 {
        let tail = tails[r.below(3) as usize];
        let code = assemble(|a| {
            a.bt(rax, rbx)?;
            tail(a)
        });
        let mut gpr = [0u64; 16];
        for g in gpr.iter_mut() {
            *g = r.value();
        }
        gpr[Gpr::Rax as usize] = r.below(8) | (r.next() << 3);
        gpr[Gpr::Rbx as usize] = [0xdead, 0xbad, r.next(), r.value()][r.below(4) as usize];
        gpr[Gpr::R14 as usize] = DATA + r.below(0x1ff8);
        let case = Case {
            code,
            gpr,
            flags: gen_flags(&mut r),
            data: (0..DATA_LEN).map(|_| r.next() as u8).collect(),
        };
        let e = engine_for(&case);
        let mut want = interp_copy(&e);
        let mut got = interp_copy(&e);
        let block = decode(&mut got);
        let c = jit.compile_with(&block, &WithBtTest).unwrap();
        let wexit = interp_with_bt(&mut want, &block);
        got.cpu.budget = block.insns.len() as u64;
        let gexit = c.run(&mut got);
        match (wexit, gexit) {
            (Ok(()), JitExit::Completed) => {}
            (Err(a), JitExit::Fault(b)) if a == b => {
                seen_fault[(a == Exception::ud()) as usize] = true;
            }
            (w, g) => panic!("case {k}: interpreter {w:?}, JIT {g:?}"),
        }
        assert_eq!(
            snap(&want.cpu, &want.mem),
            snap(&got.cpu, &got.mem),
            "case {k}: {}",
            describe(&block)
        );
    }
    assert!(seen_fault[0] && seen_fault[1], "both raise_if sites fired");
}

// ---- compile time ------------------------------------------------------------------

/// Compile time per block for both optimisation levels, with and without
/// the verifier, and the time to run the compiled blocks against stepping
/// the interpreter through them (printed; timing is never asserted).
#[test]
fn compile_time_per_block() {
    const BLOCKS: usize = 200;
    const RUNS: usize = 200;
    let mut r = Rng(0xc0de);
    let cases: Vec<Case> = (0..BLOCKS).map(|_| gen_case(&mut r, 0)).collect();
    let machines = || {
        cases.iter().map(|c| {
            let e = engine_for(c);
            let mut m = interp_copy(&e);
            let b = decode(&mut m);
            (m, b)
        })
    };
    let mut ms: Vec<(Interp, Rc<Block>)> = machines().collect();
    let insns: usize = ms.iter().map(|(_, b)| b.insns.len()).sum();
    let t0 = Instant::now();
    for (m, b) in ms.iter_mut() {
        for _ in 0..RUNS {
            m.cpu.rip = CODE;
            m.cpu.budget = b.insns.len() as u64;
            for insn in &b.insns {
                if m.step(insn, 64, true).is_err() {
                    break;
                }
            }
        }
    }
    let interp_ns = t0.elapsed().as_secs_f64() * 1e9 / (BLOCKS * RUNS) as f64;
    eprintln!(
        "{:.1} guest insns/block; interpreter: {interp_ns:.0} ns per block run",
        insns as f64 / BLOCKS as f64
    );
    for opt in [OptLevel::None, OptLevel::Speed] {
        for verify in [true, false] {
            let mut jit = Jit::with_options(JitOptions { opt, verify }).unwrap();
            let mut ms: Vec<(Interp, Rc<Block>)> = machines().collect();
            let t0 = Instant::now();
            let compiled: Vec<CompiledBlock> =
                ms.iter().map(|(_, b)| jit.compile(b).unwrap()).collect();
            let us = t0.elapsed().as_secs_f64() * 1e6 / BLOCKS as f64;
            let t0 = Instant::now();
            for ((m, _), c) in ms.iter_mut().zip(&compiled) {
                for _ in 0..RUNS {
                    m.cpu.rip = CODE;
                    m.cpu.budget = c.insns as u64;
                    c.run(m);
                }
            }
            let run_ns = t0.elapsed().as_secs_f64() * 1e9 / (BLOCKS * RUNS) as f64;
            let st = jit.stats;
            eprintln!(
                "compile {opt:?}, verifier {verify}: {us:.0} us/block (IR building {:.0} us), \
                 {:.0} code bytes/block; run {run_ns:.0} ns per block",
                st.build_ns as f64 / 1e3 / st.blocks as f64,
                st.code_bytes as f64 / st.blocks as f64,
            );
            assert_eq!(st.blocks, BLOCKS as u64);
        }
    }
}
