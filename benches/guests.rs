//! The issue #5 benchmark: five CPU-bound gcc -O2 multiboot guests
//! (`benches/guests/`: integer loop, sort + sieve, a computed-goto bytecode
//! interpreter, table-driven CRC-32, SSE2 memset/memcpy) under cjemu's
//! interpreter, cjemu's JIT (default threshold) and QEMU's TCG, plain and
//! with `-icount shift=auto`, in one run on the same kernel files.
//!
//! `cargo bench --bench guests`. cjemu runs as a process (the release
//! binary Cargo builds for the benchmark, `--stats`), like QEMU, so both
//! pay the same process start-up. Figures per guest and engine:
//! - cjemu: guest MIPS over the engine's run time (`--stats`: `icount` /
//!   `run time`), the process wall time, and for the JIT the compile time
//!   and its share of the run time;
//! - QEMU: wall time, and MIPS as cjemu's `icount` of the same guest over
//!   QEMU's wall time (QEMU does not print an instruction count; the guest
//!   runs the same instructions on both);
//! - each figure is the best of [`REPS`] runs; every run's serial output
//!   must equal the host-built program's (the checksum oracle) and its
//!   exit status 0x21, or the benchmark stops.
//!
//! If `qemu-system-x86_64` is missing the QEMU lines say so and the rest
//! runs. `BENCH_GUESTS=intloop,crc32` picks guests; `BENCH_REPS=N` changes
//! the repetitions.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{
    guest_args, guest_kernel, host_line, run_timed, stat, GuestSpec, BENCH_GUESTS, GUEST_STATUS,
};

/// Runs per figure (the best is kept).
const REPS: usize = 3;

/// No run of a ~300 M-instruction guest takes this long, even interpreted.
const TIMEOUT: Duration = Duration::from_secs(300);

const QEMU: &str = "qemu-system-x86_64";

/// One engine configuration.
#[derive(Clone, Copy)]
enum Engine {
    Cjemu(&'static str),
    Qemu(&'static [&'static str]),
}

const ENGINES: [(&str, Engine); 4] = [
    ("cjemu interp", Engine::Cjemu("interp")),
    ("cjemu jit", Engine::Cjemu("jit")),
    ("qemu tcg", Engine::Qemu(&["-accel", "tcg"])),
    (
        "qemu tcg icount",
        Engine::Qemu(&["-accel", "tcg", "-icount", "shift=auto"]),
    ),
];

/// The best of the runs of one engine on one guest.
#[derive(Default, Clone, Copy)]
struct Figures {
    wall: f64,
    /// cjemu only: engine run time, compile time, instructions, blocks.
    run: f64,
    compile: f64,
    icount: u64,
    blocks: u64,
}

fn secs(s: &str) -> f64 {
    s.trim_end_matches(" s").parse().expect("a time in seconds")
}

/// One run; `None` when the emulator is not installed.
fn run_once(engine: Engine, kernel: &Path, size: u64, want: &str) -> Option<Figures> {
    let (program, extra): (PathBuf, Vec<&str>) = match engine {
        Engine::Cjemu(accel) => (
            env!("CARGO_BIN_EXE_cjemu").into(),
            vec!["--accel", accel, "--stats"],
        ),
        Engine::Qemu(args) => (QEMU.into(), args.to_vec()),
    };
    let out = kernel.with_extension("bench.out");
    let r = run_timed(&program, &guest_args(kernel, size, &extra), &out, TIMEOUT)?;
    assert_eq!(
        r.serial,
        want,
        "{} {kernel:?}: serial output (checksum)",
        program.display()
    );
    assert_eq!(
        r.status,
        GUEST_STATUS,
        "{} {kernel:?}: exit status",
        program.display()
    );
    let mut f = Figures {
        wall: r.wall.as_secs_f64(),
        ..Figures::default()
    };
    if let Engine::Cjemu(_) = engine {
        let get = |k| stat(&r.stderr, k).unwrap_or_else(|| panic!("no {k} in --stats"));
        f.icount = get("icount").parse().expect("icount is a number");
        f.run = secs(get("run time"));
        f.compile = secs(get("compile time"));
        f.blocks = get("blocks compiled").parse().expect("a count");
    }
    Some(f)
}

