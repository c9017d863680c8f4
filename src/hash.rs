//! The machine's state hash (`--stats` `state-hash:`, replay checkpoints).
//!
//! [`StateHash`] comes from cjemu-replay, which does not depend on the CPU
//! engine, so the implementations for the engine's types live here, on thin
//! wrappers (Rust's orphan rule forbids implementing a foreign trait for a
//! foreign type directly).
//!
//! Only architectural state is hashed, so the hash is the same whichever
//! engine (interpreter or JIT) produced the state, and whatever the run's
//! history: RFLAGS is materialised from the lazy flags; the soft TLB, the
//! decoded-block cache, icount, the budget, the TSC fields and `exit_req`
//! are never hashed. Order (all little-endian):
//!
//! 1. tag `cpu`; RAX…R15; RIP; RFLAGS (materialised);
//! 2. ES CS SS DS FS GS, LDTR, TR: each base, limit, selector, attributes;
//! 3. GDTR, IDTR: base, limit;
//! 4. CR0, CR2, CR3, CR4, CR8, DR0–DR7, EFER; the MSRs in `Msrs` order
//!    (STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, SYSENTER_CS/ESP/EIP, PAT,
//!    TSC_AUX, APIC_BASE, MISC_ENABLE, MTRR_DEF_TYPE);
//! 5. x87: R0–R7 (10 bytes each), FCW, FSW, FTW, FOP, FIP, FDP; XMM0–15; MXCSR;
//! 6. CPL, interrupt shadow, halted;
//! 7. tag `ram`; RAM size; every RAM byte.

use cjemu_jit::memory::GuestMemory;
use cjemu_jit::state::{DescriptorTable, Segment};
use cjemu_jit::{CpuState, Engine};
use cjemu_replay::{StateHash, StateHasher};

/// The architectural part of a [`CpuState`].
pub struct CpuArch<'a>(pub &'a CpuState);

/// The contents of guest RAM.
pub struct Ram<'a>(pub &'a GuestMemory);

/// CPU and RAM of an engine: the whole machine until devices exist.
pub struct MachineState<'a>(pub &'a Engine);

fn segment(h: &mut StateHasher, s: &Segment) {
    h.write_u64(s.base);
    h.write_u32(s.limit);
    h.write_u16(s.selector);
    h.write_u16(s.attrs);
}

fn table(h: &mut StateHasher, t: &DescriptorTable) {
    h.write_u64(t.base);
    h.write_u16(t.limit);
}

impl StateHash for CpuArch<'_> {
    fn hash_state(&self, h: &mut StateHasher) {
        let c = self.0;
        h.write_tag("cpu");
        c.gpr.iter().for_each(|&r| h.write_u64(r));
        h.write_u64(c.rip);
        h.write_u64(c.rflags());
        c.seg.iter().for_each(|s| segment(h, s));
        segment(h, &c.ldtr);
        segment(h, &c.tr);
        table(h, &c.gdtr);
        table(h, &c.idtr);
        for v in [c.cr0, c.cr2, c.cr3, c.cr4, c.cr8] {
            h.write_u64(v);
        }
        c.dr.iter().for_each(|&d| h.write_u64(d));
        h.write_u64(c.efer);
        let m = &c.msr;
        for v in [
            m.star,
            m.lstar,
            m.cstar,
            m.sfmask,
            m.kernel_gs_base,
            m.sysenter_cs,
            m.sysenter_esp,
            m.sysenter_eip,
            m.pat,
            m.tsc_aux,
            m.apic_base,
            m.misc_enable,
            m.mtrr_def_type,
        ] {
            h.write_u64(v);
        }
        let x = &c.x87;
        x.regs.iter().for_each(|r| h.write(&r[..10]));
        for v in [x.fcw, x.fsw, x.ftw, x.fop] {
            h.write_u16(v);
        }
        h.write_u64(x.fip);
        h.write_u64(x.fdp);
        c.xmm.iter().for_each(|&v| h.write_u128(v));
        h.write_u32(c.mxcsr);
        h.write_u8(c.cpl);
        h.write_u8(c.interrupt_shadow);
        h.write_u8(c.halted);
    }
}

