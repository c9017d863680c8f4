//! Compiled regions (a hot block and the blocks of its page it reaches by
//! direct branches, one Cranelift function with jumps for the edges
//! between them). Whichever tier runs, the guest sees the same results, the
//! same instruction count and the same points where `Engine::run` returns:
//!
//! - budget slicing: every budget from 1 to 300 on a guest of nested
//!   loops, a leaf call, a helper (DIV) and lazy flags crossing block edges
//!   (`dec; jnz` at a block start) ends in the state and count of an
//!   unsliced interpreter run, every slice exactly at its budget;
//! - regions really hold several blocks on that guest;
//! - a pending interrupt request (INTR) is seen at the same boundary under
//!   every tier while compiled code loops with IF clear, then sets IF;
//! - a store into a later block of the running region (same page) changes
//!   what runs next, at once;
//! - a device access (MMIO) inside a region loop returns to the caller
//!   after that instruction with the interpreter's count.

use cjemu_jit::emit::Width;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, IoBus};
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::{Accel, Engine, Exit, Gpr};
use iced_x86::code_asm::*;

const TIERS: [Accel; 4] = [
    Accel::Interp,
    Accel::Jit { threshold: 0 },
    Accel::Jit { threshold: 1 },
    Accel::Jit { threshold: 2 },
];

const RAM: u64 = 4 << 20;
const CODE: u64 = 0x1000;
const TABLES: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STACK: u64 = 0x30_0000;

fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

fn engine(code: &[u8], accel: Accel) -> Engine {
    let mut e = Engine::new(RAM).unwrap();
    e.config.accel = accel;
    e.mem_mut().write_phys(GuestPhysAddr(CODE), code).unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
    e
}

/// Three nested loops on one page: the inner one stores, calls a leaf
/// function with a branch and a DIV (a helper inside the region), and
/// closes with `dec; jnz`, whose CF comes from the previous block's flags.
fn nested_guest() -> Vec<u8> {
    assemble(|a| {
        let mut outer = a.create_label();
        let mut inner = a.create_label();
        let mut leaf = a.create_label();
        let mut odd = a.create_label();
        let mut done = a.create_label();
        a.mov(r8, DATA)?;
        a.mov(r10d, 4u32)?;
        a.mov(rax, 0x1234_5678u64)?;
        a.set_label(&mut outer)?;
        a.mov(ecx, 9u32)?;
        a.set_label(&mut inner)?;
        a.add(rax, rcx)?;
        a.mov(qword_ptr(r8 + rcx * 8), rax)?;
        a.call(leaf)?;
        a.cmp(rax, rdx)?; // flags for the next block's DEC (CF kept)
        a.jb(odd)?;
        a.adc(rax, 5)?;
        a.set_label(&mut odd)?;
        a.dec(ecx)?;
        a.jnz(inner)?;
        a.setc(bl)?;
        a.add(qword_ptr(r8 + 0x400), rbx)?;
        a.dec(r10d)?;
        a.jnz(outer)?;
        a.jmp(done)?;
        a.set_label(&mut leaf)?;
        a.mov(r9, rcx)?;
        a.or(r9, 1)?;
        a.xor(edx, edx)?;
        a.push(rax)?;
        a.div(r9)?;
        a.pop(rax)?;
        a.test(dl, 1)?;
        a.jz(done)?; // never for the leaf's callers' sake: returns below
        a.xor(rax, rdx)?;
        a.ret()?;
        a.set_label(&mut done)?;
        a.cmp(r10d, 0)?;
        a.jne(odd)?; // the leaf's even case: back into the loop
        a.hlt()
    })
}

/// What the comparison looks at.
fn outcome(e: &Engine) -> (u64, [u64; 16], u64, u64, Vec<u8>) {
    let c = e.cpu();
    let mut data = vec![0; 0x800];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut data).unwrap();
    (c.icount, c.gpr, c.rip, c.rflags(), data)
}

#[test]
fn regions_hold_several_blocks() {
    let mut e = engine(&nested_guest(), Accel::Jit { threshold: 0 });
    assert_eq!(e.run(1 << 20), Exit::Halted);
    let st = e.stats;
    assert!(st.blocks_compiled > 0);
    assert!(
        st.region_blocks > st.blocks_compiled,
        "{} blocks in {} regions",
        st.region_blocks,
        st.blocks_compiled
    );
    assert_eq!(st.compile_failures, 0);
    assert!(st.compiled_insns > 0 && st.compiled_insns <= e.cpu().icount);
}

