//! Shared by `qemu_parity.rs` and `qemu_parity_system.rs`: build the test
//! kernels in `tests/kernels/` with the machine's gcc and binutils, run a
//! kernel under cjemu and under `qemu-system-x86_64` with the same
//! arguments, and compare serial output and exit status.
//!
//! Missing tools are a test failure with a clear message, never a skip
//! (`.ci/run` installs them). Every run is killed after [`TIMEOUT`], so a
//! hang fails instead of stalling CI.

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one emulator run may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The QEMU binary the parity tests compare against.
pub const QEMU: &str = "qemu-system-x86_64";

/// Compiler flags of the C kernels: 32-bit, freestanding, no SSE.
const CFLAGS: &[&str] = &[
    "-m32",
    "-march=i686",
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-mgeneral-regs-only",
    "-fno-builtin",
    "-Wall",
    "-Werror",
];

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kernels")
        .join(name)
}

fn out_dir(kernel: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kernels")
        .join(kernel);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run a build tool; a missing tool or a failure fails with its output.
pub fn tool(cmd: &mut Command, what: &str) {
    let o = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {:?} ({e}); install gcc and binutils",
            cmd.get_program()
        )
    });
    assert!(
        o.status.success(),
        "{what} failed: {:?}\n{}",
        cmd,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn compile(input: &Path, output: &Path) {
    tool(
        Command::new("gcc")
            .args(CFLAGS)
            .arg("-c")
            .arg(input)
            .arg("-o")
            .arg(output),
        "compiling a test kernel",
    );
}

fn link(script: &str, objs: &[PathBuf], output: &Path) {
    tool(
        Command::new("ld")
            .args([
                "-m",
                "elf_i386",
                "-nostdlib",
                "--no-warn-rwx-segments",
                "-z",
                "noexecstack",
                "-T",
            ])
            .arg(src(script))
            .arg("-o")
            .arg(output)
            .args(objs),
        "linking a test kernel",
    );
}

/// Build each kernel once per test binary: tests run on parallel threads
/// and two of them building the same kernel into the same directory would
/// read each other's half-written files.
pub fn built_once(key: String, build: impl FnOnce() -> PathBuf) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut map = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let p = build();
    map.insert(key, p.clone());
    p
}

/// Build the C kernel `tests/kernels/<name>.c` (with boot.S and lib.c).
pub fn build_c(name: &str) -> PathBuf {
    built_once(format!("c:{name}"), || build_c_now(name))
}

fn build_c_now(name: &str) -> PathBuf {
    let d = out_dir(name);
    let mut objs = Vec::new();
    for s in ["boot.S", "lib.c", &format!("{name}.c")] {
        let o = d.join(format!("{s}.o"));
        compile(&src(s), &o);
        objs.push(o);
    }
    let elf = d.join(format!("{name}.elf"));
    link("kernel.ld", &objs, &elf);
    elf
}

/// Build the assembly kernel `tests/kernels/<name>.S` with a link script.
pub fn build_asm(name: &str, script: &str) -> PathBuf {
    built_once(format!("asm:{name}:{script}"), || {
        build_asm_now(name, script)
    })
}

fn build_asm_now(name: &str, script: &str) -> PathBuf {
    let d = out_dir(name);
    let o = d.join(format!("{name}.o"));
    compile(&src(&format!("{name}.S")), &o);
    let elf = d.join(format!("{name}.elf"));
    link(script, &[o], &elf);
    elf
}

/// Compiler flags of the 64-bit kernels (rt64 runtime): freestanding
/// x86-64 code linked below 2 GiB, no red zone (interrupts arrive on the
/// current stack in ring 0).
const CFLAGS64: &[&str] = &[
    "-m64",
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-mno-red-zone",
    "-mcmodel=small",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-Wall",
    "-Werror",
];