impl StateHash for Ram<'_> {
    fn hash_state(&self, h: &mut StateHasher) {
        h.write_tag("ram");
        h.write_u64(self.0.ram_size());
        h.write(self.0.ram());
    }
}

impl StateHash for MachineState<'_> {
    fn hash_state(&self, h: &mut StateHasher) {
        CpuArch(self.0.cpu()).hash_state(h);
        Ram(self.0.mem()).hash_state(h);
    }
}

/// The state hash of an engine's CPU and RAM.
pub fn machine_hash(e: &Engine) -> u64 {
    MachineState(e).state_hash()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cjemu_jit::memory::GuestPhysAddr;
    use cjemu_jit::setup::flat_long_mode;
    use cjemu_jit::{Exit, Gpr};

    /// An engine that ran `mov eax, 5; add eax, -5; hlt` (leaving ZF lazily
    /// computed) from 0x1000.
    fn ran_add() -> Engine {
        let mut e = Engine::new(1 << 20).unwrap();
        let code = [0xb8, 5, 0, 0, 0, 0x83, 0xc0, 0xfb, 0xf4];
        e.mem_mut()
            .write_phys(GuestPhysAddr(0x1000), &code)
            .unwrap();
        flat_long_mode(&mut e, GuestPhysAddr(0xfe000), 0x1000, 0xfe000).unwrap();
        assert_eq!(e.run(100), Exit::Halted);
        e
    }

    #[test]
    fn lazy_and_materialised_flags_hash_the_same() {
        let e = ran_add();
        let lazy = e.cpu().clone();
        let mut eager = lazy.clone();
        let rf = lazy.rflags();
        assert_ne!(rf & 0x40, 0, "ZF after 5 + -5");
        eager.set_rflags(rf);
        assert_ne!(
            lazy.cc_op, eager.cc_op,
            "the test needs a lazy state to compare"
        );
        assert_eq!(CpuArch(&lazy).state_hash(), CpuArch(&eager).state_hash());
    }

    #[test]
    fn engine_fields_do_not_change_the_hash() {
        let e = ran_add();
        let a = e.cpu().clone();
        let mut b = a.clone();
        b.icount += 1000;
        b.budget = 77;
        b.tsc_bias = 5;
        b.exit_req = 1;
        b.tlb.flush_all();
        assert_eq!(CpuArch(&a).state_hash(), CpuArch(&b).state_hash());
    }

    #[test]
    fn architectural_changes_change_the_hash() {
        let e = ran_add();
        let base = CpuArch(e.cpu()).state_hash();
        let changes: [fn(&mut CpuState); 9] = [
            |c| c.set_reg(Gpr::R15, 1),
            |c| c.rip += 1,
            |c| c.set_rflags(c.rflags() ^ 1),
            |c| c.seg[4].base = 0x1000,
            |c| c.cr2 = 0x1234,
            |c| c.msr.lstar = 1,
            |c| c.xmm[15] = 1 << 100,
            |c| c.x87.fcw ^= 1,
            |c| c.idtr.limit = 0xfff,
        ];
        for (i, f) in changes.iter().enumerate() {
            let mut c = e.cpu().clone();
            f(&mut c);
            assert_ne!(CpuArch(&c).state_hash(), base, "change {i} not seen");
        }
    }

    #[test]
    fn ram_contents_change_the_machine_hash() {
        let mut e = ran_add();
        let before = machine_hash(&e);
        assert_eq!(before, machine_hash(&e), "hashing is deterministic");
        e.mem_mut()
            .write_phys(GuestPhysAddr(0x8_0000), &[1])
            .unwrap();
        assert_ne!(machine_hash(&e), before);
    }

    #[test]
    fn two_identical_runs_hash_the_same() {
        assert_eq!(machine_hash(&ran_add()), machine_hash(&ran_add()));
    }
}
