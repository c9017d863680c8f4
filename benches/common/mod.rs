//! Guests and the runner shared by the benchmarks (`interp.rs`, `jit.rs`),
//! so both measure exactly the same code.
#![allow(dead_code)]

use cjemu::flat::load_flat;
use cjemu_jit::{Accel, Engine, Exit};
use iced_x86::code_asm::*;

pub const LOAD: u64 = 0x10_0000;
pub const DATA: u64 = 0x20_0000;
pub const ITERATIONS: u32 = 200_000;

/// The interpreter benchmark's loop: 12 instructions per iteration.
pub fn alu_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut bad = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ecx, ITERATIONS)?;
        a.xor(eax, eax)?;
        a.mov(ebx, 1)?;
        a.mov(rdi, DATA)?;
        a.set_label(&mut top)?;
        a.add(rax, rbx)?;
        a.xor(rbx, rax)?;
        a.and(rbx, 0x7fff_ffff)?;
        a.lea(rsi, ptr(rax + rbx * 2 + 7))?;
        a.sub(rsi, rcx)?;
        a.mov(qword_ptr(rdi), rsi)?;
        a.mov(rdx, qword_ptr(rdi))?;
        a.inc(rbx)?;
        a.cmp(rdx, rsi)?;
        a.jne(bad)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut bad)?;
        a.ud2()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

/// A loop with helper instructions (DIV, MOVSQ), a call and stack traffic.
pub fn mixed_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut sub = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ecx, ITERATIONS / 4)?;
        a.mov(r8, DATA)?;
        a.mov(rsp, DATA + 0x8000)?;
        a.mov(eax, 12345)?;
        a.set_label(&mut top)?;
        a.push(rcx)?;
        a.call(sub)?;
        a.pop(rcx)?;
        a.lea(rsi, qword_ptr(r8 + 0x100))?;
        a.lea(rdi, qword_ptr(r8 + 0x200))?;
        a.movsq()?;
        a.add(qword_ptr(r8 + 0x300), rax)?;
        a.adc(rax, 3)?;
        a.shl(rax, 1)?;
        a.shr(rax, 1)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut sub)?;
        a.mov(rbx, rcx)?;
        a.or(rbx, 1)?;
        a.xor(edx, edx)?;
        a.div(rbx)?;
        a.add(rax, rdx)?;
        a.add(rax, 1000)?;
        a.ret()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

/// Nested loops (a 3-deep counter nest with a short inner body): the
/// inner loop's exits and the outer loops' heads stay inside one region.
pub fn nested_loops() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut outer = a.create_label();
    let mut middle = a.create_label();
    let mut inner = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(r8d, 50u32)?;
        a.xor(eax, eax)?;
        a.mov(rdi, DATA)?;
        a.set_label(&mut outer)?;
        a.mov(r9d, 40u32)?;
        a.set_label(&mut middle)?;
        a.mov(ecx, 25u32)?;
        a.set_label(&mut inner)?;
        a.add(rax, rcx)?;
        a.imul_3(rdx, rax, 7)?;
        a.xor(rax, rdx)?;
        a.mov(qword_ptr(rdi + rcx * 8), rax)?;
        a.dec(ecx)?;
        a.jnz(inner)?;
        a.add(rax, r9)?;
        a.dec(r9d)?;
        a.jnz(middle)?;
        a.dec(r8d)?;
        a.jnz(outer)?;
        a.hlt()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

/// A loop calling a small leaf function (CALL rel in, RET out) that has a
/// branch of its own.
pub fn call_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut func = a.create_label();
    let mut even = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(ecx, ITERATIONS)?;
        a.mov(rsp, DATA + 0x8000)?;
        a.xor(eax, eax)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        a.mov(rdi, rcx)?;
        a.call(func)?;
        a.add(rbx, rax)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()?;
        a.set_label(&mut func)?;
        a.lea(rax, ptr(rdi + rdi * 2 + 1))?;
        a.test(dil, 1)?;
        a.jz(even)?;
        a.shr(rax, 1)?;
        a.set_label(&mut even)?;
        a.xor(rax, rdi)?;
        a.ret()
    })()
    .unwrap();
    a.assemble(LOAD).unwrap()
}

pub fn engine(code: &[u8], accel: Accel) -> Engine {
    let mut e = Engine::new(16 << 20).unwrap();
    e.config.accel = accel;
    load_flat(&mut e, code, LOAD, LOAD).unwrap();
    e
}

/// Run the guest from the top once; returns instructions retired.
pub fn run_once(e: &mut Engine) -> u64 {
    let cpu = e.cpu_mut();
    cpu.rip = LOAD;
    cpu.gpr = [0; 16];
    let start = cpu.icount;
    loop {
        match e.run(10_000_000) {
            Exit::Halted => break,
            Exit::BudgetExhausted => continue,
            other => panic!("benchmark guest ended with {other:?}"),
        }
    }
    e.cpu().icount - start
}

