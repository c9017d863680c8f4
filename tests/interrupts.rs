//! Interrupt delivery through the whole machine: PIT → PIC → CPU, the STI
//! shadow, HLT wake-up, and the same interrupt points under every engine.
//!
//! The guests are small real-mode programs (assembled here with iced's
//! code assembler) at 0000:1000 with the interrupt vector table at 0.

use cjemu::cli::Accel;
use cjemu::hash::machine_hash;
use cjemu::machine::{Machine, MachineConfig, RunReport};
use cjemu::status::Outcome;
use cjemu_devices::pit8254::PIT_HZ;
use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::state::Seg;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

const ORG: u64 = 0x1000;
/// Guest variables.
const TICKS: u64 = 0x600;
const RET_IP: u64 = 0x602;
/// Vector the test programs the master PIC to (IRQ0).
const VEC: u64 = 0x20;

/// ICW1–4 for both PICs (master at `VEC`, slave at `VEC + 8`), then only
/// IRQ0 unmasked.
fn init_pics(a: &mut CodeAssembler) -> Result<(), IcedError> {
    for (port, v) in [
        (0x20u16, 0x11u8),
        (0x21, VEC as u8),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, VEC as u8 + 8),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0xfe),
        (0xa1, 0xff),
    ] {
        a.mov(al, v as u32)?;
        a.out(port as u32, al)?;
    }
    Ok(())
}

/// PIT channel 0: `mode`, LSB then MSB, count `count`.
fn init_pit(a: &mut CodeAssembler, mode: u8, count: u16) -> Result<(), IcedError> {
    a.mov(al, 0x30 | (mode as u32) << 1)?;
    a.out(0x43, al)?;
    a.mov(al, (count & 0xff) as u32)?;
    a.out(0x40, al)?;
    a.mov(al, (count >> 8) as u32)?;
    a.out(0x40, al)?;
    Ok(())
}

/// Where the interrupt handler goes.
const HANDLER: u64 = 0x1800;

/// Point vector `VEC` at [`HANDLER`] (segment 0).
fn set_vector(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(word_ptr(VEC * 4), HANDLER as u32)?;
    a.mov(word_ptr(VEC * 4 + 2), 0)?;
    Ok(())
}

/// A guest: the main program at [`ORG`], the handler at [`HANDLER`].
struct Guest {
    main: Vec<u8>,
    handler: Vec<u8>,
}

fn machine(g: &Guest, accel: Accel) -> Machine {
    let mut m = Machine::build(MachineConfig::new(1 << 20, accel)).unwrap();
    let mem = m.engine.mem_mut();
    mem.write_phys(GuestPhysAddr(ORG), &g.main).unwrap();
    mem.write_phys(GuestPhysAddr(HANDLER), &g.handler).unwrap();
    let cpu = m.engine.cpu_mut();
    let code_seg = &mut cpu.seg[Seg::Cs as usize];
    code_seg.selector = 0;
    code_seg.base = 0;
    cpu.rip = ORG;
    m
}

fn assemble(a: &mut CodeAssembler, at: u64) -> Vec<u8> {
    a.assemble(at).unwrap()
}

/// Count the tick in `TICKS` (or, with `save_ret`, save the return IP in
/// `RET_IP`), EOI, IRET.
fn handler(save_ret: bool) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).unwrap();
    if save_ret {
        a.mov(bp, sp).unwrap();
        a.mov(ax, word_ptr(bp)).unwrap();
        a.mov(word_ptr(RET_IP), ax).unwrap();
    }
    a.inc(word_ptr(TICKS)).unwrap();
    a.mov(al, 0x20).unwrap();
    a.out(0x20, al).unwrap();
    a.iret().unwrap();
    assemble(&mut a, HANDLER)
}

const ENGINES: [Accel; 3] = [
    Accel::Interp,
    Accel::Jit { threshold: Some(0) },
    Accel::Jit { threshold: Some(2) },
];

