//! `--stats`: one `key: value` per line, on stderr.

use crate::hash::machine_state_hash;
use crate::machine::RunReport;
use crate::pc::Pc;
use crate::status::Outcome;
use cjemu_jit::{Engine, Gpr};
use std::fmt::Write;

/// Guest MIPS: instructions retired per microsecond of run time.
pub fn mips(icount: u64, secs: f64) -> f64 {
    icount as f64 / secs.max(1e-9) / 1e6
}

/// The `--stats` text; `pc` holds the device state the state hash covers.
pub fn render(e: &Engine, pc: &Pc, r: &RunReport) -> String {
    let c = e.cpu();
    let secs = r.run_time.as_secs_f64();
    let exit = match r.outcome {
        Outcome::PoweredOff => "halted".to_string(),
        Outcome::HaltedWithInterruptsOn => "halted with interrupts on".to_string(),
        Outcome::TripleFault { first, .. } => format!("triple fault ({first:?})"),
        Outcome::GuestReset => "guest reset".to_string(),
        Outcome::Stopped(r) => format!("stopped ({r:?})"),
        Outcome::DebugExit(v) => format!("debug-exit {v:#x}"),
    };
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "{k}: {v}");
    };
    kv("exit", exit);
    kv("icount", c.icount.to_string());
    kv("guest MIPS", format!("{:.2}", mips(c.icount, secs)));
    kv("run time", format!("{secs:.6} s"));
    let st = &e.stats;
    kv(
        "engine",
        match e.config.accel {
            cjemu_jit::Accel::Interp => "interp".into(),
            cjemu_jit::Accel::Jit { threshold } => format!("jit (threshold {threshold})"),
        },
    );
    kv("blocks decoded", e.blocks_decoded().to_string());
    kv("blocks run", st.blocks_run.to_string());
    kv("blocks run compiled", st.compiled_runs.to_string());
    // The JIT compiles regions (a hot block and the blocks it reaches).
    kv("regions compiled", st.blocks_compiled.to_string());
    kv("blocks compiled", st.region_blocks.to_string());
    kv("regions not compiled", st.compile_failures.to_string());
    kv(
        "instructions in compiled code",
        format!(
            "{} ({:.1}%)",
            st.compiled_insns,
            100.0 * st.compiled_insns as f64 / c.icount.max(1) as f64
        ),
    );
    let compile_secs = st.compile_ns as f64 / 1e9;
    kv("compile time", format!("{compile_secs:.6} s"));
    kv(
        "compile share",
        format!("{:.1}% of run time", 100.0 * compile_secs / secs.max(1e-9)),
    );
    let tries = st.blocks_compiled + st.compile_failures;
    kv(
        "compile time per region",
        format!(
            "{:.1} us mean, {:.1} us max",
            st.compile_ns as f64 / 1e3 / tries.max(1) as f64,
            st.compile_ns_max as f64 / 1e3
        ),
    );
    if e.config.timing {
        // Where the engine's time went (the rest of the run time is the
        // machine: devices, timers, pacing).
        let run = st.run_ns as f64 / 1e9;
        let compiled = st.compiled_ns as f64 / 1e9;
        let interp = (run - compiled - compile_secs).max(0.0);
        let share = |x: f64| format!("{x:.6} s ({:.1}% of run time)", 100.0 * x / secs.max(1e-9));
        kv("time in the engine", share(run));
        kv("time in compiled code", share(compiled));
        kv("time interpreting", share(interp));
    }
    kv("exceptions", e.stats.exceptions.to_string());
    kv("interrupts", r.counters.interrupts.to_string());
    kv("virtual time", format!("{} ns", r.counters.virtual_ns));
    kv("clock adjustments", r.counters.clock_adjusts.to_string());
    kv("serial bytes in", r.counters.serial_in.to_string());
    kv("state-hash", format!("{:016x}", machine_state_hash(e, pc)));
    for r in Gpr::ALL {
        kv(r.name(), format!("{:#018x}", c.reg(r)));
    }
    kv("rip", format!("{:#018x}", c.rip));
    kv("rflags", format!("{:#018x}", c.rflags()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pc::PcConfig;
    use cjemu_replay::clock::{ShiftMode, VirtualClock};
    use std::time::Duration;

    /// A PC without UARTs at power-on.
    fn pc() -> Pc {
        let clock = VirtualClock::new(ShiftMode::Fixed(0)).unwrap();
        Pc::new(vec![], &PcConfig::default(), clock).unwrap()
    }

    #[test]
    fn mips_is_instructions_per_microsecond() {
        assert_eq!(mips(2_000_000, 1.0), 2.0);
        assert_eq!(mips(500, 0.001), 0.5);
        assert!(mips(1, 0.0).is_finite());
    }

    #[test]
    fn stats_have_one_key_value_per_line_with_the_required_keys() {
        let mut e = Engine::new(1 << 20).unwrap();
        crate::flat::load_flat(&mut e, &[0xb0, 0x2a, 0xf4], 0x1000, 0x1000).unwrap();
        e.run(10);
        let r = RunReport {
            outcome: Outcome::PoweredOff,
            run_time: Duration::from_millis(1),
            counters: Default::default(),
        };
        let text = render(&e, &pc(), &r);
        for line in text.lines() {
            assert!(line.split_once(": ").is_some(), "{line}");
        }
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .to_string()
        };
        assert_eq!(get("icount"), "2");
        assert_eq!(get("rax"), "0x000000000000002a");
        assert_eq!(get("rip"), "0x0000000000001003");
        assert_eq!(get("state-hash").len(), 16);
        assert_eq!(get("engine"), "interp");
        assert_eq!(get("blocks compiled"), "0");
        for k in [
            "guest MIPS",
            "run time",
            "blocks decoded",
            "compile time",
            "compile time per region",
            "compile share",
            "regions compiled",
            "instructions in compiled code",
            "rflags",
            "r15",
            "exit",
        ] {
            get(k);
        }
    }

    #[test]
    fn stats_split_the_engine_time_between_compiled_code_and_the_interpreter() {
        // mov ecx, 200000; l: dec ecx; jnz l; hlt — compiled after 8 turns.
        let code = [0xb9, 0x40, 0x0d, 0x03, 0x00, 0xff, 0xc9, 0x75, 0xfc, 0xf4];
        let secs = |text: &str, k: &str| -> f64 {
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("no {k} in {text}"));
            v.split(' ').next().unwrap().parse().unwrap()
        };
        for (accel, compiled) in [
            (cjemu_jit::Accel::Interp, false),
            (cjemu_jit::Accel::Jit { threshold: 8 }, true),
        ] {
            let mut e = Engine::new(1 << 20).unwrap();
            e.config.accel = accel;
            e.config.timing = true;
            crate::flat::load_flat(&mut e, &code, 0x1000, 0x1000).unwrap();
            let t = std::time::Instant::now();
            assert_eq!(e.run(1_000_000), cjemu_jit::Exit::Halted);
            let r = RunReport {
                outcome: Outcome::PoweredOff,
                run_time: t.elapsed(),
                counters: Default::default(),
            };
            let text = render(&e, &pc(), &r);
            let (engine, jit, interp) = (
                secs(&text, "time in the engine"),
                secs(&text, "time in compiled code"),
                secs(&text, "time interpreting"),
            );
            assert!(engine > 0.0 && jit + interp <= engine + 1e-6, "{text}");
            assert_eq!(jit > 0.0, compiled, "{text}");
        }
    }

    #[test]
    fn stats_state_hash_covers_device_state() {
        let mut e = Engine::new(1 << 20).unwrap();
        crate::flat::load_flat(&mut e, &[0xf4], 0x1000, 0x1000).unwrap();
        let r = RunReport {
            outcome: Outcome::PoweredOff,
            run_time: Duration::from_millis(1),
            counters: Default::default(),
        };
        let hash = |pc: &Pc| {
            let text = render(&e, pc, &r);
            let line = text.lines().find_map(|l| l.strip_prefix("state-hash: "));
            line.expect("a state-hash line").to_string()
        };
        let mut p = pc();
        let before = hash(&p);
        assert_eq!(before, format!("{:016x}", machine_state_hash(&e, &p)));
        assert_eq!(before, hash(&pc()), "the same state, the same hash");
        // The master PIC's IMR: nothing but device state changes.
        p.pio.write(0x21, &[0xfb]);
        assert_ne!(hash(&p), before);
    }

    #[test]
    fn stats_show_the_jit_tier_and_its_compile_counters() {
        let mut e = Engine::new(1 << 20).unwrap();
        e.config.accel = cjemu_jit::Accel::Jit { threshold: 0 };
        // mov al, 42; hlt: one block, compiled at first sight.
        crate::flat::load_flat(&mut e, &[0xb0, 0x2a, 0xf4], 0x1000, 0x1000).unwrap();
        e.run(10);
        let r = RunReport {
            outcome: Outcome::PoweredOff,
            run_time: Duration::from_millis(1),
            counters: Default::default(),
        };
        let text = render(&e, &pc(), &r);
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .to_string()
        };
        assert_eq!(get("engine"), "jit (threshold 0)");
        assert_eq!(get("blocks compiled"), "1");
        assert_eq!(get("blocks run compiled"), "1");
        assert_eq!(get("icount"), "2");
        assert_ne!(get("compile time"), "0.000000 s");
    }
}
