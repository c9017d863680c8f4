//! Interrupt-driven guests on the virtual clock (issue #6): PIT ticks
//! counted over a known number of instructions, serial echo on RX
//! interrupts fed from a file, the RTC's time of day and periodic
//! interrupt rate, `-d int` traces that repeat exactly across runs and
//! engines, and QEMU parity under `-icount shift=N,sleep=off`.
//!
//! Expected figures come from the device rates (1.193182 MHz PIT input,
//! 32.768 kHz RTC time base) and the instruction counts of the kernels'
//! assembly timing regions (tests/kernels/lib.c), or from QEMU.

#[path = "kernels/harness.rs"]
mod harness;

use harness::{args, build_c, interrupt_lines, run, run_cjemu_tagged, run_piped, RunResult, QEMU};
use std::path::Path;

const PIT_HZ: u128 = 1_193_182;

/// First ns (from the count write) at which `clocks` PIT input clocks have
/// elapsed.
fn pit_ns(clocks: u64) -> u64 {
    (clocks as u128 * 1_000_000_000).div_ceil(PIT_HZ) as u64
}

/// Rising edges of mode 2 with `div` within `ns` of the count write. The
/// 8254 loads the count on the first input clock after the write, OUT goes
/// low when the count reaches 1 and high again on the reload: the k-th
/// rising edge comes k·div + 1 clocks after that first clock edge, i.e.
/// between k·div and k·div + 1 clocks after the write, depending on the
/// phase of the input clock at the write. Returns (edges certainly by
/// then, edges possibly by then).
fn pit_edges(ns: u64, div: u64) -> (u64, u64) {
    let count = |late: u64| (1..).take_while(|k| pit_ns(k * div + late) <= ns).count() as u64;
    (count(1), count(0))
}

/// `key=` value of a line of the kernel's output.
fn field(line: &str, key: &str) -> u64 {
    let pat = format!("{key}=");
    let v = line
        .split(' ')
        .find_map(|w| w.strip_prefix(&pat))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    v.parse()
        .unwrap_or_else(|e| panic!("{key}={v} in {line:?}: {e}"))
}

fn line<'a>(r: &'a RunResult, prefix: &str) -> &'a str {
    let t = r.serial.as_slice();
    let text = std::str::from_utf8(t).expect("serial output is UTF-8");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no line starting {prefix:?} in:\n{text}\nstderr:\n{}",
                r.stderr
            )
        })
}

/// PIT ticks expected over `timed_loop(n, div)` at 2^shift ns per
/// instruction. The count is loaded by an OUT; after it come STI, 2n loop
/// instructions and 6 per tick handled before the CLI, so the last point
/// an IRQ0 can be taken is (2 + 2n + 6K) instructions after the load.
/// Solved as a fixed point in K; panics if the end of the loop falls
/// within 100 ns of an edge, where instruction dating could matter.
fn loop_ticks(n: u64, div: u64, shift: u32) -> u64 {
    let mut k = 0;
    loop {
        let end = (2 + 2 * n + 6 * k) << shift;
        let (sure, maybe) = pit_edges(end - 100, div);
        let (sure2, maybe2) = pit_edges(end + 100, div);
        assert!(
            sure == maybe && maybe == sure2 && sure2 == maybe2,
            "test parameters n={n} div={div}: the loop ends too close to a PIT edge"
        );
        if sure == k {
            return k;
        }
        k = sure;
    }
}

