//! Integration tests for the stack (PUSHF/POPF/ENTER/LEAVE), flag,
//! atomic, string and miscellaneous instruction families, run through the
//! engine in flat 64-bit mode. Expected values come from the Intel SDM and,
//! for corner cases, from running the same instructions on the host CPU.

mod common;

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::{Engine, Exception, Exit, Gpr};
use iced_x86::code_asm::*;

const CODE: u64 = 0x1000;
const TABLES: u64 = 0x8000;
const STACK: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const IF: u64 = 1 << 9;
const DF: u64 = 1 << 10;
const OF: u64 = 1 << 11;
const IOPL: u64 = 3 << 12;

type Asm = Result<(), IcedError>;

/// Assemble `f` at CODE, followed by HLT.
fn asm(f: impl FnOnce(&mut CodeAssembler) -> Asm) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE).unwrap()
}

/// An engine in flat 64-bit mode with `code` at CODE; exceptions exit.
fn machine(code: &[u8]) -> Engine {
    common::flat_engine(code, CODE, TABLES, STACK)
}

fn poke(e: &mut Engine, addr: u64, bytes: &[u8]) {
    e.mem_mut().write_phys(GuestPhysAddr(addr), bytes).unwrap();
}

fn peek(e: &Engine, addr: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    e.mem().read_phys(GuestPhysAddr(addr), &mut v).unwrap();
    v
}

fn peek_q(e: &Engine, addr: u64) -> u64 {
    u64::from_le_bytes(peek(e, addr, 8).try_into().unwrap())
}

fn reg(e: &Engine, r: Gpr) -> u64 {
    e.cpu().reg(r)
}

fn set(e: &mut Engine, r: Gpr, v: u64) {
    e.cpu_mut().set_reg(r, v);
}

fn run_halt(e: &mut Engine) {
    assert_eq!(e.run(1_000_000), Exit::Halted);
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------- strings

/// REP MOVSB across page boundaries on both sides (fast and slow paths).
#[test]
fn rep_movsb_forward_crosses_pages() {
    let mut e = machine(&asm(|a| a.rep().movsb()));
    let (src, dst, n) = (DATA + 0xf80, DATA + 0x3f10, 300u64);
    let data = pattern(n as usize + 16, 3);
    poke(&mut e, src, &data);
    set(&mut e, Gpr::Rsi, src);
    set(&mut e, Gpr::Rdi, dst);
    set(&mut e, Gpr::Rcx, n);
    run_halt(&mut e);
    assert_eq!(peek(&e, dst, n as usize), data[..n as usize]);
    assert_eq!(peek(&e, dst + n, 4), [0; 4], "nothing written past the end");
    assert_eq!(reg(&e, Gpr::Rcx), 0);
    assert_eq!(reg(&e, Gpr::Rsi), src + n);
    assert_eq!(reg(&e, Gpr::Rdi), dst + n);
    assert_eq!(e.cpu().icount, n + 1, "one per iteration, plus HLT");
}

/// STD; REP MOVSQ copies from the top down and leaves RSI/RDI one element
/// below the block.
#[test]
fn rep_movsq_backward() {
    let mut e = machine(&asm(|a| {
        a.std()?;
        a.rep().movsq()?;
        a.cld()
    }));
    let (src, dst, n) = (DATA + 0x100, DATA + 0x2000, 40u64);
    let data = pattern(8 * n as usize, 11);
    poke(&mut e, src, &data);
    set(&mut e, Gpr::Rsi, src + 8 * (n - 1));
    set(&mut e, Gpr::Rdi, dst + 8 * (n - 1));
    set(&mut e, Gpr::Rcx, n);
    run_halt(&mut e);
    assert_eq!(peek(&e, dst, 8 * n as usize), data);
    assert_eq!(reg(&e, Gpr::Rsi), src - 8);
    assert_eq!(reg(&e, Gpr::Rdi), dst - 8);
    assert_eq!(reg(&e, Gpr::Rcx), 0);
    assert_eq!(e.cpu().icount, n + 3);
}

/// Overlapping forward copies behave as element-by-element copies (checked
/// on the host: the pattern repeats), including an 8-byte element that
/// overlaps its own destination.
#[test]
fn rep_movs_overlap_is_sequential() {
    let mut e = machine(&asm(|a| a.rep().movsb()));
    poke(&mut e, DATA, &(0..64).collect::<Vec<u8>>());
    set(&mut e, Gpr::Rsi, DATA);
    set(&mut e, Gpr::Rdi, DATA + 3);
    set(&mut e, Gpr::Rcx, 20);
    run_halt(&mut e);
    let got = peek(&e, DATA, 24);
    let want: Vec<u8> = (0..23).map(|i| (i % 3) as u8).chain([23]).collect();
    assert_eq!(got, want);

    let mut e = machine(&asm(|a| a.rep().movsq()));
    poke(&mut e, DATA, &(0..64).collect::<Vec<u8>>());
    set(&mut e, Gpr::Rsi, DATA);
    set(&mut e, Gpr::Rdi, DATA + 1);
    set(&mut e, Gpr::Rcx, 3);
    run_halt(&mut e);
    // Host result of the same REP MOVSQ.
    let want = [
        0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 9, 10, 11, 12, 13, 14, 15, 15, 17, 18, 19, 20, 21, 22, 23,
        25, 26, 27,
    ];
    assert_eq!(peek(&e, DATA, 28), want);
}

/// REP STOS in every width: the low bytes of RAX repeated, nothing past.
#[test]
fn rep_stos_all_widths() {
    for w in [1usize, 2, 4, 8] {
        let code = asm(|a| match w {
            1 => a.rep().stosb(),
            2 => a.rep().stosw(),
            4 => a.rep().stosd(),
            _ => a.rep().stosq(),
        });
        let mut e = machine(&code);
        let val = 0x1122_3344_5566_77a5u64;
        let n = 1000 / w as u64;
        let dst = DATA + 0xff8;
        set(&mut e, Gpr::Rax, val);
        set(&mut e, Gpr::Rdi, dst);
        set(&mut e, Gpr::Rcx, n);
        run_halt(&mut e);
        let got = peek(&e, dst, n as usize * w + 8);
        for j in 0..n as usize {
            assert_eq!(got[j * w..j * w + w], val.to_le_bytes()[..w], "w={w} j={j}");
        }
        assert_eq!(got[n as usize * w..], [0; 8], "w={w}: nothing past the end");
        assert_eq!(reg(&e, Gpr::Rdi), dst + n * w as u64);
        assert_eq!(reg(&e, Gpr::Rcx), 0);
        assert_eq!(reg(&e, Gpr::Rax), val);
        assert_eq!(e.cpu().icount, n + 1);
    }
}

/// REPE CMPSB stops at the first difference: RCX/RSI/RDI count the
/// compared pair, the flags are those of CMP on it.
#[test]
fn repe_cmpsb_stops_at_first_difference() {
    let mut e = machine(&asm(|a| a.repe().cmpsb()));
    let (s, d) = (DATA, DATA + 0x800);
    poke(&mut e, s, b"abcde\x10xyz!");
    poke(&mut e, d, b"abcde\x20xyz!");
    set(&mut e, Gpr::Rsi, s);
    set(&mut e, Gpr::Rdi, d);
    set(&mut e, Gpr::Rcx, 10);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rcx), 4);
    assert_eq!(reg(&e, Gpr::Rsi), s + 6);
    assert_eq!(reg(&e, Gpr::Rdi), d + 6);
    let f = e.cpu().rflags();
    // 0x10 - 0x20 = 0xf0: borrow, negative, no overflow, not zero; AF:
    // low nibbles 0 - 0 borrow none; PF: 0xf0 has four ones (even).
    assert_eq!(f & (CF | ZF | SF | OF | AF | PF), CF | SF | PF);
    assert_eq!(e.cpu().icount, 6 + 1);
}

