//! System-level tests: guests start in the multiboot entry state (32-bit
//! protected mode, flat segments, paging off), load their own GDT/IDT/TSS,
//! switch to long mode, take exceptions, go to ring 3 and back. Exceptions
//! are delivered through the guest's IDT (`exceptions_exit = false`).
//! Expected values follow the Intel SDM vol. 3 (chapters 5–6 and the
//! instruction pages of IRET, SYSCALL, SYSRET, MOV CR, INVLPG).

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::state::{cr0, seg_attr, Segment};
use cjemu_jit::{Engine, Exception, Exit, Gpr, Seg};
use iced_x86::code_asm::*;

// ---- memory layout ----------------------------------------------------------

const CODE32: u64 = 0x1000;
const CODE64: u64 = 0x2000;
const TEST: u64 = 0x3000;
const USER: u64 = 0x4000;
const HANDLERS: u64 = 0x5000;
const COMMON: u64 = HANDLERS + 32 * 16;
const GDT: u64 = 0x10000;
const IDT: u64 = 0x11000;
const TSS: u64 = 0x12000;
const PTRS: u64 = 0x13000;
const PML4: u64 = 0x20000;
const PDPT: u64 = 0x21000;
const PD: u64 = 0x22000;
const PT: u64 = 0x23000;
const DATA: u64 = 0x60000;
const USTACK: u64 = 0x70000;
const RSP0: u64 = 0x7c000;
const KSTACK: u64 = 0x80000;
const IST1: u64 = 0x90000;

/// Special 4 KiB pages in the first 2 MiB.
const UNMAPPED: u64 = 0x1f_0000;
const READ_ONLY: u64 = 0x1e_0000;
const SUPERVISOR: u64 = 0x1d_0000;
const NO_EXEC: u64 = 0x1c_0000;
const GLOBAL_PAGE: u64 = 0x1b_0000;
const LOCAL_PAGE: u64 = 0x1a_0000;

// ---- GDT selectors ----------------------------------------------------------

const KCODE32: u16 = 0x08;
const KCODE64: u16 = 0x10;
const KDATA: u16 = 0x18;
const UCODE32: u16 = 0x20;
const UDATA: u16 = 0x28;
const UCODE64: u16 = 0x30;
const TSS_SEL: u16 = 0x38;
const NP_DATA: u16 = 0x48;
const NP_STACK: u16 = 0x50;
const KCODE16: u16 = 0x58;
const GDT_LIMIT: u16 = 0x60 - 1;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;

const EFER: u32 = 0xc000_0080;
const STAR: u32 = 0xc000_0081;
const LSTAR: u32 = 0xc000_0082;
const SFMASK: u32 = 0xc000_0084;
const KERNEL_GS_BASE: u32 = 0xc000_0102;
const GS_BASE: u32 = 0xc000_0101;

const IF: u64 = 1 << 9;

type Asm = Result<(), IcedError>;

// ---- builders ---------------------------------------------------------------

fn assemble(bits: u32, at: u64, f: impl FnOnce(&mut CodeAssembler) -> Asm) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(at).unwrap()
}

/// A code/data descriptor: `access` is the type/S/DPL/P byte, `flags` the
/// G/DB/L/AVL nibble.
fn seg_desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    let (base, limit) = (base as u64, limit as u64);
    (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | (access as u64) << 40
        | ((limit >> 16) & 0xf) << 48
        | (flags as u64 & 0xf) << 52
        | (base >> 24) << 56
}

/// A 64-bit interrupt (type 0xe) or trap (0xf) gate.
fn gate64(offset: u64, sel: u16, typ: u8, dpl: u8, ist: u8) -> [u64; 2] {
    let lo = (offset & 0xffff)
        | (sel as u64) << 16
        | (ist as u64) << 32
        | ((0x80 | dpl << 5 | typ) as u64) << 40
        | ((offset >> 16) & 0xffff) << 48;
    [lo, offset >> 32]
}

/// A 32-bit gate.
fn gate32(offset: u32, sel: u16, typ: u8, dpl: u8) -> u64 {
    gate64(offset as u64, sel, typ, dpl, 0)[0]
}

fn poke(e: &mut Engine, addr: u64, bytes: &[u8]) {
    e.mem_mut().write_phys(GuestPhysAddr(addr), bytes).unwrap();
}

fn poke_q(e: &mut Engine, addr: u64, v: u64) {
    poke(e, addr, &v.to_le_bytes());
}

