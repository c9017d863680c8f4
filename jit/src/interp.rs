//! The interpreter: the [`Emitter`] traits implemented on concrete values.
//!
//! Calling a semantic function with an `Interp` executes the instruction.
//! The block loop that drives it lives in `engine.rs`.

use crate::block::Insn;
use crate::cpuid::Features;
use crate::emit::{Emitter, SemResult, Stop, Width};
use crate::exception::Exception;
use crate::flags::{self, CcOp, Cond, FlagSet, Lazy};
use crate::memory::{GuestMemory, IoBus};
use crate::mmu;
use crate::state::{CpuState, Gpr, Seg};

/// Concrete execution context: CPU state, memory and the I/O callbacks,
/// plus what the instruction being executed has decided so far.
pub struct Interp {
    /// The architectural state (boxed: compiled code keeps pointers to it).
    pub cpu: Box<CpuState>,
    /// Guest-physical memory.
    pub mem: GuestMemory,
    /// Port I/O and MMIO callbacks.
    pub io: Box<dyn IoBus>,
    /// The CPU features advertised and decoded.
    pub features: Features,
    /// Target RIP when the current instruction jumped.
    branch: Option<u64>,
    /// Flags live after the current instruction.
    live: FlagSet,
    /// Code size of the current instruction (16, 32, 64).
    bitness: u32,
    /// Software interrupts are reported to the engine's caller instead of
    /// delivered (mirrors `EngineConfig::exceptions_exit`).
    pub exceptions_exit: bool,
}

crate::impl_concrete_ops!(Interp);

impl Interp {
    /// A context over the given state, memory and I/O.
    pub fn new(cpu: Box<CpuState>, mem: GuestMemory, io: Box<dyn IoBus>) -> Interp {
        Interp {
            cpu,
            mem,
            io,
            features: Features::implemented(),
            branch: None,
            live: FlagSet::ARITH,
            bitness: 64,
            exceptions_exit: false,
        }
    }

    /// Execute one decoded instruction: on success it is retired (counted,
    /// RIP advanced or branched). On a fault nothing of it is kept.
    ///
    /// `whole_block` says the block will run to its end unless something
    /// faults or exits (the budget covers it), so flags no later instruction
    /// of the block reads may be skipped. When the budget may end inside the
    /// block, every boundary can become an interrupt point where the guest
    /// sees RFLAGS, so all flags are computed.
    #[inline(always)]
    pub fn step(&mut self, insn: &Insn, bitness: u32, whole_block: bool) -> Result<(), Stop> {
        self.branch = None;
        self.live = if whole_block {
            insn.live_out
        } else {
            FlagSet::ARITH
        };
        self.bitness = bitness;
        (insn.exec)(self, insn)?;
        self.cpu.icount += 1;
        self.cpu.budget -= 1;
        self.cpu.rip = match self.branch {
            Some(t) => t,
            None => mask_ip(insn.next_ip(), bitness),
        };
        Ok(())
    }

    /// RIP after the current instruction is exactly `rip`: for far
    /// transfers and interrupt delivery, which change the code size (the
    /// caller has applied the new code segment's rules, so no masking).
    pub fn far_jump(&mut self, rip: u64) {
        self.branch = Some(rip);
    }

    /// Count `n` retired units of work beyond the one `step` counts (REP
    /// iterations). The caller guarantees `n` fits the budget.
    pub fn retire_extra(&mut self, n: u64) {
        self.cpu.icount += n;
        self.cpu.budget -= n;
    }

    /// Read a port (the instruction ends its block; the device sees the
    /// exact count of instructions before it).
    pub fn port_read(&mut self, port: u16, w: Width) -> u32 {
        self.cpu.exit_req |= crate::state::exit_req::DEVICE | crate::state::exit_req::END_BLOCK;
        self.io.port_read(port, w, self.cpu.icount) & w.mask() as u32
    }

    /// Write a port.
    pub fn port_write(&mut self, port: u16, w: Width, v: u32) {
        self.cpu.exit_req |= crate::state::exit_req::DEVICE | crate::state::exit_req::END_BLOCK;
        self.io
            .port_write(port, w, v & w.mask() as u32, self.cpu.icount)
    }
}

/// Instruction pointers wrap at the code size.
#[inline(always)]
pub fn mask_ip(ip: u64, bitness: u32) -> u64 {
    match bitness {
        64 => ip,
        32 => ip & 0xffff_ffff,
        _ => ip & 0xffff,
    }
}

#[inline(always)]
fn read_host(p: *const u8, w: Width) -> u64 {
    // SAFETY: the soft TLB only hands out pointers into guest RAM with at
    // least `w` bytes left in the page (checked by `host_read`).
    unsafe {
        match w {
            Width::B => *p as u64,
            Width::W => (p as *const u16).read_unaligned() as u64,
            Width::D => (p as *const u32).read_unaligned() as u64,
            Width::Q => (p as *const u64).read_unaligned(),
        }
    }
}

