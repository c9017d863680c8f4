//! Running a case in cjemu: flat 64-bit mode with guest-physical = linear,
//! the code page and data region at the native addresses, exceptions
//! returned to the caller instead of delivered.

use super::{End, Final, InitState, CODE, CODE_SIZE, DATA, DATA_SIZE, UD2};
use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::state::{seg_attr, CpuState};
use cjemu_jit::{Accel, Engine, Exit, Seg};

/// Guest RAM: covers the code page and the data region. Lazily allocated.
const RAM: u64 = 0x2100_0000;
/// Where `flat_long_mode` writes its page tables.
const TABLES: u64 = 0x10_0000;
/// Instruction budget of one case (sequences are loop-bounded and short).
pub const BUDGET: u64 = 100_000;

/// One engine reused for every case (state is reset before each).
pub struct Emu {
    e: Engine,
    page: Vec<u8>,
}

impl Emu {
    pub fn new() -> Emu {
        Emu::with_accel(Accel::Interp)
    }

    /// An emulator running on the given tier (interpreter or JIT).
    pub fn with_accel(accel: Accel) -> Emu {
        let mut e = Engine::new(RAM).expect("guest RAM");
        e.config.accel = accel;
        Emu {
            e,
            page: vec![0; CODE_SIZE],
        }
    }

    /// Instructions retired by the last [`Emu::run`].
    pub fn icount(&self) -> u64 {
        self.e.cpu().icount
    }

    /// The engine (for its counters).
    pub fn engine(&self) -> &Engine {
        &self.e
    }

    /// Run `code` from `init`.
    pub fn run(&mut self, code: &[u8], init: &InitState) -> Final {
        let e = &mut self.e;
        *e.cpu_mut() = CpuState::power_on();
        cjemu_jit::setup::flat_long_mode(e, GuestPhysAddr(TABLES), CODE, init.gpr[4])
            .expect("page tables");
        e.config.exceptions_exit = true;
        for pair in self.page.chunks_mut(2) {
            pair.copy_from_slice(&UD2);
        }
        self.page[..code.len()].copy_from_slice(code);
        e.mem_mut()
            .write_phys(GuestPhysAddr(CODE), &self.page)
            .expect("code write");
        e.mem_mut()
            .write_phys(GuestPhysAddr(DATA), &init.data)
            .expect("data write");
        let cpu = e.cpu_mut();
        cpu.gpr = init.gpr;
        cpu.rip = CODE;
        cpu.set_rflags(init.rflags);
        cpu.seg[Seg::Fs as usize].base = init.fs_base;
        cpu.seg[Seg::Gs as usize].base = init.gs_base;
        if init.bits == 32 {
            // Compatibility mode as the native child runs it: a 32-bit
            // code segment, ES and GS based at the data region.
            let cs = &mut cpu.seg[Seg::Cs as usize];
            cs.attrs = (cs.attrs & !seg_attr::L) | seg_attr::DB;
            cpu.seg[Seg::Es as usize].base = DATA;
            cpu.seg[Seg::Gs as usize].base = DATA;
        }
        e.flush_tlb();
        let end = match e.run(BUDGET) {
            Exit::Exception(x) => End::Exception {
                vector: x.vector,
                err: x.error_code as u64,
                cr2: x.address,
            },
            Exit::BudgetExhausted => End::Other("budget exhausted (endless loop?)"),
            Exit::Halted => End::Other("halted"),
            Exit::Device => End::Other("device access"),
            Exit::TripleFault { .. } => End::Other("triple fault"),
            Exit::InterruptWindow => End::Other("interrupt window (INTR is never asserted here)"),
            Exit::Breakpoint => End::Other("breakpoint (none is set here)"),
        };
        let mut data = vec![0; DATA_SIZE];
        e.mem()
            .read_phys(GuestPhysAddr(DATA), &mut data)
            .expect("data read");
        let cpu = e.cpu();
        Final {
            end,
            gpr: cpu.gpr,
            rip: cpu.rip,
            rflags: cpu.rflags(),
            data,
        }
    }
}