fn peek_q(e: &Engine, addr: u64) -> u64 {
    let mut b = [0; 8];
    e.mem().read_phys(GuestPhysAddr(addr), &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn reg(e: &Engine, r: Gpr) -> u64 {
    e.cpu().reg(r)
}

/// An engine in the state QEMU's `-kernel` leaves a multiboot kernel in:
/// 32-bit protected mode, paging off, flat 4 GiB CS (D = 1) and data
/// segments, IF = 0, EAX = the multiboot magic.
fn multiboot_engine(entry: u64) -> Engine {
    let mut e = Engine::new(4 << 20).unwrap();
    let cpu = e.cpu_mut();
    cpu.cr0 = cr0::PE | cr0::ET;
    let mut code = Segment::data32(KCODE32);
    code.attrs |= seg_attr::CODE;
    cpu.seg[Seg::Cs as usize] = code;
    for s in [Seg::Ds, Seg::Es, Seg::Ss, Seg::Fs, Seg::Gs] {
        cpu.seg[s as usize] = Segment::data32(KDATA);
    }
    cpu.cpl = 0;
    cpu.set_rflags(0x2);
    cpu.set_reg(Gpr::Rax, 0x2bad_b002);
    cpu.rip = entry;
    e.flush_tlb();
    e
}

/// GDT with every descriptor the tests use (a 64-bit TSS at TSS_SEL).
fn write_gdt(e: &mut Engine) {
    let descs = [
        (0u16, 0u64),
        (KCODE32, seg_desc(0, 0xfffff, 0x9a, 0xc)),
        (KCODE64, seg_desc(0, 0xfffff, 0x9a, 0xa)),
        (KDATA, seg_desc(0, 0xfffff, 0x92, 0xc)),
        (UCODE32, seg_desc(0, 0xfffff, 0xfa, 0xc)),
        (UDATA, seg_desc(0, 0xfffff, 0xf2, 0xc)),
        (UCODE64, seg_desc(0, 0xfffff, 0xfa, 0xa)),
        (TSS_SEL, seg_desc(TSS as u32, 0x67, 0x89, 0)),
        (TSS_SEL + 8, 0),
        (NP_DATA, seg_desc(0, 0xfffff, 0x12, 0xc)),
        (NP_STACK, seg_desc(0, 0xfffff, 0x12, 0xc)),
        (KCODE16, seg_desc(0, 0xffff, 0x9a, 0)),
    ];
    for (sel, d) in descs {
        poke_q(e, GDT + sel as u64, d);
    }
    // Pseudo-descriptors for LGDT/LIDT (limit, 32-bit base) at PTRS.
    let mut p = Vec::new();
    p.extend_from_slice(&GDT_LIMIT.to_le_bytes());
    p.extend_from_slice(&(GDT as u32).to_le_bytes());
    poke(e, PTRS, &p);
    let mut p = Vec::new();
    p.extend_from_slice(&(256u16 * 16 - 1).to_le_bytes());
    p.extend_from_slice(&(IDT as u32).to_le_bytes());
    poke(e, PTRS + 0x10, &p);
}

/// 4-level tables: 0–2 MiB in 4 KiB pages (user, writable, with the special
/// pages above), 2–4 MiB as one 2 MiB page.
fn write_page_tables(e: &mut Engine) {
    poke_q(e, PML4, PDPT | P | RW | US);
    poke_q(e, PDPT, PD | P | RW | US);
    poke_q(e, PD, PT | P | RW | US);
    poke_q(e, PD + 8, 0x20_0000 | P | RW | US | PS);
    for i in 0..512u64 {
        let a = i << 12;
        let flags = match a {
            UNMAPPED => 0,
            READ_ONLY => P | US,
            SUPERVISOR => P | RW,
            NO_EXEC => P | RW | US | NX,
            GLOBAL_PAGE => P | RW | US | G,
            _ => P | RW | US,
        };
        poke_q(e, PT + i * 8, if flags == 0 { 0 } else { a | flags });
    }
}

/// 64-bit IDT: vectors 0–31 go to HANDLERS + 16 * v (interrupt gates,
/// DPL 0 except #BP, DPL 3); #DF uses IST1. The TSS has RSP0 and IST1.
fn write_idt64(e: &mut Engine) {
    for v in 0..32u64 {
        let dpl = if v == 3 { 3 } else { 0 };
        let ist = if v == 8 { 1 } else { 0 };
        let g = gate64(HANDLERS + 16 * v, KCODE64, 0xe, dpl, ist);
        poke_q(e, IDT + 16 * v, g[0]);
        poke_q(e, IDT + 16 * v + 8, g[1]);
    }
    poke_q(e, TSS + 4, RSP0);
    poke_q(e, TSS + 36, IST1);
}

/// Install a 64-bit gate for `v`.
fn set_gate64(e: &mut Engine, v: u64, target: u64, dpl: u8) {
    let g = gate64(target, KCODE64, 0xe, dpl, 0);
    poke_q(e, IDT + 16 * v, g[0]);
    poke_q(e, IDT + 16 * v + 8, g[1]);
}

/// Vectors that push an error code.
fn has_error_code(v: u64) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21)
}

/// Stubs push a dummy error code when the CPU did not, then the vector; the
/// common handler leaves everything in registers and halts:
/// RAX vector, RBX error code, RCX CR2, RDX saved RIP, RSI saved CS,
/// RDI saved RFLAGS, R8 saved RSP, R9 saved SS, R10 handler RSP.
fn write_handlers(e: &mut Engine) {
    for v in 0..32u64 {
        let at = HANDLERS + 16 * v;
        let code = assemble(64, at, |a| {
            if !has_error_code(v) {
                a.push(0)?;
            }
            a.push(v as i32)?;
            a.jmp(COMMON)
        });
        poke(e, at, &code);
    }
    let code = assemble(64, COMMON, |a| {
        a.pop(rax)?;
        a.pop(rbx)?;
        a.mov(rcx, cr2)?;
        a.mov(rdx, qword_ptr(rsp))?;
        a.mov(rsi, qword_ptr(rsp + 8))?;
        a.mov(rdi, qword_ptr(rsp + 16))?;
        a.mov(r8, qword_ptr(rsp + 24))?;
        a.mov(r9, qword_ptr(rsp + 32))?;
        a.mov(r10, rsp)?;
        a.hlt()
    });
    poke(e, COMMON, &code);
}

/// Instructions the 32-bit entry and the 64-bit set-up run before TEST.
const SETUP_INSNS: u64 = 27;