/// REPE CMPS over equal buffers runs to RCX = 0 with ZF set.
#[test]
fn repe_cmpsq_equal_runs_out() {
    let mut e = machine(&asm(|a| a.repe().cmpsq()));
    let data = pattern(64, 5);
    poke(&mut e, DATA, &data);
    poke(&mut e, DATA + 0x100, &data);
    set(&mut e, Gpr::Rsi, DATA);
    set(&mut e, Gpr::Rdi, DATA + 0x100);
    set(&mut e, Gpr::Rcx, 8);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rcx), 0);
    assert_eq!(reg(&e, Gpr::Rsi), DATA + 64);
    assert_ne!(e.cpu().rflags() & ZF, 0);
    assert_eq!(e.cpu().icount, 9);
}

/// REPNE SCASB as strlen: stops on the matching byte with ZF = 1.
#[test]
fn repne_scasb_finds_byte() {
    let mut e = machine(&asm(|a| a.repne().scasb()));
    poke(&mut e, DATA, b"hello\0world\0");
    set(&mut e, Gpr::Rax, 0xffff_ff00); // AL = 0
    set(&mut e, Gpr::Rdi, DATA);
    set(&mut e, Gpr::Rcx, u64::MAX);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rdi), DATA + 6);
    assert_eq!(reg(&e, Gpr::Rcx), u64::MAX - 6);
    assert_eq!(!reg(&e, Gpr::Rcx) - 1, 5, "strlen idiom");
    let f = e.cpu().rflags();
    assert_eq!(f & (ZF | CF), ZF);
    assert_eq!(e.cpu().icount, 7);
}

/// REPNE SCASW that never matches runs out of count with ZF = 0.
#[test]
fn repne_scasw_no_match() {
    let mut e = machine(&asm(|a| a.repne().scasw()));
    poke(&mut e, DATA, &[1, 0, 2, 0, 3, 0]);
    set(&mut e, Gpr::Rax, 9);
    set(&mut e, Gpr::Rdi, DATA);
    set(&mut e, Gpr::Rcx, 3);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rcx), 0);
    assert_eq!(reg(&e, Gpr::Rdi), DATA + 6);
    // Last compare: 9 - 3 = 6.
    assert_eq!(e.cpu().rflags() & (ZF | CF | SF), 0);
}

/// REP with RCX = 0: nothing happens, it counts 1.
#[test]
fn rep_with_zero_count() {
    let mut e = machine(&asm(|a| a.rep().movsb()));
    poke(&mut e, DATA, &[0x77; 4]);
    set(&mut e, Gpr::Rsi, DATA);
    set(&mut e, Gpr::Rdi, DATA + 0x100);
    set(&mut e, Gpr::Rcx, 0);
    e.cpu_mut().set_rflags(0x2 | CF);
    run_halt(&mut e);
    assert_eq!(peek(&e, DATA + 0x100, 4), [0; 4]);
    assert_eq!(reg(&e, Gpr::Rsi), DATA);
    assert_eq!(reg(&e, Gpr::Rdi), DATA + 0x100);
    assert_eq!(e.cpu().icount, 2, "REP with RCX=0 counts 1, HLT 1");
    // REPE CMPS with RCX = 0 leaves the flags alone.
    let mut e = machine(&asm(|a| a.repe().cmpsb()));
    e.cpu_mut().set_rflags(0x2 | CF);
    run_halt(&mut e);
    assert_eq!(e.cpu().rflags() & (CF | ZF), CF);
}

/// The count of a REP is its iteration count.
#[test]
fn rep_icount_is_iterations() {
    let mut e = machine(&asm(|a| {
        a.mov(rcx, 5u64)?;
        a.rep().stosb()?;
        a.nop()
    }));
    set(&mut e, Gpr::Rdi, DATA);
    run_halt(&mut e);
    assert_eq!(e.cpu().icount, 1 + 5 + 1 + 1);
}

