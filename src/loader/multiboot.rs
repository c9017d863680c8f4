//! Multiboot (v1) kernels, booted as QEMU 7.2's `-kernel` boots them, so
//! the same test kernel runs on both and sees the same information.
//!
//! QEMU (hw/i386/multiboot.c and its option ROM pc-bios/optionrom/multiboot.S)
//! builds one buffer at the kernel's load address: the kernel (zero-filled
//! to its BSS end, rounded up to a page), then the module descriptors, the
//! command lines (modules' first, then the kernel's `"<path> <append>"`) and
//! the boot-loader name `qemu` (rounded up to a page), then each module
//! rounded up to a page. The information structure goes to 0x9500 and the
//! BIOS memory map (e820 entries in multiboot form) to 0x9000. This module
//! computes that image as a [`Plan`] (pure data, so a reset can replay it)
//! and [`apply`] writes it and sets up the CPU.
//!
//! Entry state (the option ROM's): 32-bit protected mode, paging off,
//! CS = 0x08 (flat 4 GiB code), DS = ES = FS = GS = SS = 0x10 (flat 4 GiB
//! data), EAX = 0x2BADB002, EBX = 0x9500, ECX = the entry point, interrupts
//! off, DF clear, IDTR = the real-mode IVT (base 0, limit 0x3ff). Two
//! differences, both undefined by the multiboot specification: QEMU's GDT
//! lives in its option ROM, cjemu's copy (same five descriptors) is in RAM
//! at [`GDT_ADDR`]; and ESP is [`ENTRY_ESP`] rather than SeaBIOS's stack.

use super::elf;
use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::state::{cr0, seg_attr, DescriptorTable, Gpr, Seg, Segment};
use cjemu_jit::Engine;

/// The multiboot header magic.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// What EAX holds at entry.
pub const BOOT_MAGIC: u32 = 0x2bad_b002;
/// The header is searched for in this many leading bytes, at 4-byte steps.
pub const SEARCH_LEN: usize = 8192;
/// Header flag: load addresses are in the header (the "a.out kludge").
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Header flag: the kernel wants video mode information (ignored, as QEMU).
pub const FLAG_VIDEO: u32 = 1 << 2;

/// The BIOS memory map, as the option ROM stores it.
pub const MMAP_ADDR: u64 = 0x9000;
/// The multiboot information structure.
pub const MBI_ADDR: u64 = 0x9500;
/// Size of the information structure.
pub const MBI_SIZE: usize = 88;
/// cjemu's copy of the option ROM's GDT.
pub const GDT_ADDR: u64 = 0x9600;
/// ESP at entry (undefined by the specification).
pub const ENTRY_ESP: u64 = 0x7000;
/// Boot-loader name QEMU reports.
pub const LOADER_NAME: &str = "qemu";
/// Boot device QEMU reports (no BIOS drive).
pub const BOOT_DEVICE: u32 = 0x8000_ffff;
/// Information flags QEMU sets: memory, boot device, command line,
/// modules, memory map, boot-loader name.
pub const INFO_FLAGS: u32 = 1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9;
/// Size of one module descriptor.
const MOD_SIZE: usize = 16;
/// KiB of conventional memory SeaBIOS reports (a 1 KiB EBDA at 0x9fc00).
pub const MEM_LOWER_KB: u32 = 639;
/// SeaBIOS reserves this much at the top of low RAM for its tables.
const BIOS_HIGH_RESERVED: u64 = 0x2_0000;
/// The i440fx PC keeps RAM below 4 GiB under this (QEMU's `pc`).
const LOWMEM_LIMIT: u64 = 0xe000_0000;
/// Least RAM a multiboot boot needs (the map describes 1 MiB and up).
pub const MIN_RAM: u64 = 2 << 20;

/// The option ROM's GDT: null, null, 0x08 flat code, 0x10 flat data,
/// 0x18 16-bit code, 0x20 16-bit data.
const GDT: [u64; 5] = [
    0,
    0x00cf_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x0000_9e00_0000_ffff,
    0x0000_9200_0000_ffff,
];