/// Run `code` under every engine: the same outcome, count, interrupts and
/// state hash each time. Returns the interpreter's run.
fn run_everywhere(code: &Guest) -> (Machine, RunReport) {
    let mut first: Option<(Machine, RunReport)> = None;
    for accel in ENGINES {
        let mut m = machine(code, accel);
        let r = m.run().unwrap();
        match &first {
            None => first = Some((m, r)),
            Some((m0, r0)) => {
                assert_eq!(r.outcome, r0.outcome, "{accel:?}");
                assert_eq!(r.counters, r0.counters, "{accel:?}");
                assert_eq!(m.engine.cpu().icount, m0.engine.cpu().icount, "{accel:?}");
                assert_eq!(
                    machine_hash(&m.engine),
                    machine_hash(&m0.engine),
                    "{accel:?}"
                );
            }
        }
    }
    first.unwrap()
}

/// Nanoseconds of PIT input clock edge `tick` (the first edge at or after
/// that many ticks of virtual time).
fn tick_ns(tick: u64) -> u64 {
    (tick as u128 * 1_000_000_000).div_ceil(PIT_HZ as u128) as u64
}

#[test]
fn pit_ticks_wake_a_halted_cpu_at_the_programmed_rate() {
    const N: u32 = 40;
    const DIVISOR: u16 = 1193; // ~1 kHz
    let mut a = CodeAssembler::new(16).unwrap();
    let mut idle = a.create_label();
    a.cli().unwrap();
    set_vector(&mut a).unwrap();
    a.mov(word_ptr(TICKS), 0).unwrap();
    init_pics(&mut a).unwrap();
    init_pit(&mut a, 2, DIVISOR).unwrap();
    a.sti().unwrap();
    a.set_label(&mut idle).unwrap();
    a.hlt().unwrap();
    a.cmp(word_ptr(TICKS), N).unwrap();
    a.jb(idle).unwrap();
    a.cli().unwrap();
    a.mov(al, byte_ptr(TICKS)).unwrap();
    a.out(0xf4, al).unwrap();
    let g = Guest {
        main: assemble(&mut a, ORG),
        handler: handler(false),
    };
    let (_, r) = run_everywhere(&g);
    assert_eq!(r.outcome, Outcome::DebugExit(N));
    assert_eq!(r.counters.interrupts, N as u64);
    // The Nth rising edge of OUT ends the wait: N periods after the count
    // was loaded (within the first microseconds of the run).
    let nth_edge = tick_ns(N as u64 * DIVISOR as u64);
    let t = r.counters.virtual_ns;
    assert!(t >= nth_edge, "{t} ns");
    assert!(t < nth_edge + 100_000, "{t} ns");
    assert!(
        r.counters.clock_adjusts >= N as u64,
        "the idle CPU skipped ahead"
    );
}

#[test]
fn an_interrupt_pending_at_sti_is_taken_after_the_next_instruction() {
    // IRQ0 is made pending with IF=0 (mode 0 with count 1 raises OUT after
    // one tick); then `sti; inc bx; inc bx`: the handler must see the
    // return address of the second INC (STI's shadow covers one
    // instruction).
    let mut a = CodeAssembler::new(16).unwrap();
    let mut wait = a.create_label();
    let mut second_inc = a.create_label();
    a.cli().unwrap();
    set_vector(&mut a).unwrap();
    init_pics(&mut a).unwrap();
    init_pit(&mut a, 0, 1).unwrap();
    // Poll IRR (OCW3 read IRR is the default) until IRQ0 is requested.
    a.set_label(&mut wait).unwrap();
    a.in_(al, 0x20).unwrap();
    a.test(al, 1).unwrap();
    a.jz(wait).unwrap();
    a.xor(bx, bx).unwrap();
    a.sti().unwrap();
    a.inc(bx).unwrap();
    a.set_label(&mut second_inc).unwrap();
    a.inc(bx).unwrap();
    a.cli().unwrap();
    a.mov(al, bl).unwrap();
    a.out(0xf4, al).unwrap();
    let asm = a
        .assemble_options(ORG, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let second_inc = asm.label_ip(&second_inc).unwrap();
    let g = Guest {
        main: asm.inner.code_buffer.clone(),
        handler: handler(true),
    };
    let (m, r) = run_everywhere(&g);
    assert_eq!(r.outcome, Outcome::DebugExit(2), "both INCs ran");
    assert_eq!(r.counters.interrupts, 1);
    let mut ret = [0u8; 2];
    m.engine
        .mem()
        .read_phys(GuestPhysAddr(RET_IP), &mut ret)
        .unwrap();
    assert_eq!(u16::from_le_bytes(ret) as u64, second_inc);
}
