//! Guest exceptions: architectural faults raised by instructions. They are
//! values delivered to the guest, never Rust errors of the host.

use core::fmt;

/// Exception vectors (Intel SDM vol. 3, table 6-1).
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}

/// Short mnemonic of an exception vector (`#PF`, …).
pub fn vector_name(v: u8) -> &'static str {
    const NAMES: [&str; 21] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF(9)", "#TS", "#NP",
        "#SS", "#GP", "#PF", "(15)", "#MF", "#AC", "#MC", "#XM", "#VE",
    ];
    NAMES.get(v as usize).copied().unwrap_or("(vector)")
}

/// Page-fault error code bits.
pub mod pf_err {
    pub const PRESENT: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const USER: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const FETCH: u32 = 1 << 4;
}

/// An exception raised by a guest instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// Vector number.
    pub vector: u8,
    /// Whether the exception pushes an error code.
    pub has_error_code: bool,
    /// The error code (0 when there is none).
    pub error_code: u32,
    /// For #PF, the faulting linear address (goes to CR2 on delivery).
    pub address: u64,
}

impl Exception {
    const fn plain(vector: u8) -> Exception {
        Exception {
            vector,
            has_error_code: false,
            error_code: 0,
            address: 0,
        }
    }
    const fn with_code(vector: u8, code: u32) -> Exception {
        Exception {
            vector,
            has_error_code: true,
            error_code: code,
            address: 0,
        }
    }
    /// Divide error.
    pub const fn de() -> Exception {
        Self::plain(vector::DE)
    }
    /// Debug.
    pub const fn db() -> Exception {
        Self::plain(vector::DB)
    }
    /// Breakpoint (INT3).
    pub const fn bp() -> Exception {
        Self::plain(vector::BP)
    }
    /// Overflow (INTO).
    pub const fn of() -> Exception {
        Self::plain(vector::OF)
    }
    /// BOUND range exceeded.
    pub const fn br() -> Exception {
        Self::plain(vector::BR)
    }
    /// Invalid opcode.
    pub const fn ud() -> Exception {
        Self::plain(vector::UD)
    }
    /// Device not available.
    pub const fn nm() -> Exception {
        Self::plain(vector::NM)
    }
    /// Double fault (error code 0).
    pub const fn df() -> Exception {
        Self::with_code(vector::DF, 0)
    }
    /// Invalid TSS.
    pub const fn ts(code: u32) -> Exception {
        Self::with_code(vector::TS, code)
    }
    /// Segment not present.
    pub const fn np(code: u32) -> Exception {
        Self::with_code(vector::NP, code)
    }
    /// Stack-segment fault.
    pub const fn ss(code: u32) -> Exception {
        Self::with_code(vector::SS, code)
    }
    /// General protection.
    pub const fn gp(code: u32) -> Exception {
        Self::with_code(vector::GP, code)
    }
    /// Page fault at `address` with `code` (see [`pf_err`]).
    pub const fn pf(address: u64, code: u32) -> Exception {
        Exception {
            vector: vector::PF,
            has_error_code: true,
            error_code: code,
            address,
        }
    }
    /// x87 floating-point error.
    pub const fn mf() -> Exception {
        Self::plain(vector::MF)
    }
    /// Alignment check.
    pub const fn ac() -> Exception {
        Self::with_code(vector::AC, 0)
    }
    /// SIMD floating-point exception.
    pub const fn xm() -> Exception {
        Self::plain(vector::XM)
    }

    /// True for the contributory class used in double-fault escalation.
    pub fn is_contributory(&self) -> bool {
        matches!(
            self.vector,
            vector::DE | vector::TS | vector::NP | vector::SS | vector::GP
        )
    }
}

impl fmt::Debug for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", vector_name(self.vector))?;
        if self.has_error_code {
            write!(f, "(error code {:#x})", self.error_code)?;
        }
        if self.vector == vector::PF {
            write!(f, " at {:#x}", self.address)?;
        }
        Ok(())
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
