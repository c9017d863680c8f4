//! The CPUID the guest sees: a fixed table built from [`Features`], which
//! lists exactly what the engine implements. The decoder follows the same
//! features (e.g. `F3 0F BC` is TZCNT only when BMI1 is advertised).

/// Optional instruction-set features of the emulated CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// BMI1: ANDN, BEXTR, BLSI, BLSMSK, BLSR, TZCNT.
    pub bmi1: bool,
    /// LZCNT (AMD's ABM bit).
    pub lzcnt: bool,
    /// POPCNT.
    pub popcnt: bool,
    /// CMPXCHG16B.
    pub cx16: bool,
    /// LAHF/SAHF in 64-bit mode.
    pub lahf_lm: bool,
    /// x87 FPU.
    pub fpu: bool,
    /// FXSAVE/FXRSTOR.
    pub fxsr: bool,
    /// SSE.
    pub sse: bool,
    /// SSE2.
    pub sse2: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features::implemented()
    }
}

impl Features {
    /// Everything this version of the engine implements.
    pub const fn implemented() -> Features {
        Features {
            bmi1: true,
            lzcnt: true,
            popcnt: true,
            cx16: true,
            lahf_lm: true,
            fpu: true,
            fxsr: true,
            sse: true,
            sse2: true,
        }
    }

    /// iced-x86 decoder options that make decoding follow these features.
    pub fn decoder_options(&self) -> u32 {
        use iced_x86::DecoderOptions as D;
        let mut o = D::NONE;
        if !self.bmi1 {
            o |= D::NO_MPFX_0FBC;
        }
        if !self.lzcnt {
            o |= D::NO_MPFX_0FBD;
        }
        if !self.lahf_lm {
            o |= D::NO_LAHF_SAHF_64;
        }
        o
    }

    /// The four registers CPUID returns for `leaf`/`subleaf`.
    pub fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let bit = |on: bool, n: u32| if on { 1u32 << n } else { 0 };
        match leaf {
            0 => {
                let v = b"GenuineIntel";
                let w = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
                [7, w(0), w(8), w(4)]
            }
            1 => {
                // Family 6, model 6, stepping 3; CLFLUSH line 8*8 bytes; one
                // logical processor; APIC ID 0.
                let eax = 0x0000_0663;
                let ebx = (8 << 8) | (1 << 16);
                let ecx = bit(self.cx16, 13) | bit(self.popcnt, 23);
                let edx = bit(self.fpu, 0)
                    | (1 << 3)  // PSE
                    | (1 << 4)  // TSC
                    | (1 << 5)  // MSR
                    | (1 << 6)  // PAE
                    | (1 << 8)  // CX8
                    | (1 << 13) // PGE
                    | (1 << 15) // CMOV
                    | (1 << 16) // PAT
                    | (1 << 19) // CLFSH
                    | bit(self.fxsr, 24)
                    | bit(self.sse, 25)
                    | bit(self.sse2, 26);
                [eax, ebx, ecx, edx]
            }
            7 if subleaf == 0 => [0, bit(self.bmi1, 3), 0, 0],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => {
                let ecx = bit(self.lahf_lm, 0) | bit(self.lzcnt, 5);
                let edx = (1 << 11) // SYSCALL
                    | (1 << 20) // NX
                    | (1 << 26) // 1 GiB pages
                    | (1 << 29); // long mode
                [0, 0, ecx, edx]
            }
            0x8000_0002..=0x8000_0004 => {
                let brand = b"cjemu virtual CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
                let base = (leaf - 0x8000_0002) as usize * 16;
                let w = |i: usize| {
                    let o = base + i * 4;
                    u32::from_le_bytes([brand[o], brand[o + 1], brand[o + 2], brand[o + 3]])
                };
                [w(0), w(1), w(2), w(3)]
            }
            // 40 physical address bits, 48 linear.
            0x8000_0008 => [0x3028, 0, 0, 0],
            _ => [0; 4],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_advertises_what_decoding_follows() {
        let f = Features::implemented();
        let l7 = f.cpuid(7, 0);
        assert_eq!(l7[1] & (1 << 3) != 0, f.bmi1);
        let mut off = f;
        off.bmi1 = false;
        assert_eq!(off.cpuid(7, 0)[1] & (1 << 3), 0);
        assert_ne!(
            off.decoder_options() & iced_x86::DecoderOptions::NO_MPFX_0FBC,
            0
        );
        assert_eq!(&f.cpuid(0, 0)[1].to_le_bytes(), b"Genu");
        assert_eq!(f.cpuid(0x8000_0001, 0)[3] & (1 << 29), 1 << 29);
    }
}
