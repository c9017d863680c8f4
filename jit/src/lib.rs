//! cjemu-jit: the embeddable x86-64 CPU engine.
//!
//! Guest code is decoded with iced-x86 into cached blocks. Each
//! instruction's meaning is written once, against the [`emit::Emitter`]
//! trait, in [`semantics`]; the interpreter ([`interp`]) runs it on concrete
//! values and the Cranelift backend compiles it. Every
//! retired instruction is counted ([`state::CpuState::icount`]), so the
//! guest's clock is exact.
//!
//! ```
//! use cjemu_jit::{Engine, Exit, memory::GuestPhysAddr};
//! let mut e = Engine::new(2 << 20).unwrap();
//! // Real mode at 0x7c00: mov ax, 2; add ax, 3; hlt
//! e.mem_mut().write_phys(GuestPhysAddr(0x7c00), &[0xb8, 2, 0, 0x05, 3, 0, 0xf4]).unwrap();
//! let cpu = e.cpu_mut();
//! cpu.seg[1].base = 0; cpu.seg[1].selector = 0; cpu.rip = 0x7c00;
//! assert_eq!(e.run(100), Exit::Halted);
//! assert_eq!(e.cpu().gpr[0], 5);
//! assert_eq!(e.cpu().icount, 3);
//! ```

pub mod block;
pub mod cpu_snapshot;
pub mod cpuid;
pub mod cranelift;
pub mod descriptor;
pub mod emit;
pub mod engine;
pub mod exception;
pub mod flags;
pub mod interp;
pub mod interrupt;
pub mod memory;
pub mod mmu;
pub mod msr;
pub mod semantics;
pub mod setup;
pub mod soft_tlb;
pub mod sse;
pub mod state;
pub mod watchpoint;
pub mod x87;

pub use engine::{Accel, Engine, EngineConfig, Exit};
pub use exception::Exception;
pub use state::{CpuState, Gpr, Seg};
