//! The host CPU as oracle: random instruction sequences run natively (in a
//! forked child) and in cjemu's interpreter; registers, flags, the end
//! (exception vector and RIP) and the data region must match.
//!
//! Environment:
//! - `CJEMU_ORACLE_SEED=N`   master seed (default fixed; printed on failure)
//! - `CJEMU_ORACLE_CASES=N`  number of sequences (default 5000)
//! - `CJEMU_ORACLE_FIRST=K`  index of the first sequence (to re-run one)
//! - `CJEMU_ORACLE_ONLY_IMPLEMENTED=1` do not fail because catalogue forms
//!   are not implemented yet (they are listed and skipped)
//! - `CJEMU_ORACLE_VERBOSE=1` print every sequence's disassembly
//!
//! The long campaign: `cargo test -p cjemu-jit --test host_oracle --
//! --ignored` (200 000 sequences unless `CJEMU_ORACLE_CASES` says otherwise).
//!
//! `host_oracle_32` (and `host_oracle_32_campaign`) do the same with 32-bit
//! code: natively in a compatibility-mode code segment of the child, in
//! cjemu with a 32-bit CS under long mode; the catalogue is every 32-bit
//! encoding of the same instructions plus the legacy ones (PUSHA, BCD
//! adjustments, BOUND, INTO, SALC, XLAT, ARPL), with 66 and 67 prefixes.

mod oracle;

use cjemu_jit::semantics::is_implemented;
use oracle::compare::{compare, disassembly, end_name};
use oracle::emu::Emu;
use oracle::gen::{
    catalogue, catalogue_for, decode, decode_bits, sample, Case, Form, Generator, LEGACY_MNEMONICS,
    MNEMONICS,
};
use oracle::native::{run_batch, NativeCase};
use oracle::{env_flag, env_u64, host_cpu, splitmix, End, InitState, CODE, DATA, DATA_SIZE};
use std::time::Instant;

const DEFAULT_SEED: u64 = 0xc1e0_0a11_5eed;
const DEFAULT_CASES: u64 = 5000;
/// Default number of 32-bit sequences.
const DEFAULT_CASES_32: u64 = 3000;
const BATCH: usize = 500;
/// Detailed reports printed per run.
const MAX_REPORTS: usize = 5;

struct Config {
    seed: u64,
    first: u64,
    cases: u64,
    strict: bool,
    verbose: bool,
    /// Code size (64 or 32).
    bits: u32,
}

impl Config {
    fn from_env(default_cases: u64, bits: u32) -> Config {
        Config {
            seed: env_u64("CJEMU_ORACLE_SEED").unwrap_or(DEFAULT_SEED),
            first: env_u64("CJEMU_ORACLE_FIRST").unwrap_or(0),
            cases: env_u64("CJEMU_ORACLE_CASES").unwrap_or(default_cases),
            strict: !env_flag("CJEMU_ORACLE_ONLY_IMPLEMENTED"),
            verbose: env_flag("CJEMU_ORACLE_VERBOSE"),
            bits,
        }
    }
}

/// The catalogue split into implemented and unimplemented forms.
fn split_catalogue() -> (Vec<Form>, Vec<Form>) {
    split_catalogue_for(64)
}

/// [`split_catalogue`] for `bits`-bit code.
fn split_catalogue_for(bits: u32) -> (Vec<Form>, Vec<Form>) {
    catalogue_for(bits)
        .into_iter()
        .partition(|f| is_implemented(&sample(f)))
}

/// Seed of sequence `k` of a run.
fn case_seed(master: u64, k: u64) -> u64 {
    splitmix(master.wrapping_add(k))
}

