//! A C program compiled by the machine's gcc (`tests/c/prog.c`: double
//! arithmetic, loops gcc vectorises with SSE2, long double on the x87)
//! runs natively and in cjemu; the result bytes must be identical.
//!
//! The guest build is freestanding 64-bit code linked at 0x100000 (`gcc
//! -O2 -ffreestanding -nostdlib -fno-pic -mcmodel=small -static`, a tiny
//! linker script, `objcopy -O binary`), run by the engine in flat long
//! mode until its HLT; the host build is the same file with a `main` that
//! prints the result area. `-fno-tree-loop-distribute-patterns` keeps gcc
//! from turning the byte loops into memset/memcpy calls, so they stay
//! vectorised loops.

use cjemu_jit::memory::GuestPhysAddr;
use cjemu_jit::setup::flat_long_mode;
use cjemu_jit::{Accel, Engine, Exit};
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use std::path::{Path, PathBuf};
use std::process::Command;

const LOAD: u64 = 0x10_0000;
const RESULTS: u64 = 0x20_0000;
/// Offset of the long double part in the result area.
const X87_PART: usize = 0x800;
const RESULT_SIZE: usize = 0x1000;
const TABLES: u64 = 0x30_0000;
const STACK_TOP: u64 = 0x3f_0000;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c")
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is gcc/binutils installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The two builds, in a directory per test (tests run in parallel):
/// the flat guest binary and the host executable.
fn build(tag: &str) -> (Vec<u8>, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("c_program_{}_{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = src_dir().join("prog.c");
    let elf = dir.join("prog.elf");
    let bin = dir.join("prog.bin");
    let host = dir.join("prog_host");
    let common = ["-O2", "-fno-tree-loop-distribute-patterns"];
    run(Command::new("gcc")
        .args(common)
        .args([
            "-ffreestanding",
            "-nostdlib",
            "-fno-pic",
            "-mcmodel=small",
            "-static",
            "-DGUEST",
            "-Wl,--build-id=none",
            "-Wl,--no-warn-rwx-segments",
            "-T",
        ])
        .arg(src_dir().join("flat.ld"))
        .arg(&src)
        .arg("-o")
        .arg(&elf));
    run(Command::new("objcopy")
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin));
    run(Command::new("gcc")
        .args(common)
        .arg(&src)
        .arg("-o")
        .arg(&host));
    (std::fs::read(&bin).unwrap(), host)
}

/// The host build's result area.
fn native(host: &Path) -> Vec<u8> {
    let out = Command::new(host).output().expect("run the host build");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), RESULT_SIZE);
    out.stdout
}

/// Run the guest build in cjemu: how the run ended and the result area.
fn emulated(bin: &[u8]) -> (Exit, Vec<u8>) {
    let (exit, out, _) = emulated_on(bin, Accel::Interp);
    (exit, out)
}

/// [`emulated`] on a given tier, with the instruction count.
fn emulated_on(bin: &[u8], accel: Accel) -> (Exit, Vec<u8>, u64) {
    let mut e = Engine::new(4 << 20).unwrap();
    e.config.exceptions_exit = true;
    e.config.accel = accel;
    e.mem_mut().write_phys(GuestPhysAddr(LOAD), bin).unwrap();
    flat_long_mode(&mut e, GuestPhysAddr(TABLES), LOAD, STACK_TOP).unwrap();
    let exit = e.run(50_000_000);
    let mut out = vec![0; RESULT_SIZE];
    e.mem().read_phys(GuestPhysAddr(RESULTS), &mut out).unwrap();
    (exit, out, e.cpu().icount)
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// The SSE2/integer part (doubles, vectorised float/double/int loops,
/// byte loops) gives the host's bytes. It runs before the x87 part, so it
/// is complete whether or not the x87 part can run.
#[test]
fn c_program_sse_part_matches_host() {
    let (bin, host) = build("sse");
    let want = native(&host);
    let (exit, got) = emulated(&bin);
    // The part is not all zeros (so the comparison means something).
    assert!(want[..X87_PART].iter().filter(|&&b| b != 0).count() > 500);
    assert_eq!(
        first_diff(&want[..X87_PART], &got[..X87_PART]),
        None,
        "SSE part differs (run ended with {exit:?})"
    );
}

/// The long double part (x87: FLD/FSTP of 80-bit values, FDIV, FILD,
/// FISTP with a changed control word) gives the host's bytes, and the
/// program reaches its HLT.
#[test]

fn c_program_long_double_matches_host() {
    let (bin, host) = build("x87");
    let want = native(&host);
    let (exit, got) = emulated(&bin);
    assert_eq!(exit, Exit::Halted);
    assert!(want[X87_PART..X87_PART + 20].iter().any(|&b| b != 0));
    assert_eq!(
        first_diff(&want[X87_PART..], &got[X87_PART..]),
        None,
        "long double part differs"
    );
}

/// The whole program under the JIT (every block compiled at first sight,
/// and after two entries) gives the host's bytes, and ends where the
/// interpreter ends after the same number of instructions.
#[test]
fn c_program_under_the_jit_matches_host_and_interpreter() {
    let (bin, host) = build("jit");
    let want = native(&host);
    let (exit, got, n) = emulated_on(&bin, Accel::Interp);
    assert_eq!(exit, Exit::Halted);
    assert_eq!(
        first_diff(&want, &got),
        None,
        "interpreter differs from host"
    );
    for threshold in [0, 2] {
        let (jexit, jgot, jn) = emulated_on(&bin, Accel::Jit { threshold });
        assert_eq!(jexit, exit, "threshold {threshold}");
        assert_eq!(
            first_diff(&want, &jgot),
            None,
            "threshold {threshold}: JIT differs from host"
        );
        assert_eq!(jn, n, "threshold {threshold}: icount");
    }
}

/// gcc really emitted packed SSE2 arithmetic and x87 instructions (checked
/// by decoding the flat binary), so the comparisons above test them.
#[test]
fn c_program_uses_sse2_vectors_and_x87() {
    let (bin, _) = build("disasm");
    let mut d = Decoder::with_ip(64, &bin, LOAD, DecoderOptions::NONE);
    let mut seen = std::collections::BTreeSet::new();
    while d.can_decode() {
        seen.insert(d.decode().mnemonic());
    }
    use Mnemonic as M;
    for m in [
        M::Paddd,
        M::Pmuludq,
        M::Mulpd,
        M::Addpd,
        M::Divpd,
        M::Mulps,
        M::Cvtdq2pd,
        M::Movdqa,
        M::Paddb,
    ] {
        assert!(seen.contains(&m), "no {m:?} in the guest build");
    }
    for m in [M::Fld, M::Fstp, M::Fild, M::Fistp, M::Fldcw, M::Fxch] {
        assert!(seen.contains(&m), "no {m:?} in the guest build");
    }
    // objdump calls it fdivrp (the AT&T operand-order quirk), iced fdivp.
    assert!(seen.contains(&M::Fdivp) || seen.contains(&M::Fdivrp));
}
