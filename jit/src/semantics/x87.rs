//! x87 instructions, as helpers on the concrete interpreter. The
//! arithmetic is `x87::f80` (software 80-bit, exact on any host).
//!
//! Every instruction works on a copy of the FPU state ([`Op`]), reads and
//! checks memory first, stores to memory before committing, so a fault
//! leaves the FPU unchanged.
//!
//! Exceptions: #NM when CR0.EM or CR0.TS is set (WAIT: TS and MP). An
//! unmasked x87 exception sets ES and B; the next *waiting* x87
//! instruction then raises #MF if CR0.NE = 1. With CR0.NE = 0 the PC-style
//! FERR#/IRQ 13 path is not modelled: the pending exception stays recorded
//! in the status word and execution simply continues.
//!
//! Unmasked IE, DE or ZE leave the destination, TOP and the tags alone;
//! unmasked OE/UE deliver the result with its exponent wrapped by 24576
//! to a register, and suppress a store to memory.
//!
//! Last-instruction pointers: every non-control instruction stores FIP =
//! its RIP (offset), FOP = the low 3 bits of its D8–DF byte and its ModRM
//! (11 bits), and, when it has a memory operand, FDP = the operand's
//! effective address (offset). FCS/FDS are not kept (saved as 0).
//!
//! Corner cases follow the host x87 the tests compare against (an AMD
//! EPYC): FPREM/FPREM1 reduce by 32 + (exponent difference mod 32) bits
//! per partial step, truncating, and then clear C0/C1/C3; an unmasked DE
//! does not stop FLD m32/m64; FCOMI*/FCMOVcc leave C1 alone; compares set
//! C0/C2/C3 even when an unmasked exception suppresses their pops; a zero
//! divisor and invalid FPREM/FSQRT operands are reported before DE.
//!
//! Not implemented (#UD through the generic path): FSIN, FCOS, FSINCOS,
//! FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1.

use super::operand::{ea, offset, set};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::Cond;
use crate::interp::Interp;
use crate::memory::GuestPhysAddr;
use crate::mmu;
use crate::state::{cr0, Gpr, Seg, X87State};
use crate::x87::f80::{self, flag::*, Class, Cmp, Env, F80};
use crate::x87::{self, sw, Stack, TAG_EMPTY};
use iced_x86::{Instruction, MemorySize, Mnemonic, OpKind, Register};

// ------------------------------------------------------------ entry checks

/// #NM for every x87 instruction when CR0.EM or CR0.TS is set.
fn device_check(cx: &Interp) -> SemResult {
    if cx.cpu.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Stop::Fault(Exception::nm()));
    }
    Ok(())
}

/// #MF for a pending unmasked exception (waiting instructions).
fn pending(cx: &Interp) -> SemResult {
    if cx.cpu.x87.fsw & sw::ES != 0 && cx.cpu.cr0 & cr0::NE != 0 {
        return Err(Stop::Fault(Exception::mf()));
    }
    Ok(())
}

/// The checks at the start of an x87 instruction.
fn enter(cx: &Interp, wait: bool) -> SemResult {
    device_check(cx)?;
    if wait {
        pending(cx)?;
    }
    Ok(())
}

// ------------------------------------------------------- operation state

/// An instruction in progress: a working copy of the state and the
/// exceptions raised so far.
struct Op {
    f: X87State,
    env: Env,
    /// A stack fault happened (SF).
    sf: bool,
}

impl Op {
    fn new(cx: &Interp) -> Op {
        let f = cx.cpu.x87;
        Op {
            env: Env::from_fcw(f.fcw),
            f,
            sf: false,
        }
    }

    fn underflow(&mut self) {
        self.env.flags |= IE;
        self.sf = true;
        self.env.c1 = false;
    }

    /// Stack overflow: C1 = 1, unless a source register underflowed first.
    fn overflow(&mut self) {
        self.env.c1 = !self.sf;
        self.env.flags |= IE;
        self.sf = true;
    }

    /// ST(i), or `None` after a stack underflow.
    fn read(&mut self, i: usize) -> Option<F80> {
        if self.f.is_empty(i) {
            self.underflow();
            None
        } else {
            Some(self.f.st(i))
        }
    }

    /// ST(i), the indefinite after a stack underflow.
    fn read_or_nan(&mut self, i: usize) -> F80 {
        self.read(i).unwrap_or(F80::INDEFINITE)
    }

    /// Check room for a push; false (and a stack overflow) when ST(7) is
    /// in use.
    fn room(&mut self) -> bool {
        if self.f.is_empty(7) {
            true
        } else {
            self.overflow();
            false
        }
    }

    /// An unmasked IE, DE or ZE happened: no result is delivered.
    fn blocked(&self) -> bool {
        self.env.flags & (IE | DE | ZE) & !self.env.masks != 0
    }