/// A budget that ends inside a REP stops between iterations with RIP on
/// the instruction; the rest runs later and the total equals one run.
#[test]
fn rep_interrupted_by_budget_resumes() {
    let code = asm(|a| a.rep().movsb());
    let setup = |e: &mut Engine| {
        poke(e, DATA, &pattern(10, 1));
        set(e, Gpr::Rsi, DATA);
        set(e, Gpr::Rdi, DATA + 0x40);
        set(e, Gpr::Rcx, 10);
    };
    let mut whole = machine(&code);
    setup(&mut whole);
    run_halt(&mut whole);

    let mut e = machine(&code);
    setup(&mut e);
    assert_eq!(e.run(3), Exit::BudgetExhausted);
    assert_eq!(e.cpu().icount, 3);
    assert_eq!(reg(&e, Gpr::Rcx), 7);
    assert_eq!(reg(&e, Gpr::Rsi), DATA + 3);
    assert_eq!(reg(&e, Gpr::Rdi), DATA + 0x43);
    assert_eq!(e.cpu().rip, CODE);
    assert_eq!(
        peek(&e, DATA + 0x40, 4),
        [pattern(10, 1)[..3].to_vec(), vec![0]].concat()
    );
    run_halt(&mut e);
    assert_eq!(e.cpu().icount, whole.cpu().icount);
    assert_eq!(e.cpu().icount, 11);
    assert_eq!(peek(&e, DATA + 0x40, 10), peek(&whole, DATA + 0x40, 10));
    assert_eq!(e.cpu().gpr, whole.cpu().gpr);
}

/// Slicing a long REP MOVSQ / REPE CMPSB into budgets of every small size
/// gives the same state and count as one run.
#[test]
fn rep_sliced_every_way_matches_whole() {
    let progs: [fn(&mut CodeAssembler) -> Asm; 2] = [
        |a| {
            a.rep().movsq()?;
            a.mov(rcx, 9u64)?;
            a.rep().stosb()
        },
        |a| a.repe().cmpsb(),
    ];
    for p in progs {
        let code = asm(p);
        let setup = |e: &mut Engine| {
            let d = pattern(600, 9);
            poke(e, DATA + 0xf00, &d);
            poke(e, DATA + 0x3000, &d[..50]);
            set(e, Gpr::Rsi, DATA + 0xf00);
            set(e, Gpr::Rdi, DATA + 0x3000);
            set(e, Gpr::Rcx, 70);
        };
        let mut whole = machine(&code);
        setup(&mut whole);
        run_halt(&mut whole);
        for slice in [1u64, 2, 3, 7, 64] {
            let mut e = machine(&code);
            setup(&mut e);
            let mut runs = 0;
            loop {
                let before = e.cpu().icount;
                match e.run(slice) {
                    Exit::BudgetExhausted => assert_eq!(e.cpu().icount, before + slice),
                    Exit::Halted => break,
                    x => panic!("unexpected exit {x:?}"),
                }
                runs += 1;
                assert!(runs < 10_000);
            }
            assert_eq!(e.cpu().icount, whole.cpu().icount, "slice {slice}");
            assert_eq!(e.cpu().gpr, whole.cpu().gpr, "slice {slice}");
            assert_eq!(e.cpu().rflags(), whole.cpu().rflags(), "slice {slice}");
            assert_eq!(peek(&e, DATA, 0x4000), peek(&whole, DATA, 0x4000));
        }
    }
}

/// Page tables with 4 KiB pages for the first 2 MiB, identity-mapped, with
/// page `absent` not present and page `ro` read-only. Returns CR3.
fn small_pages(e: &mut Engine, absent: u64, ro: u64) -> u64 {
    let (pml4, pdpt, pd, pt) = (0x1_0000u64, 0x1_1000u64, 0x1_2000u64, 0x1_3000u64);
    poke(e, pml4, &(pdpt | 7).to_le_bytes());
    poke(e, pdpt, &(pd | 7).to_le_bytes());
    poke(e, pd, &(pt | 7).to_le_bytes());
    let mut t = Vec::with_capacity(4096);
    for i in 0..512u64 {
        let a = i << 12;
        let pte = if a == absent {
            0
        } else if a == ro {
            a | 5
        } else {
            a | 7
        };
        t.extend_from_slice(&pte.to_le_bytes());
    }
    poke(e, pt, &t);
    e.cpu_mut().cr3 = pml4;
    e.flush_tlb();
    pml4
}

/// A REP MOVSB whose source runs into a not-present page faults in the
/// middle: the done iterations count and show in RCX/RSI/RDI, RIP stays.
#[test]
fn rep_movs_faults_midway() {
    let mut e = machine(&asm(|a| a.rep().movsb()));
    let (absent, ro) = (0x1f_0000u64, 0x1f_1000u64);
    small_pages(&mut e, absent, ro);
    let src = absent - 16;
    let dst = 0x18_0000u64;
    poke(&mut e, src, &pattern(16, 2));
    set(&mut e, Gpr::Rsi, src);
    set(&mut e, Gpr::Rdi, dst);
    set(&mut e, Gpr::Rcx, 32);
    match e.run(1000) {
        Exit::Exception(x) => {
            assert_eq!(x, Exception::pf(absent, 0));
        }
        x => panic!("expected #PF, got {x:?}"),
    }
    assert_eq!(e.cpu().rip, CODE);
    assert_eq!(reg(&e, Gpr::Rcx), 16);
    assert_eq!(reg(&e, Gpr::Rsi), absent);
    assert_eq!(reg(&e, Gpr::Rdi), dst + 16);
    assert_eq!(e.cpu().icount, 16);
    assert_eq!(peek(&e, dst, 17), [pattern(16, 2), vec![0]].concat());

    // A fault on the very first iteration (a write to a read-only page)
    // changes and counts nothing.
    let mut e = machine(&asm(|a| a.rep().stosq()));
    small_pages(&mut e, absent, ro);
    set(&mut e, Gpr::Rdi, ro + 8);
    set(&mut e, Gpr::Rcx, 4);
    match e.run(1000) {
        Exit::Exception(x) => assert_eq!((x.vector, x.address), (14, ro + 8)),
        x => panic!("expected #PF, got {x:?}"),
    }
    assert_eq!((reg(&e, Gpr::Rcx), reg(&e, Gpr::Rdi)), (4, ro + 8));
    assert_eq!(e.cpu().icount, 0);
}

