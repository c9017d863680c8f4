//! The built-in demo guest is an ordinary multiboot kernel: the same image
//! booted with `-kernel` prints the same report under cjemu and under QEMU
//! 7.2 (`qemu-system-x86_64`, which `.ci/run` installs; a missing QEMU is a
//! failure, not a skip). This checks the demo's own mode switch against a
//! real reference, not just against cjemu.
//!
//! The demo powers off with CLI; HLT, on which QEMU waits forever: QEMU is
//! killed once the report is complete (or after a timeout).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

fn demo_image() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-guest.bin");
    std::fs::write(&p, cjemu::demo::DEMO_GUEST).unwrap();
    p
}

fn expected() -> String {
    cjemu::demo::expected_serial(&cjemu::demo::reference())
}

/// QEMU's serial output once it holds the whole report (or at the timeout).
fn qemu_serial(kernel: &std::path::Path) -> String {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-guest-qemu.out");
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-display", "none", "-no-reboot", "-m", "128", "-kernel"])
        .arg(kernel)
        .arg("-serial")
        .arg(format!("file:{}", out.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run qemu-system-x86_64 ({e}): apt-get install qemu-system-x86")
        });
    let want_len = expected().len();
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let exited = child.try_wait().unwrap().is_some();
        if text.len() >= want_len || exited || start.elapsed() > TIMEOUT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn the_demo_image_boots_the_same_under_qemu_and_cjemu_kernel() {
    let k = demo_image();
    assert_eq!(qemu_serial(&k), expected(), "QEMU's serial output");
    let o = Command::new(env!("CARGO_BIN_EXE_cjemu"))
        .arg("-kernel")
        .arg(&k)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected());
}
