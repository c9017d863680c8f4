//! String instructions: MOVS, STOS, LODS, CMPS, SCAS in every size, with
//! and without REP/REPE/REPNE.
//!
//! They are helpers on the concrete interpreter (compiled code calls
//! them): a REP runs a loop whose length the budget may cut. Counting
//! (DESIGN.md, icount): a REP counts one per executed iteration, and one
//! when RCX is 0. `Interp::step` counts one when the handler returns `Ok`,
//! so iteration n (n >= 2) is retired just before iteration n+1 starts or
//! the budget stops the loop. A device touched by iteration n+1 therefore
//! sees the exact count, and a fault in iteration n+1 leaves n counted with
//! RCX/RSI/RDI showing n iterations done.

use super::operand::{get, linear, seg_of, set};
use super::Sem;
use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::flags::{CcKind, CcOp, FlagSet};
use crate::interp::Interp;
use crate::state::{exit_req, Gpr, Seg};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// Which string operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Movs,
    Stos,
    Lods,
    Cmps,
    Scas,
}

/// Which repeat prefix applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rep {
    /// No prefix: one iteration, RCX untouched.
    Once,
    /// REP (F3, or F2 on an instruction without a condition).
    Count,
    /// REPE: also stop when ZF = 0.
    WhileEqual,
    /// REPNE: also stop when ZF = 1.
    WhileNotEqual,
}

/// A decoded string instruction.
#[derive(Clone, Copy, Debug)]
struct StrOp {
    kind: Kind,
    /// Element size.
    w: Width,
    /// Address size: selects SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX.
    aw: Width,
    /// Segment of the source (DS unless overridden); the destination is ES.
    src: Seg,
    rep: Rep,
}

impl StrOp {
    fn of(i: &Instruction) -> StrOp {
        use Mnemonic as M;
        let (kind, w) = match i.mnemonic() {
            M::Movsb => (Kind::Movs, Width::B),
            M::Movsw => (Kind::Movs, Width::W),
            M::Movsd => (Kind::Movs, Width::D),
            M::Movsq => (Kind::Movs, Width::Q),
            M::Stosb => (Kind::Stos, Width::B),
            M::Stosw => (Kind::Stos, Width::W),
            M::Stosd => (Kind::Stos, Width::D),
            M::Stosq => (Kind::Stos, Width::Q),
            M::Lodsb => (Kind::Lods, Width::B),
            M::Lodsw => (Kind::Lods, Width::W),
            M::Lodsd => (Kind::Lods, Width::D),
            M::Lodsq => (Kind::Lods, Width::Q),
            M::Cmpsb => (Kind::Cmps, Width::B),
            M::Cmpsw => (Kind::Cmps, Width::W),
            M::Cmpsd => (Kind::Cmps, Width::D),
            M::Cmpsq => (Kind::Cmps, Width::Q),
            M::Scasb => (Kind::Scas, Width::B),
            M::Scasw => (Kind::Scas, Width::W),
            M::Scasd => (Kind::Scas, Width::D),
            _ => (Kind::Scas, Width::Q),
        };
        let compares = matches!(kind, Kind::Cmps | Kind::Scas);
        let rep = if i.has_repe_prefix() {
            if compares {
                Rep::WhileEqual
            } else {
                Rep::Count
            }
        } else if i.has_repne_prefix() {
            if compares {
                Rep::WhileNotEqual
            } else {
                Rep::Count
            }
        } else {
            Rep::Once
        };
        let has_src = matches!(kind, Kind::Movs | Kind::Lods | Kind::Cmps);
        let src = if has_src {
            seg_of(i.memory_segment()).unwrap_or(Seg::Ds)
        } else {
            Seg::Ds
        };
        StrOp {
            kind,
            w,
            aw: address_width(i),
            src,
            rep,
        }
    }
}

/// The address size, from the kind of the string memory operands.
fn address_width(i: &Instruction) -> Width {
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => return Width::W,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => return Width::D,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => return Width::Q,
            _ => {}
        }
    }
    Width::Q
}

/// Element step: +w, or -w when DF is set (DF is a system flag, always
/// current in `cpu.rflags`).
fn delta(cx: &Interp, w: Width) -> u64 {
    if cx.cpu.rflags & FlagSet::DF.bits() != 0 {
        (w.bytes() as u64).wrapping_neg()
    } else {
        w.bytes() as u64
    }
}