/// With a 67 prefix the string ops use ESI/EDI/ECX: the upper halves are
/// ignored and (when written) cleared; ECX = 0 writes nothing (host).
#[test]
fn addr32_string_ops() {
    // 67 F3 A4: rep movsb with 32-bit addresses; 67 AD: lodsd (addr32).
    let mut code = vec![0x67, 0xf3, 0xa4, 0x67, 0xad];
    code.push(0xf4);
    let mut e = machine(&code);
    poke(&mut e, DATA, &[1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44]);
    set(&mut e, Gpr::Rsi, 0xdead_0000_0000_0000 | DATA);
    set(&mut e, Gpr::Rdi, 0xbeef_0000_0000_0000 | (DATA + 0x100));
    set(&mut e, Gpr::Rcx, 0xffff_ffff_0000_0004);
    set(&mut e, Gpr::Rax, u64::MAX);
    run_halt(&mut e);
    assert_eq!(peek(&e, DATA + 0x100, 5), [1, 2, 3, 4, 0]);
    assert_eq!(reg(&e, Gpr::Rcx), 0);
    assert_eq!(reg(&e, Gpr::Rdi), DATA + 0x104);
    assert_eq!(reg(&e, Gpr::Rsi), DATA + 8);
    assert_eq!(reg(&e, Gpr::Rax), 0x4433_2211, "LODSD zero-extends");
    assert_eq!(e.cpu().icount, 4 + 1 + 1);

    // ECX = 0: RCX keeps its upper half.
    let mut e = machine(&[0x67, 0xf3, 0xa4, 0xf4]);
    set(&mut e, Gpr::Rcx, 0xffff_ffff_0000_0000);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rcx), 0xffff_ffff_0000_0000);

    // 32-bit addresses wrap at 4 GiB: REP STOSB at EDI = 0xffff_ffff goes
    // on at 0. (0xffff_ffff is beyond RAM: that write is dropped, not a
    // fault.)
    let mut e = machine(&[0x67, 0xf3, 0xaa, 0xf4]);
    set(&mut e, Gpr::Rdi, 0xffff_ffff);
    set(&mut e, Gpr::Rcx, 2);
    set(&mut e, Gpr::Rax, 0x5a);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rdi), 1);
    assert_eq!(peek(&e, 0, 2), [0x5a, 0]);
}

/// Non-REP string instructions are single instructions; LODS/SCAS/CMPS in
/// several widths.
#[test]
fn single_string_ops() {
    let mut e = machine(&asm(|a| {
        a.lodsb()?;
        a.lodsw()?;
        a.movsd()?;
        a.cmpsw()?;
        a.scasq()
    }));
    poke(&mut e, DATA, &[0xaa, 0x34, 0x12, 1, 2, 3, 4, 7, 0]);
    poke(&mut e, DATA + 0x100, &[0; 4]);
    poke(&mut e, DATA + 0x104, &[7, 0]);
    poke(&mut e, DATA + 0x106, &5u64.to_le_bytes());
    set(&mut e, Gpr::Rsi, DATA);
    set(&mut e, Gpr::Rdi, DATA + 0x100);
    set(&mut e, Gpr::Rax, 0xffff_ffff_ffff_ffff);
    set(&mut e, Gpr::Rcx, 77);
    run_halt(&mut e);
    assert_eq!(peek(&e, DATA + 0x100, 4), [1, 2, 3, 4]);
    assert_eq!(reg(&e, Gpr::Rax), 0xffff_ffff_ffff_1234);
    assert_eq!(reg(&e, Gpr::Rsi), DATA + 9);
    assert_eq!(reg(&e, Gpr::Rdi), DATA + 0x10e);
    assert_eq!(reg(&e, Gpr::Rcx), 77, "no REP: RCX untouched");
    // SCASQ: RAX - 5 = 0xffff_ffff_ffff_122f: no borrow, negative.
    assert_eq!(e.cpu().rflags() & (CF | ZF | SF), SF);
    assert_eq!(e.cpu().icount, 6);
}

// ------------------------------------------------------------------ stack

/// PUSHFQ pushes the flags; POPFQ restores them.
#[test]
fn pushf_popf_round_trip() {
    let mut e = machine(&asm(|a| {
        a.stc()?;
        a.std()?;
        a.pushfq()?;
        a.mov(rbx, qword_ptr(rsp))?;
        a.clc()?;
        a.cld()?;
        a.popfq()
    }));
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), 0x2 | CF | DF);
    assert_eq!(e.cpu().rflags() & (CF | DF), CF | DF);
    assert_eq!(reg(&e, Gpr::Rsp), STACK);
    // 16-bit PUSHF/POPF move two bytes.
    let mut e = machine(&asm(|a| {
        a.stc()?;
        a.pushf()?;
        a.mov(rbx, rsp)?;
        a.clc()?;
        a.popf()
    }));
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), STACK - 2);
    assert_eq!(e.cpu().rflags() & CF, CF);
}

/// At CPL 0 POPF may change IF and IOPL; reserved bits stay clear, bit 1
/// set, VM/VIF/VIP/RF unchanged (0).
#[test]
fn popf_at_cpl0_changes_if_and_iopl() {
    let mut e = machine(&asm(|a| {
        a.push(0x3203i32)?;
        a.popfq()?;
        a.pushfq()?;
        a.pop(rbx)?;
        a.mov(rax, !0x100u64)?; // everything but TF
        a.push(rax)?;
        a.popfq()?;
        a.pushfq()?;
        a.pop(rcx)
    }));
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), 0x3203);
    let want = 0x3f_7fd5 & !(0x1b_0000 | 0x100) | 0x2;
    assert_eq!(reg(&e, Gpr::Rcx), want);
    assert_eq!(e.cpu().rflags() & (IF | IOPL), IF | IOPL);
    // 16-bit POPF touches only the low 16 bits (AC stays set).
    let mut e = machine(&asm(|a| {
        a.push(0i32)?;
        a.popf()?;
        a.lea(rsp, ptr(rsp + 6))
    }));
    e.cpu_mut().set_rflags(0x2 | (1 << 18) | CF);
    run_halt(&mut e);
    assert_eq!(e.cpu().rflags(), 0x2 | (1 << 18));
}

