//! The architectural CPU state the guest can see, plus the engine's own
//! run-time fields, in one `#[repr(C)]` struct.
//!
//! Compiled code receives a pointer to [`CpuState`]; [`offset_of_field`] is the
//! one place that turns a register name into a byte offset. Nothing else may
//! compute offsets into this struct.

use crate::flags::{CcOp, RFLAGS_FIXED};
use crate::soft_tlb::SoftTlb;

/// A general-purpose register by its encoding number (RAX = 0 … R15 = 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// All sixteen registers in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The register with encoding number `n` (0–15).
    pub fn from_index(n: usize) -> Gpr {
        Gpr::ALL[n & 15]
    }

    /// Lower-case 64-bit name, as in Intel syntax.
    pub fn name(self) -> &'static str {
        [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ][self as usize]
    }
}

/// Segment registers in encoding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Seg {
    Es = 0,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

impl Seg {
    /// All six segment registers in encoding order.
    pub const ALL: [Seg; 6] = [Seg::Es, Seg::Cs, Seg::Ss, Seg::Ds, Seg::Fs, Seg::Gs];
}

/// A segment register with its hidden (descriptor-cache) part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(C)]
pub struct Segment {
    /// Base address (64 bits for FS/GS in long mode).
    pub base: u64,
    /// Limit in bytes, already scaled by the granularity bit.
    pub limit: u32,
    /// The visible selector.
    pub selector: u16,
    /// Descriptor attributes in VMX "access rights" layout: bits 0–3 type,
    /// 4 S, 5–6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G.
    pub attrs: u16,
}

/// Attribute bits of [`Segment::attrs`].
pub mod seg_attr {
    /// Type field mask (accessed, R/W, C/E, code).
    pub const TYPE: u16 = 0xf;
    /// Accessed.
    pub const ACCESSED: u16 = 1;
    /// Writable data / readable code.
    pub const RW: u16 = 1 << 1;
    /// Code segment (type bit 3).
    pub const CODE: u16 = 1 << 3;
    /// Code or data (not system) descriptor.
    pub const S: u16 = 1 << 4;
    /// Descriptor privilege level shift.
    pub const DPL_SHIFT: u16 = 5;
    /// Present.
    pub const P: u16 = 1 << 7;
    /// 64-bit code segment.
    pub const L: u16 = 1 << 13;
    /// Default operand size 32 / big.
    pub const DB: u16 = 1 << 14;
    /// Granularity (limit in 4 KiB units).
    pub const G: u16 = 1 << 15;
}

impl Segment {
    /// A flat 64-bit ring-0 code segment.
    pub fn code64(selector: u16) -> Segment {
        Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            attrs: seg_attr::P
                | seg_attr::S
                | seg_attr::CODE
                | seg_attr::RW
                | seg_attr::ACCESSED
                | seg_attr::L
                | seg_attr::G,
        }
    }

    /// A flat 32-bit ring-0 data segment.
    pub fn data32(selector: u16) -> Segment {
        Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            attrs: seg_attr::P
                | seg_attr::S
                | seg_attr::RW
                | seg_attr::ACCESSED
                | seg_attr::DB
                | seg_attr::G,
        }
    }

    /// Descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.attrs >> seg_attr::DPL_SHIFT) & 3) as u8
    }
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes (the table spans `base ..= base + limit`).
    pub limit: u16,
    _pad: [u16; 3],
}

impl DescriptorTable {
    /// A table register with the given base and limit.
    pub fn new(base: u64, limit: u16) -> Self {
        DescriptorTable {
            base,
            limit,
            _pad: [0; 3],
        }
    }
}

/// Model-specific registers the engine keeps in `CpuState`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(C)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    pub tsc_aux: u64,
    pub apic_base: u64,
    pub misc_enable: u64,
    pub mtrr_def_type: u64,
}

