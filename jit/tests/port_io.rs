//! Port I/O instructions: IN/OUT (immediate and DX forms, 8/16/32-bit),
//! INS/OUTS with and without REP, the exact instruction count each device
//! access sees, and the IOPL / TSS I/O-bitmap permission check.

use cjemu_jit::emit::Width;
use cjemu_jit::exception::Exception;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, IoBus};
use cjemu_jit::{setup, Engine, Exit, Gpr};
use iced_x86::code_asm::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One port access: (is_write, port, width in bytes, value, icount).
type Access = (bool, u16, u32, u32, u64);

#[derive(Default)]
struct Log {
    accesses: Vec<Access>,
    /// What reading each port returns (all-ones for ports not listed).
    values: HashMap<u16, u32>,
}

/// Records every port access with its instruction count.
struct Recorder(Rc<RefCell<Log>>);

impl IoBus for Recorder {
    fn port_read(&mut self, port: u16, w: Width, icount: u64) -> u32 {
        let mut l = self.0.borrow_mut();
        let v = l.values.get(&port).copied().unwrap_or(u32::MAX) & w.mask() as u32;
        l.accesses.push((false, port, w.bytes(), v, icount));
        v
    }
    fn port_write(&mut self, port: u16, w: Width, value: u32, icount: u64) {
        let mut l = self.0.borrow_mut();
        l.accesses.push((true, port, w.bytes(), value, icount));
    }
    fn mmio_read(&mut self, _: GuestPhysAddr, w: Width, _: u64) -> u64 {
        w.mask()
    }
    fn mmio_write(&mut self, _: GuestPhysAddr, _: Width, _: u64, _: u64) {}
}

const CODE: u64 = 0x1000;
const DATA: u64 = 0x8000;
const TSS: u64 = 0x2_0000;