fn run_oracle(cfg: &Config) {
    let start = Instant::now();
    let (forms, missing) = split_catalogue_for(cfg.bits);
    let total_forms = forms.len() + missing.len();
    let implemented: Vec<String> = forms.iter().map(|f| f.name.clone()).collect();
    let mut used = std::collections::BTreeSet::<String>::new();
    assert!(!forms.is_empty(), "no catalogue form is implemented");
    let gen = Generator::new(forms, true);
    let mut emu = Emu::new();
    let mut mismatches = 0u64;
    let mut reports = Vec::new();
    let mut insns = 0usize;
    let mut ends = std::collections::BTreeMap::<String, u64>::new();
    let reproduce = |k: u64| {
        format!(
            "CJEMU_ORACLE_SEED={:#x} CJEMU_ORACLE_FIRST={k} CJEMU_ORACLE_CASES=1 (test {})",
            cfg.seed,
            if cfg.bits == 32 {
                "host_oracle_32"
            } else {
                "host_oracle"
            }
        )
    };
    let mut k = cfg.first;
    let end = cfg.first + cfg.cases;
    while k < end {
        let n = (end - k).min(BATCH as u64);
        let cases: Vec<Case> = (k..k + n)
            .map(|i| gen.case(case_seed(cfg.seed, i)))
            .collect();
        let native_cases: Vec<NativeCase> = cases
            .iter()
            .map(|c| NativeCase {
                code: &c.code,
                init: &c.init,
            })
            .collect();
        let batch = run_batch(&native_cases);
        for (i, (case, native)) in cases.iter().zip(&batch.results).enumerate() {
            let idx = k + i as u64;
            insns += decode_bits(&case.code, cfg.bits).len();
            used.extend(case.form_of.iter().cloned());
            if cfg.verbose {
                eprintln!("sequence {idx}:\n{}", disassembly(case));
            }
            if native.end == End::NotRun {
                let (bad, why) = batch.failure.clone().unwrap_or((i, "?".into()));
                panic!(
                    "{why}\nwhile running sequence {} (reproduce: {}):\n{}",
                    k + bad as u64,
                    reproduce(k + bad as u64),
                    disassembly(&cases[bad.min(cases.len() - 1)])
                );
            }
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                emu.run(&case.code, &case.init)
            }));
            let emulated = match run {
                Ok(f) => f,
                Err(p) => {
                    // An engine panic is a bug of its own: report the case
                    // and carry on with a fresh engine.
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    mismatches += 1;
                    if reports.len() < MAX_REPORTS {
                        reports.push(format!(
                            "=== the emulator panicked in sequence {idx} (reproduce: {}): {msg} ===\n{}",
                            reproduce(idx),
                            disassembly(case)
                        ));
                    }
                    emu = Emu::new();
                    continue;
                }
            };
            *ends.entry(end_name(native.end)).or_default() += 1;
            if let Some(report) = compare(case, native, &emulated) {
                mismatches += 1;
                if reports.len() < MAX_REPORTS {
                    reports.push(format!(
                        "=== mismatch in sequence {idx} (reproduce: {}) ===\n{report}",
                        reproduce(idx)
                    ));
                }
            }
        }
        if let Some((bad, why)) = batch.failure {
            panic!(
                "{why}\nwhile running sequence {} (reproduce: {}):\n{}",
                k + bad as u64,
                reproduce(k + bad as u64),
                disassembly(&cases[bad.min(cases.len() - 1)])
            );
        }
        k += n;
    }
    let ends: Vec<String> = ends.iter().map(|(e, n)| format!("{e}: {n}")).collect();
    let unused: Vec<&str> = implemented
        .iter()
        .filter(|f| !used.contains(*f))
        .map(String::as_str)
        .collect();
    eprintln!(
        "host oracle ({}-bit code) on {}: {} sequences ({insns} instructions incl. set-up and final UD2) from seed {:#x}, \
         {mismatches} mismatch(es), {:.1?}; ends: {}; catalogue: {total_forms} forms, {} not implemented, \
         {} of the {} implemented exercised",
        cfg.bits,
        host_cpu(),
        cfg.cases,
        cfg.seed,
        start.elapsed(),
        ends.join(", "),
        missing.len(),
        implemented.len() - unused.len(),
        implemented.len()
    );
    if !unused.is_empty() && cfg.verbose {
        eprintln!("implemented forms not exercised: {}", unused.join(", "));
    }
    for r in &reports {
        eprintln!("{r}");
    }
    let missing_names: Vec<&str> = missing.iter().map(|f| f.name.as_str()).collect();
    if !missing.is_empty() {
        eprintln!(
            "catalogue forms not implemented by the engine ({}): {}",
            missing.len(),
            missing_names.join(", ")
        );
    }
    assert_eq!(
        mismatches, 0,
        "{mismatches} of {} sequences differ between the host CPU and cjemu (details above)",
        cfg.cases
    );
    assert!(
        !cfg.strict || missing.is_empty(),
        "{} catalogue forms are not implemented by the engine (listed above); \
         set CJEMU_ORACLE_ONLY_IMPLEMENTED=1 to test only the implemented ones",
        missing.len()
    );
}

