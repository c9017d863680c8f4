//! Operand access shared by every semantic function: registers (with the
//! 8/16/32-bit write rules), memory (effective and linear addresses) and
//! immediates.

use crate::block::Insn;
use crate::emit::{Emitter, SemResult, Width};
use crate::state::{Gpr, Seg};
use iced_x86::{Instruction, OpKind, Register};

/// A general-purpose register view: which register, how wide, and whether
/// it is one of AH/CH/DH/BH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegView {
    pub gpr: Gpr,
    pub w: Width,
    pub high8: bool,
}

/// Map an iced register to a GPR view; `None` for non-GPRs.
#[inline]
pub fn reg_view(r: Register) -> Option<RegView> {
    let n = r as u32;
    let (idx, w, high8) = match n {
        1..=4 => (n - 1, Width::B, false),
        5..=8 => (n - 5, Width::B, true),
        9..=20 => (n - 5, Width::B, false),
        21..=36 => (n - 21, Width::W, false),
        37..=52 => (n - 37, Width::D, false),
        53..=68 => (n - 53, Width::Q, false),
        _ => return None,
    };
    Some(RegView {
        gpr: Gpr::from_index(idx as usize),
        w,
        high8,
    })
}

/// Map an iced segment register to ours.
#[inline]
pub fn seg_of(r: Register) -> Option<Seg> {
    Some(match r {
        Register::ES => Seg::Es,
        Register::CS => Seg::Cs,
        Register::SS => Seg::Ss,
        Register::DS => Seg::Ds,
        Register::FS => Seg::Fs,
        Register::GS => Seg::Gs,
        _ => return None,
    })
}

/// Read a register view, zero-extended.
#[inline(always)]
pub fn read_reg<E: Emitter>(e: &mut E, v: RegView) -> E::V {
    let full = e.reg(v.gpr);
    if v.high8 {
        let t = e.imm(8);
        let t = e.shr(full, t);
        e.zext(t, Width::B)
    } else {
        e.zext(full, v.w)
    }
}

/// Write a register view with the architectural rules: 32-bit writes clear
/// bits 63:32, 8- and 16-bit writes keep the other bits.
#[inline(always)]
pub fn write_reg<E: Emitter>(e: &mut E, v: RegView, val: E::V) {
    let new = match (v.w, v.high8) {
        (Width::Q, _) => val,
        (Width::D, _) => e.zext(val, Width::D),
        (w, false) => {
            let old = e.reg(v.gpr);
            let keep = e.and_imm(old, !w.mask());
            let low = e.zext(val, w);
            e.or(keep, low)
        }
        (_, true) => {
            let old = e.reg(v.gpr);
            let keep = e.and_imm(old, !0xff00);
            let low = e.zext(val, Width::B);
            let eight = e.imm(8);
            let high = e.shl(low, eight);
            e.or(keep, high)
        }
    };
    e.set_reg(v.gpr, new);
}

/// Read a GPR at width `w` (no high-byte form).
#[inline(always)]
pub fn get<E: Emitter>(e: &mut E, r: Gpr, w: Width) -> E::V {
    read_reg(
        e,
        RegView {
            gpr: r,
            w,
            high8: false,
        },
    )
}

/// Write a GPR at width `w` (no high-byte form).
#[inline(always)]
pub fn set<E: Emitter>(e: &mut E, r: Gpr, w: Width, v: E::V) {
    write_reg(
        e,
        RegView {
            gpr: r,
            w,
            high8: false,
        },
        v,
    )
}

/// Where an operand lives.
#[derive(Clone, Copy, Debug)]
pub enum Loc<V> {
    Reg(RegView),
    /// Linear address.
    Mem(V),
    Imm(u64),
}

/// A resolved operand: location and width.
#[derive(Clone, Copy, Debug)]
pub struct Opnd<V> {
    pub loc: Loc<V>,
    pub w: Width,
}

impl<V> Opnd<V> {
    /// True for a memory operand.
    pub fn is_mem(&self) -> bool {
        matches!(self.loc, Loc::Mem(_))
    }
}

/// The width of operand `n` as the instruction encodes it.
pub fn op_width(i: &Instruction, n: u32) -> Width {
    match i.op_kind(n) {
        OpKind::Register => reg_view(i.op_register(n)).map(|v| v.w).unwrap_or(Width::Q),
        OpKind::Immediate8 | OpKind::Immediate8_2nd => Width::B,
        OpKind::Immediate16 | OpKind::Immediate8to16 => Width::W,
        OpKind::Immediate32 | OpKind::Immediate8to32 => Width::D,
        OpKind::Immediate64 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => Width::Q,
        _ => Width::from_bytes(i.memory_size().size() as u32).unwrap_or(Width::Q),
    }
}