#[test]
fn budget_slices_1_to_300_match_an_unsliced_run() {
    let code = nested_guest();
    let mut reference = engine(&code, Accel::Interp);
    assert_eq!(reference.run(1 << 30), Exit::Halted);
    let want = outcome(&reference);
    assert!(want.0 > 600, "the guest runs a while: {}", want.0);
    for accel in TIERS {
        let mut unsliced = engine(&code, accel);
        assert_eq!(unsliced.run(1 << 30), Exit::Halted);
        assert!(
            outcome(&unsliced) == want,
            "{accel:?}: unsliced run differs"
        );
    }
    for threshold in [0, 2] {
        let accel = Accel::Jit { threshold };
        for budget in 1..=300u64 {
            let mut e = engine(&code, accel);
            loop {
                let before = e.cpu().icount;
                match e.run(budget) {
                    Exit::BudgetExhausted => {
                        assert_eq!(e.cpu().icount - before, budget, "{accel:?} budget {budget}");
                        assert!(e.cpu().icount <= want.0, "runs past the reference");
                    }
                    Exit::Halted => break,
                    x => panic!("{accel:?} budget {budget}: unexpected exit {x:?}"),
                }
            }
            let got = outcome(&e);
            assert!(
                got == want,
                "{accel:?} budget {budget}: icount {} vs {}, rip {:#x} vs {:#x}, regs equal {}, \
                 flags {:#x} vs {:#x}, data equal {}",
                got.0,
                want.0,
                got.2,
                want.2,
                got.1 == want.1,
                got.3,
                want.3,
                got.4 == want.4
            );
            if budget >= 100 {
                assert!(e.stats.compiled_runs > 0, "{accel:?} budget {budget}");
            }
        }
    }
}

/// INTR is asserted from the start; the guest loops with IF clear (the
/// request must not be taken and changes nothing), then STI: the run
/// returns `InterruptWindow` after the instruction under the STI shadow,
/// at the same count and RIP under every tier.
#[test]
fn pending_interrupt_is_seen_at_the_same_boundary() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        let mut top2 = a.create_label();
        a.cli()?;
        a.mov(ecx, 500u32)?;
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.sti()?;
        a.mov(ecx, 100u32)?;
        a.set_label(&mut top2)?;
        a.inc(rbx)?;
        a.dec(ecx)?;
        a.jnz(top2)?;
        a.hlt()
    });
    let mut want = None;
    for accel in TIERS {
        let mut e = engine(&code, accel);
        e.set_intr(true);
        assert_eq!(e.run(1 << 20), Exit::InterruptWindow, "{accel:?}");
        let got = (e.cpu().icount, e.cpu().rip, e.cpu().gpr);
        // CLI, MOV, 500 × 3, STI, and the MOV under the shadow.
        assert_eq!(got.0, 2 + 1500 + 2, "{accel:?}");
        match &want {
            None => want = Some(got),
            Some(w) => assert_eq!(&got, w, "{accel:?}"),
        }
    }
}

/// The loop's second block is patched by a store in its first block once
/// the loop has run a while (the region is compiled by then): the new
/// instruction runs on the very next pass, under every tier.
#[test]
fn store_into_a_later_block_of_the_running_region() {
    // Find the address of the immediate of `mov edx, 1` to patch.
    let build = |patch: u64| {
        assemble(|a| {
            let mut top = a.create_label();
            let mut second = a.create_label();
            let mut skip = a.create_label();
            a.mov(ecx, 40u32)?;
            a.xor(ebx, ebx)?;
            a.mov(rdi, patch)?;
            a.set_label(&mut top)?;
            a.cmp(ecx, 20)?;
            a.jne(skip)?;
            a.mov(byte_ptr(rdi), 3)?; // mov edx, 1 becomes mov edx, 3
            a.set_label(&mut skip)?;
            a.jmp(second)?;
            a.nop()?;
            a.set_label(&mut second)?;
            a.mov(edx, 1u32)?;
            a.add(rbx, rdx)?;
            a.dec(ecx)?;
            a.jnz(top)?;
            a.hlt()
        })
    };
    // Assemble once to find the immediate (same length either way).
    let probe = build(0);
    let mov_at = probe
        .windows(5)
        .position(|w| w == [0xba, 1, 0, 0, 0])
        .expect("mov edx, 1");
    let code = build(CODE + mov_at as u64 + 1);
    for accel in TIERS {
        let mut e = engine(&code, accel);
        assert_eq!(e.run(1 << 20), Exit::Halted, "{accel:?}");
        // Passes with ECX = 40..=21 add 1; the pass with ECX = 20 patches
        // before its MOV, so it and the passes down to ECX = 1 add 3.
        assert_eq!(e.cpu().reg(Gpr::Rbx), 20 + 20 * 3, "{accel:?}");
        // 3 + 40 × (cmp, jne, jmp, mov, add, dec, jnz) + 1 store + hlt.
        assert_eq!(e.cpu().icount, 3 + 40 * 7 + 1 + 1, "{accel:?}");
    }
}

