//! The JIT as a tier of the engine (`EngineConfig::accel`): whichever tier
//! runs a block, the guest sees the same results, the same instruction
//! count and the same points where `Engine::run` returns.
//!
//! - The host oracle's random sequences (every implemented catalogue form,
//!   64- and 32-bit code, helper instructions such as DIV, CPUID and REP
//!   string operations included) run on an interpreter engine and on a JIT
//!   engine (threshold 0: every block compiled at first sight, and a
//!   threshold of 1, which mixes tiers inside one run); registers, RIP,
//!   RFLAGS, the data region, the end and `icount` must be identical.
//! - Budget slicing: a guest run in slices of every budget from 1 to 200
//!   under the JIT ends in the state and count of an unsliced interpreter
//!   run, and every slice ends exactly at its budget.

mod oracle;

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::semantics::is_implemented;
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::{Accel, Engine, Exit, Gpr};
use iced_x86::code_asm::*;
use oracle::compare::disassembly;
use oracle::emu::Emu;
use oracle::gen::{catalogue_for, sample, Generator};
use oracle::{env_u64, splitmix, Final};

const SEED: u64 = 0x717_7133_5eed;

/// Every field of two emulated runs, exactly (no undefined-flag masking:
/// both are cjemu).
fn same(a: &Final, b: &Final) -> bool {
    a.end == b.end && a.gpr == b.gpr && a.rip == b.rip && a.rflags == b.rflags && a.data == b.data
}

fn diff(a: &Final, b: &Final) -> String {
    let regs: Vec<String> = (0..16)
        .filter(|&r| a.gpr[r] != b.gpr[r])
        .map(|r| {
            format!(
                "{} {:#x} vs {:#x}",
                Gpr::from_index(r).name(),
                a.gpr[r],
                b.gpr[r]
            )
        })
        .collect();
    format!(
        "end {:?} vs {:?}; rip {:#x} vs {:#x}; rflags {:#x} vs {:#x}; regs {regs:?}; data equal: {}",
        a.end,
        b.end,
        a.rip,
        b.rip,
        a.rflags,
        b.rflags,
        a.data == b.data
    )
}

/// Run `cases` oracle sequences of `bits`-bit code on the interpreter and
/// on the JIT with `threshold`; panics with the first differences.
fn tiers_agree(bits: u32, cases: u64, threshold: u64) {
    let cases = env_u64("CJEMU_JIT_TIER_CASES").unwrap_or(cases);
    let forms: Vec<_> = catalogue_for(bits)
        .into_iter()
        .filter(|f| is_implemented(&sample(f)))
        .collect();
    assert!(!forms.is_empty());
    let gen = Generator::new(forms, true);
    let mut interp = Emu::new();
    let mut jit = Emu::with_accel(Accel::Jit { threshold });
    let mut bad = Vec::new();
    let mut retired = 0u64;
    for k in 0..cases {
        let case = gen.case(splitmix(SEED.wrapping_add(k)));
        let want = interp.run(&case.code, &case.init);
        let want_n = interp.icount();
        let got = jit.run(&case.code, &case.init);
        let got_n = jit.icount();
        retired += want_n;
        if !same(&want, &got) || want_n != got_n {
            bad.push(format!(
                "=== sequence {k} ({bits}-bit, threshold {threshold}): icount {want_n} vs {got_n}; {}\n{}",
                diff(&want, &got),
                disassembly(&case)
            ));
        }
    }
    let st = jit.engine().stats;
    eprintln!(
        "{bits}-bit, threshold {threshold}: {cases} sequences, {retired} instructions; \
         JIT: {} blocks compiled, {} not compiled, {} compiled runs of {} block entries",
        st.blocks_compiled, st.compile_failures, st.compiled_runs, st.blocks_run
    );
    for b in bad.iter().take(5) {
        eprintln!("{b}");
    }
    assert!(
        bad.is_empty(),
        "{} of {cases} sequences differ between interpreter and JIT",
        bad.len()
    );
    assert_eq!(st.compile_failures, 0, "every block compiles");
    assert!(st.compiled_runs > 0, "the JIT ran");
}

#[test]
fn oracle_sequences_jit_matches_interpreter_64() {
    tiers_agree(64, 4000, 0);
}

#[test]
fn oracle_sequences_jit_matches_interpreter_32() {
    tiers_agree(32, 2000, 0);
}

/// Threshold 1: a block's first entry is interpreted, later ones
/// compiled, so loops in the sequences switch tier in the middle.
#[test]
fn oracle_sequences_mixed_tiers() {
    tiers_agree(64, 500, 1);
}

