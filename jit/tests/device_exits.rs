//! Every device access sees the exact instruction count, and the engine
//! returns to the run loop after each instruction (or REP iteration) that
//! reached a device.

use cjemu_jit::emit::Width;
use cjemu_jit::memory::{GuestMemory, GuestPhysAddr, IoBus};
use cjemu_jit::{setup, Engine, Exit};
use std::cell::RefCell;
use std::rc::Rc;

/// (address, value, icount) of every MMIO write.
type WriteLog = Rc<RefCell<Vec<(u64, u64, u64)>>>;

/// Records every MMIO write.
#[derive(Default)]
struct Recorder(WriteLog);

impl IoBus for Recorder {
    fn port_read(&mut self, _: u16, w: Width, _: u64) -> u32 {
        w.mask() as u32
    }
    fn port_write(&mut self, _: u16, _: Width, _: u32, _: u64) {}
    fn mmio_read(&mut self, _: GuestPhysAddr, _: Width, _: u64) -> u64 {
        0x5a
    }
    fn mmio_write(&mut self, a: GuestPhysAddr, _: Width, v: u64, icount: u64) {
        self.0.borrow_mut().push((a.0, v, icount));
    }
}

const MMIO: u64 = 0x20_0000;

fn engine(code: &[u8]) -> (Engine, WriteLog) {
    let mut mem = GuestMemory::new(4 << 20).unwrap();
    mem.add_mmio(GuestPhysAddr(MMIO), 0x1000).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut e = Engine::with_memory(mem, Box::new(Recorder(log.clone())));
    e.mem_mut().write_phys(GuestPhysAddr(0x1000), code).unwrap();
    setup::flat_long_mode(&mut e, GuestPhysAddr(0x3000), 0x1000, 0x10_0000).unwrap();
    (e, log)
}

#[test]
fn mmio_store_exits_with_exact_count() {
    // mov edi, MMIO; nop; mov byte [rdi], 7; nop; mov byte [rdi+1], 8; hlt
    let code = [
        0xbf, 0x00, 0x00, 0x20, 0x00, 0x90, 0xc6, 0x07, 0x07, 0x90, 0xc6, 0x47, 0x01, 0x08, 0xf4,
    ];
    let (mut e, log) = engine(&code);
    assert_eq!(e.run(100), Exit::Device);
    assert_eq!(e.cpu().icount, 3, "returns right after the MMIO store");
    assert_eq!(e.run(100), Exit::Device);
    assert_eq!(e.cpu().icount, 5);
    assert_eq!(e.run(100), Exit::Halted);
    assert_eq!(*log.borrow(), vec![(MMIO, 7, 2), (MMIO + 1, 8, 4)]);
}

#[test]
fn rep_stos_to_mmio_exits_after_each_iteration() {
    // mov edi, MMIO; mov ecx, 3; mov al, 9; rep stosb; hlt
    let code = [
        0xbf, 0x00, 0x00, 0x20, 0x00, 0xb9, 0x03, 0x00, 0x00, 0x00, 0xb0, 0x09, 0xf3, 0xaa, 0xf4,
    ];
    let (mut e, log) = engine(&code);
    let mut exits = Vec::new();
    loop {
        let x = e.run(100);
        exits.push((x, e.cpu().icount));
        if x != Exit::Device {
            break;
        }
    }
    // Iterations retire at counts 3, 4, 5; HLT is the 7th instruction unit.
    assert_eq!(
        exits,
        vec![
            (Exit::Device, 4),
            (Exit::Device, 5),
            (Exit::Device, 6),
            (Exit::Halted, 7)
        ]
    );
    let counts: Vec<u64> = log.borrow().iter().map(|&(_, _, c)| c).collect();
    assert_eq!(counts, vec![3, 4, 5]);
}