/// The guest's own switch to long mode, from the multiboot state: load
/// GDT and IDT, CR4.PAE|PGE, CR3, EFER.LME|NXE|SCE, CR0.PG|WP, far jump to
/// 64-bit code, reload the data segments, RSP, TR, then jump to TEST.
fn write_long_mode_entry(e: &mut Engine) {
    let code = assemble(32, CODE32, |a| {
        a.lgdt(ptr(PTRS as u32))?;
        a.lidt(ptr(PTRS as u32 + 0x10))?;
        a.mov(eax, cr4)?;
        a.or(eax, 0xa0)?;
        a.mov(cr4, eax)?;
        a.mov(eax, PML4 as u32)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, EFER)?;
        a.rdmsr()?;
        a.or(eax, 0x901)?;
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8001_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.jmp_far(KCODE64, CODE64 as u32)
    });
    poke(e, CODE32, &code);
    let code = assemble(64, CODE64, |a| {
        a.mov(ax, KDATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(rsp, KSTACK)?;
        a.mov(ax, TSS_SEL as u32)?;
        a.ltr(ax)?;
        a.xor(eax, eax)?;
        a.xor(ecx, ecx)?;
        a.xor(edx, edx)?;
        a.mov(rbx, TEST)?;
        a.jmp(rbx)
    });
    poke(e, CODE64, &code);
}

/// A multiboot-state engine whose guest switches to long mode and then runs
/// `test` (64-bit code at TEST) with RSP = KSTACK.
fn long_mode(test: impl FnOnce(&mut CodeAssembler) -> Asm) -> Engine {
    let mut e = multiboot_engine(CODE32);
    write_gdt(&mut e);
    write_page_tables(&mut e);
    write_idt64(&mut e);
    write_handlers(&mut e);
    write_long_mode_entry(&mut e);
    let code = assemble(64, TEST, test);
    poke(&mut e, TEST, &code);
    e
}

fn run_halt(e: &mut Engine) {
    let exit = e.run(100_000);
    assert_eq!(exit, Exit::Halted, "rip {:#x}", e.cpu().rip);
}

/// The common handler saw `vector` with `code`, raised at `rip`.
fn assert_exception(e: &Engine, vector: u64, code: u64, rip: u64) {
    assert_eq!(reg(e, Gpr::Rax), vector, "vector");
    assert_eq!(reg(e, Gpr::Rbx), code, "error code");
    assert_eq!(reg(e, Gpr::Rdx), rip, "saved RIP");
}

// ---- long mode from the multiboot state --------------------------------------

#[test]
fn multiboot_guest_switches_to_long_mode() {
    let mut e = long_mode(|a| {
        a.mov(rax, 0x1_2345_6789u64)?;
        a.hlt()
    });
    run_halt(&mut e);
    let cpu = e.cpu();
    assert_eq!(cpu.efer & 0xd01, 0xd01, "LME, LMA, NXE and SCE");
    assert!(cpu.in_64bit_mode());
    assert_eq!(cpu.seg(Seg::Cs).selector, KCODE64);
    assert_eq!(cpu.seg(Seg::Ss).selector, KDATA);
    assert_eq!(cpu.tr.selector, TSS_SEL);
    assert_eq!(cpu.tr.base, TSS);
    assert_eq!(cpu.gdtr.base, GDT);
    assert_eq!(cpu.idtr.limit, 0xfff);
    assert_eq!(reg(&e, Gpr::Rax), 0x1_2345_6789);
    assert_eq!(cpu.icount, SETUP_INSNS + 2);
    // The CPU set the accessed bit of the descriptors it loaded and the
    // busy bit of the TSS.
    assert_ne!(peek_q(&e, GDT + KCODE64 as u64) & (1 << 40), 0);
    assert_ne!(peek_q(&e, GDT + KDATA as u64) & (1 << 40), 0);
    assert_eq!((peek_q(&e, GDT + TSS_SEL as u64) >> 40) & 0xf, 0xb);
    assert_eq!(peek_q(&e, GDT + UDATA as u64) & (1 << 40), 0);
}

#[test]
fn paging_activation_without_pae_faults() {
    // CR0.PG with EFER.LME = 1 and CR4.PAE = 0: #GP(0). No IDT is loaded
    // (limit 0), so the #GP escalates to a triple fault.
    let mut e = multiboot_engine(CODE32);
    let code = assemble(32, CODE32, |a| {
        a.mov(ecx, EFER)?;
        a.mov(eax, 0x100)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.hlt()
    });
    poke(&mut e, CODE32, &code);
    e.cpu_mut().idtr = cjemu_jit::state::DescriptorTable::new(0, 0);
    match e.run(100) {
        Exit::TripleFault { first, rip } => {
            assert_eq!(first, Exception::gp(0));
            assert_eq!(rip, CODE32 + 22, "the MOV CR0");
        }
        x => panic!("{x:?}"),
    }
    assert_eq!(e.cpu().icount, 6);
    assert_eq!(e.cpu().cr0 & cr0::PG, 0);
    assert_eq!(e.cpu().efer, 0x100, "LMA stays clear");
}

// ---- exceptions in 64-bit mode ----------------------------------------------

/// Run `body` (64-bit, at TEST) and return the engine after the common
/// handler halted.
fn fault_case(body: impl FnOnce(&mut CodeAssembler) -> Asm) -> Engine {
    let mut e = long_mode(body);
    run_halt(&mut e);
    e
}