/// At CPL 3 with IOPL 0, POPF silently keeps IF and IOPL, and CLI faults.
#[test]
fn popf_at_cpl3_keeps_if_and_iopl() {
    let mut e = machine(&asm(|a| {
        a.push(1i32)?; // CF only: tries to clear IF
        a.popfq()?;
        a.cli()
    }));
    e.cpu_mut().set_rflags(0x2 | IF);
    e.cpu_mut().cpl = 3;
    e.flush_tlb();
    match e.run(100) {
        Exit::Exception(x) => assert_eq!(x, Exception::gp(0)),
        x => panic!("expected #GP from CLI, got {x:?}"),
    }
    assert_eq!(e.cpu().rflags() & (IF | IOPL | CF), IF | CF);
    assert_eq!(e.cpu().rip, CODE + 3, "RIP on the CLI");
    // With IOPL 3, CPL 3 may change IF.
    let mut e = machine(&asm(|a| {
        a.push(0x3001i32)?;
        a.popfq()?;
        a.sti()?;
        a.cli()?;
        a.int3()
    }));
    e.cpu_mut().set_rflags(0x2 | IF | IOPL);
    e.cpu_mut().cpl = 3;
    e.flush_tlb();
    assert_eq!(e.run(2), Exit::BudgetExhausted);
    assert_eq!(
        e.cpu().rflags() & (IF | IOPL),
        IOPL,
        "POPF clears IF at IOPL 3"
    );
    assert_eq!(e.run(1), Exit::BudgetExhausted);
    assert_eq!(e.cpu().rflags() & (IF | IOPL), IF | IOPL, "STI at IOPL 3");
    assert_eq!(e.run(1), Exit::BudgetExhausted);
    assert_eq!(e.cpu().rflags() & IF, 0, "CLI at IOPL 3");
}

/// ENTER 16, 0 then LEAVE.
#[test]
fn enter_level0_and_leave() {
    let mut e = machine(&asm(|a| {
        a.enter(16u32, 0u32)?;
        a.mov(rbx, rsp)?;
        a.mov(rdx, rbp)?;
        a.leave()
    }));
    set(&mut e, Gpr::Rbp, 0xabcd);
    run_halt(&mut e);
    assert_eq!(peek_q(&e, STACK - 8), 0xabcd);
    assert_eq!(reg(&e, Gpr::Rdx), STACK - 8);
    assert_eq!(reg(&e, Gpr::Rbx), STACK - 8 - 16);
    assert_eq!(reg(&e, Gpr::Rsp), STACK);
    assert_eq!(reg(&e, Gpr::Rbp), 0xabcd);
}

/// ENTER 16, 2 copies one enclosing frame pointer and pushes the new one
/// (same layout as on the host).
#[test]
fn enter_level2_and_leave() {
    let mut e = machine(&asm(|a| {
        a.enter(16u32, 2u32)?;
        a.mov(rbx, rsp)?;
        a.mov(rdx, rbp)?;
        a.leave()
    }));
    let outer = STACK + 0x100;
    poke(&mut e, outer - 8, &0x1111_1111_1111_1111u64.to_le_bytes());
    poke(&mut e, outer - 16, &0x2222_2222_2222_2222u64.to_le_bytes());
    set(&mut e, Gpr::Rbp, outer);
    run_halt(&mut e);
    let frame = STACK - 8;
    assert_eq!(peek_q(&e, STACK - 8), outer);
    assert_eq!(peek_q(&e, STACK - 16), 0x1111_1111_1111_1111);
    assert_eq!(peek_q(&e, STACK - 24), frame);
    assert_eq!(peek_q(&e, STACK - 32), 0, "level 2 copies one pointer");
    assert_eq!(reg(&e, Gpr::Rdx), frame);
    assert_eq!(reg(&e, Gpr::Rbx), STACK - 24 - 16);
    assert_eq!((reg(&e, Gpr::Rsp), reg(&e, Gpr::Rbp)), (STACK, outer));
}

/// ENTER with a 16-bit operand in 64-bit mode (66 C8 04 00 02) and
/// LEAVE16 (66 C9): host results. The level is taken mod 32.
#[test]
fn enter16_and_level_mod_32() {
    let mut e = machine(&[0x66, 0xc8, 4, 0, 2, 0xf4]);
    let outer = STACK + 0x100;
    poke(&mut e, outer - 8, &0x1111_1111_1111_1111u64.to_le_bytes());
    set(&mut e, Gpr::Rbp, outer);
    run_halt(&mut e);
    let frame = STACK - 2;
    assert_eq!(reg(&e, Gpr::Rbp), frame, "all of RBP is the frame");
    assert_eq!(reg(&e, Gpr::Rsp), STACK - 6 - 4);
    assert_eq!(peek(&e, STACK - 6, 6), {
        let mut v = (frame as u16).to_le_bytes().to_vec();
        v.extend_from_slice(&[0x11, 0x11]);
        v.extend_from_slice(&(outer as u16).to_le_bytes());
        v
    });
    // LEAVE16: RSP = RBP + 2, BP = [RBP], RBP[63:16] kept.
    let mut e = machine(&[0x66, 0xc9, 0xf4]);
    poke(&mut e, DATA, &[0xcd, 0xab]);
    set(&mut e, Gpr::Rbp, DATA);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rsp), DATA + 2);
    assert_eq!(reg(&e, Gpr::Rbp), (DATA & !0xffff) | 0xabcd);
    // ENTER 0, 33 is ENTER 0, 1.
    let mut e = machine(&asm(|a| a.enter(0u32, 33u32)));
    set(&mut e, Gpr::Rbp, 0x77);
    run_halt(&mut e);
    assert_eq!(peek_q(&e, STACK - 8), 0x77);
    assert_eq!(peek_q(&e, STACK - 16), STACK - 8);
    assert_eq!(reg(&e, Gpr::Rsp), STACK - 16);
}