    /// Instructions that leave C1 alone unless the stack faults.
    fn keep_c1(&mut self) {
        let c1 = self.f.fsw & sw::C1 != 0;
        self.env.c1 = c1 && !self.sf;
    }

    /// Merge the raised exceptions, SF and C1 into the status word.
    fn status(&mut self) {
        self.f.fsw |= self.env.flags as u16;
        if self.sf {
            self.f.fsw |= sw::SF;
        }
        self.set_cc(sw::C1, self.env.c1);
        self.f.update_es();
    }

    fn set_cc(&mut self, bit: u16, v: bool) {
        if v {
            self.f.fsw |= bit;
        } else {
            self.f.fsw &= !bit;
        }
    }

    /// C3, C2, C0 of a comparison.
    fn set_cmp(&mut self, c: Cmp) {
        let (c3, c2, c0) = match c {
            Cmp::Greater => (false, false, false),
            Cmp::Less => (false, false, true),
            Cmp::Equal => (true, false, false),
            Cmp::Unordered => (true, true, true),
        };
        self.set_cc(sw::C3, c3);
        self.set_cc(sw::C2, c2);
        self.set_cc(sw::C0, c0);
    }
}

/// The x87 opcode (low 3 bits of the D8–DF byte, then ModRM), read back
/// from the code bytes; 0 if they cannot be read.
fn opcode(cx: &mut Interp, insn: &Insn) -> u16 {
    let cs = cx.cpu.seg[Seg::Cs as usize].base;
    let ip = insn.i.ip();
    let mut byte = |k: u64| -> Option<u8> {
        let lin = if cx.bitness() == 64 {
            ip.wrapping_add(k)
        } else {
            cs.wrapping_add(ip.wrapping_add(k)) & 0xffff_ffff
        };
        let p = mmu::translate_fetch(&mut cx.cpu, &mut cx.mem, lin).ok()?;
        let mut b = [0u8];
        cx.mem.read_phys(GuestPhysAddr(p), &mut b).ok()?;
        Some(b[0])
    };
    for k in 0..insn.i.len() as u64 {
        let Some(b) = byte(k) else { return 0 };
        if (0xd8..=0xdf).contains(&b) {
            let Some(m) = byte(k + 1) else { return 0 };
            return ((b as u16 & 7) << 8) | m as u16;
        }
    }
    0
}

/// Commit a non-control instruction: last-instruction pointers and state.
fn commit(cx: &mut Interp, insn: &Insn, mut op: Op) {
    op.f.fip = insn.i.ip();
    op.f.fop = opcode(cx, insn);
    if has_mem(&insn.i) {
        op.f.fdp = offset(cx, &insn.i);
    }
    cx.cpu.x87 = op.f;
}

fn has_mem(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory)
}

/// The ST(i) index of operand `n` (a register operand).
fn st_of(i: &Instruction, n: u32) -> usize {
    (i.op_register(n) as usize).wrapping_sub(Register::ST0 as usize) & 7
}

/// The register operands' stack indices, in order.
fn st_ops(i: &Instruction) -> Vec<usize> {
    (0..i.op_count())
        .filter(|&n| i.op_kind(n) == OpKind::Register)
        .map(|n| st_of(i, n))
        .collect()
}

// ------------------------------------------------------------ memory

/// A memory operand's raw contents.
#[derive(Clone, Copy, Debug)]
enum Mem {
    F32(u32),
    F64(u64),
    F80(F80),
    Int(i64),
    Bcd([u8; 10]),
}

fn load10(cx: &mut Interp, lin: u64) -> SemResult<[u8; 10]> {
    let lo = cx.load(lin, Width::Q)?;
    let hi = cx.load(lin.wrapping_add(8), Width::W)?;
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&lo.to_le_bytes());
    b[8..].copy_from_slice(&(hi as u16).to_le_bytes());
    Ok(b)
}

/// Read the instruction's memory operand by its size.
fn load_mem(cx: &mut Interp, insn: &Insn) -> SemResult<Mem> {
    let lin = ea(cx, &insn.i);
    Ok(match insn.i.memory_size() {
        MemorySize::Float32 => Mem::F32(cx.load(lin, Width::D)? as u32),
        MemorySize::Float64 => Mem::F64(cx.load(lin, Width::Q)?),
        MemorySize::Float80 => Mem::F80(F80::from_bytes(&load10(cx, lin)?)),
        MemorySize::Int16 => Mem::Int(cx.load(lin, Width::W)? as i16 as i64),
        MemorySize::Int32 => Mem::Int(cx.load(lin, Width::D)? as i32 as i64),
        MemorySize::Int64 => Mem::Int(cx.load(lin, Width::Q)? as i64),
        MemorySize::Bcd => Mem::Bcd(load10(cx, lin)?),
        _ => return Err(Stop::Fault(Exception::ud())),
    })
}