#[test]
fn ud_de_and_int3_deliver_with_the_right_saved_rip() {
    let e = fault_case(|a| a.ud2());
    assert_exception(&e, 6, 0, TEST);
    assert_eq!(reg(&e, Gpr::Rsi), KCODE64 as u64, "saved CS");
    assert_eq!(reg(&e, Gpr::R8), KSTACK, "saved RSP");
    assert_eq!(reg(&e, Gpr::R9), KDATA as u64, "saved SS");
    // Same privilege: the frame is on the current stack (5 qwords).
    assert_eq!(reg(&e, Gpr::R10), KSTACK - 40);
    // The faulting UD2 did not retire: setup + stub (push 0, push 6, jmp)
    // + common (9 + HLT).
    assert_eq!(e.cpu().icount, SETUP_INSNS + 3 + 10);

    let e = fault_case(|a| {
        a.xor(ecx, ecx)?;
        a.div(ecx)
    });
    assert_exception(&e, 0, 0, TEST + 2);

    // INT3 is a trap: the saved RIP is after it, and it retires.
    let e = fault_case(|a| a.int3());
    assert_exception(&e, 3, 0, TEST + 1);
    assert_eq!(e.cpu().icount, SETUP_INSNS + 1 + 3 + 10);
    // The interrupt gate cleared IF... it was clear; TF/RF clear in RFLAGS.
    assert_eq!(e.cpu().rflags() & (IF | 1 << 8 | 1 << 16), 0);
}

#[test]
fn segment_load_faults_carry_the_selector() {
    // Beyond the GDT limit: #GP(selector).
    let e = fault_case(|a| {
        a.mov(eax, 0x203)?;
        a.mov(ds, ax)
    });
    assert_exception(&e, 13, 0x200, TEST + 5);
    // Not-present data segment: #NP(selector); RPL bits dropped.
    let e = fault_case(|a| {
        a.mov(eax, NP_DATA as u32)?;
        a.mov(es, ax)
    });
    assert_exception(&e, 11, NP_DATA as u64, TEST + 5);
    // Not-present stack segment: #SS(selector).
    let e = fault_case(|a| {
        a.mov(eax, NP_STACK as u32)?;
        a.mov(ss, ax)
    });
    assert_exception(&e, 12, NP_STACK as u64, TEST + 5);
    // A code segment is not a valid stack: #GP(selector).
    let e = fault_case(|a| {
        a.mov(eax, KCODE64 as u32)?;
        a.mov(ss, ax)
    });
    assert_exception(&e, 13, KCODE64 as u64, TEST + 5);
    // A DPL 3 data segment with RPL 3 is fine in DS; the selector is loaded.
    let e = fault_case(|a| {
        a.mov(eax, UDATA as u32 | 3)?;
        a.mov(fs, ax)?;
        a.ud2()
    });
    // (MOV FS, AX is assembled with an operand-size prefix: 3 bytes.)
    assert_exception(&e, 6, 0, TEST + 8);
    assert_eq!(e.cpu().seg(Seg::Fs).selector, UDATA | 3);
}

#[test]
fn page_faults_report_cr2_and_error_code() {
    // Not present, read.
    let e = fault_case(|a| a.mov(rax, qword_ptr(UNMAPPED + 0x10)));
    assert_exception(&e, 14, 0, TEST);
    assert_eq!(reg(&e, Gpr::Rcx), UNMAPPED + 0x10, "CR2");
    // Supervisor write to a read-only page with CR0.WP = 1: present|write.
    let e = fault_case(|a| a.mov(qword_ptr(READ_ONLY + 8), rax));
    assert_exception(&e, 14, 3, TEST);
    assert_eq!(reg(&e, Gpr::Rcx), READ_ONLY + 8);
    // Fetch from an NX page (EFER.NXE = 1): present|fetch, CR2 = target.
    let e = fault_case(|a| {
        a.mov(rax, NO_EXEC + 0x20)?;
        a.jmp(rax)
    });
    assert_exception(&e, 14, 0x11, NO_EXEC + 0x20);
    assert_eq!(reg(&e, Gpr::Rcx), NO_EXEC + 0x20);
    // Non-canonical address: #GP(0), CR2 untouched.
    let e = fault_case(|a| {
        a.mov(rbx, 0x8000_0000_0000u64)?;
        a.mov(rax, qword_ptr(rbx))
    });
    assert_exception(&e, 13, 0, TEST + 10);
    assert_eq!(reg(&e, Gpr::Rcx), 0);
}

#[test]
fn page_fault_on_an_unmapped_stack_becomes_a_double_fault_on_ist() {
    // RSP points into the unmapped page: the #PF frame cannot be pushed,
    // which is a second #PF, hence #DF (error code 0) on the IST1 stack.
    let e = fault_case(|a| {
        a.mov(rsp, UNMAPPED + 0x800)?;
        a.mov(rax, qword_ptr(UNMAPPED))
    });
    assert_exception(&e, 8, 0, TEST + 10);
    assert_eq!(reg(&e, Gpr::R8), UNMAPPED + 0x800, "saved RSP");
    assert_eq!(reg(&e, Gpr::R10), IST1 - 40, "frame on IST1");
    // CR2 holds the address of the second #PF, the one that became #DF
    // (CR2 is written when a page fault is detected).
    assert_eq!(reg(&e, Gpr::Rcx), UNMAPPED + 0x7f8);
}

#[test]
fn no_idt_means_triple_fault() {
    let mut e = long_mode(|a| {
        a.mov(rax, PTRS + 0x20)?;
        a.lidt(ptr(rax))?;
        a.ud2()
    });
    // IDT limit 0 at PTRS + 0x20 (zeroed memory).
    match e.run(1000) {
        Exit::TripleFault { first, rip } => {
            assert_eq!(first, Exception::ud());
            assert_eq!(rip, TEST + 13);
        }
        x => panic!("{x:?}"),
    }
    assert_eq!(e.cpu().icount, SETUP_INSNS + 2);
}

