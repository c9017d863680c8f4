//! QEMU parity for kernels that need the system instructions (control
//! registers, MSRs, descriptor tables, far transfers, 32-bit exception
//! delivery): long mode from a multiboot entry, and reset on triple fault.
//! Same harness as `qemu_parity.rs`.

#[path = "kernels/harness.rs"]
mod harness;

use harness::{build_asm, parity};

#[test]
fn long_mode_switch_and_64_bit_printing() {
    let k = build_asm("longmode", "kernel.ld");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, (0x15 << 1) | 1);
    assert_eq!(
        r.text(),
        "32-bit: entering long mode\n64-bit: hello from long mode, sum 0x123456789abcdf00\n"
    );
}

#[test]
fn triple_fault_with_no_reboot_stops_with_status_0() {
    let k = build_asm("reset", "kernel.ld");
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, 0);
    assert_eq!(r.text(), "boot 0\n");
}

#[test]
fn triple_fault_without_no_reboot_resets_and_boots_again() {
    let k = build_asm("reset", "kernel.ld");
    let r = parity(&k, &[]);
    assert_eq!(r.status, (0x16 << 1) | 1);
    assert_eq!(r.text(), "boot 0\nboot 1\nrebooted\n");
}