fn compile64(input: &Path, output: &Path, sse: bool) {
    let mut cmd = Command::new("gcc");
    cmd.args(CFLAGS64);
    if sse {
        // The runtime enables SSE (CR4.OSFXSR); x86-64 doubles use SSE2.
        cmd.arg("-fno-math-errno");
    } else {
        // Handlers must not touch SSE: some tests run with CR0.TS set.
        cmd.arg("-mgeneral-regs-only");
    }
    // Sources outside tests/kernels (the benchmark guests) include rt64.h.
    cmd.arg("-I").arg(src(""));
    cmd.arg("-c").arg(input).arg("-o").arg(output);
    tool(&mut cmd, "compiling a 64-bit test kernel");
}

/// Build a 64-bit kernel on the rt64 runtime: `rt64.S`, `rt64.c` (never
/// using SSE), then `sources` (paths relative to tests/kernels; SSE
/// allowed when `sse`), linked as x86-64
/// ELF and converted to ELF32 with objcopy, since multiboot loaders
/// (QEMU's too) only take 32-bit ELF.
pub fn build_rt64(name: &str, sources: &[&str], sse: bool) -> PathBuf {
    built_once(format!("rt64:{name}:{sources:?}:{sse}"), || {
        build_rt64_now(name, sources, sse)
    })
}

fn build_rt64_now(name: &str, sources: &[&str], sse: bool) -> PathBuf {
    let d = out_dir(name);
    let mut objs = Vec::new();
    for (s, own) in [("rt64.S", false), ("rt64.c", false)]
        .into_iter()
        .chain(sources.iter().map(|s| (*s, true)))
    {
        let file = Path::new(s).file_name().unwrap().to_string_lossy();
        let o = d.join(format!("{file}.o"));
        compile64(&src(s), &o, own && sse);
        objs.push(o);
    }
    let elf64 = d.join(format!("{name}.elf64"));
    tool(
        Command::new("ld")
            .args([
                "-m",
                "elf_x86_64",
                "-nostdlib",
                "--no-warn-rwx-segments",
                "-z",
                "noexecstack",
                "-z",
                "max-page-size=0x1000",
                "-T",
            ])
            .arg(src("kernel.ld"))
            .arg("-o")
            .arg(&elf64)
            .args(&objs),
        "linking a 64-bit test kernel",
    );
    let elf = d.join(format!("{name}.elf"));
    tool(
        Command::new("objcopy")
            .args(["-O", "elf32-i386"])
            .arg(&elf64)
            .arg(&elf),
        "converting a 64-bit test kernel to ELF32",
    );
    elf
}

/// A file with `bytes`, for modules.
pub fn data_file(kernel: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let p = out_dir(kernel).join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Exit status and serial output of one run.
#[derive(Debug, PartialEq, Eq)]
pub struct RunResult {
    pub status: i32,
    pub serial: Vec<u8>,
    /// What the emulator wrote on stderr (cjemu's `--stats`, messages).
    pub stderr: String,
}

impl RunResult {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.serial).into_owned()
    }
}

/// What a finished child left: its exit status (a signal death fails the
/// caller), stdout and stderr.
pub struct Finished {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Wait for `child` (stdout and stderr piped or null), draining its pipes
/// on threads so a chatty child never blocks on a full pipe (which would
/// look like a hang); polled every `poll`, killed after `timeout`, which
/// fails the caller, as does a death by signal. `what` names it in panics.
pub fn wait_child(
    mut child: std::process::Child,
    what: &str,
    timeout: Duration,
    poll: Duration,
) -> Finished {
    use std::io::Read;
    let out = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = o.read_to_end(&mut v);
            v
        })
    });
    let err = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?} (guest hang?)");
        }
        std::thread::sleep(poll);
    };
    let stdout = out.map(|t| t.join().unwrap()).unwrap_or_default();
    let stderr = err.map(|t| t.join().unwrap()).unwrap_or_default();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{what} killed by a signal; stderr: {stderr}"));
    Finished {
        code,
        stdout,
        stderr,
    }
}

/// Start `cmd`, or fail saying which package provides `program`.
fn spawn_or_explain(cmd: &mut Command, program: &str) -> std::process::Child {
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {program} ({e}); the QEMU parity tests need it: \
             apt-get install qemu-system-x86 (.ci/run installs it)"
        )
    })
}