fn pit_args(n: u64, div: u64, k: u64, hdiv: u64, shift: u32) -> Vec<String> {
    vec![
        "--icount".into(),
        format!("shift={shift},sleep=off"),
        "-append".into(),
        format!("n={n} div={div} k={k} hdiv={hdiv}"),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// pit_ticks under cjemu: the counted loop sees exactly the ticks the
/// 1.193182 MHz input predicts, RDTSC (virtual ns) measures exactly the
/// instructions retired (interrupt delivery counts 0, IRET 1), and the
/// HLT wait wakes on IRQ0 and ends after k periods.
fn check_pit(n: u64, div: u64, k: u64, hdiv: u64, shift: u32) {
    let kernel = build_c("pit_ticks");
    let tag = format!("pit-{n}-{div}-{shift}");
    let r = run_cjemu_tagged(&kernel, &strs(&pit_args(n, div, k, hdiv, shift)), &tag);
    assert_eq!(
        r.status,
        (0x31 << 1) | 1,
        "status; output:\n{}\n{}",
        r.text(),
        r.stderr
    );
    let l = line(&r, "loop ");
    let want = loop_ticks(n, div, shift);
    assert_eq!(
        field(l, "ticks"),
        want,
        "PIT ticks over the loop (shift {shift}): {l}"
    );
    assert_eq!(
        field(l, "tsc"),
        (2 * n + 6 + 6 * want) << shift,
        "RDTSC delta over the loop = instructions << shift: {l}"
    );

    let h = line(&r, "hlt ");
    assert_eq!(field(h, "ticks"), k, "{h}");
    // After the k-th edge: 6 handler instructions, CMP, JB, CLI, and the
    // RDTSC; before the load: RDTSC, MOV, MOV, OUT. 12 in all (dating the
    // OUT and both RDTSCs by the same convention); the edge itself lies
    // between k·hdiv and k·hdiv + 1 clocks after the write (see
    // pit_edges), and at shift > 0 the CPU resumes at the next instruction
    // boundary after the deadline.
    let edge = field(h, "tsc") - (12 << shift);
    let lo = pit_ns(k * hdiv);
    let hi = pit_ns(k * hdiv + 1) + (1 << shift) - 1;
    assert!(
        (lo..=hi).contains(&edge),
        "HLT wait for {k} periods of {hdiv} clocks: edge at {edge} ns, expected {lo}..={hi}: {h}"
    );
}

#[test]
fn pit_ticks_1khz_at_shift_0() {
    check_pit(4_400_000, 1000, 10, 11932, 0);
}

#[test]
fn pit_ticks_12khz_at_shift_0() {
    check_pit(1_000_000, 100, 50, 1193, 0);
}

#[test]
fn pit_ticks_at_shift_2() {
    check_pit(1_000_000, 100, 7, 5000, 2);
}

/// `-d int` into a file: the interrupt records.
fn trace(kernel: &Path, extra: &[&str], tag: &str) -> (RunResult, Vec<String>) {
    let log = kernel.parent().unwrap().join(format!("int-{tag}.log"));
    let _ = std::fs::remove_file(&log);
    let mut a: Vec<&str> = extra.to_vec();
    let log_s = log.to_str().unwrap();
    a.extend(["-d", "int", "-D", log_s]);
    let r = run_cjemu_tagged(kernel, &a, tag);
    let text = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("-D {log_s}: {e}; stderr: {}", r.stderr));
    (r, interrupt_lines(&text))
}

/// The same guest gives the same interrupts at the same instruction counts
/// on every run and under every engine mix.
fn traces_agree(kernel: &Path, extra: &[&str]) -> (RunResult, Vec<String>) {
    let (first, t0) = trace(kernel, extra, "jit-a");
    assert!(
        !t0.is_empty(),
        "no 'interrupt vector' records; stderr: {}",
        first.stderr
    );
    for (tag, accel) in [
        ("jit-b", None),
        ("interp", Some("interp")),
        ("jit-t0", Some("jit,threshold=0")),
    ] {
        let mut a = extra.to_vec();
        if let Some(x) = accel {
            a.extend(["--accel", x]);
        }
        let (r, t) = trace(kernel, &a, tag);
        assert_eq!(r.serial, first.serial, "serial output of run {tag}");
        assert_eq!(r.status, first.status, "status of run {tag}");
        assert_eq!(t.len(), t0.len(), "interrupt count of run {tag}");
        if let Some(i) = (0..t.len()).find(|&i| t[i] != t0[i]) {
            panic!("run {tag}: interrupt {i} differs:\n  {}\n  {}", t0[i], t[i]);
        }
    }
    (first, t0)
}

#[test]
fn pit_interrupt_trace_repeats_across_runs_and_engines() {
    let kernel = build_c("pit_ticks");
    let args = pit_args(1_000_000, 100, 20, 1193, 0);
    let (r, t) = traces_agree(&kernel, &strs(&args));
    let want = field(line(&r, "loop "), "ticks") + field(line(&r, "hlt "), "ticks");
    assert_eq!(t.len() as u64, want, "one IRQ0 record per tick counted");
    let mut last = 0;
    for l in &t {
        assert!(l.starts_with("interrupt vector 0x20 at icount "), "{l}");
        let n: u64 = l["interrupt vector 0x20 at icount ".len()..]
            .split(' ')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no icount in {l:?}"));
        assert!(n > last, "icounts increase: {l}");
        last = n;
    }
}

/// Echo input: a run of '@' (dropped by the kernel: bytes delivered before
/// it resets the FIFO may be lost), text, '#' (the end).
/// Each test writes its own file (`tag`): tests run on parallel threads.
fn echo_input(dir: &Path, tag: &str) -> (std::path::PathBuf, String) {
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&format!(
            "line {i}: The quick brown fox jumps over the lazy dog; 0123456789 !?\n"
        ));
    }
    let input = format!("{}{text}#", "@".repeat(40));
    let p = dir.join(format!("echo-input-{tag}.txt"));
    std::fs::write(&p, input).unwrap();
    let want = format!(
        "{}\nechoed={} irqs>0 lsr_errors=0\n",
        text.to_ascii_uppercase(),
        text.len()
    );
    (p, want)
}