/// MMIO window (inside RAM's range, carved out as a device).
const MMIO: u64 = 0x38_0000;

/// Counts MMIO writes.
struct Mmio(std::rc::Rc<std::cell::Cell<u64>>);

impl IoBus for Mmio {
    fn port_read(&mut self, _: u16, _: Width, _: u64) -> u32 {
        0
    }
    fn port_write(&mut self, _: u16, _: Width, _: u32, _: u64) {}
    fn mmio_read(&mut self, _: GuestPhysAddr, _: Width, _: u64) -> u64 {
        0
    }
    fn mmio_write(&mut self, _: GuestPhysAddr, _: Width, _: u64, _: u64) {
        self.0.set(self.0.get() + 1);
    }
}

/// A loop storing to MMIO every pass: every tier returns `Device` right
/// after each store, with the interpreter's count.
#[test]
fn mmio_store_in_a_region_loop_returns_after_it() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 30u32)?;
        a.mov(rdi, MMIO)?;
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.mov(dword_ptr(rdi), eax)?;
        a.inc(rbx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    let mut want: Option<Vec<u64>> = None;
    for accel in TIERS {
        let writes = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut mem = GuestMemory::new(RAM).unwrap();
        mem.add_mmio(GuestPhysAddr(MMIO), 0x1000).unwrap();
        let mut e = Engine::with_memory(mem, Box::new(Mmio(writes.clone())));
        e.config.accel = accel;
        e.mem_mut().write_phys(GuestPhysAddr(CODE), &code).unwrap();
        flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
        let mut counts = Vec::new();
        loop {
            match e.run(1 << 20) {
                Exit::Device => counts.push(e.cpu().icount),
                Exit::Halted => break,
                x => panic!("{accel:?}: unexpected exit {x:?}"),
            }
        }
        assert_eq!(writes.get(), 30, "{accel:?}");
        assert_eq!(counts.len(), 30, "{accel:?}");
        assert_eq!(counts[0], 4, "{accel:?}: after the first store");
        match &want {
            None => want = Some(counts),
            Some(w) => assert_eq!(&counts, w, "{accel:?}"),
        }
    }
}

/// A loop calling a leaf function on the same page: the CALL, the leaf's
/// branch and its RET back to the call site all stay inside one region, so
/// compiled code is entered a handful of times, not once per block; the
/// results are the interpreter's.
#[test]
fn a_leaf_call_and_its_ret_stay_in_the_region() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        let mut leaf = a.create_label();
        let mut even = a.create_label();
        a.mov(ecx, 1000u32)?;
        a.set_label(&mut top)?;
        a.mov(rdi, rcx)?;
        a.call(leaf)?;
        a.add(rbx, rax)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut leaf)?;
        a.lea(rax, ptr(rdi + rdi * 2 + 1))?;
        a.test(dil, 1)?;
        a.jz(even)?;
        a.shr(rax, 1)?;
        a.set_label(&mut even)?;
        a.xor(rax, rdi)?;
        a.ret()
    });
    let mut reference = engine(&code, Accel::Interp);
    assert_eq!(reference.run(1 << 20), Exit::Halted);
    let mut e = engine(&code, Accel::Jit { threshold: 0 });
    assert_eq!(e.run(1 << 20), Exit::Halted);
    assert_eq!(e.cpu().icount, reference.cpu().icount);
    assert_eq!(e.cpu().gpr, reference.cpu().gpr);
    // 1000 iterations of 5 blocks each: block by block it would be ~5000.
    assert!(
        e.stats.compiled_runs < 20,
        "compiled code entered {} times",
        e.stats.compiled_runs
    );
    assert!(e.stats.compiled_insns + 10 > e.cpu().icount);
}

