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
//!
//! The whole machine ([`machine_state_hash`]) is hashed per part
//! ([`state_parts`]), so a replay checkpoint can say which parts diverged.
//! Each device part is the hash of the device's plain-data state (each
//! state type documents its field order); the parts come in [`PART_ORDER`]
//! (UARTs as many as the machine has).

use crate::pc::Pc;
use cjemu_devices::rtc_cmos::RtcCmos;
use cjemu_jit::memory::GuestMemory;
use cjemu_jit::state::{DescriptorTable, Segment};
use cjemu_jit::{CpuState, Engine};
use cjemu_replay::{StateHash, StateHasher};

/// The names of the machine's parts, in hashing order. `com1`..`com4`
/// appear only for the UARTs the machine has.
pub const PART_ORDER: [&str; 15] = [
    "cpu",
    "ram",
    "pic",
    "pit",
    "rtc",
    "com1",
    "com2",
    "com3",
    "com4",
    "i8042",
    "port61",
    "debug-exit",
    "testdev",
    "clock",
    "timers",
];

/// The part names of COM1..COM4.
const COM_NAMES: [&str; 4] = ["com1", "com2", "com3", "com4"];

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

/// One state hash per part of the machine, in [`PART_ORDER`]: the CPU, RAM,
/// every device, the virtual clock and the timers. Two machines in the
/// same state give the same list; a part differs when its state does.
pub fn state_parts(e: &Engine, pc: &Pc) -> Vec<(&'static str, u64)> {
    let mut parts = vec![
        ("cpu", CpuArch(e.cpu()).state_hash()),
        ("ram", Ram(e.mem()).state_hash()),
        ("pic", pc.pic.borrow().state().state_hash()),
        ("pit", pc.pit.borrow().state().state_hash()),
        ("rtc", rtc_hash(e, pc)),
    ];
    for (name, u) in COM_NAMES.iter().zip(&pc.uarts) {
        parts.push((name, u.borrow().state().state_hash()));
    }
    parts.extend([
        ("i8042", pc.i8042.borrow().state().state_hash()),
        ("port61", pc.port61.borrow().state().state_hash()),
        ("debug-exit", pc.debug_exit.borrow().state().state_hash()),
        ("testdev", testdev_hash(pc)),
        ("clock", pc.clock.state().state_hash()),
        ("timers", pc.timers.state().state_hash()),
    ]);
    parts
}

/// The RTC as of now: a copy brought up to the current virtual time. The
/// live device catches its flags up lazily (at each access and service
/// round), so its bookkeeping depends on where the run loop happened to
/// stop, which the guest cannot see and the hash must not either.
fn rtc_hash(e: &Engine, pc: &Pc) -> u64 {
    let state = pc.rtc.borrow().state();
    let now = pc.clock.ns_at(e.cpu().icount).0;
    match RtcCmos::from_state(&state) {
        Ok(mut rtc) => {
            rtc.advance(now);
            rtc.state().state_hash()
        }
        Err(_) => state.state_hash(),
    }
}

/// pc-testdev's two halves, one part: the IORAM, then the port register.
fn testdev_hash(pc: &Pc) -> u64 {
    let mut h = StateHasher::new();
    pc.ioram.borrow().state().hash_state(&mut h);
    pc.testdev_port.borrow().state().hash_state(&mut h);
    h.finish()
}