/// Both RX trigger levels: 1 (an interrupt per byte) and 14 (the tail of
/// each burst arrives through the character-timeout interrupt).
const ECHO_MODES: &[&str] = &["", "fifo14"];

#[test]
fn serial_echo_from_serial_input_file() {
    let kernel = build_c("serial_echo");
    let (input, want) = echo_input(kernel.parent().unwrap(), "file");
    for mode in ECHO_MODES {
        let extra = ["--serial-input", input.to_str().unwrap(), "-append", mode];
        let (r, t) = traces_agree(&kernel, &extra);
        assert_eq!(r.text(), want, "mode {mode:?}; stderr: {}", r.stderr);
        assert_eq!(r.status, (0x32 << 1) | 1);
        assert!(
            t.iter().all(|l| l.starts_with("interrupt vector 0x24 ")),
            "only IRQ4 is unmasked: {t:?}"
        );
    }
}

#[test]
fn serial_echo_from_stdin_matches_qemu() {
    let kernel = build_c("serial_echo");
    let (input, want) = echo_input(kernel.parent().unwrap(), "stdin");
    for mode in ECHO_MODES {
        let a = harness::args(&kernel, &["-append", mode]);
        let q = run_piped(QEMU, &a, &input);
        assert_eq!(q.text(), want, "QEMU's echo, mode {mode:?}");
        let c = run_piped(env!("CARGO_BIN_EXE_cjemu"), &a, &input);
        assert_eq!(
            c.text(),
            q.text(),
            "cjemu vs QEMU, mode {mode:?}; cjemu stderr: {}",
            c.stderr
        );
        assert_eq!(c.status, q.status);
    }
}

const RTC_BASE: &str = "base=2024-02-29T23:59:58";

/// What rtc_time prints for a register-B mode. 1024 Hz for 2 s plus half
/// a period: 2048 interrupts after the one that opens the window; 2 Hz for
/// 1.75 s: 3. Time read after the first window: 2 s and a little after
/// 23:59:58 on 29 February of a leap year; after the second: the wait
/// until the first 2 Hz interrupt (at most 0.5 s) plus 2 s more, so
/// between 4 and 4.6 s after the start.
fn rtc_expected(mode: &str) -> String {
    let period_1024 = 1_000_000_000.0 / 1024.0;
    let n1 = ((2_000_000_000.0 + 488_281.0) / period_1024) as u64;
    let n2 = 1_750_000_000u64 / 500_000_000;
    format!(
        "rtc_time {mode}\nstart 2024-02-29 23:59:58\n\
         irq8 1024Hz window_us=2000488 count={n1}\nafter 2024-03-01 00:00:00\n\
         irq8 2Hz window_us=1750000 count={n2}\nafter 2024-03-01 00:00:02\n"
    )
}

#[test]
fn rtc_time_and_periodic_rate() {
    let kernel = build_c("rtc_time");
    for (append, mode) in [
        ("", "bcd 24h"),
        ("binary", "binary 24h"),
        ("h12", "bcd 12h"),
        ("binary h12", "binary 12h"),
    ] {
        let r = run_cjemu_tagged(
            &kernel,
            &[
                "--icount",
                "shift=0,sleep=off",
                "-rtc",
                RTC_BASE,
                "-append",
                append,
            ],
            "rtc-modes",
        );
        assert_eq!(
            r.text(),
            rtc_expected(mode),
            "mode {mode}; stderr: {}",
            r.stderr
        );
        assert_eq!(r.status, (0x33 << 1) | 1);
    }
    // Without --icount the clock is the same deterministic one.
    let r = run_cjemu_tagged(&kernel, &["-rtc", RTC_BASE], "rtc");
    assert_eq!(
        r.text(),
        rtc_expected("bcd 24h"),
        "no --icount; stderr: {}",
        r.stderr
    );
}