/// Linear address of the source element (seg:SI).
fn src_addr(cx: &mut Interp, op: &StrOp) -> u64 {
    let off = get(cx, Gpr::Rsi, op.aw);
    linear(cx, op.src, off)
}

/// Linear address of the destination element (ES:DI).
fn dst_addr(cx: &mut Interp, op: &StrOp) -> u64 {
    let off = get(cx, Gpr::Rdi, op.aw);
    linear(cx, Seg::Es, off)
}

/// Advance an index register by `d` elements' worth of bytes, wrapping at
/// the address size.
fn advance(cx: &mut Interp, r: Gpr, aw: Width, d: u64) {
    let v = get(cx, r, aw).wrapping_add(d);
    set(cx, r, aw, v & aw.mask());
}

/// One iteration without the count. Every load and store happens before
/// any register or flag changes. Returns whether the compared values were
/// equal (ZF of CMPS/SCAS; false for the others).
fn once(cx: &mut Interp, op: &StrOp) -> SemResult<bool> {
    let (w, aw) = (op.w, op.aw);
    let d = delta(cx, w);
    match op.kind {
        Kind::Movs => {
            let s = src_addr(cx, op);
            let v = cx.load(s, w)?;
            let t = dst_addr(cx, op);
            cx.store(t, w, v)?;
            advance(cx, Gpr::Rsi, aw, d);
            advance(cx, Gpr::Rdi, aw, d);
            Ok(false)
        }
        Kind::Stos => {
            let v = get(cx, Gpr::Rax, w);
            let t = dst_addr(cx, op);
            cx.store(t, w, v)?;
            advance(cx, Gpr::Rdi, aw, d);
            Ok(false)
        }
        Kind::Lods => {
            let s = src_addr(cx, op);
            let v = cx.load(s, w)?;
            set(cx, Gpr::Rax, w, v);
            advance(cx, Gpr::Rsi, aw, d);
            Ok(false)
        }
        Kind::Cmps => {
            let s = src_addr(cx, op);
            let a = cx.load(s, w)?;
            let t = dst_addr(cx, op);
            let b = cx.load(t, w)?;
            advance(cx, Gpr::Rsi, aw, d);
            advance(cx, Gpr::Rdi, aw, d);
            Ok(compare(cx, w, a, b))
        }
        Kind::Scas => {
            let a = get(cx, Gpr::Rax, w);
            let t = dst_addr(cx, op);
            let b = cx.load(t, w)?;
            advance(cx, Gpr::Rdi, aw, d);
            Ok(compare(cx, w, a, b))
        }
    }
}

/// Flags of CMP a, b; returns a == b.
fn compare(cx: &mut Interp, w: Width, a: u64, b: u64) -> bool {
    let diff = a.wrapping_sub(b) & w.mask();
    cx.set_cc(CcOp::new(CcKind::Sub, w), diff, b, 0);
    a == b
}

/// How many elements starting at offset `off` / linear `lin` stay inside
/// one page and do not wrap the address size (forward direction).
fn room(off: u64, lin: u64, w: Width, aw: Width) -> u64 {
    let in_page = (0x1000 - (lin & 0xfff)) / w.bytes() as u64;
    if aw == Width::Q {
        in_page
    } else {
        let to_wrap = (aw.mask() - off + 1) / w.bytes() as u64;
        in_page.min(to_wrap)
    }
}

/// Fast path for forward REP MOVS/STOS: up to `limit` iterations that stay
/// inside one RAM page on each side, straight through the TLB's host
/// pointers (pages holding code never have a write entry, so this cannot
/// miss a code write). Returns the iterations done, or `None` when the
/// generic path must take the next one (TLB miss, page end, DF = 1, MMIO).
fn fast_batch(cx: &mut Interp, op: &StrOp, limit: u64) -> Option<u64> {
    if !matches!(op.kind, Kind::Movs | Kind::Stos) || cx.cpu.rflags & FlagSet::DF.bits() != 0 {
        return None;
    }
    let (w, aw) = (op.w, op.aw);
    let wb = w.bytes() as u64;
    let di = get(cx, Gpr::Rdi, aw);
    let dst = dst_addr(cx, op);
    let mut n = limit.min(room(di, dst, w, aw));
    let src = if op.kind == Kind::Movs {
        let si = get(cx, Gpr::Rsi, aw);
        let src = src_addr(cx, op);
        n = n.min(room(si, src, w, aw));
        Some(src)
    } else {
        None
    };
    if n < 2 {
        return None;
    }
    let len = (n * wb) as u32;
    let d = cx.cpu.tlb.host_write(dst, len)?;
    match src {
        Some(src) => {
            let s = cx.cpu.tlb.host_read(src, len)?;
            copy_forward(s, d, n as usize, wb as usize);
        }
        None => {
            let v = get(cx, Gpr::Rax, w);
            fill(d, n as usize, w, v);
        }
    }
    advance(cx, Gpr::Rdi, aw, n * wb);
    if src.is_some() {
        advance(cx, Gpr::Rsi, aw, n * wb);
    }
    Some(n)
}