/// Code memory is reclaimed: with a module limit of one byte every region
/// goes into a module of its own, and a guest that patches its hot loop 20
/// times drops region after region; their modules are freed, and the run
/// still ends as the interpreter's.
#[test]
fn modules_of_dropped_regions_are_freed() {
    let build = |patch: u64| {
        assemble(|a| {
            let mut outer = a.create_label();
            let mut inner = a.create_label();
            a.mov(r8d, 20u32)?;
            a.mov(rdi, patch)?;
            a.set_label(&mut outer)?;
            a.mov(ecx, 50u32)?;
            a.set_label(&mut inner)?;
            a.add(rax, 0x1111)?; // low byte of the immediate patched below
            a.dec(ecx)?;
            a.jnz(inner)?;
            a.inc(byte_ptr(rdi))?;
            a.dec(r8d)?;
            a.jnz(outer)?;
            a.hlt()
        })
    };
    let probe = build(0);
    let imm_at = probe
        .windows(4)
        .position(|w| w == [0x11, 0x11, 0, 0])
        .expect("add rax, 0x1111");
    let code = build(CODE + imm_at as u64);
    let mut reference = engine(&code, Accel::Interp);
    assert_eq!(reference.run(1 << 20), Exit::Halted);
    // Σ over k = 0..20 of 50 × (0x1111 + k).
    assert_eq!(reference.cpu().reg(Gpr::Rax), 50 * (20 * 0x1111 + 190));
    let mut e = engine(&code, Accel::Jit { threshold: 0 });
    e.set_jit_module_limit(1);
    assert_eq!(e.run(1 << 20), Exit::Halted);
    assert_eq!(e.cpu().gpr, reference.cpu().gpr);
    assert_eq!(e.cpu().icount, reference.cpu().icount);
    assert!(e.stats.blocks_compiled >= 20, "{}", e.stats.blocks_compiled);
    assert!(
        e.jit_modules_freed() >= 19,
        "{} of {} modules freed",
        e.jit_modules_freed(),
        e.stats.blocks_compiled
    );
}

// ---- random branchy programs --------------------------------------------------

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORK: [AsmRegister64; 4] = [rax, rbx, rdx, rsi];

/// One random instruction on the work registers, the data area (R8) and
/// the stack: ALU ops that set, keep (INC/DEC: CF) or read flags
/// (ADC/SBB/SETcc/CMOVcc), shifts (by 0 too), memory operands, PUSH/POP
/// pairs and a DIV by an odd divisor (a helper).
fn random_insn(a: &mut CodeAssembler, r: &mut Rng) -> Result<(), IcedError> {
    let x = WORK[r.below(4) as usize];
    let y = WORK[r.below(4) as usize];
    let imm = r.below(200) as i32 - 100;
    let slot = qword_ptr(r8 + (r.below(32) * 8) as i32);
    match r.below(16) {
        0 => a.add(x, y),
        1 => a.sub(x, imm),
        2 => a.xor(x, y),
        3 => a.and(x, imm),
        4 => a.inc(x),
        5 => a.dec(x),
        6 => a.adc(x, y),
        7 => a.sbb(x, imm),
        8 => a.shl(x, cl),
        9 => {
            a.cmp(x, y)?;
            a.setb(cl)
        }
        10 => a.cmovg(x, y),
        11 => a.add(slot, x),
        12 => a.mov(x, slot),
        13 => {
            a.push(x)?;
            a.pop(y)
        }
        14 => {
            a.mov(rdi, x)?;
            a.or(rdi, 1)?;
            a.push(rax)?;
            a.push(rdx)?;
            a.xor(edx, edx)?;
            a.mov(rax, y)?;
            a.div(rdi)?;
            a.mov(rdi, rdx)?;
            a.pop(rdx)?;
            a.pop(rax)?;
            a.add(x, rdi)
        }
        _ => a.test(x, y),
    }
}

/// A random program of `n` blocks on one page. Each block spends one unit
/// of fuel (R15; `DEC` keeps CF, so flags of the block before reach the
/// next block's reads), runs a few random instructions and ends in a
/// random Jcc to any block (back edges make loops) or a CALL of a leaf
/// that returns; fuel out ends the program.
fn random_program(seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let n = 3 + r.below(6) as usize;
    let mut a = CodeAssembler::new(64).unwrap();
    let mut labels: Vec<CodeLabel> = (0..n).map(|_| a.create_label()).collect();
    let mut done = a.create_label();
    let mut leaf = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(r15d, 300u32)?;
        a.mov(r8, DATA)?;
        a.mov(rax, r.next())?;
        a.mov(rbx, r.next())?;
        a.mov(ecx, r.below(70) as u32)?;
        for k in 0..n {
            a.set_label(&mut labels[k])?;
            a.dec(r15d)?;
            a.jz(done)?;
            for _ in 0..1 + r.below(5) {
                random_insn(&mut a, &mut r)?;
            }
            match r.below(4) {
                0 => a.call(leaf)?,
                1 => a.jmp(labels[r.below(n as u64) as usize])?,
                _ => {
                    let t = labels[r.below(n as u64) as usize];
                    match r.below(4) {
                        0 => a.jb(t)?,
                        1 => a.jne(t)?,
                        2 => a.jle(t)?,
                        _ => a.jns(t)?,
                    }
                }
            }
        }
        a.jmp(labels[0])?;
        a.set_label(&mut leaf)?;
        a.add(rsi, rax)?;
        a.ret()?;
        a.set_label(&mut done)?;
        a.hlt()
    })()
    .unwrap();
    a.assemble(CODE).unwrap()
}