/// The default differential run (a few thousand sequences).
#[test]
fn host_oracle() {
    run_oracle(&Config::from_env(DEFAULT_CASES, 64));
}

/// The differential run on 32-bit code (compatibility mode).
#[test]
fn host_oracle_32() {
    run_oracle(&Config::from_env(DEFAULT_CASES_32, 32));
}

/// The long campaign on 32-bit code.
#[test]
#[ignore]
fn host_oracle_32_campaign() {
    run_oracle(&Config::from_env(200_000, 32));
}

/// The long campaign.
#[test]
#[ignore]
fn host_oracle_campaign() {
    run_oracle(&Config::from_env(200_000, 64));
}

/// Every required mnemonic has forms in the catalogue, and every form can
/// be built and encoded.
#[test]
fn catalogue_covers_every_required_mnemonic() {
    let cat = catalogue();
    for m in MNEMONICS {
        assert!(
            cat.iter().any(|f| f.code.op_code().mnemonic() == *m),
            "catalogue has no form of {m:?}"
        );
    }
    // A few encodings that must be there (spot checks of the filters).
    for name in [
        "Add_rm64_imm8",
        "Add_AL_imm8",
        "Shld_rm16_r16_CL",
        "Rcr_rm8_1",
        "Imul_r64_rm64_imm32",
        "Cmpxchg16b_m128",
        "VEX_Bextr_r64_rm64_r64",
        "Mov_RAX_moffs64",
        "Movsxd_r16_rm16",
        "Bswap_r16",
        "Xchg_r64_RAX",
        "Enterw_imm16_imm8",
        "Popfw",
        "Loop_rel8_64_ECX",
        "Jecxz_rel8_64",
        "Nop_rm16",
        "Pause",
        "Endbr64",
        "Seto_rm8",
        "Cmovg_r16_rm16",
        "rep(e) Movsq_m64_m64 a32",
        "repne Scasb_AL_m8 a64",
    ] {
        assert!(cat.iter().any(|f| f.name == name), "catalogue lacks {name}");
    }
    let mut enc = iced_x86::Encoder::new(64);
    for f in &cat {
        let i = sample(f);
        if !i.is_jcc_short_or_near() && i.op0_kind() != iced_x86::OpKind::NearBranch64 {
            enc.encode(&i, CODE)
                .unwrap_or_else(|e| panic!("sample of {} does not encode: {e}", f.name));
        }
    }
}

/// The same seed gives the same sequence and state.
#[test]
fn generation_is_deterministic() {
    let (forms, _) = split_catalogue();
    let g = Generator::new(forms, true);
    for s in 0..50 {
        let a = g.case(case_seed(7, s));
        let b = g.case(case_seed(7, s));
        assert_eq!(a.code, b.code);
        assert_eq!(a.init.gpr, b.init.gpr);
        assert_eq!(a.init.data, b.init.data);
    }
}

fn init(gpr: [u64; 16]) -> InitState {
    InitState {
        gpr,
        rflags: 0x202,
        fs_base: 0,
        gs_base: 0,
        data: vec![0; DATA_SIZE],
        bits: 64,
    }
}