// ---- budget slicing ---------------------------------------------------------

const RAM: u64 = 4 << 20;
const CODE: u64 = 0x1000;
const TABLES: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STACK: u64 = 0x30_0000;

/// A CPU-bound guest mixing inline instructions and helpers: a loop of
/// arithmetic with memory operands and lazy flags, a call, DIV, CPUID,
/// non-REP and REP string operations (a REP stops at the budget and is
/// restarted), then HLT.
fn sliced_guest() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut sub = a.create_label();
    let mut skip = a.create_label();
    let mut done = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(r8, DATA)?;
        a.mov(ebx, 37u32)?; // iterations
        a.mov(rax, 0x1234_5678_9abc_def0u64)?;
        a.set_label(&mut top)?;
        a.add(rax, qword_ptr(r8 + rbx * 8))?;
        a.imul_3(rdx, rax, 13)?;
        a.xor(qword_ptr(r8 + rbx * 8 + 0x400), rdx)?;
        a.call(sub)?;
        a.mov(ecx, ebx)?;
        a.and(ecx, 7)?;
        a.lea(rsi, qword_ptr(r8 + 0x800))?;
        a.lea(rdi, qword_ptr(r8 + 0x900))?;
        a.rep().movsb()?; // RCX = 0 counts 1
        a.movsq()?; // a helper in the middle of a block
        a.inc(qword_ptr(r8 + 0xa00))?;
        a.test(bl, 3)?;
        a.jnz(skip)?;
        a.push(rax)?;
        a.push(rbx)?;
        a.mov(eax, 1u32)?;
        a.cpuid()?;
        a.pop(rbx)?;
        a.pop(rax)?;
        a.set_label(&mut skip)?;
        a.dec(ebx)?;
        a.jnz(top)?;
        a.jmp(done)?;
        a.set_label(&mut sub)?;
        a.mov(rcx, rbx)?;
        a.add(rcx, 3)?;
        a.xor(edx, edx)?;
        a.push(rax)?;
        a.div(rcx)?;
        a.add(qword_ptr(r8 + 0xb00), rdx)?;
        a.pop(rax)?;
        a.adc(rax, rdx)?;
        a.ret()?;
        a.set_label(&mut done)?;
        a.mov(ecx, 100u32)?;
        a.lea(rdi, qword_ptr(r8 + 0xc00))?;
        a.rep().stosq()?;
        a.hlt()
    })()
    .unwrap();
    a.assemble(CODE).unwrap()
}

fn sliced_engine(accel: Accel) -> Engine {
    let mut e = Engine::new(RAM).unwrap();
    e.config.accel = accel;
    let code = sliced_guest();
    e.mem_mut().write_phys(GuestPhysAddr(CODE), &code).unwrap();
    let data: Vec<u8> = (0..0x1000u64).map(|i| splitmix(i) as u8).collect();
    e.mem_mut().write_phys(GuestPhysAddr(DATA), &data).unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
    e
}

/// What the comparison looks at.
fn outcome(e: &Engine) -> (u64, [u64; 16], u64, u64, Vec<u8>) {
    let c = e.cpu();
    let mut data = vec![0; 0x1000];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut data).unwrap();
    (c.icount, c.gpr, c.rip, c.rflags(), data)
}

#[test]
fn budget_slicing_under_the_jit_matches_an_unsliced_run() {
    let mut reference = sliced_engine(Accel::Interp);
    assert_eq!(reference.run(1 << 30), Exit::Halted);
    let want = outcome(&reference);
    assert!(want.0 > 1000, "the guest runs a while: {}", want.0);
    let mut unsliced = sliced_engine(Accel::Jit { threshold: 0 });
    assert_eq!(unsliced.run(1 << 30), Exit::Halted);
    assert!(outcome(&unsliced) == want, "unsliced JIT run differs");
    for threshold in [0, 3] {
        for budget in 1..=200u64 {
            let mut e = sliced_engine(Accel::Jit { threshold });
            let mut slices = 0u64;
            loop {
                let before = e.cpu().icount;
                match e.run(budget) {
                    Exit::BudgetExhausted => {
                        assert_eq!(
                            e.cpu().icount - before,
                            budget,
                            "budget {budget}, threshold {threshold}: a slice ends exactly at its budget"
                        );
                        slices += 1;
                        assert!(slices * budget <= want.0, "runs past the reference");
                    }
                    Exit::Halted => break,
                    x => panic!("budget {budget}: unexpected exit {x:?}"),
                }
            }
            let got = outcome(&e);
            assert!(
                got == want,
                "budget {budget}, threshold {threshold}: state differs: icount {} vs {}, rip {:#x} vs {:#x}, regs equal {}, data equal {}",
                got.0,
                want.0,
                got.2,
                want.2,
                got.1 == want.1,
                got.4 == want.4
            );
            assert!(e.stats.blocks_compiled > 0);
            if budget == 200 {
                assert!(e.stats.compiled_runs > 0);
            }
        }
    }
}