fn engine(
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> (Engine, Rc<RefCell<Log>>) {
    let mut a = CodeAssembler::new(64).unwrap();
    build(&mut a).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(CODE).unwrap();
    let mem = GuestMemory::new(4 << 20).unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let mut e = Engine::with_memory(mem, Box::new(Recorder(log.clone())));
    e.mem_mut().write_phys(GuestPhysAddr(CODE), &code).unwrap();
    setup::flat_long_mode(&mut e, GuestPhysAddr(0x30_0000), CODE, 0x10_0000).unwrap();
    e.config.exceptions_exit = true;
    (e, log)
}

/// Run until HLT or an exception; the exits seen and the icount after each.
fn run_all(e: &mut Engine) -> Vec<(Exit, u64)> {
    let mut exits = Vec::new();
    for _ in 0..100 {
        let x = e.run(1000);
        exits.push((x, e.cpu().icount));
        if x != Exit::Device {
            break;
        }
    }
    exits
}

fn accesses(l: &Rc<RefCell<Log>>) -> Vec<Access> {
    l.borrow().accesses.clone()
}

#[test]
fn out_immediate_and_dx_forms_at_every_width() {
    let (mut e, log) = engine(|a| {
        a.mov(eax, 0x1234_5678)?;
        a.out(0x80, al)?;
        a.mov(edx, 0x3f8)?;
        a.out(dx, al)?;
        a.out(dx, ax)?;
        a.out(dx, eax)?;
        a.out(0xf4, eax)
    });
    let exits = run_all(&mut e);
    assert_eq!(
        exits,
        vec![
            (Exit::Device, 2),
            (Exit::Device, 4),
            (Exit::Device, 5),
            (Exit::Device, 6),
            (Exit::Device, 7),
            (Exit::Halted, 8)
        ],
        "each OUT returns to the run loop right after it retires"
    );
    assert_eq!(
        accesses(&log),
        vec![
            (true, 0x80, 1, 0x78, 1),
            (true, 0x3f8, 1, 0x78, 3),
            (true, 0x3f8, 2, 0x5678, 4),
            (true, 0x3f8, 4, 0x1234_5678, 5),
            (true, 0xf4, 4, 0x1234_5678, 6),
        ]
    );
}

#[test]
fn in_writes_the_register_by_the_partial_write_rules() {
    let (mut e, log) = engine(|a| {
        a.mov(rax, -1i64)?;
        a.in_(al, 0x60)?; // merges into RAX
        a.mov(rbx, rax)?;
        a.mov(rax, -1i64)?;
        a.mov(edx, 0x1f0)?;
        a.in_(ax, dx)?; // merges into RAX
        a.mov(rcx, rax)?;
        a.mov(rax, -1i64)?;
        a.in_(eax, dx) // zero-extends into RAX
    });
    {
        let mut l = log.borrow_mut();
        l.values.insert(0x60, 0x42);
        l.values.insert(0x1f0, 0xdead_beef);
    }
    run_all(&mut e);
    let c = e.cpu();
    assert_eq!(c.reg(Gpr::Rbx), 0xffff_ffff_ffff_ff42);
    assert_eq!(c.reg(Gpr::Rcx), 0xffff_ffff_ffff_beef);
    assert_eq!(c.reg(Gpr::Rax), 0xdead_beef);
    let counts: Vec<u64> = accesses(&log).iter().map(|a| a.4).collect();
    assert_eq!(counts, vec![1, 5, 8]);
}

#[test]
fn rep_outsb_exits_after_every_iteration_with_exact_counts() {
    let (mut e, log) = engine(|a| {
        a.mov(esi, DATA as u32)?;
        a.mov(ecx, 3)?;
        a.mov(edx, 0x3f8)?;
        a.rep().outsb()
    });
    e.mem_mut().write_phys(GuestPhysAddr(DATA), b"abc").unwrap();
    let exits = run_all(&mut e);
    // Iterations retire as instruction units 4, 5 and 6; HLT is the 7th.
    assert_eq!(
        exits,
        vec![
            (Exit::Device, 4),
            (Exit::Device, 5),
            (Exit::Device, 6),
            (Exit::Halted, 7)
        ]
    );
    assert_eq!(
        accesses(&log),
        vec![
            (true, 0x3f8, 1, b'a' as u32, 3),
            (true, 0x3f8, 1, b'b' as u32, 4),
            (true, 0x3f8, 1, b'c' as u32, 5),
        ]
    );
    assert_eq!(e.cpu().reg(Gpr::Rsi), DATA + 3);
    assert_eq!(e.cpu().reg(Gpr::Rcx), 0);
}

#[test]
fn rep_insw_backwards_stores_each_word() {
    let (mut e, log) = engine(|a| {
        a.std()?;
        a.mov(edi, (DATA + 4) as u32)?;
        a.mov(ecx, 3)?;
        a.mov(edx, 0xe0)?;
        a.rep().insw()
    });
    log.borrow_mut().values.insert(0xe0, 0xa1b2);
    run_all(&mut e);
    let mut m = [0u8; 6];
    e.mem().read_phys(GuestPhysAddr(DATA), &mut m).unwrap();
    assert_eq!(m, [0xb2, 0xa1, 0xb2, 0xa1, 0xb2, 0xa1]);
    assert_eq!(e.cpu().reg(Gpr::Rdi), DATA - 2);
    assert_eq!(e.cpu().icount, 4 + 3 + 1);
    assert_eq!(accesses(&log).len(), 3);
}

#[test]
fn rep_ins_with_zero_count_touches_nothing_and_counts_one() {
    let (mut e, log) = engine(|a| {
        a.xor(ecx, ecx)?;
        a.mov(edi, DATA as u32)?;
        a.rep().insb()?;
        a.nop()
    });
    assert_eq!(run_all(&mut e), vec![(Exit::Halted, 5)]);
    assert!(accesses(&log).is_empty());
    assert_eq!(e.cpu().reg(Gpr::Rdi), DATA);
}

#[test]
fn outs_and_ins_without_rep_do_one_element() {
    let (mut e, log) = engine(|a| {
        a.mov(esi, DATA as u32)?;
        a.mov(edi, (DATA + 0x10) as u32)?;
        a.mov(ecx, 5)?;
        a.mov(edx, 0x2f8)?;
        a.outsd()?;
        a.insb()
    });
    e.mem_mut()
        .write_phys(GuestPhysAddr(DATA), &0xcafe_f00d_u32.to_le_bytes())
        .unwrap();
    log.borrow_mut().values.insert(0x2f8, 0x77);
    run_all(&mut e);
    assert_eq!(
        accesses(&log),
        vec![(true, 0x2f8, 4, 0xcafe_f00d, 4), (false, 0x2f8, 1, 0x77, 5)]
    );
    let c = e.cpu();
    assert_eq!((c.reg(Gpr::Rsi), c.reg(Gpr::Rdi)), (DATA + 4, DATA + 0x11));
    assert_eq!(c.reg(Gpr::Rcx), 5, "no REP: RCX untouched");
    let mut b = [0u8];
    e.mem()
        .read_phys(GuestPhysAddr(DATA + 0x10), &mut b)
        .unwrap();
    assert_eq!(b[0], 0x77);
}

#[test]
fn ins_with_a_bad_destination_faults_before_reading_the_port() {
    let (mut e, log) = engine(|a| {
        a.mov(rdi, 0x8000_0000_0000_0000u64)?; // non-canonical
        a.mov(edx, 0x60)?;
        a.insb()
    });
    assert_eq!(
        run_all(&mut e),
        vec![(Exit::Exception(Exception::gp(0)), 2)]
    );
    assert!(accesses(&log).is_empty(), "the port was not read");
}

/// Set CPL 3 (the code pages are user-accessible) with the given IOPL.
fn user_mode(e: &mut Engine, iopl: u64) {
    let c = e.cpu_mut();
    c.cpl = 3;
    let f = c.rflags();
    c.set_rflags((f & !0x3000) | (iopl << 12));
    e.flush_tlb();
}

/// A 64-bit TSS at [`TSS`] whose I/O bitmap (at offset 0x68) denies every
/// port up to `last_port` except those in `allowed`.
fn tss_with_bitmap(e: &mut Engine, last_port: u16, allowed: &[u16]) {
    let bitmap_len = last_port as usize / 8 + 1;
    let mut tss = vec![0u8; 0x68 + bitmap_len + 1];
    tss[0x66..0x68].copy_from_slice(&0x68u16.to_le_bytes());
    for b in &mut tss[0x68..] {
        *b = 0xff;
    }
    for &p in allowed {
        tss[0x68 + p as usize / 8] &= !(1 << (p % 8));
    }
    e.mem_mut().write_phys(GuestPhysAddr(TSS), &tss).unwrap();
    let c = e.cpu_mut();
    c.tr.base = TSS;
    c.tr.limit = tss.len() as u32 - 1;
    c.tr.attrs = 0x80 | 11; // present, busy 64-bit TSS
}

#[test]
fn cpl_above_iopl_without_a_bitmap_is_gp() {
    let (mut e, log) = engine(|a| a.out(0x80, al));
    user_mode(&mut e, 0);
    // The power-on TR has limit 0xffff but is a 16-bit-style placeholder
    // at base 0; make it plainly too short for an I/O map.
    e.cpu_mut().tr.limit = 0x20;
    assert_eq!(
        run_all(&mut e),
        vec![(Exit::Exception(Exception::gp(0)), 0)]
    );
    assert!(accesses(&log).is_empty());
}

#[test]
fn iopl_3_lets_cpl_3_use_any_port() {
    let (mut e, log) = engine(|a| a.out(0x80, al));
    user_mode(&mut e, 3);
    // The closing HLT is privileged: at CPL 3 it is #GP, not a halt.
    assert_eq!(
        run_all(&mut e),
        vec![(Exit::Device, 1), (Exit::Exception(Exception::gp(0)), 1)]
    );
    assert_eq!(accesses(&log).len(), 1);
}

#[test]
fn the_tss_bitmap_allows_exactly_the_cleared_ports() {
    // Allowed: 0x80 (byte), 0x3f8..0x3f9 (word).
    let cases: [(u16, bool, bool); 6] = [
        (0x80, false, true),
        (0x81, false, false),
        (0x7f, true, false), // word at 0x7f covers 0x7f and 0x80
        (0x3f8, true, true),
        (0x3f9, true, false),  // word at 0x3f9 covers 0x3fa
        (0x400, false, false), // past the bitmap's limit
    ];
    for (port, word, ok) in cases {
        let (mut e, log) = engine(|a| {
            a.mov(edx, port as u32)?;
            if word {
                a.out(dx, ax)
            } else {
                a.out(dx, al)
            }
        });
        user_mode(&mut e, 0);
        tss_with_bitmap(&mut e, 0x3ff, &[0x80, 0x3f8, 0x3f9]);
        let first = run_all(&mut e)[0].0;
        if ok {
            assert_eq!(first, Exit::Device, "port {port:#x}");
            assert_eq!(accesses(&log).len(), 1);
        } else {
            assert_eq!(first, Exit::Exception(Exception::gp(0)), "port {port:#x}");
            assert!(accesses(&log).is_empty());
        }
    }
}

#[test]
fn rep_outs_checks_permission_even_with_zero_count() {
    let (mut e, log) = engine(|a| {
        a.xor(ecx, ecx)?;
        a.mov(edx, 0x81)?;
        a.rep().outsb()
    });
    user_mode(&mut e, 0);
    tss_with_bitmap(&mut e, 0xff, &[0x80]);
    assert_eq!(
        run_all(&mut e),
        vec![(Exit::Exception(Exception::gp(0)), 2)]
    );
    assert!(accesses(&log).is_empty());
}
