//! SSE state: LDMXCSR, STMXCSR, FXSAVE/FXRSTOR (legacy and REX.W layouts).
//!
//! MXCSR_MASK is 0xFFFF: every defined MXCSR bit, DAZ included, is
//! writable; bits 16–31 are reserved (#GP(0) when LDMXCSR or FXRSTOR sets
//! one).
//!
//! FXSAVE image (SDM vol. 1 §10.5.1): FCW, FSW, abridged FTW (bit i = R_i
//! not empty), FOP, FIP/FDP (64-bit with REX.W; otherwise a 32-bit offset
//! followed by FCS/FDS, which we do not track and save as 0), MXCSR,
//! MXCSR_MASK, ST0–ST7 (physical register (TOP+i) mod 8, 16-byte slots),
//! XMM0–XMM15 (XMM0–7 outside 64-bit mode). Bytes 464–511 (and the XMM8–15
//! area outside 64-bit mode) are left untouched. FXRSTOR rebuilds the full
//! tag word from the abridged one and the register contents.

use super::operand::ea;
use super::sse::{check, check_align, probe_store};
use crate::block::{Insn, InterpFn};
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::interp::Interp;
use crate::sse::float::mx;
use crate::state::cr0;
use iced_x86::{Instruction, Mnemonic};

/// MXCSR_MASK as FXSAVE reports it.
pub const MXCSR_MASK: u32 = mx::MASK;