/// Copy `n` elements of `wb` bytes forward, element by element in effect:
/// when the destination starts inside the source range the guest sees the
/// repeating pattern a sequential copy makes, not a memmove.
fn copy_forward(s: *const u8, d: *mut u8, n: usize, wb: usize) {
    let len = n * wb;
    let (sa, da) = (s as usize, d as usize);
    // SAFETY: both ranges lie inside one guest RAM page each (checked by
    // the TLB lookups with `len`).
    unsafe {
        if da <= sa || da >= sa + len {
            // A forward memmove gives the same bytes as the sequential copy.
            std::ptr::copy(s, d, len);
        } else {
            // Each element is read whole before it is written (an
            // element may overlap its own destination).
            let mut t = [0u8; 8];
            for j in 0..n {
                let o = j * wb;
                std::ptr::copy_nonoverlapping(s.add(o), t.as_mut_ptr(), wb);
                std::ptr::copy_nonoverlapping(t.as_ptr(), d.add(o), wb);
            }
        }
    }
}

/// Store `n` copies of the low `w` bytes of `v`.
fn fill(d: *mut u8, n: usize, w: Width, v: u64) {
    let bytes = v.to_le_bytes();
    let wb = w.bytes() as usize;
    // SAFETY: the range lies inside one guest RAM page (checked by the TLB
    // lookup with `n * wb`).
    unsafe {
        if w == Width::B {
            std::ptr::write_bytes(d, bytes[0], n);
        } else {
            for j in 0..n {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), d.add(j * wb), wb);
            }
        }
    }
}

/// A string instruction, with or without a repeat prefix.
fn string_op(cx: &mut Interp, insn: &Insn) -> SemResult {
    let op = StrOp::of(&insn.i);
    if op.rep == Rep::Once {
        once(cx, &op)?;
        return Ok(());
    }
    let mut first = true;
    let mut ended = false;
    loop {
        let count = get(cx, Gpr::Rcx, op.aw);
        if count == 0 || ended {
            // `step` counts the last iteration (or the RCX = 0 case).
            return Ok(());
        }
        if !first {
            // The previous iteration retires now that another one follows.
            cx.retire_extra(1);
        }
        first = false;
        if cx.cpu.budget == 0 {
            // Resume later at this instruction; interrupts may come first.
            return Err(Stop::Restart);
        }
        if let Some(n) = fast_batch(cx, &op, count.min(cx.cpu.budget)) {
            set(cx, Gpr::Rcx, op.aw, count - n);
            cx.retire_extra(n - 1);
            continue;
        }
        let eq = once(cx, &op)?;
        set(cx, Gpr::Rcx, op.aw, count - 1);
        ended = match op.rep {
            Rep::WhileEqual => !eq,
            Rep::WhileNotEqual => eq,
            _ => false,
        };
        if cx.cpu.exit_req & exit_req::DEVICE != 0 && count - 1 != 0 && !ended {
            // A device saw this iteration: return to the run loop before
            // the next one, so every device access has an exact count.
            cx.retire_extra(1);
            return Err(Stop::Restart);
        }
    }
}

/// The semantic function for `i`, if this family has it.
pub fn lookup<E: Emitter>(i: &Instruction) -> Option<Sem<E>> {
    use Mnemonic as M;
    if !i.is_string_instruction() {
        return None;
    }
    match i.mnemonic() {
        M::Movsb
        | M::Movsw
        | M::Movsd
        | M::Movsq
        | M::Stosb
        | M::Stosw
        | M::Stosd
        | M::Stosq
        | M::Lodsb
        | M::Lodsw
        | M::Lodsd
        | M::Lodsq
        | M::Cmpsb
        | M::Cmpsw
        | M::Cmpsd
        | M::Cmpsq
        | M::Scasb
        | M::Scasw
        | M::Scasd
        | M::Scasq => Some(Sem::Helper(string_op)),
        _ => None,
    }
}
