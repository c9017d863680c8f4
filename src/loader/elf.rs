//! ELF program headers, as a multiboot loader needs them (parsed with the
//! `object` crate).
//!
//! Only 32-bit little-endian i386 files are accepted: QEMU 7.2's multiboot
//! loader refuses x86-64 ELF files ("give a 32bit one"; kvm-unit-tests
//! converts its 64-bit tests with `objcopy -O elf32-i386` for that reason),
//! and cjemu does the same so a kernel boots on both or on neither.

use object::elf::{FileHeader32, ProgramHeader32, EM_386, EM_X86_64, PF_X, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;

/// One loadable segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address (`p_paddr`).
    pub paddr: u64,
    /// Virtual address (`p_vaddr`).
    pub vaddr: u64,
    /// Bytes from the file (`p_filesz` of them).
    pub data: Vec<u8>,
    /// Size in memory; the bytes past `data` are zero.
    pub memsz: u64,
    /// Executable (`PF_X`).
    pub exec: bool,
}

/// A parsed ELF kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfKernel {
    /// Entry point, translated to a physical address when it lies in an
    /// executable segment whose virtual and physical addresses differ (as
    /// QEMU's ELF loader does).
    pub entry: u64,
    /// `PT_LOAD` segments with a non-zero memory size.
    pub segments: Vec<Segment>,
}

impl ElfKernel {
    /// Lowest physical address any segment occupies.
    pub fn low(&self) -> u64 {
        self.segments.iter().map(|s| s.paddr).min().unwrap_or(0)
    }

    /// One past the highest physical address any segment occupies.
    pub fn high(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0)
    }
}

/// Machine field of an ELF file of either class (offset 18, both classes).
fn machine(image: &[u8]) -> Option<u16> {
    image.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// Parse an ELF32 i386 kernel. Errors are one-line descriptions.
pub fn parse(image: &[u8]) -> Result<ElfKernel, String> {
    if !image.starts_with(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if image.get(4) == Some(&2) {
        return Err(if machine(image) == Some(EM_X86_64) {
            "a 64-bit (x86-64) ELF kernel: multiboot kernels must be ELF32 \
             (as in QEMU; convert with objcopy -O elf32-i386)"
                .into()
        } else {
            "a 64-bit ELF file: multiboot kernels must be ELF32 i386".into()
        });
    }
    let hdr = FileHeader32::<LE>::parse(image).map_err(|e| format!("bad ELF header: {e}"))?;
    let e = LE;
    if hdr.e_machine(e) != EM_386 {
        return Err(format!(
            "ELF machine {} is not i386 ({EM_386})",
            hdr.e_machine(e)
        ));
    }
    let phdrs: &[ProgramHeader32<LE>] = hdr
        .program_headers(e, image)
        .map_err(|err| format!("bad program headers: {err}"))?;
    let mut segments = Vec::new();
    for (n, ph) in phdrs.iter().enumerate() {
        if ph.p_type(e) != PT_LOAD || ph.p_memsz(e) == 0 {
            continue;
        }
        let (filesz, memsz) = (ph.p_filesz(e) as u64, ph.p_memsz(e) as u64);
        if filesz > memsz {
            return Err(format!(
                "program header {n}: file size {filesz:#x} exceeds memory size {memsz:#x}"
            ));
        }
        let data = ph.data(e, image).map_err(|_| {
            format!("program header {n}: segment data lies past the end of the file")
        })?;
        segments.push(Segment {
            paddr: ph.p_paddr(e) as u64,
            vaddr: ph.p_vaddr(e) as u64,
            data: data.to_vec(),
            memsz,
            exec: ph.p_flags(e) & PF_X != 0,
        });
    }
    if segments.is_empty() {
        return Err("no loadable segment".into());
    }
    let mut entry = hdr.e_entry(e) as u64;
    if let Some(s) = segments.iter().find(|s| {
        s.exec && s.vaddr != s.paddr && entry >= s.vaddr && entry < s.vaddr + s.data.len() as u64
    }) {
        entry = entry - s.vaddr + s.paddr;
    }
    Ok(ElfKernel { entry, segments })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF32 i386 file: one PT_LOAD per (paddr, vaddr, data,
    /// memsz, flags), data right after the headers.
    pub fn elf32(entry: u32, segs: &[(u32, u32, &[u8], u32, u32)]) -> Vec<u8> {
        let phoff = 52u32;
        let mut data_off = phoff + 32 * segs.len() as u32;
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f.extend_from_slice(&3u16.to_le_bytes()); // EM_386
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&entry.to_le_bytes());
        f.extend_from_slice(&phoff.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes()); // shoff
        f.extend_from_slice(&0u32.to_le_bytes()); // flags
        for v in [52u16, 32, segs.len() as u16, 40, 0, 0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        let mut blobs = Vec::new();
        for &(paddr, vaddr, data, memsz, flags) in segs {
            for v in [
                1,
                data_off,
                vaddr,
                paddr,
                data.len() as u32,
                memsz,
                flags,
                4,
            ] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            data_off += data.len() as u32;
            blobs.extend_from_slice(data);
        }
        f.extend_from_slice(&blobs);
        f
    }

    #[test]
    fn elf_segments_and_bounds() {
        let f = elf32(
            0x10_0000,
            &[
                (0x10_0000, 0x10_0000, b"\xf4", 0x10, 5),
                (0x20_0000, 0x20_0000, b"ab", 0x1000, 6),
            ],
        );
        let k = parse(&f).unwrap();
        assert_eq!(k.entry, 0x10_0000);
        assert_eq!((k.low(), k.high()), (0x10_0000, 0x20_1000));
        assert_eq!(k.segments[1].data, b"ab");
        assert!(k.segments[0].exec && !k.segments[1].exec);
    }

    #[test]
    fn elf_virtual_entry_is_translated_to_physical() {
        let f = elf32(0xc010_0004, &[(0x10_0000, 0xc010_0000, &[0x90; 8], 8, 5)]);
        assert_eq!(parse(&f).unwrap().entry, 0x10_0004);
    }

    #[test]
    fn elf_malformed_files_are_rejected_with_a_reason() {
        assert!(parse(b"").unwrap_err().contains("not an ELF"));
        let good = elf32(
            0x10_0000,
            &[(0x10_0000, 0x10_0000, b"\xf4\xf4\xf4\xf4", 4, 5)],
        );
        assert!(parse(&good[..60]).unwrap_err().contains("program headers"));
        assert!(parse(&good[..good.len() - 2])
            .unwrap_err()
            .contains("past the end"));
        let mut big = good.clone();
        big[52 + 16..52 + 20].copy_from_slice(&8u32.to_le_bytes()); // filesz 8 > memsz 4
        assert!(parse(&big).unwrap_err().contains("exceeds"));
        let mut x64 = good.clone();
        x64[4] = 2;
        x64[18] = 62;
        assert!(parse(&x64).unwrap_err().contains("x86-64"));
        let mut arm = good;
        arm[18] = 40;
        assert!(parse(&arm).unwrap_err().contains("not i386"));
        assert!(parse(&elf32(0, &[])).unwrap_err().contains("no loadable"));
    }
}