fn ldmxcsr(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let lin = ea(cx, &insn.i);
    let v = cx.load(lin, Width::D)? as u32;
    if v & !MXCSR_MASK != 0 {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    cx.cpu.mxcsr = v;
    Ok(())
}

fn stmxcsr(cx: &mut Interp, insn: &Insn) -> SemResult {
    check(cx)?;
    let lin = ea(cx, &insn.i);
    cx.store(lin, Width::D, cx.cpu.mxcsr as u64)
}

/// FXSAVE/FXRSTOR raise #NM when CR0.TS or CR0.EM is set (they do not
/// depend on CR4.OSFXSR), then #GP(0) for a misaligned image.
fn fx_checks(cx: &mut Interp, insn: &Insn) -> SemResult<u64> {
    if cx.cpu.cr0 & (cr0::TS | cr0::EM) != 0 {
        return Err(Stop::Fault(Exception::nm()));
    }
    let lin = ea(cx, &insn.i);
    check_align(lin)?;
    Ok(lin)
}

/// Abridged tag byte from the full tag word: bit i set when R_i is not
/// empty (tag 11).
pub fn abridge_tags(ftw: u16) -> u8 {
    (0..8).fold(0u8, |acc, i| {
        let empty = (ftw >> (2 * i)) & 3 == 3;
        acc | ((!empty as u8) << i)
    })
}

/// The full tag of a non-empty 80-bit register: 00 valid, 01 zero,
/// 10 special (NaN, infinity, denormal, unnormal).
fn tag_of(r: &[u8; 16]) -> u16 {
    let sig = u64::from_le_bytes(r[0..8].try_into().unwrap_or_default());
    let exp = u16::from_le_bytes([r[8], r[9]]) & 0x7fff;
    match exp {
        0x7fff => 2,
        0 if sig == 0 => 1,
        0 => 2,
        _ if sig >> 63 == 0 => 2,
        _ => 0,
    }
}

/// Full tag word from the abridged byte and the physical registers.
pub fn expand_tags(abridged: u8, regs: &[[u8; 16]; 8]) -> u16 {
    (0..8).fold(0u16, |acc, i| {
        let t = if abridged >> i & 1 == 0 {
            3
        } else {
            tag_of(&regs[i])
        };
        acc | (t << (2 * i))
    })
}

/// Number of XMM registers in the image: 16 in 64-bit mode, else 8.
fn xmm_count(cx: &Interp) -> usize {
    if cx.bitness() == 64 {
        16
    } else {
        8
    }
}

/// Build the FXSAVE image.
fn image(cx: &Interp, wide: bool) -> [u8; 512] {
    let mut m = [0u8; 512];
    let x = &cx.cpu.x87;
    m[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    m[2..4].copy_from_slice(&x.fsw.to_le_bytes());
    m[4] = abridge_tags(x.ftw);
    m[6..8].copy_from_slice(&(x.fop & 0x7ff).to_le_bytes());
    if wide {
        m[8..16].copy_from_slice(&x.fip.to_le_bytes());
        m[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    } else {
        // FCS and FDS (bytes 12–13, 20–21) are not tracked: 0.
        m[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        m[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
    }
    m[24..28].copy_from_slice(&cx.cpu.mxcsr.to_le_bytes());
    m[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    let top = (x.fsw >> 11) as usize & 7;
    for i in 0..8 {
        let r = &x.regs[(top + i) & 7];
        m[32 + 16 * i..32 + 16 * i + 10].copy_from_slice(&r[..10]);
    }
    for i in 0..16 {
        m[160 + 16 * i..176 + 16 * i].copy_from_slice(&cx.cpu.xmm[i].to_le_bytes());
    }
    m
}

fn fxsave(cx: &mut Interp, insn: &Insn) -> SemResult {
    let lin = fx_checks(cx, insn)?;
    probe_store(cx, lin, 512)?;
    let wide = insn.i.mnemonic() == Mnemonic::Fxsave64;
    let m = image(cx, wide);
    let len = 160 + 16 * xmm_count(cx);
    for off in (0..len).step_by(8) {
        let q = u64::from_le_bytes(m[off..off + 8].try_into().unwrap_or_default());
        cx.store(lin.wrapping_add(off as u64), Width::Q, q)?;
    }
    Ok(())
}

fn fxrstor(cx: &mut Interp, insn: &Insn) -> SemResult {
    let lin = fx_checks(cx, insn)?;
    let wide = insn.i.mnemonic() == Mnemonic::Fxrstor64;
    let n = xmm_count(cx);
    let len = 160 + 16 * n;
    let mut m = [0u8; 512];
    for off in (0..len).step_by(8) {
        let q = cx.load(lin.wrapping_add(off as u64), Width::Q)?;
        m[off..off + 8].copy_from_slice(&q.to_le_bytes());
    }
    let rd16 = |o: usize| u16::from_le_bytes([m[o], m[o + 1]]);
    let rd32 = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap_or_default());
    let rd64 = |o: usize| u64::from_le_bytes(m[o..o + 8].try_into().unwrap_or_default());
    let mxcsr = rd32(24);
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(Stop::Fault(Exception::gp(0)));
    }
    let x = &mut cx.cpu.x87;
    x.fcw = rd16(0);
    x.fsw = rd16(2);
    x.fop = rd16(6) & 0x7ff;
    if wide {
        x.fip = rd64(8);
        x.fdp = rd64(16);
    } else {
        x.fip = rd32(8) as u64;
        x.fdp = rd32(16) as u64;
    }
    let top = (x.fsw >> 11) as usize & 7;
    for i in 0..8 {
        let mut r = [0u8; 16];
        r[..10].copy_from_slice(&m[32 + 16 * i..42 + 16 * i]);
        x.regs[(top + i) & 7] = r;
    }
    x.ftw = expand_tags(m[4], &x.regs);
    cx.cpu.mxcsr = mxcsr;
    for i in 0..n {
        let o = 160 + 16 * i;
        cx.cpu.xmm[i] = (rd64(o + 8) as u128) << 64 | rd64(o) as u128;
    }
    Ok(())
}

/// The helper for `i`, if it is one of the state instructions.
pub fn lookup(i: &Instruction) -> Option<InterpFn> {
    use Mnemonic as M;
    Some(match i.mnemonic() {
        M::Ldmxcsr => ldmxcsr,
        M::Stmxcsr => stmxcsr,
        M::Fxsave | M::Fxsave64 => fxsave,
        M::Fxrstor | M::Fxrstor64 => fxrstor,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_word_round_trip() {
        let mut regs = [[0u8; 16]; 8];
        // R0 valid 1.0, R1 zero, R2 infinity, R3 unnormal; R4–R7 empty.
        regs[0][7] = 0x80;
        regs[0][8] = 0xff;
        regs[0][9] = 0x3f;
        regs[2][7] = 0x80;
        regs[2][8] = 0xff;
        regs[2][9] = 0x7f;
        regs[3][8] = 1;
        let ftw = 0xff00 | (2 << 6) | (2 << 4) | (1 << 2);
        assert_eq!(abridge_tags(ftw), 0x0f);
        assert_eq!(expand_tags(0x0f, &regs), ftw);
    }
}