/// An operand as decoded once, when its block is built (so executing it
/// needs no decoder queries).
#[derive(Clone, Copy, Debug)]
pub enum OpDesc {
    /// A general-purpose register.
    Reg(RegView),
    /// The instruction's memory operand (see [`MemDesc`]), this wide.
    Mem(Width),
    /// An immediate, sign-extended and masked to the operation size.
    Imm(u64, Width),
    /// Anything else (segment or control registers, branch targets, none):
    /// resolved from the iced instruction.
    Other,
}

/// The memory operand of an instruction, decoded once.
#[derive(Clone, Copy, Debug)]
pub struct MemDesc {
    /// Displacement (or the absolute address for RIP-relative operands).
    pub disp: u64,
    /// Base register number, or `NO_REG`.
    pub base: u8,
    /// Index register number, or `NO_REG`.
    pub index: u8,
    /// log2 of the index scale.
    pub shift: u8,
    /// Address size.
    pub addr_w: Width,
    /// Segment (after overrides).
    pub seg: Seg,
}

/// "No register" in [`MemDesc`].
pub const NO_REG: u8 = 0xff;

impl MemDesc {
    /// Describe the memory operand of `i` (meaningless if it has none).
    pub fn of(i: &Instruction, bitness: u32) -> MemDesc {
        let reg = |r: Register| reg_view(r).map(|v| v.gpr as u8).unwrap_or(NO_REG);
        MemDesc {
            disp: i.memory_displacement64(),
            base: reg(i.memory_base()),
            index: reg(i.memory_index()),
            shift: i.memory_index_scale().trailing_zeros() as u8,
            addr_w: addr_width(i, bitness),
            seg: seg_of(i.memory_segment()).unwrap_or(Seg::Ds),
        }
    }
}

/// Describe the first three operands of `i` for [`opnd`].
pub fn describe(i: &Instruction) -> [OpDesc; 3] {
    let mut d = [OpDesc::Other; 3];
    for (n, slot) in d.iter_mut().enumerate().take(i.op_count().min(3) as usize) {
        let n = n as u32;
        *slot = match i.op_kind(n) {
            OpKind::Register => reg_view(i.op_register(n))
                .map(OpDesc::Reg)
                .unwrap_or(OpDesc::Other),
            OpKind::Memory => OpDesc::Mem(op_width(i, n)),
            OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => {
                let w = if n > 0 {
                    op_width(i, 0)
                } else {
                    op_width(i, n)
                };
                OpDesc::Imm(i.immediate(n) & w.mask(), w)
            }
            _ => OpDesc::Other,
        };
    }
    d
}

/// Effective address (offset within the segment) of a decoded memory
/// operand.
#[inline(always)]
pub fn mem_offset<E: Emitter>(e: &mut E, m: &MemDesc) -> E::V {
    let mut v = e.imm(m.disp);
    if m.base != NO_REG {
        let r = e.reg(Gpr::from_index(m.base as usize));
        v = e.add(v, r);
    }
    if m.index != NO_REG {
        let r = e.reg(Gpr::from_index(m.index as usize));
        let r = if m.shift > 0 {
            let sh = e.imm(m.shift as u64);
            e.shl(r, sh)
        } else {
            r
        };
        v = e.add(v, r);
    }
    e.zext(v, m.addr_w)
}

/// Resolve operand `n`. Immediates take the width of operand 0 (the
/// operation size) and are stored sign-extended and masked to it.
#[inline(always)]
pub fn opnd<E: Emitter>(e: &mut E, insn: &Insn, n: u32) -> Opnd<E::V> {
    match insn.ops.get(n as usize) {
        Some(&OpDesc::Reg(v)) => Opnd {
            loc: Loc::Reg(v),
            w: v.w,
        },
        Some(&OpDesc::Mem(w)) => {
            let off = mem_offset(e, &insn.mem);
            let a = linear(e, insn.mem.seg, off);
            Opnd {
                loc: Loc::Mem(a),
                w,
            }
        }
        Some(&OpDesc::Imm(k, w)) => Opnd {
            loc: Loc::Imm(k),
            w,
        },
        _ => opnd_from_iced(e, insn, n),
    }
}

/// [`opnd`] for operands not described at decode time.
#[cold]
fn opnd_from_iced<E: Emitter>(e: &mut E, insn: &Insn, n: u32) -> Opnd<E::V> {
    let i = &insn.i;
    match i.op_kind(n) {
        OpKind::Register => {
            let v = reg_view(i.op_register(n)).expect("operand is a general-purpose register");
            Opnd {
                loc: Loc::Reg(v),
                w: v.w,
            }
        }
        OpKind::Memory => {
            let a = ea(e, i);
            Opnd {
                loc: Loc::Mem(a),
                w: op_width(i, n),
            }
        }
        _ => {
            let w = if n > 0 {
                op_width(i, 0)
            } else {
                op_width(i, n)
            };
            Opnd {
                loc: Loc::Imm(i.immediate(n) & w.mask()),
                w,
            }
        }
    }
}

