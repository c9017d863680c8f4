//! Kernel loaders for `-kernel FILE` (without `--flat`).
//!
//! The file is probed in QEMU 7.2's order: a Linux boot header ("HdrS" at
//! 0x202) first (not implemented yet), then a multiboot (v1) header in the
//! first 8 KiB, then an ELF file (QEMU would try a PVH entry note; cjemu
//! has no PVH boot yet). Every refusal is one line and exit status 2.

pub mod elf;
pub mod multiboot;

use crate::status::Error;
use multiboot::{Module, Plan, Search};
use std::path::{Path, PathBuf};

/// What a kernel file is.
#[derive(Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// Empty file.
    Empty,
    /// A Linux bzImage ("HdrS" at 0x202).
    Linux,
    /// A multiboot (v1) kernel.
    Multiboot(multiboot::Header),
    /// An ELF file without a (valid) multiboot header.
    PlainElf,
    /// Anything else; `Some(offset)` when a multiboot magic with a wrong
    /// checksum was seen.
    Unknown(Option<usize>),
}

/// Probe a kernel file in QEMU's order.
pub fn probe(image: &[u8]) -> KernelKind {
    if image.is_empty() {
        return KernelKind::Empty;
    }
    if image.get(0x202..0x206) == Some(b"HdrS") {
        return KernelKind::Linux;
    }
    let search = multiboot::find_header(image);
    if let Search::Found(h) = search {
        return KernelKind::Multiboot(h);
    }
    if image.starts_with(b"\x7fELF") {
        return KernelKind::PlainElf;
    }
    match search {
        Search::BadChecksum(off) => KernelKind::Unknown(Some(off)),
        _ => KernelKind::Unknown(None),
    }
}

/// The strings a command line gives the multiboot loader.
pub struct MultibootArgs<'a> {
    /// `-kernel` as given.
    pub kernel: &'a Path,
    /// `-append`, or "".
    pub append: &'a str,
    /// `-initrd` items.
    pub initrd: &'a [PathBuf],
    /// RAM size.
    pub ram: u64,
}

/// Read `-initrd` items: each item's text is its module string; the file
/// is the text up to the first space (QEMU's convention for arguments).
fn read_modules(items: &[PathBuf]) -> Result<Vec<Module>, Error> {
    items
        .iter()
        .map(|item| {
            let string = item.to_string_lossy().into_owned();
            let file = string.split(' ').next().unwrap_or("");
            let data =
                std::fs::read(file).map_err(|e| Error::Input(format!("-initrd {file}: {e}")))?;
            Ok(Module { string, data })
        })
        .collect()
}

