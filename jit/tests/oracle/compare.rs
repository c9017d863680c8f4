//! Comparing a native and an emulated run, and describing a mismatch so
//! it can be understood without re-running: the disassembly with the form
//! of each instruction, the initial state, how each side ended and every
//! differing register, flag and byte.

use super::gen::{decode_bits, Case, Undef};
use super::{fl, End, Final, DATA, GPR_NAMES};
use iced_x86::{Formatter, IntelFormatter};
use std::fmt::Write;

/// Compare `native` with `emu` for `case`; `None` when they agree.
pub fn compare(case: &Case, native: &Final, emu: &Final) -> Option<String> {
    let mut diffs = String::new();
    let undef = case.undef_before(native.rip);
    if !ends_agree(native.end, emu.end) {
        let _ = writeln!(
            diffs,
            "  end: native {}, emulator {}",
            end_name(native.end),
            end_name(emu.end)
        );
    }
    if native.rip != emu.rip {
        let _ = writeln!(
            diffs,
            "  rip: native {:#x}, emulator {:#x}",
            native.rip, emu.rip
        );
    }
    // 32-bit code: EAX..EDI, low halves (the upper ones are undefined
    // after compatibility mode, R8–R15 unreachable).
    let (nregs, rmask) = if case.init.bits == 32 {
        (8, 0xffff_ffff)
    } else {
        (16, u64::MAX)
    };
    for (n, name) in GPR_NAMES.iter().enumerate().take(nregs) {
        if undef.regs & (1 << n) != 0 {
            continue;
        }
        if (native.gpr[n] ^ emu.gpr[n]) & rmask != 0 {
            let _ = writeln!(
                diffs,
                "  {name}: native {:#018x}, emulator {:#018x} (initial {:#018x}, xor {:#x})",
                native.gpr[n],
                emu.gpr[n],
                case.init.gpr[n],
                native.gpr[n] ^ emu.gpr[n]
            );
        }
    }
    let mask = fl::COMPARED & !undef.flags;
    let fdiff = (native.rflags ^ emu.rflags) & mask;
    if fdiff != 0 {
        let _ = writeln!(
            diffs,
            "  rflags: native {:#x} [{}], emulator {:#x} [{}]; differ in {} (undefined, not compared: {})",
            native.rflags & fl::COMPARED,
            fl::names(native.rflags & fl::COMPARED),
            emu.rflags & fl::COMPARED,
            fl::names(emu.rflags & fl::COMPARED),
            fl::names(fdiff),
            fl::names(undef.flags)
        );
    }
    memory_diffs(case, native, emu, &mut diffs);
    if diffs.is_empty() {
        None
    } else {
        Some(describe(case, native, emu, undef, &diffs))
    }
}

fn ends_agree(a: End, b: End) -> bool {
    match (a, b) {
        (
            End::Exception {
                vector: va,
                err: ea,
                cr2: ca,
            },
            End::Exception {
                vector: vb,
                err: eb,
                cr2: cb,
            },
        ) => {
            // Page faults: the address must match (the error code differs:
            // the host runs at CPL 3). #GP: the error code must match.
            va == vb && (va != 14 || ca == cb) && (va != 13 || ea == eb)
        }
        _ => false,
    }
}

/// Human-readable end of a run.
pub fn end_name(e: End) -> String {
    match e {
        End::Exception { vector, err, cr2 } => {
            let name = cjemu_jit::exception::vector_name(vector);
            match vector {
                14 => format!("{name} (cr2 {cr2:#x}, error code {err:#x})"),
                13 | 12 | 17 => format!("{name} (error code {err:#x})"),
                _ => name.to_string(),
            }
        }
        End::Timeout => "timeout (endless loop)".into(),
        End::Other(s) => s.into(),
        End::NotRun => "not run".into(),
    }
}