/// Random branchy programs run on the interpreter and on the JIT (regions
/// at first sight, after one and after two entries), unsliced and in
/// slices of a few odd budgets: registers, flags, RIP, data and the count
/// must be the interpreter's.
#[test]
fn random_branchy_programs_match_the_interpreter() {
    let cases = std::env::var("CJEMU_REGION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60u64);
    let mut compiled = 0;
    for seed in 0..cases {
        let code = random_program(0x5eed_0000 + seed);
        let mut reference = engine(&code, Accel::Interp);
        assert_eq!(reference.run(1 << 24), Exit::Halted, "seed {seed}");
        let want = outcome(&reference);
        for accel in &TIERS[1..] {
            for budget in [1 << 24, 7, 61] {
                let mut e = engine(&code, *accel);
                loop {
                    match e.run(budget) {
                        Exit::BudgetExhausted => continue,
                        Exit::Halted => break,
                        x => panic!("seed {seed} {accel:?} budget {budget}: {x:?}"),
                    }
                }
                let got = outcome(&e);
                assert!(
                    got == want,
                    "seed {seed} {accel:?} budget {budget}: icount {} vs {}, rip {:#x} vs {:#x}, \
                     regs {:x?} vs {:x?}, flags {:#x} vs {:#x}, data equal {}",
                    got.0,
                    want.0,
                    got.2,
                    want.2,
                    got.1,
                    want.1,
                    got.3,
                    want.3,
                    got.4 == want.4
                );
                compiled += e.stats.region_blocks;
            }
        }
    }
    assert!(compiled > cases, "regions were compiled");
}

/// A computed-goto bytecode loop: every handler ends in
/// `jmp [table + opcode*8]`; one handler also calls a leaf through a
/// register. The program (at DATA) is `1 2 1 3 2 0`, run `turns` times
/// (handler 0 restarts it or halts).
fn bytecode_guest(turns: u32) -> Vec<u8> {
    assemble(|a| {
        let mut h = [(); 4].map(|_| a.create_label());
        let mut leaf = a.create_label();
        let mut done = a.create_label();
        let mut start = a.create_label();
        a.mov(r9, DATA + 0x100)?;
        for (k, l) in h.iter().enumerate() {
            a.lea(rax, ptr(*l))?;
            a.mov(qword_ptr(r9 + 8 * k as i32), rax)?;
        }
        a.mov(rax, 0x5555u64)?;
        a.mov(r10d, turns)?;
        a.set_label(&mut start)?;
        a.mov(r8, DATA)?;
        let dispatch = |a: &mut CodeAssembler| -> Result<(), IcedError> {
            a.movzx(ecx, byte_ptr(r8))?;
            a.inc(r8)?;
            a.jmp(qword_ptr(r9 + rcx * 8))
        };
        dispatch(a)?;
        a.set_label(&mut h[0])?;
        a.dec(r10d)?;
        a.jz(done)?;
        a.jmp(start)?;
        a.set_label(&mut h[1])?;
        a.add(rax, rcx)?;
        a.rol(rax, 5)?;
        dispatch(a)?;
        a.set_label(&mut h[2])?;
        a.imul_3(rax, rax, 31)?;
        a.xor(rax, r10)?;
        dispatch(a)?;
        a.set_label(&mut h[3])?;
        a.lea(rdx, ptr(leaf))?;
        a.call(rdx)?;
        dispatch(a)?;
        a.set_label(&mut leaf)?;
        a.add(rbx, rax)?;
        a.ret()?;
        a.set_label(&mut done)?;
        a.hlt()
    })
}

const BYTECODE: [u8; 6] = [1, 2, 1, 3, 2, 0];

fn bytecode_engine(turns: u32, accel: Accel) -> Engine {
    let mut e = engine(&bytecode_guest(turns), accel);
    e.mem_mut()
        .write_phys(GuestPhysAddr(DATA), &BYTECODE)
        .unwrap();
    e
}

/// Under the JIT the indirect jumps between handlers stay in compiled
/// code: each turn runs 6 dispatches (plus a call and a return), yet the
/// engine enters far fewer blocks than that once the regions are hot, and
/// the result is the interpreter's. (At threshold 0 a block is compiled
/// before any indirect jump to it has been seen, so only the result is
/// compared there.)
#[test]
fn indirect_jumps_stay_in_the_region() {
    let turns = 2000;
    let mut reference = bytecode_engine(turns, Accel::Interp);
    assert_eq!(reference.run(1 << 30), Exit::Halted);
    let want = outcome(&reference);
    let dispatches = 6 * turns as u64;
    assert!(reference.stats.blocks_run > dispatches);
    for accel in &TIERS[1..] {
        let mut e = bytecode_engine(turns, *accel);
        assert_eq!(e.run(1 << 30), Exit::Halted);
        assert!(outcome(&e) == want, "{accel:?}: result differs");
        assert_eq!(e.stats.compile_failures, 0);
        if *accel == (Accel::Jit { threshold: 0 }) {
            continue;
        }
        assert!(
            e.stats.blocks_run < dispatches / 10,
            "{accel:?}: {} blocks entered for {dispatches} dispatches",
            e.stats.blocks_run
        );
    }
}

/// The bytecode loop sliced at every budget from 1 to 200 ends as the
/// unsliced interpreter run, each slice exactly at its budget.
#[test]
fn indirect_jumps_budget_slices_match() {
    let turns = 40;
    let mut reference = bytecode_engine(turns, Accel::Interp);
    assert_eq!(reference.run(1 << 30), Exit::Halted);
    let want = outcome(&reference);
    for threshold in [0, 2] {
        let accel = Accel::Jit { threshold };
        for budget in 1..=200u64 {
            let mut e = bytecode_engine(turns, accel);
            loop {
                let before = e.cpu().icount;
                match e.run(budget) {
                    Exit::BudgetExhausted => {
                        assert_eq!(e.cpu().icount - before, budget, "{accel:?} budget {budget}")
                    }
                    Exit::Halted => break,
                    x => panic!("{accel:?} budget {budget}: unexpected exit {x:?}"),
                }
            }
            assert!(outcome(&e) == want, "{accel:?} budget {budget}: differs");
        }
    }
}

/// A loop of two blocks (`top`, `mid`) that becomes one region, entered
/// afterwards at `mid` through an indirect jump from code outside it
/// (compiled after the region, so not in it). With `patch`, that outside
/// code rewrites the immediate of `top`'s ADD on turn 10, while the region
/// holding `top` is alive and entered at its interior block `mid`.
fn member_entry_guest(patch: bool) -> Vec<u8> {
    assemble(|a| {
        let mut top = a.create_label();
        let mut mid = a.create_label();
        let mut skip = a.create_label();
        let mut done = a.create_label();
        a.mov(ecx, 30u32)?;
        a.xor(eax, eax)?;
        a.lea(rbx, ptr(mid))?;
        a.lea(rdi, ptr(top))?;
        a.mov(r11d, 20u32)?;
        a.jmp(top)?; // `top` starts a block: the loop's region is headed there
        a.set_label(&mut top)?;
        a.add(rax, 7)?; // 48 83 c0 07: the immediate is byte 3
        a.jmp(mid)?;
        a.set_label(&mut mid)?;
        a.imul_3(rax, rax, 3)?;
        a.xor(rax, rcx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.dec(r11d)?;
        a.jz(done)?;
        a.mov(ecx, 5u32)?;
        if patch {
            a.cmp(r11d, 10)?;
            a.jne(skip)?;
            a.mov(byte_ptr(rdi + 3), 9)?;
        }
        a.set_label(&mut skip)?;
        a.jmp(rbx)?;
        a.set_label(&mut done)?;
        a.hlt()
    })
}

/// A block compiled into an earlier region is entered there (not made the
/// head of a region copying it), with the interpreter's result.
#[test]
fn a_region_is_entered_at_an_interior_block() {
    for patch in [false, true] {
        let code = member_entry_guest(patch);
        let mut reference = engine(&code, Accel::Interp);
        assert_eq!(reference.run(1 << 20), Exit::Halted);
        let want = outcome(&reference);
        for accel in &TIERS[1..] {
            let mut e = engine(&code, *accel);
            assert_eq!(e.run(1 << 20), Exit::Halted);
            assert!(
                outcome(&e) == want,
                "{accel:?} patch {patch}: result differs"
            );
            assert_eq!(e.stats.compile_failures, 0);
            if *accel != (Accel::Jit { threshold: 0 }) {
                // 19 turns enter `mid` from outside; after the patch the
                // region is rebuilt and entered at `mid` again.
                assert!(
                    e.stats.member_entries >= 10,
                    "{accel:?} patch {patch}: {} member entries",
                    e.stats.member_entries
                );
            }
        }
    }
}

/// The same guests sliced at every budget from 1 to 200: each slice ends
/// exactly at its budget, entries at members included (a member's budget
/// check refuses an entry the budget does not cover), and the end state is
/// the unsliced interpreter's, code write included.
#[test]
fn member_entries_budget_slices_match() {
    for patch in [false, true] {
        let code = member_entry_guest(patch);
        let mut reference = engine(&code, Accel::Interp);
        assert_eq!(reference.run(1 << 20), Exit::Halted);
        let want = outcome(&reference);
        for threshold in [1, 2] {
            let accel = Accel::Jit { threshold };
            let mut members = 0;
            for budget in 1..=200u64 {
                let mut e = engine(&code, accel);
                loop {
                    let before = e.cpu().icount;
                    match e.run(budget) {
                        Exit::BudgetExhausted => {
                            assert_eq!(e.cpu().icount - before, budget, "{accel:?} budget {budget}")
                        }
                        Exit::Halted => break,
                        x => panic!("{accel:?} budget {budget}: unexpected exit {x:?}"),
                    }
                }
                assert!(
                    outcome(&e) == want,
                    "{accel:?} patch {patch} budget {budget}: differs"
                );
                members += e.stats.member_entries;
            }
            assert!(members > 0, "{accel:?} patch {patch}: no member entry");
        }
    }
}

/// Where a budget slice ends inside a block, the next slice starts a block
/// there; one entered only that way is interpreted, not compiled (nor made
/// the head of a region): with a budget cutting the loop at changing
/// places, the regions compiled are those of an unsliced run, give or take
/// one, and the result is the same.
#[test]
fn slice_cut_blocks_are_not_region_heads() {
    let code = member_entry_guest(false);
    let accel = Accel::Jit { threshold: 2 };
    let mut unsliced = engine(&code, accel);
    assert_eq!(unsliced.run(1 << 20), Exit::Halted);
    let mut e = engine(&code, accel);
    while e.run(7) != Exit::Halted {}
    assert!(outcome(&e) == outcome(&unsliced));
    assert!(
        e.stats.blocks_compiled <= unsliced.stats.blocks_compiled + 1,
        "{} regions sliced, {} unsliced",
        e.stats.blocks_compiled,
        unsliced.stats.blocks_compiled
    );
}

/// Run `code` under the interpreter and under `accel`, both to HLT; the JIT
/// run must end in the same state. Returns the JIT engine.
fn same_as_interp(code: &[u8], accel: Accel) -> Engine {
    let mut reference = engine(code, Accel::Interp);
    assert_eq!(reference.run(1 << 22), Exit::Halted);
    let mut e = engine(code, accel);
    assert_eq!(e.run(1 << 22), Exit::Halted);
    assert_eq!(outcome(&e), outcome(&reference));
    e
}

/// A loop of one block (its branch goes to its own start) is a region: its
/// edge is a jump, so the engine enters the code about once, not once per
/// iteration; and budget slices still end exactly where the interpreter's do.
#[test]
fn a_one_block_loop_stays_in_its_region() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 1000u32)?;
        a.mov(r8, DATA)?;
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.mov(qword_ptr(r8 + rcx * 8), rax)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    for accel in [Accel::Jit { threshold: 0 }, Accel::Jit { threshold: 2 }] {
        let e = same_as_interp(&code, accel);
        assert!(
            e.stats.compiled_runs < 10,
            "{accel:?}: compiled code entered {} times for 1000 iterations",
            e.stats.compiled_runs
        );
    }
    let mut reference = engine(&code, Accel::Interp);
    assert_eq!(reference.run(1 << 22), Exit::Halted);
    for budget in [1, 2, 3, 5, 7, 64] {
        let mut e = engine(&code, Accel::Jit { threshold: 1 });
        let mut before = e.cpu().icount;
        loop {
            match e.run(budget) {
                Exit::Halted => break,
                Exit::BudgetExhausted => {
                    assert_eq!(e.cpu().icount - before, budget, "slice of {budget}");
                    before = e.cpu().icount;
                }
                x => panic!("budget {budget}: unexpected exit {x:?}"),
            }
        }
        assert_eq!(outcome(&e), outcome(&reference), "budget {budget}");
    }
}

