//! The benchmark guests of `benches/guests.rs` (`benches/guests/`), at
//! their small size: each runs under cjemu `--accel interp` and `--accel
//! jit,threshold=0` and under QEMU, and all three must print the line the
//! same C code prints when built for the host (the host CPU is the oracle of
//! the checksum) and exit with 0x21; both cjemu tiers must also retire the
//! same `icount` and end in the same `state-hash`.

#[path = "../benches/common/mod.rs"]
mod common;

use common::harness;

use common::{guest_args, guest_kernel, host_line, stat, GUEST_STATUS};
use std::process::Command;

/// Run guest `name` at `size` under cjemu with `--accel accel --stats`.
fn cjemu(name: &str, size: u64, accel: &str) -> harness::RunResult {
    let k = guest_kernel(name);
    // The RTC's start time is part of the state hash: pin it (else it is
    // the host's clock, which may tick between the two runs).
    let extra = [
        "--accel",
        accel,
        "--stats",
        "-rtc",
        "base=2024-01-01T00:00:00",
    ];
    let args = guest_args(&k, size, &extra);
    let out = k.with_extension(format!("{}.out", accel.replace([',', '='], "-")));
    harness::run(env!("CARGO_BIN_EXE_cjemu"), &args, &out)
}

fn stat_of(r: &harness::RunResult, key: &str) -> String {
    stat(&r.stderr, key)
        .unwrap_or_else(|| panic!("no '{key}' in --stats output:\n{}", r.stderr))
        .to_string()
}

/// The whole check for one guest; returns the guest's line.
fn guest_agrees(name: &str) -> String {
    let size = common::BENCH_GUESTS
        .iter()
        .find(|g| g.name == name)
        .expect("a benchmark guest")
        .small;
    let want = host_line(name, size);
    assert!(
        want.starts_with(&format!("{name} size={size} checksum=0x")),
        "host program output: {want:?}"
    );

    let interp = cjemu(name, size, "interp");
    assert_eq!(interp.text(), want, "{name}: cjemu interp vs the host");
    assert_eq!(interp.status, GUEST_STATUS, "{name}: interp exit status");
    let icount: u64 = stat_of(&interp, "icount").parse().unwrap();
    assert!(
        icount > 500_000,
        "{name}: the guest did its work ({icount})"
    );

    let jit = cjemu(name, size, "jit,threshold=0");
    assert_eq!(jit.text(), want, "{name}: cjemu jit vs the host");
    assert_eq!(jit.status, GUEST_STATUS, "{name}: jit exit status");
    assert_eq!(
        stat_of(&jit, "icount"),
        icount.to_string(),
        "{name}: icount"
    );
    assert_eq!(
        stat_of(&jit, "state-hash"),
        stat_of(&interp, "state-hash"),
        "{name}: state hash"
    );
    assert_ne!(stat_of(&jit, "blocks compiled"), "0", "{name}: the JIT ran");

    let k = guest_kernel(name);
    let q = harness::run(
        harness::QEMU,
        &guest_args(&k, size, &[]),
        &k.with_extension("qemu.out"),
    );
    assert_eq!(q.text(), want, "{name}: QEMU vs the host");
    assert_eq!(q.status, GUEST_STATUS, "{name}: QEMU exit status");
    want
}

#[test]
fn intloop() {
    guest_agrees("intloop");
}

#[test]
fn sortsieve() {
    guest_agrees("sortsieve");
}

#[test]
fn bytecode() {
    guest_agrees("bytecode");
}

/// The high half of the checksum is the CRC-32 of "123456789", whose
/// published check value is 0xcbf43926.
#[test]
fn crc32() {
    let line = guest_agrees("crc32");
    assert!(line.contains("checksum=0xcbf43926"), "{line}");
}

#[test]
fn ssemem() {
    guest_agrees("ssemem");
}

/// The mnemonics of the kernel file's code (objdump).
fn disassembly(name: &str) -> String {
    let elf64 = guest_kernel(name).with_extension("elf64");
    let o = Command::new("objdump")
        .arg("-d")
        .arg(&elf64)
        .output()
        .expect("objdump (binutils) runs");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The guests exercise what they claim to: SSE2 16-byte moves in ssemem,
/// indirect jumps (the dispatch table) in bytecode.
#[test]
fn guests_contain_the_instructions_they_benchmark() {
    let sse = disassembly("ssemem");
    for m in ["movdqa", "movdqu", "paddq"] {
        assert!(sse.contains(m), "ssemem has no {m}");
    }
    let bc = disassembly("bytecode");
    let indirect = bc.lines().filter(|l| l.contains("jmp    *")).count();
    assert!(
        indirect >= 10,
        "bytecode: {indirect} indirect jumps (one per opcode expected)"
    );
}
