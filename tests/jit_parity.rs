//! The JIT tier against the interpreter on whole machines: every QEMU-parity
//! test kernel (`tests/kernels/`, with the arguments `qemu_parity*.rs` use)
//! and the built-in demo run under `--accel interp` and under `--accel
//! jit,threshold=0` (every block compiled at first sight) and `--accel
//! jit,threshold=3` (tiers mixed). Serial output, exit status, and the
//! `icount` and `state-hash` that `--stats` prints must be identical.

#[path = "kernels/harness.rs"]
mod harness;

use harness::{build_asm, build_c, build_rt64, data_file};
use std::path::{Path, PathBuf};

const TIERS: [&str; 2] = ["jit,threshold=0", "jit,threshold=3"];

/// The RTC start time of runs that do not choose one.
const FIXED_RTC: &str = "base=2024-01-01T00:00:00";

/// What one cjemu run showed.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    status: i32,
    serial: Vec<u8>,
    icount: u64,
    state_hash: String,
}

/// Value of `key: value` in `--stats` output.
fn stat<'a>(stderr: &'a str, key: &str) -> &'a str {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no '{key}' in --stats output:\n{stderr}"))
}

/// Run cjemu with `args`, `--accel accel --stats` and COM1 into a file in
/// `dir` (the harness's runner: timeout, signal deaths fail).
fn cjemu(args: &[String], accel: &str, dir: &Path, tag: &str) -> Run {
    let out = dir.join(format!(
        "jit-parity-{tag}-{}.out",
        accel.replace([',', '='], "-")
    ));
    let mut a = args.to_vec();
    a.extend(["--accel", accel, "--stats"].map(String::from));
    // The RTC's start time is part of the state hash: without `-rtc base=`
    // it is the host's clock, which may tick between two runs.
    if !a.iter().any(|s| s == "-rtc") {
        a.extend(["-rtc", FIXED_RTC].map(String::from));
    }
    let r = harness::run(env!("CARGO_BIN_EXE_cjemu"), &a, &out);
    Run {
        status: r.status,
        icount: stat(&r.stderr, "icount")
            .parse()
            .expect("icount is a number"),
        state_hash: stat(&r.stderr, "state-hash").to_string(),
        serial: r.serial,
    }
}

fn tiers_agree(args: &[String], dir: &Path, tag: &str) -> Run {
    let want = cjemu(args, "interp", dir, tag);
    assert!(want.icount > 0, "{args:?}: the guest ran");
    for accel in TIERS {
        let got = cjemu(args, accel, dir, tag);
        assert_eq!(
            String::from_utf8_lossy(&got.serial),
            String::from_utf8_lossy(&want.serial),
            "{args:?}: serial output differs (left --accel {accel}, right interp)"
        );
        assert_eq!(
            got.status, want.status,
            "{args:?} --accel {accel}: exit status"
        );
        assert_eq!(got.icount, want.icount, "{args:?} --accel {accel}: icount");
        assert_eq!(
            got.state_hash, want.state_hash,
            "{args:?} --accel {accel}: state hash"
        );
    }
    want
}

fn kernel(k: &Path, extra: &[&str]) -> Run {
    let tag = extra.join("_").replace(['/', ' ', ','], "-");
    tiers_agree(&harness::args(k, extra), k.parent().unwrap(), &tag)
}

#[test]
fn hello() {
    let r = kernel(&build_c("hello"), &["-no-reboot"]);
    assert!(r.serial.starts_with(b"Hello"), "{r:?}");
}

#[test]
fn mbinfo() {
    let k = build_c("mbinfo");
    let m1 = data_file("mbinfo", "module-one", b"first module\n");
    let m2 = data_file("mbinfo", "module-two", &[0x42; 5000]);
    let initrd = format!("{} with args,{}", m1.display(), m2.display());
    let r = kernel(
        &k,
        &[
            "-append",
            "console=ttyS0 test=1",
            "-initrd",
            &initrd,
            "-no-reboot",
        ],
    );
    assert!(!r.serial.is_empty());
    kernel(&k, &["-m", "64", "-no-reboot"]);
}

#[test]
fn portio() {
    kernel(&build_c("portio"), &["-no-reboot"]);
}

#[test]
fn mmio() {
    kernel(&build_c("mmio"), &["-no-reboot"]);
}

#[test]
fn aout() {
    kernel(&build_asm("aout", "aout.ld"), &["-no-reboot"]);
}

#[test]
fn longmode() {
    kernel(&build_asm("longmode", "kernel.ld"), &["-no-reboot"]);
}

#[test]
fn reset() {
    let k = build_asm("reset", "kernel.ld");
    kernel(&k, &["-no-reboot"]);
    kernel(&k, &[]);
}

#[test]
fn chipset() {
    let k = build_c("chipset");
    let r = kernel(&k, &["-no-reboot", "-rtc", "base=2020-02-29T12:00:00"]);
    assert_eq!(r.status, (0x13 << 1) | 1, "{r:?}");
}

#[test]
fn kbdreset() {
    let k = build_c("kbdreset");
    kernel(&k, &["-no-reboot"]);
    kernel(&k, &[]);
}

/// The built-in demo: long enough (millions of instructions) that the JIT
/// runs most of it compiled.
#[test]
fn demo() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let r = tiers_agree(&[], &dir, "demo");
    assert!(r.icount > 1_000_000, "{r:?}");
}

/// The long-mode kernels of `qemu_parity_kernels64.rs` (exceptions of every
/// class, 4 KiB paging faults and #DF on IST, ring 3, far transfers, and the
/// gcc -O2 program), including their SDM-only variants.
#[test]
fn long_mode_kernels() {
    let cases: [(&str, &str, bool, &[&str]); 8] = [
        ("exceptions", "exceptions.c", false, &["-no-reboot"]),
        (
            "exceptions",
            "exceptions.c",
            false,
            &["-append", "sdm", "-no-reboot"],
        ),
        ("paging", "paging.c", false, &["-no-reboot"]),
        (
            "paging",
            "paging.c",
            false,
            &["-append", "rsvd", "-no-reboot"],
        ),
        ("ring3", "ring3.c", false, &["-no-reboot"]),
        ("ring3", "ring3.c", false, &["-append", "sdm", "-no-reboot"]),
        ("far", "far.c", false, &["-no-reboot"]),
        ("app", "app.c", true, &["-no-reboot"]),
    ];
    for (name, src, sse, extra) in cases {
        let k = build_rt64(name, &[src], sse);
        let r = kernel(&k, extra);
        assert!(!r.serial.is_empty(), "{name} {extra:?} printed nothing");
        assert_eq!(
            r.status & 1,
            1,
            "{name} {extra:?} exits through 0xf4: {r:?}"
        );
    }
}
