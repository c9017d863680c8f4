//! Breakpoints in the engine (`Engine::set_breakpoints`): the run stops
//! before the instruction at a breakpoint address, even in the middle of
//! what would be one block, with the exact count and nothing of that
//! instruction run; resuming past it (`skip_breakpoint_at`) runs on to the
//! next hit; the final state equals a run without breakpoints under every
//! tier, and clearing them lets the JIT compile again.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{setup, Accel, Engine, Exit, Gpr};

const TIERS: [Accel; 3] = [
    Accel::Interp,
    Accel::Jit { threshold: 0 },
    Accel::Jit { threshold: 2 },
];

/// `mov ecx, 50; l: add eax, ecx; inc ebx; dec ecx; jnz l; hlt`: one loop
/// block of 4 instructions after 1 setup instruction.
const CODE: [u8; 13] = [
    0xb9, 0x32, 0x00, 0x00, 0x00, // 0x1000 mov ecx, 50
    0x01, 0xc8, // 0x1005 add eax, ecx
    0xff, 0xc3, // 0x1007 inc ebx
    0xff, 0xc9, // 0x1009 dec ecx
    0x75, 0xf8, // 0x100b jnz 0x1005
];

fn engine(accel: Accel) -> Engine {
    let mut code = CODE.to_vec();
    code.push(0xf4);
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.accel = accel;
    e.mem_mut()
        .write_phys(GuestPhysAddr(0x1000), &code)
        .unwrap();
    setup::flat_long_mode(&mut e, GuestPhysAddr(0x3000), 0x1000, 0x10_0000).unwrap();
    e
}

#[test]
fn a_breakpoint_inside_a_loop_block_stops_before_its_instruction_each_turn() {
    for t in TIERS {
        let mut plain = engine(t);
        assert_eq!(plain.run(1_000), Exit::Halted);
        let mut e = engine(t);
        e.set_breakpoints([0x1009]); // dec ecx, mid-block
        let mut hits = Vec::new();
        loop {
            match e.run(1_000) {
                Exit::Breakpoint => {
                    let c = e.cpu();
                    assert_eq!(c.rip, 0x1009, "{t:?}");
                    hits.push((c.icount, c.reg(Gpr::Rcx)));
                    e.skip_breakpoint_at(0x1009);
                }
                Exit::Halted => break,
                other => panic!("{t:?}: {other:?}"),
            }
        }
        // Turn k stops after 1 + 4k + 2 instructions, ECX not yet decremented.
        let want: Vec<(u64, u64)> = (0..50).map(|k| (1 + 4 * k + 2, 50 - k)).collect();
        assert_eq!(hits, want, "{t:?}");
        assert_eq!(e.cpu().icount, plain.cpu().icount, "{t:?}");
        assert_eq!(e.cpu().reg(Gpr::Rax), plain.cpu().reg(Gpr::Rax), "{t:?}");
        assert_eq!(e.cpu().reg(Gpr::Rbx), 50, "{t:?}");
    }
}

#[test]
fn without_a_skip_the_run_stays_at_the_breakpoint_and_clearing_brings_the_jit_back() {
    let mut e = engine(Accel::Jit { threshold: 0 });
    e.set_breakpoints([0x1005]);
    assert_eq!(e.run(1_000), Exit::Breakpoint);
    assert_eq!(e.cpu().icount, 1);
    assert_eq!(e.run(1_000), Exit::Breakpoint, "not skipped: no progress");
    assert_eq!(e.cpu().icount, 1);
    assert_eq!(
        e.stats.blocks_compiled, 0,
        "interpreted while breakpoints are set"
    );
    e.set_breakpoints([]);
    assert_eq!(e.run(1_000), Exit::Halted);
    assert_eq!(e.cpu().icount, 1 + 4 * 50 + 1);
    assert!(e.stats.blocks_compiled > 0, "compiled again");
}