/// The value of a memory operand (conversions raise IE for SNaNs and DE
/// for denormals of the short formats).
fn mem_value(env: &mut Env, m: Mem) -> F80 {
    match m {
        Mem::F32(v) => f80::from_f32(env, v),
        Mem::F64(v) => f80::from_f64(env, v),
        Mem::F80(v) => v,
        Mem::Int(v) => f80::from_int(v),
        Mem::Bcd(b) => bcd_value(&b),
    }
}

/// Check that `n` bytes at `lin` can be written (so a multi-part store is
/// all or nothing).
fn probe(cx: &mut Interp, lin: u64, n: u64) -> SemResult {
    mmu::probe_write(&mut cx.cpu, &mut cx.mem, lin, Width::B).map_err(Stop::Fault)?;
    let last = lin.wrapping_add(n - 1);
    mmu::probe_write(&mut cx.cpu, &mut cx.mem, last, Width::B).map_err(Stop::Fault)
}

fn store_bytes(cx: &mut Interp, lin: u64, b: &[u8]) -> SemResult {
    probe(cx, lin, b.len() as u64)?;
    let mut k = 0;
    while k < b.len() {
        let (w, n) = match b.len() - k {
            8.. => (Width::Q, 8),
            4..=7 => (Width::D, 4),
            2..=3 => (Width::W, 2),
            _ => (Width::B, 1),
        };
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&b[k..k + n]);
        cx.store(lin.wrapping_add(k as u64), w, u64::from_le_bytes(v))?;
        k += n;
    }
    Ok(())
}

// ------------------------------------------------------------ loads