/// Read an operand, zero-extended.
#[inline(always)]
pub fn read<E: Emitter>(e: &mut E, o: &Opnd<E::V>) -> SemResult<E::V> {
    match o.loc {
        Loc::Reg(v) => Ok(read_reg(e, v)),
        Loc::Mem(a) => e.load(a, o.w),
        Loc::Imm(k) => Ok(e.imm(k)),
    }
}

/// Write an operand.
#[inline(always)]
pub fn write<E: Emitter>(e: &mut E, o: &Opnd<E::V>, v: E::V) -> SemResult {
    match o.loc {
        Loc::Reg(r) => {
            write_reg(e, r, v);
            Ok(())
        }
        Loc::Mem(a) => e.store(a, o.w, v),
        Loc::Imm(_) => unreachable!("write to an immediate operand"),
    }
}

/// Address-size mask from the registers used (or the mode when none).
pub fn addr_width(i: &Instruction, bitness: u32) -> Width {
    let base = i.memory_base();
    let index = i.memory_index();
    match base {
        Register::RIP => return Width::Q,
        Register::EIP => return Width::D,
        _ => {}
    }
    if let Some(v) = reg_view(base).or_else(|| reg_view(index)) {
        return v.w;
    }
    match (bitness, i.memory_displ_size()) {
        (64, _) => Width::Q,
        (_, 2) => Width::W,
        _ => Width::D,
    }
}

/// Effective address (offset within the segment) of the memory operand.
#[inline]
pub fn offset<E: Emitter>(e: &mut E, i: &Instruction) -> E::V {
    let mut v = e.imm(i.memory_displacement64());
    let base = i.memory_base();
    if let Some(b) = reg_view(base) {
        let r = e.reg(b.gpr);
        v = e.add(v, r);
    }
    if let Some(x) = reg_view(i.memory_index()) {
        let r = e.reg(x.gpr);
        let s = i.memory_index_scale();
        let r = if s > 1 {
            let sh = e.imm(s.trailing_zeros() as u64);
            e.shl(r, sh)
        } else {
            r
        };
        v = e.add(v, r);
    }
    let w = addr_width(i, e.bitness());
    e.zext(v, w)
}

/// Linear address of `offset` in segment `s`.
#[inline]
pub fn linear<E: Emitter>(e: &mut E, s: Seg, offset: E::V) -> E::V {
    if e.bitness() == 64 {
        if matches!(s, Seg::Fs | Seg::Gs) {
            let b = e.seg_base(s);
            e.add(offset, b)
        } else {
            offset
        }
    } else {
        let b = e.seg_base(s);
        let a = e.add(offset, b);
        e.zext(a, Width::D)
    }
}

/// Linear address of the instruction's memory operand.
#[inline]
pub fn ea<E: Emitter>(e: &mut E, i: &Instruction) -> E::V {
    let off = offset(e, i);
    let s = seg_of(i.memory_segment()).unwrap_or(Seg::Ds);
    linear(e, s, off)
}

/// The stack pointer width as a [`Width`].
#[inline(always)]
pub fn stack_width<E: Emitter>(e: &E) -> Width {
    match e.stack_bits() {
        64 => Width::Q,
        32 => Width::D,
        _ => Width::W,
    }
}

/// Push `v` (`w` bytes). The store happens before RSP changes, so a fault
/// leaves RSP alone.
pub fn push<E: Emitter>(e: &mut E, w: Width, v: E::V) -> SemResult {
    let sw = stack_width(e);
    let sp = get(e, Gpr::Rsp, sw);
    let k = e.imm(w.bytes() as u64);
    let nsp = e.sub(sp, k);
    let nsp = e.zext(nsp, sw);
    let a = linear(e, Seg::Ss, nsp);
    e.store(a, w, v)?;
    set(e, Gpr::Rsp, sw, nsp);
    Ok(())
}

/// Pop `w` bytes. Returns the value and the new stack pointer; the caller
/// commits the new RSP (so it can order the write against others).
pub fn pop_value<E: Emitter>(e: &mut E, w: Width) -> SemResult<(E::V, E::V)> {
    let sw = stack_width(e);
    let sp = get(e, Gpr::Rsp, sw);
    let a = linear(e, Seg::Ss, sp);
    let v = e.load(a, w)?;
    let nsp = e.add_imm(sp, w.bytes() as u64);
    let nsp = e.zext(nsp, sw);
    Ok((v, nsp))
}

/// Commit a stack pointer value computed by `pop_value`.
pub fn set_sp<E: Emitter>(e: &mut E, nsp: E::V) {
    let sw = stack_width(e);
    set(e, Gpr::Rsp, sw, nsp);
}

/// Operand size of the instruction (width of operand 0, or the code size's
/// default when it has none).
pub fn op_size(i: &Instruction) -> Width {
    if i.op_count() > 0 {
        op_width(i, 0)
    } else {
        Width::D
    }
}