/// x87 FPU state (80-bit registers kept in 16-byte slots, FXSAVE order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct X87State {
    /// Physical registers R0–R7, each an 80-bit value in the low 10 bytes.
    pub regs: [[u8; 16]; 8],
    /// Control word.
    pub fcw: u16,
    /// Status word (TOP in bits 11–13).
    pub fsw: u16,
    /// Full tag word, two bits per register (00 valid, 01 zero, 10 special, 11 empty).
    pub ftw: u16,
    /// Last opcode.
    pub fop: u16,
    _pad: u32,
    /// Last instruction pointer.
    pub fip: u64,
    /// Last data pointer.
    pub fdp: u64,
}

impl Default for X87State {
    fn default() -> Self {
        // FNINIT values.
        X87State {
            regs: [[0; 16]; 8],
            fcw: 0x037f,
            fsw: 0,
            ftw: 0xffff,
            fop: 0,
            _pad: 0,
            fip: 0,
            fdp: 0,
        }
    }
}

/// Every register the guest can see, followed by the engine's own fields.
///
/// Lazy flags: the arithmetic flags (CF PF AF ZF SF OF) are not kept in
/// `rflags` while `cc_op` describes the last flag-setting operation; they are
/// computed from `cc_dst`/`cc_src`/`cc_src2` when read (see `flags.rs`). All
/// other RFLAGS bits always live in `rflags`.
#[derive(Clone)]
#[repr(C, align(16))]
pub struct CpuState {
    /// RAX … R15.
    pub gpr: [u64; 16],
    /// Instruction pointer of the next instruction to execute.
    pub rip: u64,
    /// RFLAGS; the arithmetic bits are valid only when `cc_op` is `EFLAGS`.
    pub rflags: u64,
    /// Lazy-flags operation (a [`CcOp`] as its raw byte).
    pub cc_op: u64,
    /// Lazy-flags result operand.
    pub cc_dst: u64,
    /// Lazy-flags source operand.
    pub cc_src: u64,
    /// Lazy-flags second source (carry in, or saved CF).
    pub cc_src2: u64,
    /// ES CS SS DS FS GS.
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub dr: [u64; 8],
    pub efer: u64,
    pub msr: Msrs,
    pub x87: X87State,
    /// XMM0–XMM15.
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    /// Current privilege level (CS.RPL in protected mode, cached).
    pub cpl: u8,
    /// Interrupts are inhibited for one instruction (STI, MOV SS shadow).
    pub interrupt_shadow: u8,
    /// The CPU is halted until an interrupt arrives.
    pub halted: u8,
    /// The interrupt controller asserts INTR (set by the run loop through
    /// `Engine::set_intr`; not architectural). The engine leaves at the
    /// next block boundary where the CPU can take it.
    pub intr: u8,

    // ---- engine fields: not architectural, never hashed or snapshotted ----
    /// Guest instructions retired since power-on.
    pub icount: u64,
    /// Instructions left in the current `run` slice.
    pub budget: u64,
    /// RDTSC = `tsc_bias + (icount << tsc_shift)`; set by the run loop.
    pub tsc_bias: u64,
    /// See `tsc_bias`.
    pub tsc_shift: u64,
    /// Requests to leave the current block or the run loop, set by slow
    /// paths (see `exit_req` constants in `engine.rs`).
    pub exit_req: u64,
    /// The soft TLB consulted by every guest memory access.
    pub tlb: SoftTlb,
}

/// CR0 bits.
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const PGE: u64 = 1 << 7;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
}

/// EFER bits.
pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

impl Default for CpuState {
    fn default() -> Self {
        CpuState::power_on()
    }
}

impl CpuState {
    /// The power-on state, keeping the clock-related engine fields of
    /// `self`: the instruction count and the TSC's bias and shift (a reset
    /// or a reload does not stop the machine's clock).
    pub fn power_on_keeping_clock(&self) -> CpuState {
        CpuState {
            icount: self.icount,
            tsc_bias: self.tsc_bias,
            tsc_shift: self.tsc_shift,
            ..CpuState::power_on()
        }
    }