// ---------------------------------------------------------------------------
// Benchmark guests (`benches/guests/`): gcc -O2 multiboot kernels on the
// tests/kernels rt64 runtime, shared by `benches/guests.rs` (big sizes,
// timed) and `tests/bench_guests.rs` (small sizes, parity). Each guest is
// also built as a host program, whose output is the checksum oracle.
// ---------------------------------------------------------------------------

use harness::{built_once, tool};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/kernels/harness.rs"]
pub mod harness;

/// One benchmark guest: `benches/guests/<name>.c` and its sizes (units of
/// work, passed as `-append size=N`).
pub struct GuestSpec {
    pub name: &'static str,
    /// The test's size: a few million instructions.
    pub small: u64,
    /// The benchmark's size: roughly 300 M instructions.
    pub big: u64,
}

pub const BENCH_GUESTS: [GuestSpec; 5] = [
    GuestSpec {
        name: "intloop",
        small: 100,
        big: 13_000,
    },
    GuestSpec {
        name: "sortsieve",
        small: 1,
        big: 190,
    },
    GuestSpec {
        name: "bytecode",
        small: 100,
        big: 16_000,
    },
    GuestSpec {
        name: "crc32",
        small: 3,
        big: 580,
    },
    GuestSpec {
        name: "ssemem",
        small: 40,
        big: 6_000,
    },
];

/// The exit status of every guest: `exit_code(0x10)` through
/// isa-debug-exit, which both emulators turn into `(0x10 << 1) | 1`.
pub const GUEST_STATUS: i32 = 0x21;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn guest_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("bench-guests")
        .join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The multiboot kernel of guest `name`, built as the rt64 test kernels are
/// (`harness::build_rt64`: ELF32 of an x86-64 link, as multiboot loaders
/// want): the runtime without SSE, `kmain.c` and the core `<name>.c` with
/// SSE2 (x86-64's baseline, enabled by the runtime).
pub fn guest_kernel(name: &str) -> PathBuf {
    let core = format!("../../benches/guests/{name}.c");
    harness::build_rt64(
        &format!("bench-{name}"),
        &["../../benches/guests/kmain.c", &core],
        true,
    )
}

/// The same core built as a host program (`host.c`), gcc -O2.
pub fn guest_host_program(name: &str) -> PathBuf {
    built_once(format!("host:{name}"), || {
        let exe = guest_dir(name).join(format!("host-{name}"));
        tool(
            Command::new("gcc")
                .args(["-O2", "-Wall", "-Werror", "-o"])
                .arg(&exe)
                .arg(repo("benches/guests/host.c"))
                .arg(repo(&format!("benches/guests/{name}.c"))),
            "building a benchmark guest for the host",
        );
        exe
    })
}

/// The line the host program prints for `size`: what the guest must print.
pub fn host_line(name: &str, size: u64) -> String {
    let exe = guest_host_program(name);
    let o = Command::new(&exe)
        .arg(size.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(o.status.success(), "{} {size} failed", exe.display());
    String::from_utf8(o.stdout).expect("host output is text")
}

/// The emulator arguments of a guest run (cjemu and QEMU take the same),
/// then `extra`; the caller adds `-serial`.
pub fn guest_args(kernel: &Path, size: u64, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-kernel",
        &kernel.to_string_lossy(),
        "-append",
        &format!("size={size}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(
        [
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-display",
            "none",
            "-no-reboot",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string()),
    );
    a
}

/// Value of `key: value` in cjemu's `--stats` output.
pub fn stat<'a>(stderr: &'a str, key: &str) -> Option<&'a str> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

/// One timed emulator run.
pub struct TimedRun {
    pub status: i32,
    pub serial: String,
    pub stderr: String,
    /// Wall time of the whole process (start-up included).
    pub wall: Duration,
}

/// Run `program args -serial file:<out>`, killed after `timeout`; `None`
/// if the program cannot be started (not installed).
pub fn run_timed(
    program: &Path,
    args: &[String],
    out: &Path,
    timeout: Duration,
) -> Option<TimedRun> {
    let _ = std::fs::remove_file(out);
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .arg("-serial")
        .arg(format!("file:{}", out.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let what = format!("{} {args:?}", program.display());
    // Polled every millisecond: the wall time is the figure.
    let f = harness::wait_child(child, &what, timeout, Duration::from_millis(1));
    let wall = start.elapsed();
    Some(TimedRun {
        status: f.code,
        serial: String::from_utf8_lossy(&std::fs::read(out).unwrap_or_default()).into_owned(),
        stderr: f.stderr,
        wall,
    })
}