/// A multiboot header found in a kernel file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: usize,
    pub flags: u32,
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

/// What the header search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// A valid header.
    Found(Header),
    /// The magic, but with a wrong checksum (at this offset).
    BadChecksum(usize),
    /// No magic at all.
    None,
}

fn word(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

/// Search the first [`SEARCH_LEN`] bytes at 4-byte steps, as QEMU does
/// (bytes past the end of a short file read as zero).
pub fn find_header(image: &[u8]) -> Search {
    let mut bad = None;
    for i in (0..SEARCH_LEN - 48).step_by(4) {
        if word(image, i) != HEADER_MAGIC {
            continue;
        }
        let flags = word(image, i + 4);
        let sum = HEADER_MAGIC
            .wrapping_add(flags)
            .wrapping_add(word(image, i + 8));
        if sum != 0 {
            bad.get_or_insert(i);
            continue;
        }
        return Search::Found(Header {
            offset: i,
            flags,
            header_addr: word(image, i + 12),
            load_addr: word(image, i + 16),
            load_end_addr: word(image, i + 20),
            bss_end_addr: word(image, i + 24),
            entry_addr: word(image, i + 28),
        });
    }
    bad.map_or(Search::None, Search::BadChecksum)
}

/// The kernel as it will sit in memory: `bytes` at `load_addr` (BSS
/// included as zeroes), entered at `entry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    pub load_addr: u64,
    pub bytes: Vec<u8>,
    pub entry: u64,
}

/// Longest kernel image accepted (the load buffer must fit below 4 GiB).
const MAX_IMAGE: u64 = 1 << 32;

/// Error unless `[start, end)` lies inside RAM (checked before allocating).
fn inside_ram(start: u64, end: u64, ram: u64) -> Result<(), String> {
    if end > ram.min(MAX_IMAGE) {
        return Err(format!(
            "the kernel occupies {start:#x}..{end:#x}, outside the {ram:#x} bytes of RAM (raise -m?)"
        ));
    }
    Ok(())
}

/// The kernel image from the a.out-kludge header fields (flag 16).
fn aout_image(image: &[u8], h: &Header, ram: u64) -> Result<KernelImage, String> {
    if h.header_addr < h.load_addr {
        return Err("multiboot header_addr lies below load_addr".into());
    }
    let back = (h.header_addr - h.load_addr) as usize;
    let text_offset = h
        .offset
        .checked_sub(back)
        .ok_or("multiboot load_addr lies before the start of the file")?;
    let load_size = if h.load_end_addr != 0 {
        if h.load_end_addr < h.load_addr {
            return Err("multiboot load_end_addr lies below load_addr".into());
        }
        (h.load_end_addr - h.load_addr) as usize
    } else {
        image.len() - text_offset
    };
    let size = if h.bss_end_addr != 0 {
        let end = h.load_addr as u64 + load_size as u64;
        if (h.bss_end_addr as u64) < end {
            return Err("multiboot bss_end_addr lies below the end of the loaded image".into());
        }
        (h.bss_end_addr - h.load_addr) as usize
    } else {
        load_size
    };
    inside_ram(h.load_addr as u64, h.load_addr as u64 + size as u64, ram)?;
    let data = image
        .get(text_offset..text_offset + load_size)
        .ok_or("the file is shorter than the multiboot header's load range")?;
    let mut bytes = data.to_vec();
    bytes.resize(size, 0);
    Ok(KernelImage {
        load_addr: h.load_addr as u64,
        bytes,
        entry: h.entry_addr as u64,
    })
}