    /// The state after power-on reset (real mode, CS:IP = F000:FFF0).
    pub fn power_on() -> CpuState {
        let mut data = Segment {
            base: 0,
            limit: 0xffff,
            selector: 0,
            attrs: seg_attr::P | seg_attr::S | seg_attr::RW | seg_attr::ACCESSED,
        };
        let mut seg = [data; 6];
        data.selector = 0xf000;
        data.base = 0xffff_0000;
        data.attrs |= seg_attr::CODE;
        seg[Seg::Cs as usize] = data;
        CpuState {
            gpr: [0; 16],
            rip: 0xfff0,
            rflags: RFLAGS_FIXED,
            cc_op: CcOp::EFLAGS.raw() as u64,
            cc_dst: 0,
            cc_src: 0,
            cc_src2: 0,
            seg,
            ldtr: Segment {
                attrs: seg_attr::P | 2,
                limit: 0xffff,
                ..Segment::default()
            },
            tr: Segment {
                attrs: seg_attr::P | 11,
                limit: 0xffff,
                ..Segment::default()
            },
            gdtr: DescriptorTable::new(0, 0xffff),
            idtr: DescriptorTable::new(0, 0xffff),
            cr0: cr0::ET | cr0::CD | cr0::NW,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            efer: 0,
            msr: Msrs {
                pat: 0x0007_0406_0007_0406,
                apic_base: 0xfee0_0900,
                ..Msrs::default()
            },
            x87: X87State::default(),
            xmm: [0; 16],
            mxcsr: 0x1f80,
            cpl: 0,
            interrupt_shadow: 0,
            halted: 0,
            intr: 0,
            icount: 0,
            budget: 0,
            tsc_bias: 0,
            tsc_shift: 0,
            exit_req: 0,
            tlb: SoftTlb::new(),
        }
    }

    /// Read a general-purpose register.
    #[inline(always)]
    pub fn reg(&self, r: Gpr) -> u64 {
        self.gpr[r as usize]
    }

    /// Write a general-purpose register (all 64 bits).
    #[inline(always)]
    pub fn set_reg(&mut self, r: Gpr, v: u64) {
        self.gpr[r as usize] = v;
    }

    /// Segment register `s`.
    #[inline(always)]
    pub fn seg(&self, s: Seg) -> &Segment {
        &self.seg[s as usize]
    }

    /// True when the CPU is in 64-bit mode (long mode active and CS.L set).
    #[inline(always)]
    pub fn in_64bit_mode(&self) -> bool {
        self.efer & efer::LMA != 0 && self.seg[Seg::Cs as usize].attrs & seg_attr::L != 0
    }

    /// Code size the decoder must use: 16, 32 or 64.
    pub fn code_bitness(&self) -> u32 {
        if self.in_64bit_mode() {
            64
        } else if self.cr0 & cr0::PE != 0 && self.seg[Seg::Cs as usize].attrs & seg_attr::DB != 0 {
            32
        } else {
            // Real mode, or a 16-bit protected-mode code segment.
            16
        }
    }

    /// RFLAGS with the arithmetic flags computed from the lazy state.
    pub fn rflags(&self) -> u64 {
        crate::flags::materialize_concrete(self)
    }

    /// Replace RFLAGS (all bits); the lazy state becomes `EFLAGS`.
    pub fn set_rflags(&mut self, v: u64) {
        self.rflags = (v & crate::flags::RFLAGS_WRITABLE) | RFLAGS_FIXED;
        self.cc_op = CcOp::EFLAGS.raw() as u64;
    }

    /// Put the CPU in 64-bit mode at ring 0 with flat segments, paging on
    /// with the page tables at `cr3` (the caller builds them).
    pub fn enter_long_mode_flat(&mut self, cr3: u64) {
        self.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
        self.cr4 = cr4::PAE | cr4::PGE | cr4::OSFXSR | cr4::OSXMMEXCPT;
        self.cr3 = cr3;
        self.efer = efer::LME | efer::LMA | efer::NXE | efer::SCE;
        self.seg[Seg::Cs as usize] = Segment::code64(0x8);
        for s in [Seg::Ds, Seg::Es, Seg::Ss, Seg::Fs, Seg::Gs] {
            self.seg[s as usize] = Segment::data32(0x10);
        }
        self.cpl = 0;
        self.tlb.flush_all();
    }
}

