//! Ready-made CPU set-ups for embedders and tests.

use crate::engine::Engine;
use crate::memory::{GuestPhysAddr, MemoryError};
use crate::state::Gpr;

/// Bytes of page tables [`flat_long_mode`] writes (a PML4 and one PDPT).
pub const FLAT_PAGE_TABLE_BYTES: u64 = 0x2000;

/// Put the engine in 64-bit mode, ring 0, with flat segments and an
/// identity map of the first 512 GiB of guest-physical space (1 GiB pages,
/// read/write/execute, user-accessible), the page tables written at
/// `tables` (8 KiB, page-aligned, inside RAM). All GPRs are zeroed, RIP is
/// `entry`, RSP is `stack_top` and RFLAGS is 0x2.
pub fn flat_long_mode(
    e: &mut Engine,
    tables: GuestPhysAddr,
    entry: u64,
    stack_top: u64,
) -> Result<(), MemoryError> {
    let pml4 = tables.0;
    let pdpt = pml4 + 0x1000;
    // Present | RW | US on every level; PS (bit 7) on the 1 GiB leaves.
    let mut pdpt_bytes = Vec::with_capacity(4096);
    for i in 0..512u64 {
        pdpt_bytes.extend_from_slice(&((i << 30) | 0x87).to_le_bytes());
    }
    let mut pml4_bytes = vec![0u8; 4096];
    pml4_bytes[..8].copy_from_slice(&(pdpt | 0x7).to_le_bytes());
    e.mem_mut().write_phys(GuestPhysAddr(pml4), &pml4_bytes)?;
    e.mem_mut().write_phys(GuestPhysAddr(pdpt), &pdpt_bytes)?;
    let cpu = e.cpu_mut();
    cpu.enter_long_mode_flat(pml4);
    cpu.gpr = [0; 16];
    cpu.set_reg(Gpr::Rsp, stack_top);
    cpu.rip = entry;
    cpu.set_rflags(0x2);
    e.flush_tlb();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Exit;

    #[test]
    fn flat_long_mode_runs_64bit_code() {
        let mut e = Engine::new(4 << 20).unwrap();
        // mov rax, 0x1122334455667788; push rax; pop rbx; add rbx, 1; hlt
        let code = [
            0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x50, 0x5b, 0x48, 0x83,
            0xc3, 0x01, 0xf4,
        ];
        e.mem_mut()
            .write_phys(GuestPhysAddr(0x1000), &code)
            .unwrap();
        flat_long_mode(&mut e, GuestPhysAddr(0x3000), 0x1000, 0x10_0000).unwrap();
        assert_eq!(e.run(1000), Exit::Halted);
        assert_eq!(e.cpu().reg(Gpr::Rbx), 0x1122334455667789);
        assert_eq!(e.cpu().reg(Gpr::Rsp), 0x10_0000);
        assert_eq!(e.cpu().icount, 5);
    }
}