// ---- 16-bit code and the stack size ------------------------------------------

/// Real mode at 0x7c00: a loop of 16-bit arithmetic, stack traffic, a call,
/// MUL/DIV and a string store, then HLT.
fn real_mode_guest() -> Vec<u8> {
    let mut a = CodeAssembler::new(16).unwrap();
    let mut top = a.create_label();
    let mut sub = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(cx, 300u32)?;
        a.mov(ax, 7u32)?;
        a.mov(di, 0x1000u32)?;
        a.set_label(&mut top)?;
        a.push(cx)?;
        a.call(sub)?;
        a.pop(cx)?;
        a.add(ax, cx)?;
        a.adc(bx, 0)?;
        a.stosw()?;
        a.and(di, 0x1ffe)?;
        a.or(di, 0x1000)?;
        a.loop_(top)?;
        a.hlt()?;
        a.set_label(&mut sub)?;
        a.mov(si, cx)?;
        a.or(si, 1)?;
        a.xor(dx, dx)?;
        a.mul(si)?;
        a.div(si)?;
        a.xor(ax, dx)?;
        a.ret()
    })()
    .unwrap();
    a.assemble(0x7c00).unwrap()
}

fn real_mode_engine(accel: Accel) -> Engine {
    let mut e = Engine::new(RAM).unwrap();
    e.config.accel = accel;
    e.mem_mut()
        .write_phys(GuestPhysAddr(0x7c00), &real_mode_guest())
        .unwrap();
    let cpu = e.cpu_mut();
    cpu.seg[cjemu_jit::Seg::Cs as usize].base = 0;
    cpu.seg[cjemu_jit::Seg::Cs as usize].selector = 0;
    cpu.rip = 0x7c00;
    cpu.gpr[4] = 0x7000;
    assert_eq!(cpu.code_bitness(), 16);
    e
}

/// Run 1000 instructions, make the stack 32-bit (SS.B, as "unreal mode"
/// code can) with the stack moved up by 64 KiB (ESP = 0x1_0000 + SP, the
/// live stack bytes copied there), run to HLT. Compiled blocks were compiled
/// for a 16-bit stack (which would push at SP = 0x7000) and must not be
/// entered after the change: the JIT engine ends as the interpreter does,
/// stack memory included.
fn real_mode_run(accel: Accel) -> (u64, [u64; 16], u64, Vec<u8>, Engine) {
    let mut e = real_mode_engine(accel);
    assert_eq!(e.run(1000), Exit::BudgetExhausted);
    let stack = e.cpu().gpr[4];
    let mut live = vec![0; (0x7000 - stack) as usize];
    e.mem().read_phys(GuestPhysAddr(stack), &mut live).unwrap();
    e.mem_mut()
        .write_phys(GuestPhysAddr(0x1_0000 + stack), &live)
        .unwrap();
    let cpu = e.cpu_mut();
    cpu.seg[cjemu_jit::Seg::Ss as usize].attrs |= cjemu_jit::state::seg_attr::DB;
    cpu.gpr[4] = 0x1_0000 + stack;
    let x = e.run(1 << 20);
    assert_eq!(
        x,
        Exit::Halted,
        "rip {:#x} icount {}",
        e.cpu().rip,
        e.cpu().icount
    );
    let mut mem = vec![0; 0x2_0000];
    e.mem().read_phys(GuestPhysAddr(0), &mut mem).unwrap();
    let c = e.cpu();
    (c.icount, c.gpr, c.rip, mem, e)
}

#[test]
fn real_mode_code_and_a_stack_size_change() {
    let (n, gpr, rip, mem, _) = real_mode_run(Accel::Interp);
    assert!(n > 3000, "{n}");
    for threshold in [0, 2] {
        let (jn, jgpr, jrip, jmem, e) = real_mode_run(Accel::Jit { threshold });
        assert_eq!((jn, jgpr, jrip), (n, gpr, rip), "threshold {threshold}");
        assert!(jmem == mem, "threshold {threshold}: memory differs");
        assert!(e.stats.compiled_runs > 0, "16-bit blocks ran compiled");
        assert_eq!(e.stats.compile_failures, 0);
    }
}
