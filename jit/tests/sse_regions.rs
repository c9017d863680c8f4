//! SSE2 code in compiled regions against the interpreter: a guest of SSE
//! loops (a MOVDQA memset, a MOVDQU → MOVDQA copy from a misaligned
//! source, a PADDQ/PSLLQ/PXOR checksum, a lane-arithmetic pass with
//! PUNPCKL*/PSHUFD/PADDB/PSUBW/PCMPEQB/PSRAD/PSLLDQ, MOVD/MOVQ to and from
//! GPRs and a helper (PACKUSWB) in the middle) must end in the same XMM
//! registers, GPRs, memory and instruction count under every tier, and
//! under every budget slicing from 1 to 150 (each slice exactly at its
//! budget): XMM values kept in variables inside compiled code are stored
//! at every exit. And the hot forms really are inlined: a checksum block
//! calls nothing but the slow paths of its two 16-byte loads.

use cjemu_jit::block::BlockCache;
use cjemu_jit::cranelift::Jit;
use cjemu_jit::interp::Interp;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, NoIo};
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::{Accel, Engine, Exit};
use iced_x86::code_asm::*;

const TIERS: [Accel; 3] = [
    Accel::Jit { threshold: 0 },
    Accel::Jit { threshold: 1 },
    Accel::Jit { threshold: 2 },
];

const RAM: u64 = 4 << 20;
const CODE: u64 = 0x1000;
const TABLES: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STACK: u64 = 0x30_0000;
/// Bytes of the buffers the loops work on.
const LEN: u32 = 0x200;

fn engine(code: &[u8], accel: Accel) -> Engine {
    let mut e = Engine::new(RAM).unwrap();
    e.config.accel = accel;
    e.mem_mut().write_phys(GuestPhysAddr(CODE), code).unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), CODE, STACK).unwrap();
    // Some starting values, different in every lane.
    for (n, x) in e.cpu_mut().xmm.iter_mut().enumerate() {
        *x = (n as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834);
    }
    e
}

/// The guest: three passes over the loops below, then HLT.
fn sse_guest() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let r: Result<(), IcedError> = (|| {
        let mut pass = a.create_label();
        let mut fill = a.create_label();
        let mut copy = a.create_label();
        let mut sum = a.create_label();
        let mut lanes = a.create_label();
        a.mov(r8, DATA)?; // source buffer
        a.mov(r9, DATA + 0x400)?; // destination buffer
        a.mov(r10d, 3u32)?;
        a.set_label(&mut pass)?;
        // set1_epi8(pass * 37 + 1)
        a.imul_3(eax, r10d, 37)?;
        a.inc(eax)?;
        a.movd(xmm0, eax)?;
        a.punpcklbw(xmm0, xmm0)?;
        a.punpcklwd(xmm0, xmm0)?;
        a.pshufd(xmm0, xmm0, 0)?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut fill)?;
        a.movdqa(xmmword_ptr(r8 + rcx), xmm0)?;
        a.movaps(xmmword_ptr(r8 + rcx + 16), xmm0)?;
        a.add(ecx, 32)?;
        a.cmp(ecx, LEN + 32)?;
        a.jne(fill)?;
        // A ramp in the first bytes, from a GPR.
        a.mov(rax, 0x0706_0504_0302_0100u64)?;
        a.movq(xmm1, rax)?;
        a.movq(qword_ptr(r8 + 8), xmm1)?;
        // Copy from source + pass (misaligned for passes 1 and 3).
        a.lea(rsi, qword_ptr(r8 + r10))?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut copy)?;
        a.movdqu(xmm2, xmmword_ptr(rsi + rcx))?;
        a.movdqu(xmm3, xmmword_ptr(rsi + rcx + 16))?;
        a.movdqa(xmmword_ptr(r9 + rcx), xmm2)?;
        a.movntdq(xmmword_ptr(r9 + rcx + 16), xmm3)?;
        a.add(ecx, 32)?;
        a.cmp(ecx, LEN)?;
        a.jne(copy)?;
        // Checksum.
        a.pxor(xmm4, xmm4)?;
        a.pxor(xmm5, xmm5)?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut sum)?;
        a.movdqa(xmm6, xmmword_ptr(r9 + rcx))?;
        a.paddq(xmm4, xmmword_ptr(r9 + rcx))?;
        a.psllq(xmm6, 1)?;
        a.pxor(xmm5, xmm6)?;
        a.add(ecx, 16)?;
        a.cmp(ecx, LEN)?;
        a.jne(sum)?;
        a.movdqa(xmm7, xmm4)?;
        a.punpckhqdq(xmm7, xmm7)?;
        a.paddq(xmm4, xmm7)?;
        a.movq(rax, xmm4)?;
        a.add(r11, rax)?;
        // Lane arithmetic on the destination, with a helper in between.
        a.xor(ecx, ecx)?;
        a.set_label(&mut lanes)?;
        a.movdqa(xmm8, xmmword_ptr(r9 + rcx))?;
        a.movdqa(xmm9, xmm8)?;
        a.punpcklbw(xmm9, xmm5)?;
        a.punpckhwd(xmm8, xmm4)?;
        a.paddb(xmm8, xmm9)?;
        a.psubw(xmm9, xmm0)?;
        a.pcmpeqb(xmm9, xmm8)?;
        a.psrad(xmm8, 3)?;
        a.packuswb(xmm8, xmm9)?;
        a.pslldq(xmm9, 5)?;
        a.por(xmm8, xmm9)?;
        a.pshuflw(xmm8, xmm8, 0x1b)?;
        a.movdqu(xmmword_ptr(r9 + rcx + 3), xmm8)?;
        a.pextrw(edx, xmm8, 5)?;
        a.add(r12, rdx)?;
        a.add(ecx, 32)?;
        a.cmp(ecx, LEN - 32)?;
        a.jne(lanes)?;
        a.dec(r10d)?;
        a.jnz(pass)?;
        a.hlt()
    })();
    r.unwrap();
    a.assemble(CODE).unwrap()
}