#[test]
fn int_n_checks_the_gate_dpl_and_presence() {
    // An all-zero IDT entry has an invalid type: #GP(0x40*8 + 2) (IDT
    // bit set, EXT = 0 for a software interrupt).
    let e = fault_case(|a| a.int(0x40));
    assert_exception(&e, 13, 0x40 * 8 + 2, TEST);
    // A valid interrupt gate with P = 0: #NP(0x42*8 + 2).
    let mut e = long_mode(|a| a.int(0x42));
    let g = gate64(HANDLERS, KCODE64, 0xe, 0, 0);
    poke_q(&mut e, IDT + 16 * 0x42, g[0] & !(1 << 47));
    run_halt(&mut e);
    assert_exception(&e, 11, 0x42 * 8 + 2, TEST);
    // INT n at CPL 0 through a DPL 0 gate is delivered; saved RIP after it.
    let mut e = long_mode(|a| a.int(0x41));
    set_gate64(&mut e, 0x41, HANDLERS + 16 * 5, 0);
    run_halt(&mut e);
    assert_exception(&e, 5, 0, TEST + 2);
}

// ---- ring 3 and back --------------------------------------------------------

/// A stub at `at` that reports vector `v` (no error code) through COMMON.
fn stub(e: &mut Engine, at: u64, v: i32) {
    let code = assemble(64, at, |a| {
        a.push(0)?;
        a.push(v)?;
        a.jmp(COMMON)
    });
    poke(e, at, &code);
}

/// WRMSR `idx` = `v` (three instructions before the WRMSR).
fn wrmsr(a: &mut CodeAssembler, idx: u32, v: u64) -> Asm {
    a.mov(ecx, idx)?;
    a.mov(eax, v as u32)?;
    a.mov(edx, (v >> 32) as u32)?;
    a.wrmsr()
}

const SYS_ENTRY: u64 = 0x6000;

#[test]
fn ring3_via_iretq_back_via_syscall_sysret_and_a_fault_on_rsp0() {
    let mut e = long_mode(|a| {
        wrmsr(a, STAR, (0x20u64 << 48) | (0x10u64 << 32))?;
        wrmsr(a, LSTAR, SYS_ENTRY)?;
        wrmsr(a, SFMASK, 0x400)?; // clear DF on entry
        a.push((UDATA | 3) as i32)?;
        a.push(USTACK as i32)?;
        a.push(0x602)?; // IF | DF
        a.push((UCODE64 | 3) as i32)?;
        a.push(USER as i32)?;
        a.iretq()
    });
    let user = assemble(64, USER, |a| {
        a.mov(r12, cs)?;
        a.mov(eax, 0x1234)?;
        a.syscall()?;
        a.mov(r13, cs)?;
        a.hlt() // privileged at CPL 3: #GP(0) to ring 0 on TSS.RSP0
    });
    poke(&mut e, USER, &user);
    let sys = assemble(64, SYS_ENTRY, |a| {
        a.mov(r14, rcx)?;
        a.mov(r15, r11)?;
        a.pushfq()?;
        a.pop(rbp)?;
        a.mov(qword_ptr(DATA), rsp)?;
        a.sysretq()
    });
    poke(&mut e, SYS_ENTRY, &sys);
    run_halt(&mut e);
    assert_eq!(
        reg(&e, Gpr::R12),
        (UCODE64 | 3) as u64,
        "ring 3 after IRETQ"
    );
    assert_eq!(reg(&e, Gpr::R14), USER + 3 + 5 + 2, "RCX = return RIP");
    assert_eq!(reg(&e, Gpr::R15), 0x602, "R11 = RFLAGS");
    assert_eq!(reg(&e, Gpr::Rbp), 0x202, "SFMASK cleared DF in the kernel");
    assert_eq!(peek_q(&e, DATA), USTACK, "SYSCALL does not switch stacks");
    assert_eq!(reg(&e, Gpr::R13), 0x33, "SYSRET CS = STAR[63:48] + 16 | 3");
    // The #GP from HLT at CPL 3.
    assert_exception(&e, 13, 0, USER + 3 + 5 + 2 + 3);
    assert_eq!(reg(&e, Gpr::Rsi), 0x33, "saved CS");
    assert_eq!(reg(&e, Gpr::Rdi), 0x602, "saved RFLAGS");
    assert_eq!(reg(&e, Gpr::R8), USTACK, "saved RSP");
    assert_eq!(reg(&e, Gpr::R9), 0x2b, "saved SS = STAR[63:48] + 8 | 3");
    assert_eq!(reg(&e, Gpr::R10), RSP0 - 40, "frame on TSS.RSP0");
    let cpu = e.cpu();
    assert_eq!(cpu.cpl, 0);
    assert_eq!(cpu.seg(Seg::Ss).selector, 0, "null SS at CPL 0");
    assert_eq!(cpu.rflags() & IF, 0, "interrupt gate cleared IF");
    // setup + 3 WRMSRs (4 each) + 5 pushes + IRETQ + user 3 + kernel 6 +
    // user MOV (HLT faults, not counted) + stub 2 (#GP has an error code,
    // so no dummy push) + common 10.
    assert_eq!(cpu.icount, SETUP_INSNS + 12 + 6 + 3 + 6 + 1 + 2 + 10);
}

const USER32: u64 = 0x4800;
const INT80_STUB: u64 = HANDLERS + 0x400;