/// Probe `image` (read from `args.kernel`) and lay out its boot.
pub fn load_kernel(image: &[u8], args: &MultibootArgs) -> Result<Plan, Error> {
    let file = args.kernel.display();
    let bad = |why: String| Error::Input(format!("-kernel {file}: {why}"));
    let header = match probe(image) {
        KernelKind::Multiboot(h) => h,
        KernelKind::Empty => return Err(bad("the file is empty".into())),
        KernelKind::Linux => {
            return Err(Error::NotImplemented {
                what: format!("-kernel {file}: Linux boot protocol"),
                hint: None,
            })
        }
        KernelKind::PlainElf => {
            return Err(Error::NotImplemented {
                what: format!("-kernel {file}: an ELF file without a multiboot header (PVH boot)"),
                hint: Some("cjemu boots multiboot v1 kernels".into()),
            })
        }
        KernelKind::Unknown(Some(off)) => {
            return Err(bad(format!(
                "multiboot magic at offset {off:#x} but its checksum is wrong, and not an ELF file"
            )))
        }
        KernelKind::Unknown(None) => {
            return Err(bad(
                "not a multiboot or Linux kernel; to run it as a flat 64-bit binary, add \
                 --flat ADDR (e.g. --flat 0x100000)"
                    .into(),
            ))
        }
    };
    let kernel = multiboot::kernel_image(image, &header, args.ram).map_err(bad)?;
    let modules = read_modules(args.initrd)?;
    let initrd_arg = (!args.initrd.is_empty()).then(|| {
        args.initrd
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",")
    });
    multiboot::plan(
        &kernel,
        &args.kernel.to_string_lossy(),
        args.append,
        initrd_arg.as_deref(),
        &modules,
        args.ram,
    )
    .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ram: u64) -> MultibootArgs<'static> {
        MultibootArgs {
            kernel: Path::new("k.elf"),
            append: "",
            initrd: &[],
            ram,
        }
    }

    #[test]
    fn kernels_are_probed_in_qemu_order() {
        assert_eq!(probe(&[]), KernelKind::Empty);
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        // A multiboot magic does not make a bzImage multiboot.
        bz[0x10..0x14].copy_from_slice(&multiboot::HEADER_MAGIC.to_le_bytes());
        bz[0x18..0x1c].copy_from_slice(&0u32.wrapping_sub(multiboot::HEADER_MAGIC).to_le_bytes());
        assert_eq!(probe(&bz), KernelKind::Linux);
        bz[0x202] = 0;
        assert!(matches!(probe(&bz), KernelKind::Multiboot(h) if h.offset == 0x10));
        assert_eq!(probe(b"\x7fELF\x01\x01\x01"), KernelKind::PlainElf);
        assert_eq!(probe(&[0x90, 0xf4]), KernelKind::Unknown(None));
    }

    #[test]
    fn malformed_kernels_are_status_2_with_one_line() {
        let one_line = |image: &[u8]| {
            let e = load_kernel(image, &args(128 << 20)).unwrap_err();
            assert_eq!(e.status(), 2, "{e}");
            let m = e.to_string();
            assert!(!m.contains('\n') && m.starts_with("-kernel k.elf"), "{m}");
            m
        };
        assert!(one_line(&[]).contains("empty"));
        assert!(one_line(&[1, 2, 3]).contains("--flat"));
        let mut bad_sum = vec![0u8; 64];
        bad_sum[4..8].copy_from_slice(&multiboot::HEADER_MAGIC.to_le_bytes());
        assert!(one_line(&bad_sum).contains("checksum"));
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(one_line(&bz).contains("Linux boot protocol: not implemented yet"));
        // A multiboot ELF whose program headers are cut off.
        let mut f = elf::tests::elf32(0x10_0000, &[(0x10_0000, 0x10_0000, &[0xf4; 64], 64, 5)]);
        let magic = 0x60; // inside the segment data, 4-aligned
        f[magic..magic + 4].copy_from_slice(&multiboot::HEADER_MAGIC.to_le_bytes());
        f[magic + 4..magic + 8].copy_from_slice(&0u32.to_le_bytes());
        f[magic + 8..magic + 12]
            .copy_from_slice(&0u32.wrapping_sub(multiboot::HEADER_MAGIC).to_le_bytes());
        assert!(load_kernel(&f, &args(128 << 20)).is_ok());
        let mut cut = f.clone();
        cut[44..46].copy_from_slice(&40u16.to_le_bytes()); // 40 program headers
        assert!(one_line(&cut).contains("program headers"));
        // The same kernel does not fit in 1 MiB of RAM.
        assert!(load_kernel(&f, &args(1 << 20))
            .unwrap_err()
            .to_string()
            .contains("RAM"));
        let mut high = f.clone();
        high[52 + 12..52 + 16].copy_from_slice(&0x4000_0000u32.to_le_bytes()); // paddr 1 GiB
        assert!(one_line(&high).contains("outside"));
    }

    #[test]
    fn missing_initrd_file_is_status_2() {
        let mut f = vec![0u8; 64];
        f[0..4].copy_from_slice(&multiboot::HEADER_MAGIC.to_le_bytes());
        let flags = multiboot::FLAG_AOUT_KLUDGE;
        f[4..8].copy_from_slice(&flags.to_le_bytes());
        f[8..12].copy_from_slice(
            &0u32
                .wrapping_sub(multiboot::HEADER_MAGIC)
                .wrapping_sub(flags)
                .to_le_bytes(),
        );
        for (i, v) in [0x10_0000u32, 0x10_0000, 0, 0, 0x10_0020]
            .iter()
            .enumerate()
        {
            f[12 + 4 * i..16 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let items = [PathBuf::from("/nonexistent/cjemu-module arg")];
        let a = MultibootArgs {
            initrd: &items,
            ..args(128 << 20)
        };
        let e = load_kernel(&f, &a).unwrap_err();
        assert_eq!(e.status(), 2);
        assert!(
            e.to_string().contains("-initrd /nonexistent/cjemu-module:"),
            "{e}"
        );
    }
}