/// The kernel image from ELF program headers (physical addresses).
fn elf_image(image: &[u8], ram: u64) -> Result<KernelImage, String> {
    let k = elf::parse(image)?;
    let (low, high) = (k.low(), k.high());
    inside_ram(low, high, ram)?;
    let mut bytes = vec![0u8; (high - low) as usize];
    for s in &k.segments {
        let at = (s.paddr - low) as usize;
        bytes[at..at + s.data.len()].copy_from_slice(&s.data);
    }
    Ok(KernelImage {
        load_addr: low,
        bytes,
        entry: k.entry,
    })
}

/// The kernel image a multiboot file describes (the a.out kludge wins over
/// ELF program headers, as in QEMU).
pub fn kernel_image(image: &[u8], h: &Header, ram: u64) -> Result<KernelImage, String> {
    if h.flags & FLAG_AOUT_KLUDGE != 0 {
        aout_image(image, h, ram)
    } else {
        elf_image(image, ram)
    }
}

/// One `-initrd` item: its whole text (the module string) and the
/// contents of the file it names (the text up to the first space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub string: String,
    pub data: Vec<u8>,
}

/// Everything a boot writes to memory, and the entry registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// (guest-physical address, bytes), written in order.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Entry point (EIP).
    pub entry: u32,
    /// Address of the information structure (EBX).
    pub mbi: u32,
}

/// One e820 entry: base, length, type (1 = RAM, 2 = reserved).
pub type E820 = (u64, u64, u32);

/// The memory map SeaBIOS reports on QEMU's `pc` for `ram` bytes (RAM
/// above [`LOWMEM_LIMIT`] is not reported: cjemu has no PCI hole yet).
pub fn memory_map(ram: u64) -> Vec<E820> {
    let low = ram.min(LOWMEM_LIMIT);
    let top = low - BIOS_HIGH_RESERVED;
    vec![
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 2),
        (0xf0000, 0x10000, 2),
        (0x10_0000, top - 0x10_0000, 1),
        (top, BIOS_HIGH_RESERVED, 2),
        (0xfffc_0000, 0x4_0000, 2),
        // QEMU reserves the HyperTransport range below 1 TiB.
        (0xfd_0000_0000, 0x3_0000_0000, 2),
    ]
}

/// KiB of contiguous RAM from 1 MiB (the option ROM's computation).
fn mem_upper(map: &[E820]) -> u32 {
    let mut end = 0x10_0000u64;
    // The map is not ordered in general: restart after each extension.
    'again: loop {
        for &(base, len, kind) in map {
            if kind == 1 && base < 1 << 32 && base <= end && end < base + len {
                end = base + len;
                continue 'again;
            }
        }
        break;
    }
    ((end - 0x10_0000) >> 10) as u32
}