/// QEMU agrees on everything rtc_time prints except the 1024 Hz count:
/// QEMU 7.2 with `-icount sleep=off` delivers only every other RTC
/// periodic interrupt to a CPU that halts between them (the gaps its
/// handler measures are exactly two periods; busy-waiting it sees all of
/// them, see icount_parity.c), so that line is left out here.
#[test]
fn rtc_time_matches_qemu_but_for_the_halted_1024hz_count() {
    let kernel = build_c("rtc_time");
    let rtc = format!("{RTC_BASE},clock=vm");
    let a = harness::args(&kernel, &["-icount", "shift=0,sleep=off", "-rtc", &rtc]);
    let dir = kernel.parent().unwrap();
    let q = harness::run(QEMU, &a, &dir.join("qemu-rtc-vs-qemu.out"));
    let c = harness::run(
        env!("CARGO_BIN_EXE_cjemu"),
        &a,
        &dir.join("cjemu-rtc-vs-qemu.out"),
    );
    let keep = |r: &RunResult| -> String {
        r.text()
            .lines()
            .filter(|l| !l.starts_with("irq8 1024Hz"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        keep(&c),
        keep(&q),
        "cjemu vs QEMU; cjemu stderr: {}",
        c.stderr
    );
    assert_eq!(c.status, q.status);
}

/// icount_parity under both emulators with the same -icount: same output.
/// Its figures are also derived here: the counted loop (n = 1500000,
/// div = 119) and RDTSC = instructions << shift; 20 ticks waited for;
/// 81 RTC interrupts in 81.5 periods at 8192 Hz.
///
/// One figure differs by convention and is compared within a bound: the
/// RDTSC span of the HLT wait ends at the 20th rising edge of PIT OUT.
/// QEMU's PIT counts input clocks from the moment the count is written;
/// cjemu's input clock runs free from power-on (as the 8254's CLK pin
/// does) and the count loads at its next edge, so the two put that edge up
/// to one PIT clock (838 ns) apart, plus one instruction's worth of
/// rounding at each end.
fn icount_parity(shift: u32) {
    let kernel = build_c("icount_parity");
    let ic = format!("shift={shift},sleep=off");
    let rtc = format!("{RTC_BASE},clock=vm");
    let extra = ["-icount", ic.as_str(), "-rtc", rtc.as_str()];
    let a = args(&kernel, &extra);
    let dir = kernel.parent().unwrap();
    let q = run(QEMU, &a, &dir.join(format!("qemu-shift{shift}.out")));
    let r = run(
        env!("CARGO_BIN_EXE_cjemu"),
        &a,
        &dir.join(format!("cjemu-shift{shift}.out")),
    );
    let hlt = "pit hlt ";
    let others = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with(hlt))
            .map(String::from)
            .collect()
    };
    assert_eq!(others(&r.text()), others(&q.text()), "cjemu vs QEMU");
    assert_eq!(r.status, q.status);
    let (ct, qt) = (field(line(&r, hlt), "tsc"), field(line(&q, hlt), "tsc"));
    let bound = 838 + 2 * (1u64 << shift);
    assert!(
        ct.abs_diff(qt) <= bound,
        "HLT wait: cjemu {ct} ns, QEMU {qt} ns, more than {bound} ns apart"
    );
    assert_eq!(r.status, (0x34 << 1) | 1, "stderr: {}", r.stderr);
    let l = line(&r, "pit loop ");
    let k = loop_ticks(1_500_000, 119, shift);
    assert_eq!(field(l, "ticks"), k, "{l}");
    assert_eq!(field(l, "tsc"), (3_000_000 + 6 + 6 * k) << shift, "{l}");
    assert_eq!(field(line(&r, "pit hlt "), "ticks"), 20);
    let period = 1_000_000_000.0 / 8192.0;
    let want = (9_948_730.0 / period) as u64;
    assert_eq!(field(line(&r, "rtc periodic "), "count"), want);
    assert_eq!(
        r.text()
            .lines()
            .filter(|l| l.starts_with("rtc 2024-02-29 23:59:58"))
            .count(),
        2,
        "the RTC read at the start and at the end:\n{}",
        r.text()
    );
}

#[test]
fn icount_parity_with_qemu_shift_0() {
    icount_parity(0);
}

#[test]
fn icount_parity_with_qemu_shift_3() {
    icount_parity(3);
}