#[inline(always)]
fn write_host(p: *mut u8, w: Width, v: u64) {
    // SAFETY: as for `read_host`, via `host_write`.
    unsafe {
        match w {
            Width::B => *p = v as u8,
            Width::W => (p as *mut u16).write_unaligned(v as u16),
            Width::D => (p as *mut u32).write_unaligned(v as u32),
            Width::Q => (p as *mut u64).write_unaligned(v),
        }
    }
}

impl Emitter for Interp {
    #[inline(always)]
    fn reg(&mut self, r: Gpr) -> u64 {
        self.cpu.gpr[r as usize]
    }

    #[inline(always)]
    fn set_reg(&mut self, r: Gpr, v: u64) {
        self.cpu.gpr[r as usize] = v;
    }

    #[inline(always)]
    fn seg_base(&mut self, s: Seg) -> u64 {
        self.cpu.seg[s as usize].base
    }

    #[inline(always)]
    fn load(&mut self, lin: u64, w: Width) -> SemResult<u64> {
        if let Some(p) = self.cpu.tlb.host_read(lin, w.bytes()) {
            return Ok(read_host(p, w));
        }
        mmu::read_slow(&mut self.cpu, &mut self.mem, &mut *self.io, lin, w).map_err(Stop::Fault)
    }

    #[inline(always)]
    fn store(&mut self, lin: u64, w: Width, v: u64) -> SemResult {
        if let Some(p) = self.cpu.tlb.host_write(lin, w.bytes()) {
            write_host(p, w, v);
            return Ok(());
        }
        mmu::write_slow(&mut self.cpu, &mut self.mem, &mut *self.io, lin, w, v).map_err(Stop::Fault)
    }

    #[inline(always)]
    fn set_cc(&mut self, op: CcOp, dst: u64, src: u64, src2: u64) {
        let c = &mut self.cpu;
        c.cc_op = op.raw() as u64;
        c.cc_dst = dst;
        c.cc_src = src;
        c.cc_src2 = src2;
    }

    #[inline(always)]
    fn cond(&mut self, cc: Cond) -> u64 {
        flags::cond_concrete(&self.cpu, cc) as u64
    }

    #[inline]
    fn rflags(&mut self) -> u64 {
        self.cpu.rflags()
    }

    #[inline]
    fn set_rflags(&mut self, v: u64) {
        self.cpu.set_rflags(v);
    }

    #[inline(always)]
    fn flags_live(&self) -> FlagSet {
        self.live
    }

    #[inline(always)]
    fn jump(&mut self, target: u64) {
        self.branch = Some(mask_ip(target, self.bitness));
    }

    #[inline(always)]
    fn when<F>(&mut self, c: u64, f: F) -> SemResult
    where
        F: FnOnce(&mut Self) -> SemResult,
    {
        if c != 0 {
            f(self)
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn raise_if(&mut self, c: u64, ex: Exception) -> SemResult {
        if c != 0 {
            Err(Stop::Fault(ex))
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn xmm(&mut self, n: usize, high: bool) -> u64 {
        let v = self.cpu.xmm[n & 15];
        if high {
            (v >> 64) as u64
        } else {
            v as u64
        }
    }

    #[inline(always)]
    fn set_xmm(&mut self, n: usize, high: bool, v: u64) {
        let x = &mut self.cpu.xmm[n & 15];
        *x = if high {
            (*x & u64::MAX as u128) | (v as u128) << 64
        } else {
            (*x & !(u64::MAX as u128)) | v as u128
        };
    }

    #[inline(always)]
    fn cr0(&mut self) -> u64 {
        self.cpu.cr0
    }

    #[inline(always)]
    fn cr4(&mut self) -> u64 {
        self.cpu.cr4
    }

    #[inline]
    fn probe_write(&mut self, lin: u64, len: u64) -> SemResult {
        let last = lin.wrapping_add(len - 1);
        if last >> 12 == lin >> 12 {
            return Ok(());
        }
        mmu::probe_write(&mut self.cpu, &mut self.mem, lin, Width::B).map_err(Stop::Fault)?;
        mmu::probe_write(&mut self.cpu, &mut self.mem, last & !0xfff, Width::B).map_err(Stop::Fault)
    }

    #[inline(always)]
    fn bitness(&self) -> u32 {
        self.bitness
    }

    #[inline(always)]
    fn stack_bits(&self) -> u32 {
        if self.bitness == 64 {
            64
        } else if self.cpu.seg[Seg::Ss as usize].attrs & crate::state::seg_attr::DB != 0 {
            32
        } else {
            16
        }
    }
}

/// The lazy flag state of the interpreter's CPU (for helpers).
pub fn lazy(cx: &Interp) -> Lazy<u64> {
    flags::lazy_of(&cx.cpu)
}