/// FLD (m32/m64/m80/ST(i)), FILD, FBLD.
fn fld(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let m = if has_mem(&insn.i) {
        Some(load_mem(cx, insn)?)
    } else {
        None
    };
    let mut op = Op::new(cx);
    let v = match m {
        // Loading quiets a single/double SNaN (IE raised by the conversion).
        Some(m @ (Mem::F32(_) | Mem::F64(_))) => {
            let v = mem_value(&mut op.env, m);
            if v.is_nan() {
                v.quiet()
            } else {
                v
            }
        }
        Some(m) => mem_value(&mut op.env, m),
        None => op.read_or_nan(st_of(&insn.i, 0)),
    };
    push_result(&mut op, v);
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// Push `v` unless the stack is full (then the indefinite, when masked).
/// A denormal single/double source raises DE when there is room.
fn push_result(op: &mut Op, v: F80) {
    let v = if op.room() {
        op.env.denormal(false);
        v
    } else {
        F80::INDEFINITE
    };
    // An unmasked DE does not stop a load (the host x87 loads anyway).
    if op.env.flags & IE & !op.env.masks == 0 {
        op.f.push(v);
    }
}

/// The rounding-dependent constants: 64-bit truncation, whether the rest
/// is above half an ulp.
fn fld_const(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let (se, sig, above) = match insn.i.mnemonic() {
        Mnemonic::Fld1 => (0x3fff, 1 << 63, false),
        Mnemonic::Fldz => (0, 0, false),
        Mnemonic::Fldpi => (0x4000, 0xc90f_daa2_2168_c234, true),
        Mnemonic::Fldl2e => (0x3fff, 0xb8aa_3b29_5c17_f0bb, true),
        Mnemonic::Fldl2t => (0x4000, 0xd49a_784b_cd1b_8afe, false),
        Mnemonic::Fldlg2 => (0x3ffd, 0x9a20_9a84_fbcf_f798, true),
        _ => (0x3ffe, 0xb172_17f7_d1cf_79ab, true),
    };
    let exact = matches!(insn.i.mnemonic(), Mnemonic::Fld1 | Mnemonic::Fldz);
    let v = if exact {
        F80 { se, sig }
    } else {
        f80::constant(op.env.rc, se, sig, above)
    };
    push_result(&mut op, v);
    op.status();
    commit(cx, insn, op);
    Ok(())
}

// ------------------------------------------------------------ stores

/// FST/FSTP to ST(i) or m32/m64/m80.
fn fst(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let pop = matches!(insn.i.mnemonic(), Mnemonic::Fstp | Mnemonic::Fstpnce);
    let mut op = Op::new(cx);
    let v = op.read_or_nan(0);
    if !has_mem(&insn.i) {
        let i = st_of(&insn.i, 0);
        if !op.blocked() {
            op.f.set_st(i, v);
            if pop {
                op.f.pop();
            }
        }
        op.status();
        commit(cx, insn, op);
        return Ok(());
    }
    let bytes: Option<Vec<u8>> = match insn.i.memory_size() {
        MemorySize::Float32 => f80::to_f32(&mut op.env, v).map(|x| x.to_le_bytes().to_vec()),
        MemorySize::Float64 => f80::to_f64(&mut op.env, v).map(|x| x.to_le_bytes().to_vec()),
        _ => Some(v.to_bytes().to_vec()),
    };
    finish_store(cx, insn, op, bytes, pop)
}

/// Store `bytes` (when the exceptions allow) and commit, popping if asked.
fn finish_store(
    cx: &mut Interp,
    insn: &Insn,
    mut op: Op,
    bytes: Option<Vec<u8>>,
    pop: bool,
) -> SemResult {
    let deliver = !op.blocked() && bytes.is_some();
    if deliver {
        let lin = ea(cx, &insn.i);
        store_bytes(cx, lin, bytes.as_deref().unwrap_or(&[]))?;
        if pop {
            op.f.pop();
        }
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FIST/FISTP/FISTTP m16/m32/m64.
fn fist(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let m = insn.i.mnemonic();
    let pop = m != Mnemonic::Fist;
    let trunc = m == Mnemonic::Fisttp;
    let n = insn.i.memory_size().size();
    let bits = 8 * n as u32;
    let mut op = Op::new(cx);
    let v = op.read(0);
    let r = match v {
        Some(v) => f80::to_int(&mut op.env, v, bits, trunc),
        None => None,
    };
    // The integer indefinite: the most negative value.
    let r = r.unwrap_or(i64::MIN >> (64 - bits));
    let bytes = r.to_le_bytes()[..n].to_vec();
    finish_store(cx, insn, op, Some(bytes), pop)
}

// ------------------------------------------------------------ arithmetic

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Subr,
    Mul,
    Div,
    Divr,
}

fn arith_of(m: Mnemonic) -> (Arith, bool) {
    use Mnemonic as M;
    match m {
        M::Fadd | M::Fiadd => (Arith::Add, false),
        M::Faddp => (Arith::Add, true),
        M::Fsub | M::Fisub => (Arith::Sub, false),
        M::Fsubp => (Arith::Sub, true),
        M::Fsubr | M::Fisubr => (Arith::Subr, false),
        M::Fsubrp => (Arith::Subr, true),
        M::Fmul | M::Fimul => (Arith::Mul, false),
        M::Fmulp => (Arith::Mul, true),
        M::Fdiv | M::Fidiv => (Arith::Div, false),
        M::Fdivp => (Arith::Div, true),
        M::Fdivr | M::Fidivr => (Arith::Divr, false),
        _ => (Arith::Divr, true),
    }
}

fn compute(env: &mut Env, k: Arith, a: F80, b: F80) -> F80 {
    match k {
        Arith::Add => f80::add(env, a, b, false),
        Arith::Sub => f80::add(env, a, b, true),
        Arith::Subr => f80::add(env, b, a, true),
        Arith::Mul => f80::mul(env, a, b),
        Arith::Div => f80::div(env, a, b),
        Arith::Divr => f80::div(env, b, a),
    }
}

/// FADD … FDIVRP and the integer forms: dest = dest op src.
fn arith(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let (k, pop) = arith_of(insn.i.mnemonic());
    let m = if has_mem(&insn.i) {
        Some(load_mem(cx, insn)?)
    } else {
        None
    };
    let mut op = Op::new(cx);
    let (dst, a, b) = match m {
        Some(m) => {
            let a = op.read(0);
            let b = mem_value(&mut op.env, m);
            (0, a, Some(b))
        }
        None => {
            let r = st_ops(&insn.i);
            let (d, s) = match r.as_slice() {
                [d, s] => (*d, *s),
                _ => (1, 0),
            };
            let a = op.read(d);
            let b = op.read(s);
            (d, a, b)
        }
    };
    let r = match (a, b) {
        (Some(a), Some(b)) => compute(&mut op.env, k, a, b),
        _ => F80::INDEFINITE,
    };
    if !op.blocked() {
        op.f.set_st(dst, r);
        if pop {
            op.f.pop();
        }
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// One-operand functions of ST(0): FSQRT, FRNDINT, FCHS, FABS.
fn unary(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let r = match op.read(0) {
        Some(a) => match insn.i.mnemonic() {
            Mnemonic::Fsqrt => f80::sqrt(&mut op.env, a),
            Mnemonic::Frndint => f80::round_int(&mut op.env, a),
            Mnemonic::Fchs => a.neg(),
            _ => a.abs(),
        },
        None => F80::INDEFINITE,
    };
    if !op.blocked() {
        op.f.set_st(0, r);
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FSCALE: ST(0) × 2^trunc(ST(1)).
fn fscale(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let (a, b) = (op.read(0), op.read(1));
    let r = match (a, b) {
        (Some(a), Some(b)) => f80::scale(&mut op.env, a, b),
        _ => F80::INDEFINITE,
    };
    if !op.blocked() {
        op.f.set_st(0, r);
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FPREM/FPREM1: partial remainder; C2 = incomplete, else C0/C3/C1 =
/// quotient bits 2/1/0.
fn fprem(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let ieee = insn.i.mnemonic() == Mnemonic::Fprem1;
    let mut op = Op::new(cx);
    let (a, b) = (op.read(0), op.read(1));
    let r = match (a, b) {
        (Some(a), Some(b)) => f80::rem(&mut op.env, a, b, ieee),
        _ => f80::Rem {
            value: F80::INDEFINITE,
            partial: false,
            q: 0,
        },
    };
    let blocked = op.blocked();
    if !blocked {
        op.f.set_st(0, r.value);
    }
    op.status();
    // No quotient bits for an exception or a NaN (C0, C3 kept) nor for
    // a partial reduction (cleared).
    if blocked || r.value.is_nan() {
        op.set_cc(sw::C2, false);
    } else {
        let q = if r.partial { 0 } else { r.q };
        op.set_cc(sw::C2, r.partial);
        op.set_cc(sw::C0, q & 4 != 0);
        op.set_cc(sw::C3, q & 2 != 0);
        op.set_cc(sw::C1, q & 1 != 0);
    }
    commit(cx, insn, op);
    Ok(())
}

/// FXTRACT: ST(0) → exponent, then push the significand.
fn fxtract(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let (e, s) = match op.read(0) {
        Some(a) => {
            if op.room() {
                f80::extract(&mut op.env, a)
            } else {
                (F80::INDEFINITE, F80::INDEFINITE)
            }
        }
        None => (F80::INDEFINITE, F80::INDEFINITE),
    };
    if !op.blocked() {
        op.f.set_st(0, e);
        op.f.push(s);
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

// ------------------------------------------------------------ compares

/// FCOM, FCOMP, FCOMPP, FUCOM*, FICOM*, FTST.
fn fcom(cx: &mut Interp, insn: &Insn) -> SemResult {
    use Mnemonic as M;
    enter(cx, true)?;
    let mn = insn.i.mnemonic();
    let quiet = matches!(mn, M::Fucom | M::Fucomp | M::Fucompp);
    let pops = match mn {
        M::Fcomp | M::Fucomp | M::Ficomp => 1,
        M::Fcompp | M::Fucompp => 2,
        _ => 0,
    };
    let m = if has_mem(&insn.i) {
        Some(load_mem(cx, insn)?)
    } else {
        None
    };
    let mut op = Op::new(cx);
    let a = op.read(0);
    let b = match m {
        Some(m) => Some(mem_value(&mut op.env, m)),
        None if mn == M::Ftst => Some(F80::ZERO),
        None => {
            let r = st_ops(&insn.i);
            op.read(r.last().copied().unwrap_or(1))
        }
    };
    let c = match (a, b) {
        (Some(a), Some(b)) => f80::compare(&mut op.env, a, b, quiet),
        _ => Cmp::Unordered,
    };
    // The condition codes are set even when an unmasked exception stops
    // the pops.
    op.set_cmp(c);
    if !op.blocked() {
        for _ in 0..pops {
            op.f.pop();
        }
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FCOMI, FCOMIP, FUCOMI, FUCOMIP: ZF/PF/CF like an unsigned compare,
/// OF/SF/AF cleared.
fn fcomi(cx: &mut Interp, insn: &Insn) -> SemResult {
    use Mnemonic as M;
    enter(cx, true)?;
    let mn = insn.i.mnemonic();
    let quiet = matches!(mn, M::Fucomi | M::Fucomip);
    let pop = matches!(mn, M::Fcomip | M::Fucomip);
    let mut op = Op::new(cx);
    let r = st_ops(&insn.i);
    let a = op.read(0);
    let b = op.read(r.last().copied().unwrap_or(1));
    let c = match (a, b) {
        (Some(a), Some(b)) => f80::compare(&mut op.env, a, b, quiet),
        _ => Cmp::Unordered,
    };
    // The flags are set even when an unmasked exception stops the pop.
    let (zf, pf, cf) = match c {
        Cmp::Greater => (0, 0, 0),
        Cmp::Less => (0, 0, 1),
        Cmp::Equal => (1, 0, 0),
        Cmp::Unordered => (1, 1, 1),
    };
    const ARITH: u64 = 0x8d5; // OF SF ZF AF PF CF
    let fl = cx.rflags() & !ARITH;
    cx.set_rflags(fl | (zf << 6) | (pf << 2) | cf);
    if !op.blocked() && pop {
        op.f.pop();
    }
    op.keep_c1();
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FXAM: classify ST(0) into C3/C2/C0, C1 = sign.
fn fxam(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let v = op.f.st(0);
    let (c3, c2, c0) = if op.f.is_empty(0) {
        (true, false, true)
    } else {
        match v.class() {
            Class::Unsupported => (false, false, false),
            Class::QNaN | Class::SNaN => (false, false, true),
            Class::Normal => (false, true, false),
            Class::Inf => (false, true, true),
            Class::Zero => (true, false, false),
            Class::Denormal => (true, true, false),
        }
    };
    op.set_cc(sw::C3, c3);
    op.set_cc(sw::C2, c2);
    op.set_cc(sw::C0, c0);
    op.set_cc(sw::C1, v.sign());
    commit(cx, insn, op);
    Ok(())
}

// ------------------------------------------------------------ stack

/// FXCH: empty registers read as the indefinite (masked underflow).
fn fxch(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let i = st_ops(&insn.i).last().copied().unwrap_or(1);
    let mut op = Op::new(cx);
    let a = op.read_or_nan(0);
    let b = op.read_or_nan(i);
    if !op.blocked() {
        op.f.set_st(0, b);
        op.f.set_st(i, a);
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FFREE, FFREEP.
fn ffree(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let p = op.f.phys(st_of(&insn.i, 0));
    op.f.set_tag(p, TAG_EMPTY);
    if insn.i.mnemonic() == Mnemonic::Ffreep {
        op.f.pop();
    }
    op.status();
    commit(cx, insn, op);
    Ok(())
}

/// FINCSTP, FDECSTP: TOP ± 1, C1 = 0, tags untouched.
fn fincdec(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let d = if insn.i.mnemonic() == Mnemonic::Fincstp {
        1
    } else {
        7
    };
    let t = op.f.top() + d;
    op.f.set_top(t);
    op.set_cc(sw::C1, false);
    commit(cx, insn, op);
    Ok(())
}

/// FCMOVcc ST(0), ST(i).
fn fcmov(cx: &mut Interp, insn: &Insn) -> SemResult {
    use Mnemonic as M;
    enter(cx, true)?;
    let (cond, neg) = match insn.i.mnemonic() {
        M::Fcmovb => (Cond::B, false),
        M::Fcmove => (Cond::E, false),
        M::Fcmovbe => (Cond::Be, false),
        M::Fcmovu => (Cond::P, false),
        M::Fcmovnb => (Cond::B, true),
        M::Fcmovne => (Cond::E, true),
        M::Fcmovnbe => (Cond::Be, true),
        _ => (Cond::P, true),
    };
    let take = (cx.cond(cond) != 0) != neg;
    let i = st_ops(&insn.i).last().copied().unwrap_or(1);
    let mut op = Op::new(cx);
    let a = op.read(0);
    let b = op.read(i);
    if !op.blocked() {
        if a.is_none() || b.is_none() {
            op.f.set_st(0, F80::INDEFINITE);
        } else if take {
            op.f.set_st(0, b.unwrap_or(F80::INDEFINITE));
        }
    }
    op.keep_c1();
    op.status();
    commit(cx, insn, op);
    Ok(())
}

fn fnop(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let op = Op::new(cx);
    commit(cx, insn, op);
    Ok(())
}

/// FWAIT: #NM only with CR0.TS and CR0.MP; then pending exceptions.
fn fwait(cx: &mut Interp, _: &Insn) -> SemResult {
    let c = cx.cpu.cr0;
    if c & cr0::TS != 0 && c & cr0::MP != 0 {
        return Err(Stop::Fault(Exception::nm()));
    }
    pending(cx)
}

// ------------------------------------------------------------ control

/// The FINIT/FCLEX/FSTCW/FSTSW/FSTENV/FSAVE forms wait first.
fn waits(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Finit | M::Fclex | M::Fstcw | M::Fstsw | M::Fstenv | M::Fsave | M::Fldenv
    )
}

fn finit(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    x87::init(&mut cx.cpu.x87);
    Ok(())
}

fn fclex(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    cx.cpu.x87.fsw &= !(0x3f | sw::SF | sw::ES | sw::B);
    Ok(())
}

/// FLDCW: reserved bits read back as in hardware (bit 6 set, 13–15 clear).
fn fldcw(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let lin = ea(cx, &insn.i);
    let v = cx.load(lin, Width::W)? as u16;
    let f = &mut cx.cpu.x87;
    f.fcw = (v & 0x1f3f) | 0x40;
    f.update_es();
    Ok(())
}

fn fstcw(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    let lin = ea(cx, &insn.i);
    let v = cx.cpu.x87.fcw as u64;
    cx.store(lin, Width::W, v)
}

fn fstsw(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    let v = cx.cpu.x87.fsw as u64;
    if has_mem(&insn.i) {
        let lin = ea(cx, &insn.i);
        cx.store(lin, Width::W, v)
    } else {
        set(cx, Gpr::Rax, Width::W, v);
        Ok(())
    }
}

/// Layout of the environment image.
#[derive(Clone, Copy)]
struct Layout {
    /// 14-byte (16-bit operand size) instead of 28-byte.
    small: bool,
    /// Real-address or virtual-8086 mode form.
    real: bool,
}

fn layout(cx: &Interp, insn: &Insn) -> Layout {
    let small = matches!(
        insn.i.memory_size(),
        MemorySize::FpuEnv14 | MemorySize::FpuState94
    );
    let vm = cx.cpu.rflags & (1 << 17) != 0;
    Layout {
        small,
        real: cx.cpu.cr0 & cr0::PE == 0 || vm,
    }
}

/// The FNSTENV image (14 or 28 bytes).
fn env_image(f: &X87State, l: Layout) -> Vec<u8> {
    let tags = f.full_tags();
    let (ip, dp, fop) = (f.fip, f.fdp, f.fop as u64 & 0x7ff);
    // Fields: control, status, tags, then four pointer words.
    let ptr: [u64; 4] = if l.real {
        [
            ip & 0xffff,
            ((ip >> 16) & 0xffff) << 12 | fop,
            dp & 0xffff,
            ((dp >> 16) & 0xffff) << 12,
        ]
    } else {
        [ip, fop << 16, dp, 0]
    };
    let mut v = Vec::with_capacity(28);
    if l.small {
        for w in [f.fcw as u64, f.fsw as u64, tags as u64] {
            v.extend_from_slice(&(w as u16).to_le_bytes());
        }
        let p16: [u64; 4] = if l.real {
            [
                ip & 0xffff,
                ((ip >> 16) & 0xf) << 12 | fop,
                dp & 0xffff,
                ((dp >> 16) & 0xf) << 12,
            ]
        } else {
            [ip & 0xffff, 0, dp & 0xffff, 0]
        };
        for w in p16 {
            v.extend_from_slice(&(w as u16).to_le_bytes());
        }
    } else {
        for w in [f.fcw, f.fsw, tags] {
            v.extend_from_slice(&(w as u32 | 0xffff_0000).to_le_bytes());
        }
        for (k, w) in ptr.into_iter().enumerate() {
            // The selector slots have reserved upper halves (set, like the
            // control/status/tag slots); the real-mode pointer words do not.
            let w = if !l.real && k == 3 {
                w | 0xffff_0000
            } else {
                w
            };
            v.extend_from_slice(&(w as u32).to_le_bytes());
        }
    }
    v
}

/// Load an environment image; tags other than "empty" are recomputed from
/// the register contents (as the hardware does).
fn load_env(f: &mut X87State, b: &[u8], l: Layout) {
    let (w, rd): (usize, fn(&[u8]) -> u64) = if l.small {
        (2, |s| u16::from_le_bytes([s[0], s[1]]) as u64)
    } else {
        (4, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
    };
    let word = |k: usize| rd(&b[k * w..]);
    f.fcw = (word(0) as u16 & 0x1f3f) | 0x40;
    f.fsw = word(1) as u16;
    let tags = word(2) as u16;
    if l.real {
        let hi = if l.small { 0xf } else { 0xffff };
        f.fip = word(3) & 0xffff | ((word(4) >> 12) & hi) << 16;
        f.fop = (word(4) & 0x7ff) as u16;
        f.fdp = word(5) & 0xffff | ((word(6) >> 12) & hi) << 16;
    } else {
        f.fip = word(3);
        f.fop = if l.small {
            0
        } else {
            ((word(4) >> 16) & 0x7ff) as u16
        };
        f.fdp = word(5);
    }
    for p in 0..8 {
        if (tags >> (2 * p)) & 3 == TAG_EMPTY {
            f.set_tag(p, TAG_EMPTY);
        } else {
            let v = f.reg(p);
            f.set_tag(p, v.tag());
        }
    }
    f.update_es();
}

fn fstenv(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    let l = layout(cx, insn);
    let img = env_image(&cx.cpu.x87, l);
    let lin = ea(cx, &insn.i);
    store_bytes(cx, lin, &img)?;
    // FNSTENV then masks all exceptions.
    let f = &mut cx.cpu.x87;
    f.fcw |= 0x3f;
    f.update_es();
    Ok(())
}

fn fldenv(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    let l = layout(cx, insn);
    let n = if l.small { 14 } else { 28 };
    let b = read_bytes(cx, insn, n)?;
    load_env(&mut cx.cpu.x87, &b, l);
    Ok(())
}

fn read_bytes(cx: &mut Interp, insn: &Insn, n: usize) -> SemResult<Vec<u8>> {
    let lin = ea(cx, &insn.i);
    let mut v = Vec::with_capacity(n);
    for k in 0..n as u64 {
        v.push(cx.load(lin.wrapping_add(k), Width::B)? as u8);
    }
    Ok(v)
}

fn fsave(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, waits(insn.i.mnemonic()))?;
    let l = layout(cx, insn);
    let f = cx.cpu.x87;
    let mut img = env_image(&f, l);
    for i in 0..8 {
        img.extend_from_slice(&f.st(i).to_bytes());
    }
    let lin = ea(cx, &insn.i);
    store_bytes(cx, lin, &img)?;
    x87::init(&mut cx.cpu.x87);
    Ok(())
}

fn frstor(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let l = layout(cx, insn);
    let n = if l.small { 14 } else { 28 };
    let b = read_bytes(cx, insn, n + 80)?;
    let mut f = cx.cpu.x87;
    // Registers first (in stack order from the new TOP), then the tags.
    let top = ((b[w_off(l, 1)] as u16 | (b[w_off(l, 1) + 1] as u16) << 8) & sw::TOP_MASK)
        >> sw::TOP_SHIFT;
    for i in 0..8 {
        let p = (top as usize + i) & 7;
        f.regs[p][..10].copy_from_slice(&b[n + 10 * i..n + 10 * i + 10]);
    }
    load_env(&mut f, &b, l);
    cx.cpu.x87 = f;
    Ok(())
}

/// Byte offset of environment word `k`.
fn w_off(l: Layout, k: usize) -> usize {
    if l.small {
        2 * k
    } else {
        4 * k
    }
}

// ------------------------------------------------------------ BCD

/// The value of an 18-digit packed BCD integer (invalid digits are used
/// as their binary value).
fn bcd_value(b: &[u8; 10]) -> F80 {
    let mut v: i64 = 0;
    for k in (0..9).rev() {
        v = v * 100 + (b[k] >> 4) as i64 * 10 + (b[k] & 15) as i64;
    }
    let r = f80::from_int(v);
    if b[9] & 0x80 != 0 {
        r.neg()
    } else {
        r
    }
}

/// FBSTP: round by RC to an integer; out of range → IE and the BCD
/// indefinite.
fn fbstp(cx: &mut Interp, insn: &Insn) -> SemResult {
    enter(cx, true)?;
    let mut op = Op::new(cx);
    let v = op.read(0);
    let mut env = op.env;
    let r = match v {
        Some(v) => f80::to_int(&mut env, v, 64, false),
        None => None,
    };
    let r = r.filter(|x| x.unsigned_abs() < 1_000_000_000_000_000_000);
    if r.is_none() {
        env.flags |= IE;
        env.flags &= !PE;
        env.c1 = false;
    }
    op.env = env;
    let bytes = match r {
        Some(x) => {
            let mut m = x.unsigned_abs();
            let mut b = [0u8; 10];
            for byte in b.iter_mut().take(9) {
                *byte = ((m % 10) | ((m / 10 % 10) << 4)) as u8;
                m /= 100;
            }
            let neg = x < 0 || (x == 0 && v.is_some_and(|v| v.sign()));
            b[9] = if neg { 0x80 } else { 0 };
            b
        }
        None => [0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff],
    };
    finish_store(cx, insn, op, Some(bytes.to_vec()), true)
}

// ------------------------------------------------------------ lookup

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    Some(Sem::Helper(match i.mnemonic() {
        M::Fninit | M::Finit => finit,
        M::Fnclex | M::Fclex => fclex,
        M::Fldcw => fldcw,
        M::Fnstcw | M::Fstcw => fstcw,
        M::Fnstsw | M::Fstsw => fstsw,
        M::Fnstenv | M::Fstenv => fstenv,
        M::Fldenv => fldenv,
        M::Fnsave | M::Fsave => fsave,
        M::Frstor => frstor,
        M::Wait => fwait,
        M::Fnop | M::Fneni | M::Fndisi | M::Fnsetpm | M::Feni | M::Fdisi | M::Fsetpm => fnop,
        M::Fld | M::Fild | M::Fbld => fld,
        M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 => fld_const,
        M::Fst | M::Fstp | M::Fstpnce => fst,
        M::Fist | M::Fistp | M::Fisttp => fist,
        M::Fbstp => fbstp,
        M::Fadd
        | M::Faddp
        | M::Fiadd
        | M::Fsub
        | M::Fsubp
        | M::Fisub
        | M::Fsubr
        | M::Fsubrp
        | M::Fisubr
        | M::Fmul
        | M::Fmulp
        | M::Fimul
        | M::Fdiv
        | M::Fdivp
        | M::Fidiv
        | M::Fdivr
        | M::Fdivrp
        | M::Fidivr => arith,
        M::Fsqrt | M::Frndint | M::Fchs | M::Fabs => unary,
        M::Fscale => fscale,
        M::Fprem | M::Fprem1 => fprem,
        M::Fxtract => fxtract,
        M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp
        | M::Ftst => fcom,
        M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => fcomi,
        M::Fxam => fxam,
        M::Fxch => fxch,
        M::Ffree | M::Ffreep => ffree,
        M::Fincstp | M::Fdecstp => fincdec,
        M::Fcmovb
        | M::Fcmove
        | M::Fcmovbe
        | M::Fcmovu
        | M::Fcmovnb
        | M::Fcmovne
        | M::Fcmovnbe
        | M::Fcmovnu => fcmov,
        _ => return None,
    }))
}
