//! Successor links (`BlockCache::get_linked`): the engine remembers, in each
//! block, the block that ran after it, and reuses it without the full
//! lookup only while nothing could have made the lookup answer differently.
//! These guests change what a linked successor should be after the link has
//! been used several times: a code write to the successor's page (the
//! predecessor, on another page, stays cached with its link), and a CR3
//! write that maps the successor's linear page to other bytes. Every tier
//! must run the new code at once, with the interpreter's count.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{setup, Accel, Engine, Exit, Gpr};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

const TIERS: [Accel; 4] = [
    Accel::Interp,
    Accel::Jit { threshold: 0 },
    Accel::Jit { threshold: 1 },
    Accel::Jit { threshold: 2 },
];

const RAM: u64 = 16 << 20;
const TABLES: u64 = 0x2_0000;
const STACK: u64 = 0x9_0000;
const CODE: u64 = 0x10_0000;

/// Assemble `f` at `ip`; the code and the address of `label`.
fn assemble(
    ip: u64,
    f: impl FnOnce(&mut CodeAssembler, &mut CodeLabel) -> Result<(), IcedError>,
) -> (Vec<u8>, u64) {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut label = a.create_label();
    f(&mut a, &mut label).unwrap();
    let r = a
        .assemble_options(ip, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let at = r.label_ip(&label).unwrap();
    (r.inner.code_buffer, at)
}

fn engine(accel: Accel, pieces: &[(u64, &[u8])]) -> Engine {
    let mut e = Engine::new(RAM).unwrap();
    e.config.accel = accel;
    for (at, bytes) in pieces {
        e.mem_mut().write_phys(GuestPhysAddr(*at), bytes).unwrap();
    }
    setup::flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
    e
}

/// Run to HLT; (RAX, RBX, icount).
fn run(e: &mut Engine) -> (u64, u64, u64) {
    assert_eq!(e.run(100_000), Exit::Halted);
    let c = e.cpu();
    (c.reg(Gpr::Rax), c.reg(Gpr::Rbx), c.icount)
}

/// Ten iterations of: (page 0) `jmp SUCC`; (page 1, SUCC) `add eax, imm32`,
/// `dec ecx`, `jnz top`. When ECX is 5, before the jump, page 0 stores 0x100
/// into the ADD's immediate (0x1000 before). The block holding `jmp SUCC`
/// is on page 0, which is not written: it stays cached with its link to the
/// dropped SUCC block. Five iterations add 0x1000, five add 0x100.
#[test]
fn code_write_to_a_linked_successor() {
    const SUCC: u64 = CODE + 0x1000;
    let (main, top) = assemble(CODE, |a, top| {
        let mut go = a.create_label();
        a.mov(ecx, 10u32)?;
        a.xor(eax, eax)?;
        a.mov(rdi, SUCC + 1)?; // the ADD's imm32
        a.set_label(top)?;
        a.cmp(ecx, 5)?;
        a.jne(go)?;
        a.mov(dword_ptr(rdi), 0x100u32)?;
        a.set_label(&mut go)?;
        a.jmp(SUCC)
    });
    let (succ, _) = assemble(SUCC, |a, l| {
        a.set_label(l)?;
        a.db(&[0x05, 0x00, 0x10, 0x00, 0x00])?; // add eax, 0x1000 (imm32)
        a.dec(ecx)?;
        a.jne(top)?;
        a.hlt()
    });
    // 3 + 5 iterations x (cmp, jne, jmp, add, dec, jnz) + one store + hlt
    let want_icount = 3 + 10 * 6 + 1 + 1;
    for t in TIERS {
        let mut e = engine(t, &[(CODE, &main), (SUCC, &succ)]);
        let (sum, _, icount) = run(&mut e);
        assert_eq!(sum, 5 * 0x1000 + 5 * 0x100, "{t:?}: the patched ADD ran");
        assert_eq!(icount, want_icount, "{t:?}");
        if t != Accel::Interp {
            assert!(e.stats.compiled_runs > 0, "{t:?}");
        }
    }
}

/// Linear page `LIN` (a 2 MiB page) maps to `P1` under one CR3 and to `P2`
/// under another, with different code at each: `add ebx, 1; ret` and
/// `add ebx, 0x100; ret`. The loop calls `LIN` ten times and switches CR3
/// after the fifth call, so the block ending in `call rax` has been linked
/// to the `P1` block when the mapping changes.
#[test]
fn cr3_write_remapping_a_linked_successor() {
    const LIN: u64 = 0x4000_0000; // PDPT entry 1, PD entry 0
    const P1: u64 = 0x40_0000;
    const P2: u64 = 0x60_0000;
    const PML4_B: u64 = TABLES + 0x2000;
    const PDPT_B: u64 = TABLES + 0x3000;
    const PD_A: u64 = TABLES + 0x4000;
    const PD_B: u64 = TABLES + 0x5000;
    let (main, _) = assemble(CODE, |a, top| {
        let mut skip = a.create_label();
        a.mov(ecx, 10u32)?;
        a.xor(ebx, ebx)?;
        a.mov(rsi, PML4_B)?;
        a.mov(rax, LIN)?;
        a.set_label(top)?;
        a.call(rax)?;
        a.cmp(ecx, 6)?;
        a.jne(skip)?;
        a.mov(cr3, rsi)?;
        a.set_label(&mut skip)?;
        a.dec(ecx)?;
        a.jne(*top)?;
        a.hlt()
    });
    let one: &[u8] = &[0x83, 0xc3, 0x01, 0xc3]; // add ebx, 1; ret
    let hundred: &[u8] = &[0x81, 0xc3, 0x00, 0x01, 0x00, 0x00, 0xc3]; // add ebx, 0x100; ret
                                                                      // 4 + 10 x (call, add, ret, cmp, jne, dec, jnz) + mov cr3 + hlt
    let want_icount = 4 + 10 * 7 + 1 + 1;
    for t in TIERS {
        let mut e = engine(t, &[(CODE, &main), (P1, one), (P2, hundred)]);
        // flat_long_mode: PML4 at TABLES, PDPT at TABLES + 0x1000 with
        // 1 GiB pages. Entry 1 of each PDPT points at a PD whose entry 0
        // maps a 2 MiB page (P | RW | US | PS) at P1 or P2.
        let pdpt_a = TABLES + 0x1000;
        let mut pdpt = vec![0u8; 0x1000];
        e.mem().read_phys(GuestPhysAddr(pdpt_a), &mut pdpt).unwrap();
        pdpt[8..16].copy_from_slice(&(PD_A | 7).to_le_bytes());
        e.mem_mut()
            .write_phys(GuestPhysAddr(pdpt_a), &pdpt)
            .unwrap();
        pdpt[8..16].copy_from_slice(&(PD_B | 7).to_le_bytes());
        e.mem_mut()
            .write_phys(GuestPhysAddr(PDPT_B), &pdpt)
            .unwrap();
        let pml4_b = (PDPT_B | 7).to_le_bytes();
        e.mem_mut()
            .write_phys(GuestPhysAddr(PML4_B), &pml4_b)
            .unwrap();
        let pd_a = (P1 | 0x87).to_le_bytes();
        e.mem_mut().write_phys(GuestPhysAddr(PD_A), &pd_a).unwrap();
        let pd_b = (P2 | 0x87).to_le_bytes();
        e.mem_mut().write_phys(GuestPhysAddr(PD_B), &pd_b).unwrap();
        e.flush_tlb();
        let (_, sum, icount) = run(&mut e);
        assert_eq!(sum, 5 + 5 * 0x100, "{t:?}: the remapped code ran");
        assert_eq!(icount, want_icount, "{t:?}");
        assert_eq!(e.cpu().cr3, PML4_B, "{t:?}");
        if t != Accel::Interp {
            assert!(e.stats.compiled_runs > 0, "{t:?}");
        }
    }
}
