//! QEMU parity: each multiboot test kernel (`tests/kernels/`) runs under
//! cjemu and under `qemu-system-x86_64` (QEMU 7.2, Debian's
//! `qemu-system-x86`) with the same command line; serial output must be
//! byte-identical and the exit status the same. These kernels need only
//! 32-bit protected mode with paging off, port I/O and MMIO.

#[path = "kernels/harness.rs"]
mod harness;

use harness::{build_asm, build_c, data_file, parity};

/// (V << 1) | 1 for a debug-exit write of V.
fn exit_status(v: i32) -> i32 {
    (v << 1) | 1
}

#[test]
fn hello_prints_over_com1_and_exits_through_the_debug_port() {
    let k = build_c("hello");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x10));
    assert_eq!(
        r.text(),
        "Hello from a multiboot kernel!\nmagic=0x2badb002\n"
    );
}

#[test]
fn multiboot_information_matches_qemu() {
    let k = build_c("mbinfo");
    let m1 = data_file("mbinfo", "module-one", b"first module\n");
    let m2 = data_file("mbinfo", "module-two", &[0x42; 5000]);
    let initrd = format!("{} with args,{}", m1.display(), m2.display());
    let r = parity(
        &k,
        &[
            "-append",
            "console=ttyS0 test=1",
            "-initrd",
            &initrd,
            "-no-reboot",
        ],
    );
    assert_eq!(r.status, exit_status(0x11));
    let t = r.text();
    assert!(t.contains("magic=0x2badb002"), "{t}");
    assert!(t.contains("mem_lower=639 mem_upper=129920"), "{t}");
    assert!(
        t.contains(&format!("cmdline=\"{} console=ttyS0 test=1\"", k.display())),
        "{t}"
    );
    assert!(
        t.contains(&format!("string=\"{} with args\"", m1.display())),
        "{t}"
    );
    assert!(t.contains("bytes=\"first module.\""), "{t}");
    assert!(t.contains("loader=\"qemu\""), "{t}");
}

#[test]
fn multiboot_information_without_append_or_modules_and_with_other_ram() {
    let k = build_c("mbinfo");
    let r = parity(&k, &["-m", "64", "-no-reboot"]);
    assert_eq!(r.status, exit_status(0x11));
    let t = r.text();
    assert!(t.contains("mem_upper=64384"), "{t}");
    // QEMU's command line is "<path> <append>": a trailing space here.
    assert!(t.contains(&format!("cmdline=\"{} \"", k.display())), "{t}");
    assert!(t.contains("mods_count=0x00000000"), "{t}");
}

#[test]
fn port_io_string_instructions_and_unassigned_ports() {
    let k = build_c("portio");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x12));
    let t = r.text();
    assert!(t.starts_with("REP OUTSB reached COM1\n"), "{t}");
    assert!(t.contains("inl unassigned=0xffffffff"), "{t}");
}

#[test]
fn mmio_to_the_testdev_ioram() {
    let k = build_c("mmio");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x13));
    let t = r.text();
    assert!(t.contains("dword 0=0xdeadbeef"), "{t}");
    assert!(t.contains("dword 0x102=0x00a1b2c3"), "{t}");
}

#[test]
fn aout_kludge_header_wins_over_elf_program_headers() {
    let k = build_asm("aout", "aout.ld");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x14));
    assert_eq!(r.text(), "a.out kludge kernel loaded at 0x00100000\n");
}

/// The chipset devices as a kernel finds them after the firmware: PIC
/// (ELCR masks, ICW1–4, IMR/IRR/ISR), i8042 (command byte, self-test) and
/// RTC/CMOS (the `-rtc base=` date in BCD, registers A/B/D, the memory
/// sizes of `-m`).
#[test]
fn chipset_pic_i8042_and_rtc_match_qemu() {
    let k = build_c("chipset");
    let r = parity(&k, &["-no-reboot", "-rtc", "base=2020-02-29T12:00:00"]);
    assert_eq!(r.status, exit_status(0x13));
    let t = r.text();
    for line in [
        "elcr master after 0xff=0x000000f8\n",
        "elcr slave after 0xff=0x000000de\n",
        "imr master=0x000000b8\n",
        "irr master (IRQ0 masked out)=0x00000000\n",
        "i8042 self-test=0x00000055\n",
        "i8042 command byte=0x00000064\n",
        // 2020-02-29 was a Saturday (weekday 7, Sunday = 1), in BCD.
        "rtc century=0x00000020\nrtc year=0x00000020\nrtc month=0x00000002\nrtc day=0x00000029\nrtc weekday=0x00000007\n",
        // 128 MiB: extended memory clamps at 0xffff KiB; (128-16) MiB / 64 KiB.
        "cmos extended memory KiB=0x0000ffff\n",
        "cmos memory above 16M / 64K=0x00000700\n",
    ] {
        assert!(t.contains(line), "{line:?} missing from:\n{t}");
    }
}

/// The same with a date-only base in the last century and a small RAM.
#[test]
fn chipset_rtc_date_only_base_and_small_ram_match_qemu() {
    let k = build_c("chipset");
    let r = parity(&k, &["-no-reboot", "-m", "20M", "-rtc", "base=1999-12-31"]);
    assert_eq!(r.status, exit_status(0x13));
    let t = r.text();
    // 1999-12-31 was a Friday (6); 20 MiB: 19 MiB extended, 4 MiB above 16.
    assert!(t.contains("rtc century=0x00000019\nrtc year=0x00000099\nrtc month=0x00000012\nrtc day=0x00000031\nrtc weekday=0x00000006\n"), "{t}");
    assert!(t.contains("cmos extended memory KiB=0x00004c00\n"), "{t}");
    assert!(
        t.contains("cmos memory above 16M / 64K=0x00000040\n"),
        "{t}"
    );
}

/// 0xfe to the i8042's command port pulses the reset line: with
/// -no-reboot the run stops (status 0) after the first boot's output.
#[test]
fn i8042_reset_with_no_reboot_stops_the_machine() {
    let k = build_c("kbdreset");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, 0);
    assert_eq!(r.text(), "boot=0x00000001\n");
}

/// Without -no-reboot the machine resets and boots the kernel again; RAM
/// keeps the boot count.
#[test]
fn i8042_reset_without_no_reboot_boots_again() {
    let k = build_c("kbdreset");
    let r = parity(&k, &[]);
    assert_eq!(r.status, exit_status(0x14));
    assert_eq!(r.text(), "boot=0x00000001\nboot=0x00000002\n");
}