/// A loop body of 12 tests, each skipping an increment: 26 blocks that all
/// run, more than the old limit of 16 blocks per region. The region holds
/// the whole loop, so the engine enters compiled code a few times, not at
/// every turn.
#[test]
fn a_loop_of_26_blocks_stays_in_one_region() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 1000u32)?;
        a.set_label(&mut top)?;
        a.imul_3(eax, ecx, 0x9e37_79b1u32 as i32)?;
        for bit in 0..12 {
            let mut skip = a.create_label();
            a.test(eax, 1 << (bit + 8))?;
            a.jz(skip)?;
            a.add(rbx, bit + 1)?;
            a.set_label(&mut skip)?;
        }
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    let e = same_as_interp(&code, Accel::Jit { threshold: 2 });
    assert!(
        e.stats.compiled_runs < 50,
        "compiled code entered {} times for 1000 iterations",
        e.stats.compiled_runs
    );
    assert_eq!(e.stats.compile_failures, 0);
}

/// Registers written in one member block only (R9, R10 and XMM1 in the
/// loop head) must reach `CpuState` at every later exit of the region: the budget
/// check of each later member, the exit after an MMIO store (`exit_req`)
/// and the exits of the loop edge. The interpreter and the JIT run in the
/// same budget slices and are compared after every return of `run`, so an
/// exit that forgets a register fails even where the guest never reads it
/// again.
#[test]
fn exits_store_registers_written_in_earlier_members() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        let mut even = a.create_label();
        let mut join = a.create_label();
        a.mov(ecx, 24u32)?;
        a.mov(r8, DATA)?;
        a.mov(rdi, MMIO)?;
        a.set_label(&mut top)?;
        a.lea(r9, qword_ptr(rcx * 4 + 7))?;
        a.mov(r10, r9)?;
        a.xor(r10, 0x55)?;
        a.movq(xmm1, r9)?;
        a.paddq(xmm1, xmm1)?;
        a.test(ecx, 1)?;
        a.jz(even)?;
        a.add(rax, rcx)?;
        a.mov(qword_ptr(r8 + rcx * 8), rax)?;
        a.jmp(join)?;
        a.set_label(&mut even)?;
        a.add(rbx, rcx)?;
        a.set_label(&mut join)?;
        a.mov(dword_ptr(rdi), ecx)?;
        a.add(rdx, qword_ptr(r8 + 8))?;
        a.paddq(xmm2, xmm0)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    let new = |accel: Accel| {
        let mut mem = GuestMemory::new(RAM).unwrap();
        mem.add_mmio(GuestPhysAddr(MMIO), 0x1000).unwrap();
        let mut e = Engine::with_memory(mem, Box::new(Mmio(Default::default())));
        e.config.accel = accel;
        e.mem_mut().write_phys(GuestPhysAddr(CODE), &code).unwrap();
        flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
        e
    };
    for accel in [Accel::Jit { threshold: 0 }, Accel::Jit { threshold: 2 }] {
        let mut compiled = 0;
        for budget in (1..=40).chain([1 << 20]) {
            let (mut want, mut got) = (new(Accel::Interp), new(accel));
            for turn in 0.. {
                let (w, g) = (want.run(budget), got.run(budget));
                assert_eq!(g, w, "{accel:?} budget {budget} run {turn}");
                let (wo, go) = (outcome(&want), outcome(&got));
                assert_eq!(
                    got.cpu().xmm,
                    want.cpu().xmm,
                    "{accel:?} budget {budget} run {turn}"
                );
                assert!(
                    go == wo,
                    "{accel:?} budget {budget} run {turn}: icount {} vs {}, rip {:#x} vs {:#x}, \
                     regs {:x?} vs {:x?}",
                    go.0,
                    wo.0,
                    go.2,
                    wo.2,
                    go.1,
                    wo.1
                );
                if w == Exit::Halted {
                    break;
                }
            }
            compiled += got.stats.compiled_insns;
            assert!(got.stats.region_blocks > got.stats.blocks_compiled || budget < 4);
        }
        assert!(
            compiled > 1000,
            "{accel:?}: compiled code ran ({compiled} insns)"
        );
    }
}