fn page_align(n: usize) -> usize {
    (n + 0xfff) & !0xfff
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Append a NUL-terminated string at `*at` (advanced past it); returns
/// its guest address.
fn put_str(buf: &mut [u8], at: &mut usize, base: u64, s: &str) -> u32 {
    let p = *at;
    buf[p..p + s.len()].copy_from_slice(s.as_bytes());
    buf[p + s.len()] = 0;
    *at += s.len() + 1;
    (base + p as u64) as u32
}

/// Lay out a boot as QEMU does: `kernel_path` is the `-kernel` argument as
/// given (it starts the command line), `initrd_arg` the whole `-initrd`
/// argument (it sizes the command-line area).
pub fn plan(
    k: &KernelImage,
    kernel_path: &str,
    append: &str,
    initrd_arg: Option<&str>,
    modules: &[Module],
    ram: u64,
) -> Result<Plan, String> {
    if ram < MIN_RAM {
        return Err(format!(
            "a multiboot boot needs at least {} MiB of RAM",
            MIN_RAM >> 20
        ));
    }
    let base = k.load_addr;
    let off_mbinfo = page_align(k.bytes.len());
    let cmdline_len =
        kernel_path.len() + 1 + append.len() + 1 + initrd_arg.map_or(0, |s| s.len() + 1);
    let info_end = off_mbinfo + cmdline_len + MOD_SIZE * modules.len() + LOADER_NAME.len() + 1;
    let mut size = page_align(info_end);
    let mut mod_offsets = Vec::new();
    for m in modules {
        mod_offsets.push(size);
        size = page_align(size + m.data.len());
    }
    let end = base + size as u64;
    if end > ram || end > MAX_IMAGE {
        return Err(format!(
            "kernel, boot information and modules occupy {base:#x}..{end:#x}, \
             beyond the {ram:#x} bytes of RAM (raise -m)"
        ));
    }
    let mut buf = vec![0u8; size];
    buf[..k.bytes.len()].copy_from_slice(&k.bytes);
    let mut cmd_at = off_mbinfo + MOD_SIZE * modules.len();
    let mut loader_at = cmd_at + cmdline_len;
    for (n, (m, &off)) in modules.iter().zip(&mod_offsets).enumerate() {
        let s = put_str(&mut buf, &mut cmd_at, base, &m.string);
        buf[off..off + m.data.len()].copy_from_slice(&m.data);
        let d = off_mbinfo + n * MOD_SIZE;
        put32(&mut buf, d, (base + off as u64) as u32);
        put32(&mut buf, d + 4, (base + (off + m.data.len()) as u64) as u32);
        put32(&mut buf, d + 8, s);
    }
    let cmdline = put_str(
        &mut buf,
        &mut cmd_at,
        base,
        &format!("{kernel_path} {append}"),
    );
    let loader = put_str(&mut buf, &mut loader_at, base, LOADER_NAME);

    let map = memory_map(ram);
    let mut mmap = Vec::new();
    for &(b, l, t) in &map {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&b.to_le_bytes());
        mmap.extend_from_slice(&l.to_le_bytes());
        mmap.extend_from_slice(&t.to_le_bytes());
    }
    let mut mbi = vec![0u8; MBI_SIZE];
    put32(&mut mbi, 0, INFO_FLAGS);
    put32(&mut mbi, 4, MEM_LOWER_KB);
    put32(&mut mbi, 8, mem_upper(&map));
    put32(&mut mbi, 12, BOOT_DEVICE);
    put32(&mut mbi, 16, cmdline);
    put32(&mut mbi, 20, modules.len() as u32);
    put32(&mut mbi, 24, (base + off_mbinfo as u64) as u32);
    put32(&mut mbi, 44, mmap.len() as u32);
    put32(&mut mbi, 48, MMAP_ADDR as u32);
    put32(&mut mbi, 64, loader);
    let gdt: Vec<u8> = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    Ok(Plan {
        // The option ROM's order: information, memory map, then the kernel.
        writes: vec![
            (MBI_ADDR, mbi),
            (MMAP_ADDR, mmap),
            (GDT_ADDR, gdt),
            (base, buf),
        ],
        entry: k.entry as u32,
        mbi: MBI_ADDR as u32,
    })
}

/// A flat 4 GiB segment of the option ROM's GDT.
fn flat(selector: u16, code: bool) -> Segment {
    let kind = if code {
        seg_attr::CODE | seg_attr::RW
    } else {
        seg_attr::RW
    };
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        attrs: kind | seg_attr::ACCESSED | seg_attr::S | seg_attr::P | seg_attr::DB | seg_attr::G,
    }
}