/// Run `program` with `args` and COM1 into the file `out`, killed after
/// [`TIMEOUT`]; a signal death or a hang fails the test.
pub fn run(program: &str, args: &[String], out: &Path) -> RunResult {
    let _ = std::fs::remove_file(out);
    let child = spawn_or_explain(
        Command::new(program)
            .args(args)
            .arg("-serial")
            .arg(format!("file:{}", out.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        program,
    );
    let what = format!("{program} {args:?}");
    let f = wait_child(child, &what, TIMEOUT, Duration::from_millis(10));
    RunResult {
        status: f.code,
        serial: std::fs::read(out).unwrap_or_default(),
        stderr: f.stderr,
    }
}

/// The common arguments of both emulators, then `extra`.
pub fn args(kernel: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-kernel",
        kernel.to_str().unwrap(),
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
        "-device",
        "pc-testdev",
        "-display",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Run `kernel` under cjemu alone (for behaviour where QEMU departs from
/// the SDM; the caller asserts the SDM's answer).
pub fn run_cjemu(kernel: &Path, extra: &[&str]) -> RunResult {
    let a = args(kernel, extra);
    let out = kernel.parent().unwrap().join("cjemu-only.out");
    run(env!("CARGO_BIN_EXE_cjemu"), &a, &out)
}

/// Run `kernel` under cjemu and QEMU with the same arguments; assert the
/// same serial bytes and exit status; return cjemu's result.
pub fn parity(kernel: &Path, extra: &[&str]) -> RunResult {
    let a = args(kernel, extra);
    let dir = kernel.parent().unwrap();
    let tag = extra.join("_").replace(['/', ' ', ','], "-");
    let q = run(QEMU, &a, &dir.join(format!("qemu{tag}.out")));
    let c = run(
        env!("CARGO_BIN_EXE_cjemu"),
        &a,
        &dir.join(format!("cjemu{tag}.out")),
    );
    assert_eq!(
        c.text(),
        q.text(),
        "serial output differs (left cjemu, right QEMU) for {a:?}"
    );
    assert_eq!(
        c.status, q.status,
        "exit status differs (cjemu vs QEMU) for {a:?}"
    );
    c
}

/// Run `program args… -serial stdio` with `input` on stdin (a pipe, so
/// the emulator sees EOF after the last byte), COM1 read from stdout,
/// killed after [`TIMEOUT`]. QEMU's `-serial` has no file input, so this is
/// how both emulators can be fed the same bytes.
pub fn run_piped(program: &str, args: &[String], input: &Path) -> RunResult {
    let stdin = std::fs::File::open(input)
        .unwrap_or_else(|e| panic!("serial input {}: {e}", input.display()));
    let child = spawn_or_explain(
        Command::new(program)
            .args(args)
            .args(["-serial", "stdio"])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        program,
    );
    let what = format!("{program} {args:?}");
    let f = wait_child(child, &what, TIMEOUT, Duration::from_millis(10));
    RunResult {
        status: f.code,
        serial: f.stdout,
        stderr: f.stderr,
    }
}

/// The records of a cjemu `-d int` log for delivered external interrupts,
/// each from `interrupt vector` on (`interrupt vector 0xVV at icount N rip
/// 0xRIP`), so a log prefix cannot make two traces differ.
pub fn interrupt_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            l.find("interrupt vector")
                .map(|i| l[i..].trim_end().to_string())
        })
        .collect()
}

/// [`run_cjemu`] with its own output file, `cjemu-<tag>.out`, for tests
/// that run the same kernel on parallel threads.
pub fn run_cjemu_tagged(kernel: &Path, extra: &[&str], tag: &str) -> RunResult {
    let a = args(kernel, extra);
    let out = kernel.parent().unwrap().join(format!("cjemu-{tag}.out"));
    run(env!("CARGO_BIN_EXE_cjemu"), &a, &out)
}