#[test]
fn sysret_to_compatibility_mode_and_int_back_to_64_bit() {
    let mut e = long_mode(|a| {
        wrmsr(a, STAR, (0x20u64 << 48) | (0x10u64 << 32))?;
        a.mov(ecx, USER32 as u32)?;
        a.mov(r11d, 0x2)?;
        a.mov(rsp, USTACK)?;
        a.sysret()
    });
    // In 32-bit code 0x40 is INC EAX (in 64-bit code it is a REX prefix).
    let user = assemble(32, USER32, |a| {
        a.mov(eax, 5)?;
        a.db(&[0x40])?;
        a.int(0x80)
    });
    poke(&mut e, USER32, &user);
    stub(&mut e, INT80_STUB, 0x80);
    set_gate64(&mut e, 0x80, INT80_STUB, 3);
    run_halt(&mut e);
    // The saved RIP is after INT 0x80 (a trap-like software interrupt),
    // in compatibility-mode code: 32-bit offsets, 1-byte INC.
    assert_exception(&e, 0x80, 0, USER32 + 5 + 1 + 2);
    assert_eq!(reg(&e, Gpr::Rsi), (UCODE32 | 3) as u64, "saved CS");
    assert_eq!(reg(&e, Gpr::R8), USTACK, "saved RSP");
    assert_eq!(reg(&e, Gpr::R9), (UDATA | 3) as u64, "saved SS");
    assert_eq!(reg(&e, Gpr::R10), RSP0 - 40);
    assert!(e.cpu().in_64bit_mode());
}

#[test]
fn compatibility_mode_user_code_decodes_as_32_bit() {
    let mut e = long_mode(|a| {
        wrmsr(a, STAR, (0x20u64 << 48) | (0x10u64 << 32))?;
        a.mov(ecx, USER32 as u32)?;
        a.mov(r11d, 0x2)?;
        a.sysret()
    });
    let user = assemble(32, USER32, |a| {
        a.mov(eax, 5)?;
        a.db(&[0x40])?; // INC EAX
        a.hlt()
    });
    poke(&mut e, USER32, &user);
    run_halt(&mut e);
    // HLT at CPL 3 faulted; RAX holds the vector now, but the frame shows
    // the fault at USER32 + 6, which needs 0x40 to be a 1-byte INC.
    assert_exception(&e, 13, 0, USER32 + 6);
    assert_eq!(reg(&e, Gpr::Rsi), 0x23);
}

// ---- far transfers between 64-bit and compatibility mode -------------------

const C32: u64 = 0x6800;
const C32B: u64 = 0x6900;
const BACK64: u64 = 0x6a00;

#[test]
fn far_call_ret_and_jmp_between_64_bit_and_compatibility_mode() {
    let mut e = long_mode(|a| {
        // call far [DATA] (m16:32 -> KCODE32:C32); 0xff /3.
        a.db(&[0xff, 0x1c, 0x25])?;
        a.db(&(DATA as u32).to_le_bytes())?;
        a.mov(r12, rax)?; // after the far return: 64-bit again
        a.mov(rbx, 0x1_0000_0000u64)?;
        // jmp far [DATA + 8] (m16:32 -> KCODE32:C32B); 0xff /5.
        a.db(&[0xff, 0x2c, 0x25])?;
        a.db(&(DATA as u32 + 8).to_le_bytes())
    });
    let mut ptrs = Vec::new();
    ptrs.extend_from_slice(&(C32 as u32).to_le_bytes());
    ptrs.extend_from_slice(&KCODE32.to_le_bytes());
    ptrs.extend_from_slice(&[0, 0]);
    ptrs.extend_from_slice(&(C32B as u32).to_le_bytes());
    ptrs.extend_from_slice(&KCODE32.to_le_bytes());
    poke(&mut e, DATA, &ptrs);
    let c32 = assemble(32, C32, |a| {
        a.mov(eax, 7)?;
        a.db(&[0x40])?; // INC EAX in 32-bit code
        a.mov(esi, dword_ptr(esp))?; // the return EIP CALL pushed (4 bytes)
        a.mov(edi, dword_ptr(esp + 4))?; // and CS
        a.retf()
    });
    poke(&mut e, C32, &c32);
    let c32b = assemble(32, C32B, |a| {
        a.mov(ecx, 3)?;
        a.jmp_far(KCODE64, BACK64 as u32)
    });
    poke(&mut e, C32B, &c32b);
    let back = assemble(64, BACK64, |a| {
        // LRETQ to 64-bit code at the same privilege (Linux's idiom).
        a.push(KCODE64 as i32)?;
        a.mov(rax, BACK64 + 0x40)?;
        a.push(rax)?;
        a.db(&[0x48, 0xcb])?; // retfq
        a.hlt()
    });
    poke(&mut e, BACK64, &back);
    poke(&mut e, BACK64 + 0x40, &[0x48, 0x89, 0xdd, 0xf4]); // mov rbp, rbx; hlt
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::R12), 8, "the 32-bit code ran INC EAX");
    assert_eq!(reg(&e, Gpr::Rsi), TEST + 7, "return EIP");
    assert_eq!(reg(&e, Gpr::Rdi), KCODE64 as u64, "return CS");
    assert_eq!(reg(&e, Gpr::Rcx), 3);
    assert_eq!(reg(&e, Gpr::Rbp), 0x1_0000_0000, "64-bit after LRETQ");
    assert_eq!(reg(&e, Gpr::Rsp), KSTACK, "stack balanced");
    assert_eq!(e.cpu().seg(Seg::Cs).selector, KCODE64);
    assert_eq!(e.cpu().rip, BACK64 + 0x44);
}

// ---- TLB flushing -----------------------------------------------------------