/// ENTER/LEAVE that fault leave RSP and RBP alone.
#[test]
fn enter_leave_fault_keeps_rsp_rbp() {
    let mut e = machine(&asm(|a| a.enter(8u32, 3u32)));
    let (absent, ro) = (0x1f_0000u64, 0x1f_1000u64);
    small_pages(&mut e, absent, ro);
    // The copied frame pointers come from the absent page.
    set(&mut e, Gpr::Rbp, absent + 8);
    set(&mut e, Gpr::Rsp, 0x18_0000);
    match e.run(10) {
        Exit::Exception(x) => assert_eq!((x.vector, x.address), (14, absent)),
        x => panic!("expected #PF, got {x:?}"),
    }
    assert_eq!(
        (reg(&e, Gpr::Rsp), reg(&e, Gpr::Rbp)),
        (0x18_0000, absent + 8)
    );
    let mut e = machine(&asm(|a| a.leave()));
    small_pages(&mut e, absent, ro);
    set(&mut e, Gpr::Rbp, absent + 0x10);
    match e.run(10) {
        Exit::Exception(x) => assert_eq!(x.vector, 14),
        x => panic!("expected #PF, got {x:?}"),
    }
    assert_eq!(
        (reg(&e, Gpr::Rsp), reg(&e, Gpr::Rbp)),
        (STACK, absent + 0x10)
    );
}

// ---------------------------------------------------------------- atomics

/// CMPXCHG with register and memory destinations, 32-bit in 64-bit mode
/// (host results: success keeps RAX[63:32]; failure zero-extends EAX and
/// leaves a register destination alone).
#[test]
fn cmpxchg_success_and_failure() {
    let prog = asm(|a| a.cmpxchg(ebx, ecx));
    // Success.
    let mut e = machine(&prog);
    set(&mut e, Gpr::Rax, 0xaaaa_aaaa_0000_0005);
    set(&mut e, Gpr::Rbx, 0xbbbb_bbbb_0000_0005);
    set(&mut e, Gpr::Rcx, 0xcccc_cccc_0000_0009);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rax), 0xaaaa_aaaa_0000_0005);
    assert_eq!(reg(&e, Gpr::Rbx), 9);
    assert_eq!(e.cpu().rflags() & (ZF | CF), ZF);
    // Failure.
    let mut e = machine(&prog);
    set(&mut e, Gpr::Rax, 0xaaaa_aaaa_0000_0005);
    set(&mut e, Gpr::Rbx, 0xbbbb_bbbb_0000_0006);
    set(&mut e, Gpr::Rcx, 0xcccc_cccc_0000_0009);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rax), 6);
    assert_eq!(reg(&e, Gpr::Rbx), 0xbbbb_bbbb_0000_0006);
    // CMP 5, 6: borrow, negative.
    assert_eq!(e.cpu().rflags() & (ZF | CF | SF), CF | SF);

    // Memory destination, with LOCK.
    let prog = asm(|a| a.lock().cmpxchg(dword_ptr(rdi), ecx));
    for (m, want_m, want_rax) in [(5u32, 9u32, 0xaaaa_aaaa_0000_0005u64), (6, 6, 6)] {
        let mut e = machine(&prog);
        poke(&mut e, DATA, &m.to_le_bytes());
        set(&mut e, Gpr::Rdi, DATA);
        set(&mut e, Gpr::Rax, 0xaaaa_aaaa_0000_0005);
        set(&mut e, Gpr::Rcx, 9);
        run_halt(&mut e);
        assert_eq!(peek(&e, DATA, 4), want_m.to_le_bytes());
        assert_eq!(reg(&e, Gpr::Rax), want_rax);
    }

    // 8-bit and 16-bit keep the rest of RAX on failure.
    let mut e = machine(&asm(|a| a.cmpxchg(bx, cx)));
    set(&mut e, Gpr::Rax, 0xaaaa_aaaa_0000_0005);
    set(&mut e, Gpr::Rbx, 0xbbbb_bbbb_0000_1236);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rax), 0xaaaa_aaaa_0000_1236);
}

/// A failing CMPXCHG still writes its memory operand: on a read-only page
/// it faults and changes nothing.
#[test]
fn cmpxchg_failure_writes_memory() {
    let mut e = machine(&asm(|a| a.cmpxchg(qword_ptr(rdi), rcx)));
    let (absent, ro) = (0x1f_0000u64, 0x1f_1000u64);
    small_pages(&mut e, absent, ro);
    poke(&mut e, ro, &7u64.to_le_bytes());
    set(&mut e, Gpr::Rdi, ro);
    set(&mut e, Gpr::Rax, 1);
    match e.run(10) {
        Exit::Exception(x) => assert_eq!((x.vector, x.address), (14, ro)),
        x => panic!("expected #PF, got {x:?}"),
    }
    assert_eq!(reg(&e, Gpr::Rax), 1);
    assert_eq!(peek_q(&e, ro), 7);
}

/// CMPXCHG8B: success writes ECX:EBX and keeps RDX/RAX; failure loads
/// EDX:EAX zero-extended. Only ZF changes.
#[test]
fn cmpxchg8b_both_ways() {
    let prog = asm(|a| a.cmpxchg8b(qword_ptr(rdi)));
    let mut e = machine(&prog);
    poke(&mut e, DATA, &0x1111_1111_2222_2222u64.to_le_bytes());
    set(&mut e, Gpr::Rdi, DATA);
    set(&mut e, Gpr::Rax, 0xaaaa_aaaa_2222_2222);
    set(&mut e, Gpr::Rdx, 0xdddd_dddd_1111_1111);
    set(&mut e, Gpr::Rbx, 0x33);
    set(&mut e, Gpr::Rcx, 0x44);
    e.cpu_mut().set_rflags(0x2 | CF);
    run_halt(&mut e);
    assert_eq!(peek_q(&e, DATA), 0x0000_0044_0000_0033);
    assert_eq!(reg(&e, Gpr::Rax), 0xaaaa_aaaa_2222_2222);
    assert_eq!(reg(&e, Gpr::Rdx), 0xdddd_dddd_1111_1111);
    assert_eq!(e.cpu().rflags() & (ZF | CF), ZF | CF);

    let mut e = machine(&prog);
    poke(&mut e, DATA, &0x1111_1111_2222_2222u64.to_le_bytes());
    set(&mut e, Gpr::Rdi, DATA);
    set(&mut e, Gpr::Rax, 0xaaaa_aaaa_2222_2223);
    set(&mut e, Gpr::Rdx, 0xdddd_dddd_1111_1111);
    e.cpu_mut().set_rflags(0x2 | ZF | SF);
    run_halt(&mut e);
    assert_eq!(peek_q(&e, DATA), 0x1111_1111_2222_2222);
    assert_eq!(reg(&e, Gpr::Rax), 0x2222_2222);
    assert_eq!(reg(&e, Gpr::Rdx), 0x1111_1111);
    assert_eq!(e.cpu().rflags() & (ZF | SF), SF);
}