/// Best (shortest wall time) of `reps` runs.
fn best(engine: Engine, kernel: &Path, size: u64, want: &str, reps: usize) -> Option<Figures> {
    let mut all = Vec::new();
    for _ in 0..reps {
        all.push(run_once(engine, kernel, size, want)?);
    }
    all.into_iter().min_by(|a, b| a.wall.total_cmp(&b.wall))
}

fn mips(icount: u64, secs: f64) -> f64 {
    icount as f64 / secs / 1e6
}

/// Print the lines of one guest; returns (interp MIPS, jit MIPS, jit wall,
/// qemu icount wall) for the summary.
fn bench_guest(g: &GuestSpec, reps: usize) -> [Option<f64>; 4] {
    let kernel = guest_kernel(g.name);
    let want = host_line(g.name, g.big);
    let mut icount = 0;
    let mut interp_mips = None;
    let mut summary = [None; 4];
    for (label, engine) in ENGINES {
        let Some(f) = best(engine, &kernel, g.big, &want, reps) else {
            // Only QEMU may be missing: cargo built cjemu for this bench.
            assert!(matches!(engine, Engine::Qemu(_)), "cannot start cjemu");
            println!(
                "{:<10} {label:<16} not run: {QEMU} is not installed",
                g.name
            );
            continue;
        };
        match engine {
            Engine::Cjemu(accel) => {
                assert!(
                    icount == 0 || icount == f.icount,
                    "{}: icount differs between engines",
                    g.name
                );
                icount = f.icount;
                let m = mips(f.icount, f.run);
                let mut line = format!(
                    "{:<10} {label:<16} {:>8.1} MIPS  wall {:>7.3} s  ({} insns, run {:.3} s)",
                    g.name, m, f.wall, f.icount, f.run
                );
                if accel == "jit" {
                    line += &format!(
                        "  compile {:.1} ms = {:.1}% of run, {} blocks",
                        f.compile * 1e3,
                        100.0 * f.compile / f.run,
                        f.blocks
                    );
                    if let Some(im) = interp_mips {
                        line += &format!("  jit/interp {:.1}x", m / im);
                    }
                    summary[1] = Some(m);
                    summary[2] = Some(f.wall);
                } else {
                    interp_mips = Some(m);
                    summary[0] = Some(m);
                }
                println!("{line}");
            }
            Engine::Qemu(args) => {
                println!(
                    "{:<10} {label:<16} {:>8.1} MIPS  wall {:>7.3} s  (cjemu icount / wall)",
                    g.name,
                    mips(icount, f.wall),
                    f.wall
                );
                if args.contains(&"-icount") {
                    summary[3] = Some(f.wall);
                }
            }
        }
    }
    summary
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    let reps = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(REPS)
        .max(1);
    let pick = std::env::var("BENCH_GUESTS").ok();
    let chosen = BENCH_GUESTS.iter().filter(|g| {
        pick.as_ref()
            .is_none_or(|p| p.split(',').any(|n| n == g.name))
    });
    println!("benchmark guests: best of {reps} runs each; MIPS of cjemu over its engine run time");
    let mut rows = Vec::new();
    for g in chosen {
        rows.push((g.name, bench_guest(g, reps)));
    }
    println!("\nsummary (guest, interp MIPS, jit MIPS, jit/interp, jit wall s, qemu icount wall s, jit faster than qemu icount?):");
    for (name, [im, jm, jw, qw]) in rows {
        let ratio = im.zip(jm).map(|(i, j)| j / i);
        let faster = jw
            .zip(qw)
            .map_or("-", |(j, q)| if j < q { "yes" } else { "no" });
        println!(
            "{name:<10} {:>8} {:>8} {:>6}x {:>7} {:>7} {faster}",
            fmt(im, 1),
            fmt(jm, 1),
            fmt(ratio, 1),
            fmt(jw, 3),
            fmt(qw, 3)
        );
    }
}