#[test]
fn cr3_write_keeps_global_pages_and_invlpg_drops_one() {
    const ALT_G: u64 = 0x19_0000;
    const ALT_L: u64 = 0x18_0000;
    let pte = |a: u64| PT + (a >> 12) * 8;
    let mut e = long_mode(|a| {
        a.mov(rax, qword_ptr(GLOBAL_PAGE))?;
        a.mov(rbx, qword_ptr(LOCAL_PAGE))?;
        // Remap both pages to other frames, without any flush.
        a.mov(rax, ALT_G | P | RW | US | G)?;
        a.mov(qword_ptr(pte(GLOBAL_PAGE)), rax)?;
        a.mov(rax, ALT_L | P | RW | US)?;
        a.mov(qword_ptr(pte(LOCAL_PAGE)), rax)?;
        a.mov(rcx, qword_ptr(GLOBAL_PAGE))?; // stale
        a.mov(rdx, qword_ptr(LOCAL_PAGE))?; // stale
        a.mov(rax, cr3)?;
        a.mov(cr3, rax)?;
        a.mov(rsi, qword_ptr(GLOBAL_PAGE))?; // still stale: global
        a.mov(rdi, qword_ptr(LOCAL_PAGE))?; // new frame
        a.invlpg(ptr(GLOBAL_PAGE))?;
        a.mov(r8, qword_ptr(GLOBAL_PAGE))?; // new frame
                                            // Remap the global page back; toggling CR4.PGE flushes it too.
        a.mov(rax, GLOBAL_PAGE | P | RW | US | G)?;
        a.mov(qword_ptr(pte(GLOBAL_PAGE)), rax)?;
        a.mov(r9, qword_ptr(GLOBAL_PAGE))?; // stale (ALT_G)
        a.mov(rax, cr4)?;
        a.and(eax, !0x80)?;
        a.mov(cr4, rax)?;
        a.or(eax, 0x80)?;
        a.mov(cr4, rax)?;
        a.mov(r10, qword_ptr(GLOBAL_PAGE))?;
        a.hlt()
    });
    poke_q(&mut e, GLOBAL_PAGE, 0xa1);
    poke_q(&mut e, LOCAL_PAGE, 0xb1);
    poke_q(&mut e, ALT_G, 0xa2);
    poke_q(&mut e, ALT_L, 0xb2);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::Rbx), 0xb1);
    assert_eq!(reg(&e, Gpr::Rcx), 0xa1, "no flush yet");
    assert_eq!(reg(&e, Gpr::Rdx), 0xb1, "no flush yet");
    assert_eq!(reg(&e, Gpr::Rsi), 0xa1, "CR3 write keeps global entries");
    assert_eq!(reg(&e, Gpr::Rdi), 0xb2, "CR3 write drops the others");
    assert_eq!(reg(&e, Gpr::R8), 0xa2, "INVLPG dropped the global entry");
    assert_eq!(reg(&e, Gpr::R9), 0xa2, "no flush yet");
    assert_eq!(reg(&e, Gpr::R10), 0xa1, "CR4.PGE change flushes globals");
}

// ---- 32-bit protected mode --------------------------------------------------

const H40: u64 = 0x6000;
const H13: u64 = 0x6100;

#[test]
fn protected_mode_32_bit_delivery_with_privilege_change_through_the_tss() {
    let mut e = multiboot_engine(CODE32);
    write_gdt(&mut e); // TSS_SEL is a 32-bit available TSS outside long mode
    poke_q(&mut e, IDT + 8 * 13, gate32(H13 as u32, KCODE32, 0xe, 0));
    poke_q(&mut e, IDT + 8 * 0x40, gate32(H40 as u32, KCODE32, 0xf, 3));
    poke_q(&mut e, IDT + 8 * 0x41, gate32(H40 as u32, KCODE32, 0xe, 0));
    poke(&mut e, PTRS + 0x30, &[0xff, 0x07, 0x00, 0x10, 0x01, 0x00]); // IDT, 256 * 8
    poke_q(&mut e, TSS + 4, RSP0); // ESP0
    poke_q(&mut e, TSS + 8, KDATA as u64); // SS0
    let code = assemble(32, CODE32, |a| {
        a.lgdt(ptr(PTRS as u32))?;
        a.lidt(ptr(PTRS as u32 + 0x30))?;
        a.mov(ax, TSS_SEL as u32)?;
        a.ltr(ax)?;
        a.mov(esp, KSTACK as u32)?;
        a.push((UDATA | 3) as i32)?;
        a.push(USTACK as i32)?;
        a.push(0x3202)?; // IF, IOPL 3
        a.push((UCODE32 | 3) as i32)?;
        a.push(USER32 as i32)?;
        a.iretd()
    });
    poke(&mut e, CODE32, &code);
    let user = assemble(32, USER32, |a| {
        a.mov(ebp, ds)?;
        a.int(0x40)?;
        a.int(0x41) // DPL 0 gate: #GP(0x41 * 8 + 2)
    });
    poke(&mut e, USER32, &user);
    // Trap gate handler: copy the 5-dword frame and EFLAGS to DATA, return.
    let h40 = assemble(32, H40, |a| {
        a.mov(ax, KDATA as u32)?;
        a.mov(ds, ax)?;
        for i in 0..5 {
            a.mov(eax, dword_ptr(esp + 4 * i))?;
            a.mov(dword_ptr(DATA as u32 + 4 * i as u32), eax)?;
        }
        a.mov(dword_ptr(DATA as u32 + 20), esp)?;
        a.pushfd()?;
        a.pop(eax)?;
        a.mov(dword_ptr(DATA as u32 + 24), eax)?;
        a.iretd()
    });
    poke(&mut e, H40, &h40);
    let h13 = assemble(32, H13, |a| {
        a.pop(ebx)?; // error code
        a.mov(ecx, dword_ptr(esp))?;
        a.mov(edx, dword_ptr(esp + 4))?;
        a.mov(esi, dword_ptr(esp + 12))?;
        a.mov(edi, dword_ptr(esp + 16))?;
        a.mov(eax, esp)?;
        a.hlt()
    });
    poke(&mut e, H13, &h13);
    run_halt(&mut e);
    let d = |i: u64| peek_q(&e, DATA + 4 * i) & 0xffff_ffff;
    // IRETD to ring 3 nulled DS (DPL 0 < CPL 3).
    assert_eq!(reg(&e, Gpr::Rbp), 0, "DS selector in ring 3");
    assert_eq!(d(0), USER32 + 2 + 2, "saved EIP after INT 0x40");
    assert_eq!(d(1), (UCODE32 | 3) as u64, "saved CS");
    assert_eq!(d(2), 0x3202, "saved EFLAGS");
    assert_eq!(d(3), USTACK, "saved ESP (outer stack)");
    assert_eq!(d(4), (UDATA | 3) as u64, "saved SS");
    assert_eq!(d(5), RSP0 - 20, "handler ran on TSS.ESP0");
    assert_eq!(d(6) & IF, IF, "a trap gate leaves IF set");
    // Then INT 0x41 from ring 3 through a DPL 0 gate: #GP with the IDT
    // error code, delivered (with a stack switch again) to H13.
    assert_eq!(reg(&e, Gpr::Rbx), 0x41 * 8 + 2, "error code");
    assert_eq!(reg(&e, Gpr::Rcx), USER32 + 4, "saved EIP = the INT 0x41");
    assert_eq!(reg(&e, Gpr::Rdx), (UCODE32 | 3) as u64);
    assert_eq!(reg(&e, Gpr::Rsi), USTACK);
    assert_eq!(reg(&e, Gpr::Rdi), (UDATA | 3) as u64);
    assert_eq!(reg(&e, Gpr::Rax), RSP0 - 20, "error code popped");
    let cpu = e.cpu();
    assert_eq!(cpu.cpl, 0);
    assert_eq!(cpu.seg(Seg::Ss).selector, KDATA, "SS0 from the TSS");
    assert_eq!(cpu.rflags() & IF, 0, "interrupt gate cleared IF");
    assert_eq!(cpu.code_bitness(), 32);
}