/// A named field of [`CpuState`] whose offset compiled code needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Gpr(Gpr),
    Rip,
    Rflags,
    CcOp,
    CcDst,
    CcSrc,
    CcSrc2,
    SegBase(Seg),
    Icount,
    Budget,
    ExitReq,
    Tlb,
}

/// Byte offset of `f` inside [`CpuState`]: the one place offsets are computed.
pub const fn offset_of_field(f: Field) -> usize {
    use core::mem::{offset_of, size_of};
    match f {
        Field::Gpr(r) => offset_of!(CpuState, gpr) + 8 * r as usize,
        Field::Rip => offset_of!(CpuState, rip),
        Field::Rflags => offset_of!(CpuState, rflags),
        Field::CcOp => offset_of!(CpuState, cc_op),
        Field::CcDst => offset_of!(CpuState, cc_dst),
        Field::CcSrc => offset_of!(CpuState, cc_src),
        Field::CcSrc2 => offset_of!(CpuState, cc_src2),
        Field::SegBase(s) => {
            offset_of!(CpuState, seg)
                + size_of::<Segment>() * s as usize
                + offset_of!(Segment, base)
        }
        Field::Icount => offset_of!(CpuState, icount),
        Field::Budget => offset_of!(CpuState, budget),
        Field::ExitReq => offset_of!(CpuState, exit_req),
        Field::Tlb => offset_of!(CpuState, tlb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiled code bakes these offsets in; a change must be deliberate.
    #[test]
    fn state_offsets_are_pinned() {
        assert_eq!(offset_of_field(Field::Gpr(Gpr::Rax)), 0);
        assert_eq!(offset_of_field(Field::Gpr(Gpr::R15)), 120);
        assert_eq!(offset_of_field(Field::Rip), 128);
        assert_eq!(offset_of_field(Field::Rflags), 136);
        assert_eq!(offset_of_field(Field::CcOp), 144);
        assert_eq!(offset_of_field(Field::CcDst), 152);
        assert_eq!(offset_of_field(Field::CcSrc), 160);
        assert_eq!(offset_of_field(Field::CcSrc2), 168);
        assert_eq!(offset_of_field(Field::SegBase(Seg::Es)), 176);
        assert_eq!(offset_of_field(Field::SegBase(Seg::Fs)), 176 + 4 * 16);
        assert_eq!(offset_of_field(Field::SegBase(Seg::Gs)), 176 + 5 * 16);
        assert_eq!(core::mem::size_of::<Segment>(), 16);
        assert_eq!(core::mem::size_of::<X87State>() % 16, 0);
        assert_eq!(core::mem::align_of::<CpuState>(), 16);
        let icount = offset_of_field(Field::Icount);
        assert_eq!(offset_of_field(Field::Budget), icount + 8);
        assert_eq!(offset_of_field(Field::Tlb) % 8, 0);
    }

    #[test]
    fn power_on_state_is_real_mode_reset_vector() {
        let s = CpuState::power_on();
        assert_eq!(s.code_bitness(), 16);
        assert_eq!(s.seg(Seg::Cs).base + s.rip, 0xffff_fff0);
        assert_eq!(s.rflags(), 0x2);
    }

    #[test]
    fn long_mode_flat_is_64_bit() {
        let mut s = CpuState::power_on();
        s.enter_long_mode_flat(0x1000);
        assert!(s.in_64bit_mode());
        assert_eq!(s.code_bitness(), 64);
    }
}

/// Bits of [`CpuState::exit_req`]: why the current block must end early.
pub mod exit_req {
    /// Leave the block after the current instruction.
    pub const END_BLOCK: u64 = 1 << 0;
    /// The instruction reached a device (MMIO, port I/O): return to the run
    /// loop after it so the machine sees the exact count.
    pub const DEVICE: u64 = 1 << 1;
    /// A page holding translated code was written.
    pub const CODE_WRITE: u64 = 1 << 2;
    /// The instruction halted the CPU.
    pub const HALT: u64 = 1 << 3;
    /// Paging, mode or privilege changed: cached translations of linear
    /// addresses may be stale.
    pub const MODE_CHANGE: u64 = 1 << 4;
}