/// The native runner on hand-written code with known results.
#[test]
fn native_runner_basics() {
    let mut g = [0u64; 16];
    g[0] = 40; // rax
    g[3] = 2; // rbx
    g[4] = oracle::STACK_TOP;
    g[5] = DATA + 0x10; // rbp
    let st = init(g);
    // add rax, rbx; mov [rbp], al; stc; ud2
    let add = [0x48, 0x01, 0xd8, 0x88, 0x45, 0x00, 0xf9, 0x0f, 0x0b];
    // xor edx, edx; div edx (#DE: division by zero)
    let div = [0x31, 0xd2, 0xf7, 0xf2];
    // mov rax, [0] (#PF at address 0)
    let pf = [0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];
    // mov eax, fs:[rbx] with fs_base = DATA - 2 + 0x20
    let fs = [0x64, 0x8b, 0x03, 0x0f, 0x0b];
    let mut st_fs = st.clone();
    st_fs.fs_base = DATA + 0x20 - 2;
    st_fs.data[0x20] = 0x78;
    st_fs.data[0x21] = 0x56;
    st_fs.data[0x22] = 0x34;
    st_fs.data[0x23] = 0x12;
    let cases = [
        NativeCase {
            code: &add,
            init: &st,
        },
        NativeCase {
            code: &div,
            init: &st,
        },
        NativeCase {
            code: &pf,
            init: &st,
        },
        NativeCase {
            code: &fs,
            init: &st_fs,
        },
    ];
    let b = run_batch(&cases);
    assert!(b.failure.is_none(), "{:?}", b.failure);
    let r = &b.results;
    // 40 + 2 = 42, the low byte stored at DATA + 0x10, CF set by STC, the
    // run ends at the UD2 (#UD, vector 6) 7 bytes in.
    assert_eq!(r[0].gpr[0], 42);
    assert_eq!(r[0].data[0x10], 42);
    assert_eq!(r[0].rflags & 1, 1);
    assert_eq!(r[0].rip, CODE + 7);
    assert!(matches!(r[0].end, End::Exception { vector: 6, .. }));
    // DIV faults before retiring: RIP at the DIV (offset 2), vector 0.
    assert_eq!(r[1].rip, CODE + 2);
    assert!(matches!(r[1].end, End::Exception { vector: 0, .. }));
    // A page fault at linear 0.
    assert_eq!(r[2].rip, CODE);
    assert!(matches!(
        r[2].end,
        End::Exception {
            vector: 14,
            cr2: 0,
            ..
        }
    ));
    // fs:[rbx] with rbx = 2 reads DATA + 0x20.
    assert_eq!(r[3].gpr[0], 0x1234_5678);
    // Registers not touched keep their values.
    assert_eq!(r[0].gpr[5], DATA + 0x10);
    assert_eq!(r[0].gpr[4], oracle::STACK_TOP);
}

/// An endless loop natively is cut by the timer and reported, and the
/// next case still runs.
#[test]
fn native_runner_recovers_from_endless_loop() {
    let mut g = [0u64; 16];
    g[4] = oracle::STACK_TOP;
    let st = init(g);
    let spin = [0xeb, 0xfe]; // jmp $
    let ok = [0x48, 0xff, 0xc0, 0x0f, 0x0b]; // inc rax; ud2
    let b = run_batch(&[
        NativeCase {
            code: &spin,
            init: &st,
        },
        NativeCase {
            code: &ok,
            init: &st,
        },
    ]);
    assert!(b.failure.is_none());
    assert_eq!(b.results[0].end, End::Timeout);
    assert_eq!(b.results[1].gpr[0], 1);
}

/// A wrong emulator result is reported with the details a reader needs.
#[test]
fn compare_reports_differences() {
    let (forms, _) = split_catalogue();
    let g = Generator::new(forms, true);
    let case = g.case(case_seed(DEFAULT_SEED, 1));
    let native = run_batch(&[NativeCase {
        code: &case.code,
        init: &case.init,
    }]);
    let native = &native.results[0];
    let mut emu = Emu::new().run(&case.code, &case.init);
    assert!(compare(&case, native, &emu).is_none());
    // A register, a defined flag and a byte of memory go wrong.
    let undef = case.undef_before(native.rip);
    let reg = (0..16).find(|r| undef.regs & (1 << r) == 0).unwrap();
    emu.gpr[reg] ^= 0x100;
    emu.data[0x1234] ^= 1;
    let report = compare(&case, native, &emu).expect("a difference");
    assert!(report.contains(&format!("  {}: native", oracle::GPR_NAMES[reg])));
    assert!(report.contains(&format!("[{:#x}]", DATA + 0x1234)));
    assert!(report.contains("initial state"));
    assert!(report.contains("ud2"));
    if undef.flags & oracle::fl::ZF == 0 {
        emu.gpr[reg] ^= 0x100;
        emu.data[0x1234] ^= 1;
        emu.rflags ^= oracle::fl::ZF;
        let report = compare(&case, native, &emu).expect("a flag difference");
        assert!(report.contains("differ in ZF"), "{report}");
    }
}