/// CMPXCHG16B: misaligned → #GP(0) with nothing changed; aligned success
/// and failure.
#[test]
fn cmpxchg16b_alignment_and_results() {
    let prog = asm(|a| a.lock().cmpxchg16b(xmmword_ptr(rdi)));
    let mut e = machine(&prog);
    set(&mut e, Gpr::Rdi, DATA + 8);
    set(&mut e, Gpr::Rax, 1);
    match e.run(10) {
        Exit::Exception(x) => assert_eq!(x, Exception::gp(0)),
        x => panic!("expected #GP, got {x:?}"),
    }
    assert_eq!(reg(&e, Gpr::Rax), 1);
    assert_eq!(e.cpu().rip, CODE);

    let (lo, hi) = (0x0123_4567_89ab_cdefu64, 0xfedc_ba98_7654_3210u64);
    let setup = |e: &mut Engine, acc: u64| {
        poke(e, DATA, &lo.to_le_bytes());
        poke(e, DATA + 8, &hi.to_le_bytes());
        set(e, Gpr::Rdi, DATA);
        set(e, Gpr::Rax, acc);
        set(e, Gpr::Rdx, hi);
        set(e, Gpr::Rbx, 0xb);
        set(e, Gpr::Rcx, 0xc);
    };
    let mut e = machine(&prog);
    setup(&mut e, lo);
    run_halt(&mut e);
    assert_eq!((peek_q(&e, DATA), peek_q(&e, DATA + 8)), (0xb, 0xc));
    assert_eq!((reg(&e, Gpr::Rax), reg(&e, Gpr::Rdx)), (lo, hi));
    assert_ne!(e.cpu().rflags() & ZF, 0);

    let mut e = machine(&prog);
    setup(&mut e, 0);
    set(&mut e, Gpr::Rdx, 5);
    run_halt(&mut e);
    assert_eq!((peek_q(&e, DATA), peek_q(&e, DATA + 8)), (lo, hi));
    assert_eq!((reg(&e, Gpr::Rax), reg(&e, Gpr::Rdx)), (lo, hi));
    assert_eq!(e.cpu().rflags() & ZF, 0);
}

/// XADD: register and memory forms, flags of the addition.
#[test]
fn xadd_reg_and_mem() {
    let mut e = machine(&asm(|a| a.xadd(bl, cl)));
    set(&mut e, Gpr::Rbx, 0x12ff);
    set(&mut e, Gpr::Rcx, 0x3401);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), 0x1200);
    assert_eq!(reg(&e, Gpr::Rcx), 0x34ff);
    assert_eq!(e.cpu().rflags() & (CF | ZF | AF | SF | OF), CF | ZF | AF);

    let mut e = machine(&asm(|a| a.lock().xadd(qword_ptr(rdi), rax)));
    poke(&mut e, DATA, &100u64.to_le_bytes());
    set(&mut e, Gpr::Rdi, DATA);
    set(&mut e, Gpr::Rax, 0x7fff_ffff_ffff_ffff);
    run_halt(&mut e);
    assert_eq!(peek_q(&e, DATA), 0x8000_0000_0000_0063);
    assert_eq!(reg(&e, Gpr::Rax), 100);
    assert_eq!(e.cpu().rflags() & (CF | OF | SF), OF | SF);

    // XADD r, r with the same register keeps the sum.
    let mut e = machine(&asm(|a| a.xadd(eax, eax)));
    set(&mut e, Gpr::Rax, 0xffff_0000_0000_0021);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rax), 0x42);
}

// ------------------------------------------------------- flags and misc

/// SAHF loads SF ZF AF PF CF from AH (OF stays); LAHF stores them with
/// bit 1 set (host: AH 0xff → 0xd7, 0 → 2).
#[test]
fn lahf_sahf() {
    let mut e = machine(&asm(|a| {
        a.mov(ah, 0xffu32)?;
        a.sahf()?;
        a.mov(ah, 0u32)?;
        a.lahf()?;
        a.mov(ebx, eax)?;
        a.mov(ah, 0u32)?;
        a.sahf()?;
        a.lahf()
    }));
    e.cpu_mut().set_rflags(0x2 | OF);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), 0xd700);
    assert_eq!(reg(&e, Gpr::Rax), 0x0200);
    assert_eq!(e.cpu().rflags() & (OF | CF | ZF | SF | AF | PF), OF);
}

/// LAHF after an arithmetic instruction reads the lazy flags.
#[test]
fn lahf_after_cmp() {
    let mut e = machine(&asm(|a| {
        a.mov(ecx, 1u32)?;
        a.cmp(ecx, 2)?;
        a.lahf()
    }));
    run_halt(&mut e);
    // 1 - 2 = 0xffffffff: CF SF PF AF.
    assert_eq!(
        (reg(&e, Gpr::Rax) >> 8) & 0xff,
        0x02 | 0x01 | 0x80 | 0x04 | 0x10
    );
}

/// CLC/STC/CMC/CLD/STD change only their flag.
#[test]
fn single_flag_instructions() {
    let mut e = machine(&asm(|a| {
        a.stc()?;
        a.pushfq()?;
        a.cmc()?;
        a.pushfq()?;
        a.cmc()?;
        a.clc()?;
        a.std()?;
        a.pushfq()?;
        a.cld()
    }));
    e.cpu_mut().set_rflags(0x2 | ZF | OF);
    run_halt(&mut e);
    assert_eq!(peek_q(&e, STACK - 8), 0x2 | ZF | OF | CF);
    assert_eq!(peek_q(&e, STACK - 16), 0x2 | ZF | OF);
    assert_eq!(peek_q(&e, STACK - 24), 0x2 | ZF | OF | DF);
    assert_eq!(e.cpu().rflags(), 0x2 | ZF | OF);
}