// ---- interrupt shadow, IRET flag rules, SWAPGS ------------------------------

#[test]
fn mov_ss_sets_the_interrupt_shadow_for_one_instruction() {
    let mut e = long_mode(|a| {
        a.mov(eax, KDATA as u32)?;
        a.mov(ss, ax)?;
        a.nop()?;
        a.hlt()
    });
    assert_eq!(e.run(SETUP_INSNS + 2), Exit::BudgetExhausted);
    assert_eq!(e.cpu().interrupt_shadow, 1, "after MOV SS");
    assert_eq!(e.run(1), Exit::BudgetExhausted);
    assert_eq!(e.cpu().interrupt_shadow, 0, "after the next instruction");
}

#[test]
fn iret_at_cpl3_cannot_change_iopl_or_if() {
    // Ring 3 with IOPL 0 executes IRETQ with IF and IOPL set in the image:
    // both are kept as they were; the arithmetic flags change.
    let mut e = long_mode(|a| {
        a.push((UDATA | 3) as i32)?;
        a.push(USTACK as i32)?;
        a.push(0x2)?;
        a.push((UCODE64 | 3) as i32)?;
        a.push(USER as i32)?;
        a.iretq()
    });
    let user = assemble(64, USER, |a| {
        a.push((UDATA | 3) as i32)?;
        a.push((USTACK - 0x100) as i32)?;
        a.push(0x3203 | 0x800)?; // IOPL 3, IF, CF, OF
        a.push((UCODE64 | 3) as i32)?;
        a.push((USER + 0x80) as i32)?;
        a.iretq()
    });
    poke(&mut e, USER, &user);
    poke(&mut e, USER + 0x80, &[0xf4]); // HLT at CPL 3: #GP
    run_halt(&mut e);
    assert_exception(&e, 13, 0, USER + 0x80);
    assert_eq!(reg(&e, Gpr::Rdi), 0x803, "saved RFLAGS: CF, OF; no IF/IOPL");
    assert_eq!(reg(&e, Gpr::R8), USTACK - 0x100);
}

#[test]
fn swapgs_and_fs_gs_base_msrs() {
    let mut e = long_mode(|a| {
        wrmsr(a, GS_BASE, DATA + 0x1000)?;
        wrmsr(a, KERNEL_GS_BASE, DATA + 0x2000)?;
        a.swapgs()?;
        a.mov(r12, qword_ptr(8).gs())?;
        a.mov(ecx, GS_BASE)?;
        a.rdmsr()?;
        a.mov(r13, rax)?;
        // A non-canonical base is refused with #GP(0).
        wrmsr(a, KERNEL_GS_BASE, 0x8000_0000_0000)
    });
    poke_q(&mut e, DATA + 0x1008, 0x11);
    poke_q(&mut e, DATA + 0x2008, 0x22);
    run_halt(&mut e);
    assert_eq!(reg(&e, Gpr::R12), 0x22, "GS-relative load after SWAPGS");
    assert_eq!(reg(&e, Gpr::R13), DATA + 0x2000, "GS_BASE after SWAPGS");
    assert_eq!(e.cpu().msr.kernel_gs_base, DATA + 0x1000);
    assert_eq!(reg(&e, Gpr::Rax), 13);
    assert_eq!(reg(&e, Gpr::Rbx), 0);
    assert_eq!(e.cpu().icount, SETUP_INSNS + 4 + 4 + 1 + 4 + 3 + 2 + 10);
}