fn memory_diffs(case: &Case, native: &Final, emu: &Final, out: &mut String) {
    if native.data.len() != emu.data.len() {
        let _ = writeln!(out, "  memory: native data region missing");
        return;
    }
    let diff: Vec<usize> = (0..native.data.len())
        .filter(|&i| native.data[i] != emu.data[i])
        .collect();
    if diff.is_empty() {
        return;
    }
    let _ = writeln!(out, "  memory: {} byte(s) differ", diff.len());
    for &i in diff.iter().take(24) {
        let _ = writeln!(
            out,
            "    [{:#x}] initial {:02x}, native {:02x}, emulator {:02x}",
            DATA + i as u64,
            case.init.data[i],
            native.data[i],
            emu.data[i]
        );
    }
    if diff.len() > 24 {
        let _ = writeln!(out, "    …");
    }
}

/// The disassembly of a case, one instruction per line with its bytes, its
/// form and what is undefined before it.
pub fn disassembly(case: &Case) -> String {
    let mut f = IntelFormatter::new();
    f.options_mut().set_first_operand_char_index(8);
    let mut out = String::new();
    for (n, i) in decode_bits(&case.code, case.init.bits).iter().enumerate() {
        let mut text = String::new();
        f.format(i, &mut text);
        let start = (i.ip() - super::CODE) as usize;
        let bytes: Vec<String> = case.code[start..start + i.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let form = case.form_of.get(n).map(String::as_str).unwrap_or("?");
        let u = case.undef_before(i.ip());
        let mut undef = String::new();
        if u.flags != 0 {
            undef += &format!(" undef flags: {}", fl::names(u.flags));
        }
        if u.regs != 0 {
            let regs: Vec<&str> = (0..16)
                .filter(|r| u.regs & (1 << r) != 0)
                .map(|r| GPR_NAMES[r])
                .collect();
            undef += &format!(" undef regs: {}", regs.join(" "));
        }
        let _ = writeln!(
            out,
            "  {:x}  {:<30} {:<40} ; {form}{undef}",
            i.ip(),
            bytes.join(" "),
            text
        );
    }
    out
}

fn regs_table(gpr: &[u64; 16]) -> String {
    let mut out = String::new();
    for row in 0..4 {
        out += "   ";
        for col in 0..4 {
            let n = row * 4 + col;
            let _ = write!(out, " {:>3}={:016x}", GPR_NAMES[n], gpr[n]);
        }
        out += "\n";
    }
    out
}

fn describe(case: &Case, native: &Final, emu: &Final, undef: Undef, diffs: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "code ({} bytes):", case.code.len());
    s += &disassembly(case);
    let _ = writeln!(s, "initial state:");
    s += &regs_table(&case.init.gpr);
    let _ = writeln!(
        s,
        "    rflags={:#x} [{}] fs_base={:#x} gs_base={:#x}; reserved base={} index={} base32={}",
        case.init.rflags,
        fl::names(case.init.rflags),
        case.init.fs_base,
        case.init.gs_base,
        GPR_NAMES[case.reserved[0]],
        GPR_NAMES[case.reserved[1]],
        GPR_NAMES[case.reserved[2]]
    );
    let _ = writeln!(
        s,
        "native:   {} at rip {:#x}, rflags {:#x} [{}]",
        end_name(native.end),
        native.rip,
        native.rflags,
        fl::names(native.rflags & fl::COMPARED)
    );
    s += &regs_table(&native.gpr);
    let _ = writeln!(
        s,
        "emulator: {} at rip {:#x}, rflags {:#x} [{}]",
        end_name(emu.end),
        emu.rip,
        emu.rflags,
        fl::names(emu.rflags & fl::COMPARED)
    );
    s += &regs_table(&emu.gpr);
    let _ = writeln!(
        s,
        "differences (undefined at the end, not compared: flags {}, {} register(s)):",
        fl::names(undef.flags),
        undef.regs.count_ones()
    );
    s += diffs;
    s
}