type Outcome = (u64, [u64; 16], u64, [u128; 16], Vec<u8>);

/// What the comparison looks at.
fn outcome(e: &Engine) -> Outcome {
    let c = e.cpu();
    let mut data = vec![0; 0x800];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut data).unwrap();
    (c.icount, c.gpr, c.rip, c.xmm, data)
}

fn reference() -> Outcome {
    let mut e = engine(&sse_guest(), Accel::Interp);
    assert_eq!(e.run(1 << 30), Exit::Halted);
    let want = outcome(&e);
    assert!(want.0 > 500, "the guest runs a while: {}", want.0);
    want
}

#[test]
fn sse_loops_end_alike_under_every_tier() {
    let want = reference();
    for accel in TIERS {
        let mut e = engine(&sse_guest(), accel);
        assert_eq!(e.run(1 << 30), Exit::Halted);
        let got = outcome(&e);
        assert_eq!(got.0, want.0, "{accel:?}: icount");
        assert_eq!(got.1, want.1, "{accel:?}: GPRs");
        assert_eq!(got.3, want.3, "{accel:?}: XMM registers");
        assert!(got.4 == want.4, "{accel:?}: memory");
        assert!(
            e.stats.compiled_insns > want.0 / 2,
            "{accel:?} ran compiled"
        );
    }
}

#[test]
fn sse_loops_sliced_at_budgets_1_to_150_match_an_unsliced_run() {
    let want = reference();
    let code = sse_guest();
    for threshold in [0, 2] {
        let accel = Accel::Jit { threshold };
        for budget in 1..=150u64 {
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
                "{accel:?} budget {budget}: icount {} vs {}, GPRs equal {}, XMM equal {}, \
                 memory equal {}",
                got.0,
                want.0,
                got.1 == want.1,
                got.3 == want.3,
                got.4 == want.4
            );
        }
    }
}

#[test]
fn checksum_block_is_inlined() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.movdqa(xmm0, xmmword_ptr(rax)).unwrap();
    a.paddq(xmm2, xmmword_ptr(rax)).unwrap();
    a.add(rax, 16).unwrap();
    a.psllq(xmm0, 1).unwrap();
    a.pxor(xmm1, xmm0).unwrap();
    a.punpckhqdq(xmm3, xmm1).unwrap();
    a.movq(rdx, xmm3).unwrap();
    a.cmp(rax, rcx).unwrap();
    a.jne(top).unwrap();
    let code = a.assemble(CODE).unwrap();
    let e = engine(&code, Accel::Interp);
    let mut mem = GuestMemory::new(RAM).unwrap();
    mem.write_phys(GuestPhysAddr(0), e.mem().ram()).unwrap();
    let mut mach = Interp::new(Box::new(e.cpu().clone()), mem, Box::new(NoIo));
    let block = BlockCache::new().get(&mut mach).expect("block decodes");
    assert_eq!(block.insns.len(), 9);
    let clif = Jit::new().unwrap().clif(&block).unwrap();
    // Two slow paths per 16-byte load (its halves), nothing else: no call
    // of the per-instruction interpreter helper.
    assert_eq!(clif.matches("call_indirect").count(), 4, "{clif}");
    // One SSE availability check for the block: CR0 and CR4 read once.
    let cr0_at = core::mem::offset_of!(cjemu_jit::state::CpuState, cr0);
    let cr0_loads = clif
        .lines()
        .filter(|l| l.contains("load.i64") && l.ends_with(&format!("+{cr0_at}")))
        .count();
    assert_eq!(cr0_loads, 1, "{clif}");
}

/// Run the SSE guest for `stop` instructions, then set CR0.TS and run on
/// until the #NM of the next SSE instruction (exceptions exit the run).
fn nm_after(accel: Accel, stop: u64) -> (Exit, Outcome, u64) {
    let mut e = engine(&sse_guest(), accel);
    assert_eq!(e.run(stop), Exit::BudgetExhausted, "{accel:?} stop {stop}");
    let compiled = e.stats.compiled_runs;
    e.cpu_mut().cr0 |= cjemu_jit::state::cr0::TS;
    e.config.exceptions_exit = true;
    let exit = e.run(1 << 30);
    (exit, outcome(&e), compiled)
}

/// A compiled region with SSE code checks SSE availability once at its
/// entry: with CR0.TS set it is not entered (at its head or at a member,
/// whose charged count is given back) and the interpreter raises #NM at
/// the SSE instruction itself, with the count and state of an interpreted
/// run.
#[test]
fn sse_regions_are_not_entered_with_cr0_ts_set() {
    let n = reference().0;
    for stop in [40, 97, 250, n / 3, n / 2 + 7, 2 * n / 3 + 3, n - 60] {
        let (want_exit, want, _) = nm_after(Accel::Interp, stop);
        assert_eq!(
            want_exit,
            Exit::Exception(cjemu_jit::Exception::nm()),
            "stop {stop}"
        );
        for accel in TIERS {
            let (exit, got, compiled) = nm_after(accel, stop);
            assert_eq!(exit, want_exit, "{accel:?} stop {stop}");
            assert!(
                got == want,
                "{accel:?} stop {stop}: icount {} vs {}",
                got.0,
                want.0
            );
            if stop >= n / 3 {
                assert!(compiled > 0, "{accel:?} stop {stop}: ran compiled before");
            }
        }
    }
}