/// Write the plan to memory and put the CPU in the multiboot entry state
/// (the instruction count and the TSC are kept).
pub fn apply(p: &Plan, e: &mut Engine) -> Result<(), String> {
    for (addr, bytes) in &p.writes {
        e.mem_mut()
            .write_phys(GuestPhysAddr(*addr), bytes)
            .map_err(|err| err.to_string())?;
    }
    let c = e.cpu_mut();
    *c = c.power_on_keeping_clock();
    c.cr0 = cr0::PE | cr0::ET;
    c.seg[Seg::Cs as usize] = flat(0x08, true);
    for s in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs, Seg::Ss] {
        c.seg[s as usize] = flat(0x10, false);
    }
    c.gdtr = DescriptorTable::new(GDT_ADDR, (GDT.len() * 8 - 1) as u16);
    c.idtr = DescriptorTable::new(0, 0x3ff);
    c.set_reg(Gpr::Rax, BOOT_MAGIC as u64);
    c.set_reg(Gpr::Rbx, p.mbi as u64);
    c.set_reg(Gpr::Rcx, p.entry as u64);
    c.set_reg(Gpr::Rsp, ENTRY_ESP);
    c.rip = p.entry as u64;
    c.set_rflags(0x2);
    e.flush_tlb();
    e.config.exceptions_exit = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::elf::tests::elf32;

    fn header(flags: u32, fields: [u32; 5]) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags),
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in fields {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    #[test]
    fn multiboot_header_search_follows_qemu() {
        let mut f = vec![0u8; 0x100];
        f.extend(header(3, [0; 5]));
        assert!(matches!(find_header(&f), Search::Found(h) if h.offset == 0x100 && h.flags == 3));
        let mut odd = vec![0u8; 0x102];
        odd.extend(header(3, [0; 5]));
        assert_eq!(find_header(&odd), Search::None, "only 4-byte steps count");
        let mut late = vec![0u8; SEARCH_LEN];
        late.extend(header(3, [0; 5]));
        assert_eq!(
            find_header(&late),
            Search::None,
            "only the first 8 KiB count"
        );
        let mut bad = header(3, [0; 5]);
        bad[8] ^= 1;
        assert_eq!(find_header(&bad), Search::BadChecksum(0));
    }

    #[test]
    fn aout_kludge_fields_place_the_kernel() {
        // Header at file offset 8, claiming to sit at 0x200008: the file is
        // loaded from offset 0 at 0x200000, 0x20 bytes, BSS to 0x200100.
        let mut f = vec![0x90u8; 8];
        f.extend(header(
            FLAG_AOUT_KLUDGE,
            [0x20_0008, 0x20_0000, 0x20_0020, 0x20_0100, 0x20_0004],
        ));
        f.resize(0x40, 0xcc);
        let Search::Found(h) = find_header(&f) else {
            panic!()
        };
        let k = kernel_image(&f, &h, 128 << 20).unwrap();
        assert_eq!(
            (k.load_addr, k.entry, k.bytes.len()),
            (0x20_0000, 0x20_0004, 0x100)
        );
        assert_eq!(&k.bytes[..0x20], &f[..0x20]);
        assert!(k.bytes[0x20..].iter().all(|&b| b == 0), "BSS is zeroed");
    }

    #[test]
    fn aout_kludge_wins_over_elf_program_headers() {
        let code = [0xf4u8; 16];
        let mut f = elf32(0x30_0000, &[(0x30_0000, 0x30_0000, &code, 16, 5)]);
        let hdr_off = f.len();
        // The header says: the whole file at 0x10_0000 - hdr_off.
        let load = 0x10_0000u32;
        f.extend(header(
            FLAG_AOUT_KLUDGE,
            [load + hdr_off as u32, load, 0, 0, load],
        ));
        let Search::Found(h) = find_header(&f) else {
            panic!()
        };
        let k = kernel_image(&f, &h, 128 << 20).unwrap();
        assert_eq!(k.load_addr, 0x10_0000);
        assert_eq!(k.bytes, f);
    }

    #[test]
    fn aout_kludge_errors() {
        let h = |fields| {
            let f = header(FLAG_AOUT_KLUDGE, fields);
            let Search::Found(h) = find_header(&f) else {
                panic!()
            };
            kernel_image(&f, &h, 128 << 20)
        };
        assert!(h([0x1000, 0x2000, 0, 0, 0])
            .unwrap_err()
            .contains("below load_addr"));
        assert!(h([0x2000, 0x1000, 0, 0, 0])
            .unwrap_err()
            .contains("before the start"));
        assert!(h([0x1000, 0x1000, 0x800, 0, 0])
            .unwrap_err()
            .contains("load_end_addr"));
        assert!(h([0x1000, 0x1000, 0x1100, 0, 0])
            .unwrap_err()
            .contains("shorter"));
        assert!(h([0x1000, 0x1000, 0x1010, 0x1008, 0])
            .unwrap_err()
            .contains("bss_end"));
        let huge = h([0x1000, 0x1000, 0, 0xffff_f000, 0]).unwrap_err();
        assert!(huge.contains("outside") && huge.contains("RAM"), "{huge}");
    }

    #[test]
    fn memory_map_matches_seabios_on_qemu_pc() {
        // What QEMU 7.2 + SeaBIOS report with -m 128 (tests/kernels/mbinfo.c).
        let m = memory_map(128 << 20);
        assert_eq!(m[3], (0x10_0000, 0x7ee_0000, 1));
        assert_eq!(m[4], (0x7fe_0000, 0x2_0000, 2));
        assert_eq!(mem_upper(&m), 129_920);
        assert_eq!(mem_upper(&memory_map(64 << 20)), 64_384);
    }

    #[test]
    fn plan_lays_out_info_commandlines_and_modules_like_qemu() {
        let k = KernelImage {
            load_addr: 0x10_0000,
            bytes: vec![0xf4; 0x4100],
            entry: 0x10_0000,
        };
        let mods = [
            Module {
                string: "m1 arg".into(),
                data: b"one".to_vec(),
            },
            Module {
                string: "m2".into(),
                data: vec![7; 0x1001],
            },
        ];
        let p = plan(&k, "k.elf", "a b", Some("m1 arg,m2"), &mods, 128 << 20).unwrap();
        let (base, buf) = &p.writes[3];
        assert_eq!(*base, 0x10_0000);
        // Kernel 0x4100 -> info area at 0x5000; it needs < 1 page; modules
        // at 0x6000 and 0x7000 (the second spans two pages).
        assert_eq!(buf.len(), 0x9000);
        let w = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
        assert_eq!((w(0x5000), w(0x5004)), (0x10_6000, 0x10_6003));
        assert_eq!((w(0x5010), w(0x5014)), (0x10_7000, 0x10_8001));
        // Module strings first, at the end of the descriptors.
        assert_eq!(w(0x5008), 0x10_5020);
        assert_eq!(&buf[0x5020..0x5027], b"m1 arg\0");
        assert_eq!(w(0x5018), 0x10_5027);
        let mbi = &p.writes[0].1;
        let m = |o: usize| u32::from_le_bytes(mbi[o..o + 4].try_into().unwrap());
        assert_eq!(m(0), 0x24f);
        assert_eq!(m(4), 639);
        assert_eq!(m(12), 0x8000_ffff);
        assert_eq!(m(16), 0x10_502a, "kernel command line after the modules'");
        assert_eq!(&buf[0x502a..0x5034], b"k.elf a b\0");
        // The loader name follows the whole command-line area:
        // 0x5020 + (5+1 + 3+1 + 9+1).
        assert_eq!(m(64), 0x10_5034);
        assert_eq!(&buf[0x5034..0x5039], b"qemu\0");
        assert_eq!((m(20), m(24)), (2, 0x10_5000));
        assert_eq!((m(44), m(48)), (7 * 24, 0x9000));
        assert_eq!(p.mbi, 0x9500);
    }

    #[test]
    fn plan_rejects_what_does_not_fit() {
        let k = KernelImage {
            load_addr: 0x10_0000,
            bytes: vec![0; 0x10_0000],
            entry: 0,
        };
        assert!(plan(&k, "k", "", None, &[], 2 << 20)
            .unwrap_err()
            .contains("-m"));
        assert!(plan(&k, "k", "", None, &[], 1 << 20)
            .unwrap_err()
            .contains("at least"));
        assert!(plan(&k, "k", "", None, &[], 4 << 20).is_ok());
    }
}