/// The generator over the whole catalogue (implemented or not), run
/// natively only: every sequence must end at its final UD2 or with one of
/// the exceptions the generator makes on purpose (#DE from DIV, #GP from a
/// misaligned CMPXCHG16B or a non-canonical jump target). Anything else (a
/// page fault outside the data region, an endless loop) is a generator bug.
#[test]
fn generator_sequences_behave_natively() {
    let g = Generator::new(catalogue(), false);
    let n = env_u64("CJEMU_ORACLE_CASES").unwrap_or(2000);
    let seed = env_u64("CJEMU_ORACLE_SEED").unwrap_or(DEFAULT_SEED) ^ 0x5a5a;
    let cases: Vec<Case> = (0..n).map(|k| g.case(case_seed(seed, k))).collect();
    let mut bad = Vec::new();
    for chunk in cases.chunks(BATCH) {
        let nc: Vec<NativeCase> = chunk
            .iter()
            .map(|c| NativeCase {
                code: &c.code,
                init: &c.init,
            })
            .collect();
        let b = run_batch(&nc);
        assert!(b.failure.is_none(), "{:?}", b.failure);
        for (c, r) in chunk.iter().zip(&b.results) {
            let last = c.undef_at.last().unwrap().0;
            let ok = match r.end {
                End::Exception { vector: 6, .. } => r.rip == last,
                End::Exception { vector: 0, .. } => true,
                End::Exception { vector: 13, .. } => {
                    let i = decode(&c.code)
                        .into_iter()
                        .find(|i| i.ip() == r.rip)
                        .map(|i| i.mnemonic());
                    matches!(
                        i,
                        Some(iced_x86::Mnemonic::Cmpxchg16b | iced_x86::Mnemonic::Jmp)
                    )
                }
                _ => false,
            };
            if !ok && bad.len() < 5 {
                bad.push(format!(
                    "seed {:#x}: native end {} at {:#x}\n{}",
                    c.seed,
                    end_name(r.end),
                    r.rip,
                    disassembly(c)
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unexpected native ends:\n{}",
        bad.join("\n")
    );
}

/// A child that dies in the middle of a batch is reported with the case it
/// was running; the cases before it keep their results.
#[test]
fn native_runner_reports_a_dying_child() {
    let mut g = [0u64; 16];
    g[4] = oracle::STACK_TOP;
    let st = init(g);
    let ok = [0x48, 0xff, 0xc0, 0x0f, 0x0b]; // inc rax; ud2
                                             // mov eax, 231 (exit_group); mov edi, 7; syscall
    let die = [0xb8, 231, 0, 0, 0, 0xbf, 7, 0, 0, 0, 0x0f, 0x05];
    let b = run_batch(&[
        NativeCase {
            code: &ok,
            init: &st,
        },
        NativeCase {
            code: &die,
            init: &st,
        },
        NativeCase {
            code: &ok,
            init: &st,
        },
    ]);
    let (k, msg) = b.failure.expect("the child exited early");
    assert_eq!(k, 1);
    assert!(msg.contains("exited with status 7"), "{msg}");
    assert_eq!(b.results[0].gpr[0], 1);
    assert_eq!(b.results[1].end, End::NotRun);
    assert_eq!(b.results[2].end, End::NotRun);
}

/// The generator really produces every catalogue form and every kind of
/// operand it is meant to (a form or addressing mode that always fails its
/// constraints would otherwise vanish silently).
#[test]
fn generator_covers_forms_and_operand_kinds() {
    use iced_x86::{Code, OpKind, Register};
    let cat = catalogue();
    let names: Vec<String> = cat.iter().map(|f| f.name.clone()).collect();
    let g = Generator::new(cat, false);
    let mut used = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::<&str>::new();
    for k in 0..6000 {
        let c = g.case(case_seed(11, k));
        used.extend(c.form_of.iter().cloned());
        for i in decode(&c.code) {
            let mem = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
            let mut see = |cond: bool, what: &'static str| {
                if cond {
                    seen.insert(what);
                }
            };
            let accessed = mem && i.code() != Code::Lea_r64_m && !i.is_ip_rel_memory_operand();
            see(mem && i.is_ip_rel_memory_operand(), "rip-relative");
            see(mem && i.memory_base() == Register::EIP, "eip-relative");
            see(accessed && i.memory_base().is_gpr32(), "67-prefixed base");
            see(
                accessed && i.memory_base() == Register::None && i.memory_index() == Register::None,
                "absolute",
            );
            see(
                accessed && i.memory_base() == Register::None && i.memory_index() != Register::None,
                "index only",
            );
            see(
                accessed && i.memory_index() != Register::None && i.memory_index_scale() == 8,
                "scale 8",
            );
            see(accessed && i.memory_base() == Register::RSP, "rsp base");
            see(accessed && i.memory_base() == Register::RBP, "rbp base");
            see(accessed && i.memory_base() == Register::R13, "r13 base");
            see(accessed && i.memory_base() == Register::R12, "r12 base");
            see(accessed && i.memory_displ_size() == 1, "disp8");
            see(
                accessed && i.segment_prefix() == Register::FS,
                "fs override",
            );
            see(
                accessed && i.segment_prefix() == Register::GS,
                "gs override",
            );
            see(
                accessed && i.segment_prefix() == Register::CS,
                "cs override",
            );
            see(i.has_lock_prefix(), "lock");
            see(i.has_repe_prefix() && i.is_string_instruction(), "rep/repe");
            see(i.has_repne_prefix() && i.is_string_instruction(), "repne");
            let regs: Vec<Register> = (0..i.op_count())
                .filter(|&n| i.op_kind(n) == OpKind::Register)
                .map(|n| i.op_register(n))
                .collect();
            see(
                regs.iter().any(|r| {
                    matches!(r, Register::AH | Register::BH | Register::CH | Register::DH)
                }),
                "high byte register",
            );
            see(
                regs.iter().any(|r| {
                    matches!(
                        r,
                        Register::SPL | Register::BPL | Register::SIL | Register::DIL
                    )
                }),
                "rex byte register",
            );
            see(
                i.code() == Code::Mov_RAX_moffs64 || i.code() == Code::Mov_AL_moffs8,
                "moffs",
            );
        }
    }
    let expected = [
        "rip-relative",
        "eip-relative",
        "67-prefixed base",
        "absolute",
        "index only",
        "scale 8",
        "rsp base",
        "rbp base",
        "r13 base",
        "r12 base",
        "disp8",
        "fs override",
        "gs override",
        "cs override",
        "lock",
        "rep/repe",
        "repne",
        "high byte register",
        "rex byte register",
        "moffs",
    ];
    let missing: Vec<&&str> = expected.iter().filter(|e| !seen.contains(**e)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    let unused: Vec<&String> = names.iter().filter(|n| !used.contains(*n)).collect();
    assert!(unused.is_empty(), "forms never generated: {unused:?}");
}

/// The native runner in 32-bit mode really runs compatibility-mode code:
/// 0x40 is INC EAX there (a REX prefix in 64-bit mode), ES has base
/// DATA, and #BR/#OF arrive with their vectors.
#[test]
fn native_runner_basics_32() {
    let mut g = [0u64; 16];
    g[4] = oracle::STACK_TOP;
    g[3] = DATA + 0x100; // ebx
    let mut st = init(g);
    st.bits = 32;
    // inc eax; mov byte es:[0x10], 0x5a; mov [ebx], eax; ud2
    let inc = [
        0x40, 0x26, 0xc6, 0x05, 0x10, 0, 0, 0, 0x5a, 0x89, 0x03, 0x0f, 0x0b,
    ];
    // bound eax, [ebx] with bounds [5, 6] and eax = 0 → #BR
    let mut st_br = st.clone();
    st_br.data[0x100] = 5;
    st_br.data[0x104] = 6;
    let br = [0x62, 0x03];
    // mov al, 0x7f; add al, 1; into → #OF after the INTO
    let of = [0xb0, 0x7f, 0x04, 0x01, 0xce, 0x90];
    let cases = [
        NativeCase {
            code: &inc,
            init: &st,
        },
        NativeCase {
            code: &br,
            init: &st_br,
        },
        NativeCase {
            code: &of,
            init: &st,
        },
    ];
    let b = run_batch(&cases);
    assert!(b.failure.is_none(), "{:?}", b.failure);
    let r = &b.results;
    assert_eq!(r[0].gpr[0], 1);
    assert_eq!(r[0].rip, CODE + 11);
    assert_eq!(r[0].data[0x10], 0x5a);
    assert_eq!(&r[0].data[0x100..0x104], &[1, 0, 0, 0]);
    assert!(matches!(r[0].end, End::Exception { vector: 6, .. }));
    assert!(matches!(r[1].end, End::Exception { vector: 5, .. }));
    assert_eq!(r[1].rip, CODE);
    assert!(matches!(r[2].end, End::Exception { vector: 4, .. }));
    assert_eq!(r[2].rip, CODE + 5);
    // The emulator agrees on all three.
    let mut emu = Emu::new();
    for (c, n) in cases.iter().zip(r) {
        let e = emu.run(c.code, c.init);
        assert_eq!(
            (e.end, e.rip, e.gpr[0] as u32),
            (n.end, n.rip, n.gpr[0] as u32)
        );
        assert_eq!(e.data, n.data);
    }
}

/// The 32-bit catalogue has every legacy mnemonic, 16-bit operand and
/// 16-bit address forms, and no 64-bit-only form.
#[test]
fn catalogue_32_covers_legacy_forms() {
    let cat = catalogue_for(32);
    for m in LEGACY_MNEMONICS {
        assert!(
            cat.iter().any(|f| f.code.op_code().mnemonic() == *m),
            "32-bit catalogue has no form of {m:?}"
        );
    }
    for name in [
        "Add_rm16_imm8",
        "Inc_r32",
        "Dec_r16",
        "Aam_imm8",
        "Bound_r16_m1616",
        "Pushaw",
        "Popad",
        "Salc",
        "Xlat_m8",
        "Jcxz_rel8_32",
        "rep(e) Movsd_m32_m32 a16",
        "Retnd_imm16",
    ] {
        assert!(cat.iter().any(|f| f.name == name), "catalogue lacks {name}");
    }
    for gone in [
        "Cmpxchg16b_m128",
        "Movsxd_r32_rm32",
        "Pushq_imm32",
        "Jmp_rel8_16",
    ] {
        assert!(cat.iter().all(|f| f.name != gone), "{gone} in 32-bit code");
    }
}

/// 32-bit sequences of the whole 32-bit catalogue, natively: every one
/// ends at its final UD2 or with an exception made on purpose (#DE from
/// DIV/AAM, #BR from BOUND, #OF from INTO).
#[test]
fn generator_sequences_behave_natively_32() {
    let g = Generator::new(catalogue_for(32), false);
    let seed = env_u64("CJEMU_ORACLE_SEED").unwrap_or(DEFAULT_SEED) ^ 0x3232;
    let cases: Vec<Case> = (0..1000).map(|k| g.case(case_seed(seed, k))).collect();
    let mut bad = Vec::new();
    let mut used_16bit_addr = false;
    for chunk in cases.chunks(BATCH) {
        let nc: Vec<NativeCase> = chunk
            .iter()
            .map(|c| NativeCase {
                code: &c.code,
                init: &c.init,
            })
            .collect();
        let b = run_batch(&nc);
        assert!(b.failure.is_none(), "{:?}", b.failure);
        for (c, r) in chunk.iter().zip(&b.results) {
            let last = c.undef_at.last().unwrap().0;
            used_16bit_addr |= decode_bits(&c.code, 32).iter().any(|i| {
                i.memory_base().is_gpr16() && i.segment_prefix() == iced_x86::Register::GS
            });
            let ok = match r.end {
                End::Exception { vector: 6, .. } => r.rip == last,
                End::Exception {
                    vector: 0 | 4 | 5, ..
                } => true,
                _ => false,
            };
            if !ok && bad.len() < 5 {
                bad.push(format!(
                    "seed {:#x}: native end {} at {:#x}\n{}",
                    c.seed,
                    end_name(r.end),
                    r.rip,
                    disassembly(c)
                ));
            }
        }
    }
    assert!(used_16bit_addr, "no 16-bit addressing generated");
    assert!(
        bad.is_empty(),
        "unexpected native ends:\n{}",
        bad.join("\n")
    );
}