/// STI sets the interrupt shadow only when IF was 0; CLI clears IF.
#[test]
fn sti_shadow_and_cli() {
    let mut e = machine(&asm(|a| {
        a.sti()?;
        a.sti()?;
        a.cli()
    }));
    assert_eq!(e.run(1), Exit::BudgetExhausted);
    assert_eq!(e.cpu().rflags() & IF, IF);
    assert_eq!(e.cpu().interrupt_shadow, 1);
    e.cpu_mut().interrupt_shadow = 0;
    assert_eq!(e.run(1), Exit::BudgetExhausted);
    assert_eq!(e.cpu().interrupt_shadow, 0, "IF was already 1");
    run_halt(&mut e);
    assert_eq!(e.cpu().rflags() & IF, 0);
}

/// CPUID leaf 0: the vendor string in EBX EDX ECX, results zero-extended.
#[test]
fn cpuid_leaf0_vendor() {
    let mut e = machine(&asm(|a| a.cpuid()));
    set(&mut e, Gpr::Rax, 0xffff_ffff_0000_0000);
    set(&mut e, Gpr::Rbx, u64::MAX);
    set(&mut e, Gpr::Rcx, 0xffff_ffff_0000_0000);
    set(&mut e, Gpr::Rdx, u64::MAX);
    run_halt(&mut e);
    let mut v = Vec::new();
    for r in [Gpr::Rbx, Gpr::Rdx, Gpr::Rcx] {
        assert_eq!(reg(&e, r) >> 32, 0);
        v.extend_from_slice(&(reg(&e, r) as u32).to_le_bytes());
    }
    assert_eq!(&v, b"GenuineIntel");
    assert!(reg(&e, Gpr::Rax) >= 1 && reg(&e, Gpr::Rax) < 0x100);
    assert_eq!(
        e.features().cpuid(0, 0),
        [
            reg(&e, Gpr::Rax),
            reg(&e, Gpr::Rbx),
            reg(&e, Gpr::Rcx),
            reg(&e, Gpr::Rdx)
        ]
        .map(|x| x as u32)
    );
}

/// RDTSC = bias + (instructions retired before it << shift), in EDX:EAX;
/// with CR4.TSD it faults at CPL 3.
#[test]
fn rdtsc_is_virtual_time() {
    let mut e = machine(&asm(|a| {
        a.nop()?;
        a.nop()?;
        a.rdtsc()
    }));
    e.cpu_mut().tsc_bias = 0x1_0000_0000 - 3;
    e.cpu_mut().tsc_shift = 3;
    set(&mut e, Gpr::Rax, u64::MAX);
    run_halt(&mut e);
    let tsc = 0x1_0000_0000u64 - 3 + (2 << 3);
    assert_eq!(reg(&e, Gpr::Rax), tsc & 0xffff_ffff);
    assert_eq!(reg(&e, Gpr::Rdx), tsc >> 32);

    let mut e = machine(&asm(|a| a.rdtsc()));
    e.cpu_mut().cr4 |= 1 << 2;
    e.cpu_mut().cpl = 3;
    e.flush_tlb();
    assert_eq!(e.run(10), Exit::Exception(Exception::gp(0)));
}

/// UD2 raises #UD with RIP on it; PAUSE and prefetches do nothing.
#[test]
fn ud2_pause_prefetch() {
    let mut e = machine(&asm(|a| {
        a.pause()?;
        a.prefetcht0(byte_ptr(rax))?;
        a.prefetchw(byte_ptr(rax))?;
        a.ud2()
    }));
    set(&mut e, Gpr::Rax, 0xdead_beef_0000_0000); // non-canonical: no fault
    assert_eq!(e.run(100), Exit::Exception(Exception::ud()));
    assert_eq!(e.cpu().icount, 3);
    assert_eq!(e.cpu().rip, CODE + 2 + 3 + 3, "RIP on the UD2");
}

/// Real mode: 16-bit addresses wrap SI at 64 KiB (the upper half of ESI
/// stays), DS and ES bases apply, and a segment override changes the
/// source only.
#[test]
fn real_mode_strings_wrap_and_override() {
    use cjemu_jit::Seg;
    let mut e = Engine::new(2 << 20).unwrap();
    e.config.exceptions_exit = true;
    // rep movsb; fs movsb; hlt
    poke(&mut e, 0x7c00, &[0xf3, 0xa4, 0x64, 0xa4, 0xf4]);
    poke(&mut e, 0x1_fffe, &[1, 2]);
    poke(&mut e, 0x1_0000, &[3, 4]);
    poke(&mut e, 0x3_0002, &[9]);
    let cpu = e.cpu_mut();
    cpu.seg[Seg::Cs as usize].base = 0;
    cpu.seg[Seg::Cs as usize].selector = 0;
    cpu.rip = 0x7c00;
    for (s, base) in [
        (Seg::Ds, 0x1_0000),
        (Seg::Es, 0x2_0000),
        (Seg::Fs, 0x3_0000),
    ] {
        cpu.seg[s as usize].base = base;
        cpu.seg[s as usize].selector = (base >> 4) as u16;
    }
    cpu.set_reg(Gpr::Rsi, 0xabcd_fffe);
    cpu.set_reg(Gpr::Rdi, 0x10);
    cpu.set_reg(Gpr::Rcx, 0x5555_0004);
    run_halt(&mut e);
    assert_eq!(peek(&e, 0x2_0010, 6), [1, 2, 3, 4, 9, 0]);
    assert_eq!(reg(&e, Gpr::Rsi), 0xabcd_0003);
    assert_eq!(reg(&e, Gpr::Rdi), 0x15);
    assert_eq!(reg(&e, Gpr::Rcx), 0x5555_0000);
    assert_eq!(e.cpu().icount, 4 + 1 + 1);
}
