//! Host-CPU differential testing: random instruction sequences run natively
//! (in a forked child, see [`native`]) and in cjemu ([`emu`]); the results
//! are compared by [`compare`]. [`gen`] holds the catalogue of instruction
//! forms and the sequence generator.
//!
//! Address layout, identical natively and in the emulator (guest-physical =
//! linear): the code page at [`CODE`], the data region at [`DATA`]. The
//! data region holds three areas: general memory operands, a string area
//! for MOVS/STOS/…, and the stack.

#![allow(dead_code)]

pub mod compare;
pub mod emu;
pub mod gen;
pub mod native;

/// The code page (the sequence, then UD2 padding).
pub const CODE: u64 = 0x1000_0000;
/// Size of the code region.
pub const CODE_SIZE: usize = 0x1000;
/// The data region.
pub const DATA: u64 = 0x2000_0000;
/// Size of the data region (compared byte by byte after every case).
pub const DATA_SIZE: usize = 0x4000;
/// Centre of the general memory-operand area (base registers point near it).
pub const MEM_CENTRE: u64 = DATA + 0x1000;
/// Start of the string area (RSI/RDI of string instructions point into it).
pub const STR_AREA: u64 = DATA + 0x2000;
/// Size of the string area.
pub const STR_AREA_SIZE: u64 = 0x800;
/// Initial RSP: stack grows down towards the string area, 1 KiB above for
/// pops, `[rsp+disp]` operands and `RET imm`.
pub const STACK_TOP: u64 = DATA + 0x3c00;

/// UD2, the padding of the code page and the end of every sequence.
pub const UD2: [u8; 2] = [0x0f, 0x0b];

/// Arithmetic flags plus the system flags both sides must agree on.
pub mod fl {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const AC: u64 = 1 << 18;
    /// The six status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
    /// Flags compared at the end of a case. RF (set by the CPU in the
    /// image of a faulting instruction), NT, ID, VIF/VIP are not.
    pub const COMPARED: u64 = STATUS | FIXED1 | TF | IF | DF | IOPL | AC;

    /// Names for messages.
    pub fn names(v: u64) -> String {
        let all = [
            (CF, "CF"),
            (PF, "PF"),
            (AF, "AF"),
            (ZF, "ZF"),
            (SF, "SF"),
            (TF, "TF"),
            (IF, "IF"),
            (DF, "DF"),
            (OF, "OF"),
            (IOPL, "IOPL"),
            (AC, "AC"),
            (FIXED1, "bit1"),
        ];
        let n: Vec<&str> = all
            .iter()
            .filter(|(b, _)| v & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if n.is_empty() {
            "-".to_string()
        } else {
            n.join(" ")
        }
    }

    /// From iced-x86's `RflagsBits`.
    pub fn from_iced(bits: u32) -> u64 {
        let map = [
            (0x01, OF),
            (0x02, SF),
            (0x04, ZF),
            (0x08, AF),
            (0x10, CF),
            (0x20, PF),
            (0x40, DF),
            (0x80, IF),
            (0x100, AC),
        ];
        map.iter()
            .filter(|(b, _)| bits & b != 0)
            .fold(0, |a, (_, f)| a | f)
    }
}

/// Register names in encoding order.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// Deterministic PRNG (splitmix64 seeding + xoshiro256**): no dependency,
/// same sequence on every host.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// One splitmix64 step (also used to derive per-case seeds).
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut s = [0; 4];
        let mut x = seed;
        for v in &mut s {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *v = splitmix(x);
        }
        Rng { s }
    }

    pub fn next(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A value of `bits` bits biased towards edge cases (0, ±1, sign
    /// boundaries, powers of two, small numbers) and otherwise uniform.
    pub fn interesting(&mut self, bits: u32) -> u64 {
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let sign = 1u64 << (bits - 1);
        let v = match self.below(16) {
            0 => 0,
            1 => 1,
            2 => mask,
            3 => sign,
            4 => sign - 1,
            5 => sign + 1,
            6 => 1u64 << self.below(bits as u64),
            7 => self.below(32),
            8 => 0u64.wrapping_sub(self.below(32) + 1),
            9 => (1u64 << self.below(bits as u64)).wrapping_sub(1),
            _ => self.next(),
        };
        v & mask
    }
}

/// The initial architectural state of one case.
#[derive(Clone, Debug)]
pub struct InitState {
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    /// The whole data region.
    pub data: Vec<u8>,
    /// Code size: 64, or 32 (compatibility mode: CS 0x23 natively; ES and
    /// GS have base [`DATA`], the other segments are flat).
    pub bits: u32,
}

/// How a run (native or emulated) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// An exception with this vector was raised at `rip` (the final UD2
    /// gives #UD). `err` is the error code where the CPU reports one, `cr2`
    /// the fault address of a #PF.
    Exception { vector: u8, err: u64, cr2: u64 },
    /// The native run did not end within its time limit (an endless loop).
    Timeout,
    /// The emulator stopped for another reason (budget spent, HLT, …).
    Other(&'static str),
    /// The native child died before running this case.
    NotRun,
}

/// The final state of one run.
#[derive(Clone, Debug)]
pub struct Final {
    pub end: End,
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub data: Vec<u8>,
}

/// Read an environment variable as a number (decimal or 0x-hex).
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    if let Some(h) = v.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

/// True when an environment variable is set to something other than
/// "0"/"" (for on/off switches).
pub fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

/// The host CPU vendor and model (for messages only).
pub fn host_cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!("{} ({})", field("vendor_id"), field("model name"))
}
