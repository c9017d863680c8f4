//! Integration tests of the `cjemu` binary: exit statuses, stderr messages,
//! and that stdout stays empty (it belongs to the guest's serial port).

use iced_x86::code_asm::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const LOAD: u64 = 0x10_0000;

fn cjemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cjemu"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running cjemu")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Status, with stderr in the failure message.
fn status(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", stderr(o)))
}

fn assert_stdout_empty(o: &Output) {
    assert!(
        o.stdout.is_empty(),
        "stdout must carry only guest serial bytes, got {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// The value of `key: value` in `--stats` output.
fn stat(o: &Output, key: &str) -> String {
    let text = stderr(o);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no '{key}:' line in stderr:\n{text}"))
        .to_string()
}

/// Write a file under this test binary's temp dir.
fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn assemble(at: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(at).unwrap()
}

/// The demo's report as `src/demo.rs` formats it from the natively
/// computed results.
fn demo_serial() -> String {
    cjemu::demo::expected_serial(&cjemu::demo::reference())
}

#[test]
fn no_arguments_runs_the_demo_and_exits_0() {
    let o = cjemu(&[]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    // The guest prints over COM1, which is stdout; only its bytes are there,
    // and exactly the report the host computes independently.
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, demo_serial());
    let err = stderr(&o);
    assert!(err.contains("match the host"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(err.lines().count(), 1, "only the verification line: {err}");
}

#[test]
fn demo_reports_long_mode_and_the_known_prime_facts() {
    let o = cjemu(&["-m", "8M"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cjemu demo guest: switched to 64-bit long mode")),
        "{out}"
    );
    // pi(10^5) = 9592; the primes below 10^5 sum to 454396537.
    assert!(
        out.contains("9592 primes below 100000, summing to 454396537\n"),
        "{out}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with("cjemu demo guest: ")),
        "{out}"
    );
}

#[test]
fn demo_with_too_little_ram_is_a_usage_error() {
    let o = cjemu(&["-m", "2M"]);
    assert_eq!(status(&o), 2, "{}", stderr(&o));
    assert_stdout_empty(&o);
    assert!(stderr(&o).contains("at least 4 MiB"), "{}", stderr(&o));
}

#[test]
fn demo_stats_report_guest_mips_and_the_demo_registers() {
    let o = cjemu(&["--stats", "-serial", "null"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_stdout_empty(&o);
    let mips: f64 = stat(&o, "guest MIPS").parse().unwrap();
    assert!(mips > 0.0);
    let icount: u64 = stat(&o, "icount").parse().unwrap();
    assert!(icount > 1_000_000, "the demo does real work: {icount}");
    assert_eq!(stat(&o, "exit"), "halted");
    assert_eq!(stat(&o, "state-hash").len(), 16);
    assert!(stat(&o, "blocks decoded").parse::<u64>().unwrap() > 0);
    // The guest left the "DEMODONE" marker in R11 and halted in its 64-bit
    // code, above its 32-bit entry (0x100020).
    assert_eq!(stat(&o, "r11"), "0x454e4f444f4d4544");
    let rip = u64::from_str_radix(stat(&o, "rip").trim_start_matches("0x"), 16).unwrap();
    assert!(rip > 0x10_0400, "rip {rip:#x}");
}

#[test]
fn demo_stats_with_serial_on_stdout_keep_the_streams_apart() {
    let o = cjemu(&["--stats"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), demo_serial());
    assert!(stat(&o, "icount").parse::<u64>().unwrap() > 1_000_000);
    assert!(stderr(&o).lines().any(|l| l.starts_with("icount: ")));
    assert!(!stderr(&o).contains("cjemu demo guest"), "{}", stderr(&o));
}

#[test]
fn a_flat_binary_runs_and_stats_show_its_registers() {
    let code = assemble(LOAD, |a| {
        a.mov(rax, 0x1234_5678_9abc_def0u64)?;
        a.mov(ebx, 3)?;
        a.add(rax, rbx)?;
        a.push(rax)?;
        a.pop(rcx)?;
        a.hlt()
    });
    let f = temp_file("flat.bin", &code);
    let o = cjemu(&[
        "-kernel",
        f.to_str().unwrap(),
        "--flat",
        "0x100000",
        "--stats",
    ]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_stdout_empty(&o);
    assert_eq!(stat(&o, "rax"), "0x123456789abcdef3");
    assert_eq!(stat(&o, "rcx"), "0x123456789abcdef3");
    assert_eq!(stat(&o, "icount"), "6");
    assert_eq!(
        stat(&o, "rip"),
        format!("{:#018x}", LOAD + code.len() as u64)
    );
    // RSP is back at its documented start: top of RAM (128 MiB) minus the
    // 8 KiB of page tables.
    assert_eq!(
        stat(&o, "rsp"),
        format!("{:#018x}", (128u64 << 20) - 0x2000)
    );
}

#[test]
fn options_in_any_order_with_one_or_two_dashes() {
    let code = assemble(LOAD, |a| {
        a.mov(eax, 42)?;
        a.hlt()
    });
    let f = temp_file("order.bin", &code);
    let f = f.to_str().unwrap();
    for args in [
        &["--stats", "--flat", "0x100000", "--kernel", f, "-m", "16M"][..],
        &["-m", "16", "-stats", "-kernel", f, "-flat", "1048576"],
    ] {
        let o = cjemu(args);
        assert_eq!(status(&o), 0, "{args:?}: {}", stderr(&o));
        assert_eq!(stat(&o, "rax"), format!("{:#018x}", 42), "{args:?}");
        assert_eq!(stat(&o, "rsp"), format!("{:#018x}", (16u64 << 20) - 0x2000));
    }
}

#[test]
fn flat_entry_can_differ_from_the_load_address() {
    let code = assemble(LOAD, |a| {
        a.mov(eax, 1)?; // 5 bytes, skipped
        a.mov(ebx, 2)?;
        a.hlt()
    });
    let f = temp_file("entry.bin", &code);
    let o = cjemu(&[
        "-kernel",
        f.to_str().unwrap(),
        "--flat",
        "0x100000",
        "--flat-entry",
        "0x100005",
        "--stats",
    ]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_eq!(stat(&o, "rax"), format!("{:#018x}", 0));
    assert_eq!(stat(&o, "rbx"), format!("{:#018x}", 2));
}

#[test]
fn ud2_triple_faults_and_ends_the_run_with_status_0() {
    let code = assemble(LOAD, |a| {
        a.nop()?;
        a.ud2()
    });
    let f = temp_file("ud2.bin", &code);
    let o = cjemu(&["-kernel", f.to_str().unwrap(), "--flat", "0x100000"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_stdout_empty(&o);
    let e = stderr(&o);
    let line = e
        .lines()
        .find(|l| l.contains("triple fault"))
        .unwrap_or_else(|| panic!("no triple-fault message:\n{e}"));
    assert!(line.contains("#UD"), "{line}");
    assert!(line.contains("rip 0x100001"), "{line}");
}

#[test]
fn same_program_same_state_hash_different_program_different_hash() {
    let prog = |v: u32| {
        assemble(LOAD, move |a| {
            a.mov(edx, v)?;
            a.hlt()
        })
    };
    let run = |name: &str, v: u32| {
        let f = temp_file(name, &prog(v));
        let o = cjemu(&[
            "-kernel",
            f.to_str().unwrap(),
            "--flat",
            "0x100000",
            "--stats",
            "-m",
            "8",
            // The RTC's start time is hashed: pin it (else the host clock).
            "-rtc",
            "base=2024-01-01T00:00:00",
        ]);
        assert_eq!(status(&o), 0, "{}", stderr(&o));
        stat(&o, "state-hash")
    };
    let a = run("hash-a.bin", 7);
    assert_eq!(a, run("hash-a2.bin", 7));
    assert_ne!(a, run("hash-b.bin", 8));
}

#[test]
fn unknown_option_is_a_usage_error_with_a_hint() {
    let o = cjemu(&["-kernal", "x"]);
    assert_eq!(status(&o), 2);
    assert_stdout_empty(&o);
    let e = stderr(&o);
    assert!(e.contains("kernal") && e.contains("--kernel"), "{e}");
}

#[test]
fn missing_kernel_file_is_status_2_with_one_line_naming_it() {
    let o = cjemu(&[
        "-kernel",
        "/nonexistent/cjemu-test.bin",
        "--flat",
        "0x100000",
    ]);
    assert_eq!(status(&o), 2);
    assert_stdout_empty(&o);
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("/nonexistent/cjemu-test.bin"), "{e}");
}

#[test]
fn an_impossible_rtc_date_is_a_usage_error() {
    let o = cjemu(&["-rtc", "base=2021-02-29T00:00:00"]);
    assert_eq!(status(&o), 2);
    assert_stdout_empty(&o);
    assert!(
        stderr(&o).contains("-rtc base=2021-02-29"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn zero_ram_is_a_usage_error() {
    let o = cjemu(&["-m", "0"]);
    assert_eq!(status(&o), 2);
    assert_stdout_empty(&o);
    assert!(stderr(&o).contains("-m 0"), "{}", stderr(&o));
}

#[test]
fn kernel_without_flat_that_is_no_kernel_is_status_2_naming_the_file() {
    let f = temp_file("not-a-kernel.bin", &[0x90, 0x90, 0xf4]);
    let o = cjemu(&["-kernel", f.to_str().unwrap()]);
    assert_eq!(status(&o), 2);
    assert_stdout_empty(&o);
    let e = stderr(&o);
    assert!(
        e.contains("not-a-kernel.bin") && e.contains("--flat"),
        "{e}"
    );
}

#[test]
fn image_that_does_not_fit_in_ram_is_status_2() {
    let f = temp_file("big.bin", &[0xf4; 4096]);
    // 1 MiB of RAM ends at the load address itself.
    let o = cjemu(&[
        "-kernel",
        f.to_str().unwrap(),
        "--flat",
        "0x100000",
        "-m",
        "1M",
    ]);
    assert_eq!(status(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("do not fit"), "{}", stderr(&o));
}

#[test]
fn features_not_implemented_yet_say_so_in_one_line_with_status_2() {
    {
        let args = &["-serial", "null", "-serial", "stdio"][..];
        let o = cjemu(args);
        assert_eq!(status(&o), 2, "{args:?}");
        assert_stdout_empty(&o);
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains("not implemented yet"), "{args:?}: {e}");
    }
}

#[test]
fn every_icount_mode_runs_the_demo_to_the_same_output() {
    let plain = cjemu(&[]);
    assert_eq!(status(&plain), 0, "{}", stderr(&plain));
    for args in [
        &["--icount", "shift=0,sleep=off"][..],
        &["-icount", "7"],
        &["--icount", "auto"],
        &["--icount", "shift=2,align=on"],
    ] {
        let o = cjemu(args);
        assert_eq!(status(&o), 0, "{args:?}: {}", stderr(&o));
        assert_eq!(o.stdout, plain.stdout, "{args:?}");
    }
}

#[test]
fn icount_shift_auto_with_sleep_off_is_refused_naming_qemu() {
    let o = cjemu(&["--icount", "shift=auto,sleep=off"]);
    assert_eq!(status(&o), 2);
    assert_stdout_empty(&o);
    assert!(stderr(&o).contains("QEMU 7.2"), "{}", stderr(&o));
}

#[test]
fn enable_kvm_is_rejected() {
    let o = cjemu(&["-enable-kvm"]);
    assert_eq!(status(&o), 2);
    assert!(stderr(&o).contains("KVM"));
}

#[test]
fn a_pasted_qemu_command_line_runs() {
    let o = cjemu(&[
        "-machine",
        "pc",
        "-display",
        "none",
        "-nographic",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device",
        "pc-testdev",
        "-smp",
        "1",
        "-serial",
        "stdio",
        "-m",
        "64M",
    ]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), demo_serial());
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn log_help_lists_items_on_stderr() {
    let o = cjemu(&["-d", "help"]);
    assert_eq!(status(&o), 0);
    assert_stdout_empty(&o);
    assert!(stderr(&o).contains("in_asm") && stderr(&o).contains("guest_errors"));
}

#[test]
fn logs_go_to_the_d_file() {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-cpu.log");
    let _ = std::fs::remove_file(&log);
    let o = cjemu(&["-d", "cpu", "-D", log.to_str().unwrap(), "-serial", "null"]);
    assert_eq!(status(&o), 0, "{}", stderr(&o));
    assert_stdout_empty(&o);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("rip="), "-d cpu logs registers: {text}");
    assert!(
        !stderr(&o).contains("rip="),
        "logs must not reach stderr with -D"
    );
}

#[test]
fn help_goes_to_stdout_with_status_0() {
    let o = cjemu(&["-help"]);
    assert_eq!(status(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--kernel"));
}

#[test]
fn malformed_kernels_are_status_2_with_one_line() {
    let magic = 0x1BAD_B002u32;
    let mut bad_checksum = vec![0u8; 64];
    bad_checksum[..4].copy_from_slice(&magic.to_le_bytes());
    let mut not_elf = b"\x7fELF".to_vec();
    not_elf.extend_from_slice(&[0xff; 12]);
    for (name, bytes) in [
        ("empty.elf", Vec::new()),
        ("bad-checksum.elf", bad_checksum),
        ("truncated-elf.elf", not_elf),
    ] {
        let f = temp_file(name, &bytes);
        let o = cjemu(&["-kernel", f.to_str().unwrap(), "-no-reboot"]);
        assert_eq!(status(&o), 2, "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(
            err.contains(name),
            "{name}: the message names the file: {err}"
        );
        assert_stdout_empty(&o);
    }
}