/// The state hash of the whole machine (`--stats` `state-hash`): the
/// number of parts, then each part's name (as a tag) and hash, in order.
pub fn machine_state_hash(e: &Engine, pc: &Pc) -> u64 {
    let parts = state_parts(e, pc);
    let mut h = StateHasher::new();
    h.write_tag("machine");
    h.write_u64(parts.len() as u64);
    for (name, v) in parts {
        h.write_tag(name);
        h.write_u64(v);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pc::PcConfig;
    use cjemu_devices::uart16550::{NullOutput, SerialOutput};
    use cjemu_jit::memory::GuestPhysAddr;
    use cjemu_jit::setup::flat_long_mode;
    use cjemu_jit::{Exit, Gpr};
    use cjemu_replay::clock::{ShiftMode, VirtualClock, VirtualNs};
    use cjemu_replay::timers::TimerId;

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

    /// A 1 MiB engine and a PC with `uarts` UARTs, at power-on.
    fn machine(uarts: usize) -> (Engine, Pc) {
        let e = Engine::new(1 << 20).unwrap();
        let serial = (0..uarts)
            .map(|_| Box::new(NullOutput) as Box<dyn SerialOutput>)
            .collect();
        let clock = VirtualClock::new(ShiftMode::Fixed(0)).unwrap();
        let pc = Pc::new(serial, &PcConfig::default(), clock).unwrap();
        (e, pc)
    }

    fn names(parts: &[(&'static str, u64)]) -> Vec<&'static str> {
        parts.iter().map(|p| p.0).collect()
    }

    /// The parts whose hash differs between `a` and `b` (same list order).
    fn changed(a: &[(&'static str, u64)], b: &[(&'static str, u64)]) -> Vec<&'static str> {
        assert_eq!(names(a), names(b));
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.1 != y.1)
            .map(|(x, _)| x.0)
            .collect()
    }

    fn outb(pc: &mut Pc, port: u64, v: u8) {
        pc.pio.write(port, &[v]);
    }

    fn inb(pc: &mut Pc, port: u64) -> u8 {
        let mut b = [0u8];
        pc.pio.read(port, &mut b);
        b[0]
    }

    type Change = fn(&mut Engine, &mut Pc);

    /// One guest-visible change per part (the PC has two UARTs), and the
    /// parts each must change.
    fn changes() -> Vec<(Change, Vec<&'static str>)> {
        vec![
            (|e, _| e.cpu_mut().rip += 1, vec!["cpu"]),
            (
                |e, _| e.mem_mut().write_phys(GuestPhysAddr(0x8000), &[1]).unwrap(),
                vec!["ram"],
            ),
            // OCW1: the master's IMR.
            (|_, pc| outb(pc, 0x21, 0x12), vec!["pic"]),
            // Counter 0: LSB then MSB, mode 2.
            (|_, pc| outb(pc, 0x43, 0x34), vec!["pit"]),
            // The index register, then a CMOS byte.
            (|_, pc| outb(pc, 0x70, 0x40), vec!["rtc"]),
            (
                |_, pc| {
                    outb(pc, 0x70, 0x40);
                    outb(pc, 0x71, 0x5a)
                },
                vec!["rtc"],
            ),
            // Scratch registers: COM2's leaves COM1 alone.
            (|_, pc| outb(pc, 0x3ff, 0x5a), vec!["com1"]),
            (|_, pc| outb(pc, 0x2ff, 0x5a), vec!["com2"]),
            // Controller self-test: 0x55 waits in the output buffer.
            (|_, pc| outb(pc, 0x64, 0xaa), vec!["i8042"]),
            // Speaker data: port 0x61 alone; the gate bit raises PIT
            // channel 2's gate (low at power-on) as well.
            (|_, pc| outb(pc, 0x61, 0x02), vec!["port61"]),
            (|_, pc| outb(pc, 0x61, 0x01), vec!["pit", "port61"]),
            (|_, pc| outb(pc, 0xf4, 0x01), vec!["debug-exit"]),
            (|_, pc| outb(pc, 0xe1, 0x77), vec!["testdev"]),
            (
                |_, pc| pc.mmio.write(crate::pc::IORAM_BASE + 0x10, &[9]),
                vec!["testdev"],
            ),
            // Time moves: the RTC is hashed as of now, so it moves too.
            (
                |_, pc| {
                    pc.clock.advance_idle(VirtualNs(1000), 0);
                },
                vec!["rtc", "clock"],
            ),
            (
                |_, pc| pc.timers.arm(TimerId(1), VirtualNs(500)),
                vec!["timers"],
            ),
        ]
    }

    #[test]
    fn each_part_changes_with_its_own_state_only() {
        for (i, (f, want)) in changes().into_iter().enumerate() {
            let (mut e, mut pc) = machine(2);
            let before = state_parts(&e, &pc);
            let whole = machine_state_hash(&e, &pc);
            f(&mut e, &mut pc);
            let after = state_parts(&e, &pc);
            assert_eq!(changed(&before, &after), want, "change {i}");
            assert_ne!(machine_state_hash(&e, &pc), whole, "change {i}");
        }
    }

    #[test]
    fn reads_without_side_effects_change_no_part() {
        let (e, mut pc) = machine(2);
        outb(&mut pc, 0x70, 0x40);
        let before = state_parts(&e, &pc);
        // IMR, a UART scratch register, a CMOS byte (the index stays).
        assert_eq!(inb(&mut pc, 0x21), 0);
        assert_eq!(inb(&mut pc, 0x3ff), 0);
        inb(&mut pc, 0x71);
        let mut b = [0u8; 4];
        e.mem().read_phys(GuestPhysAddr(0x8000), &mut b).unwrap();
        assert_eq!(changed(&before, &state_parts(&e, &pc)), Vec::<&str>::new());
    }

    #[test]
    fn the_same_state_built_twice_hashes_the_same() {
        let build = || {
            let (mut e, mut pc) = machine(2);
            for (f, _) in changes() {
                f(&mut e, &mut pc);
            }
            (state_parts(&e, &pc), machine_state_hash(&e, &pc))
        };
        let (pa, ha) = build();
        let (pb, hb) = build();
        assert_eq!(pa, pb);
        assert_eq!(ha, hb);
        let (e, pc) = machine(2);
        assert_ne!(machine_state_hash(&e, &pc), ha);
    }

    #[test]
    fn parts_come_in_the_fixed_order_with_one_com_per_uart() {
        let (e, pc) = machine(2);
        assert_eq!(
            names(&state_parts(&e, &pc)),
            [
                "cpu",
                "ram",
                "pic",
                "pit",
                "rtc",
                "com1",
                "com2",
                "i8042",
                "port61",
                "debug-exit",
                "testdev",
                "clock",
                "timers"
            ]
        );
        let (e, pc) = machine(4);
        assert_eq!(names(&state_parts(&e, &pc)), PART_ORDER);
        let (e, pc) = machine(0);
        let got = names(&state_parts(&e, &pc));
        let want: Vec<_> = PART_ORDER
            .into_iter()
            .filter(|n| !n.starts_with("com"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn machine_state_hash_covers_the_cpu_and_ram_hash_and_the_uart_count() {
        let (e, pc) = machine(1);
        let parts = state_parts(&e, &pc);
        assert_eq!(parts[0].1, CpuArch(e.cpu()).state_hash());
        assert_eq!(parts[1].1, Ram(e.mem()).state_hash());
        // Equal UART states, one more UART: a different machine.
        let (e2, pc2) = machine(2);
        assert_ne!(machine_state_hash(&e, &pc), machine_state_hash(&e2, &pc2));
    }
}
