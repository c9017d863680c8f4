//! QEMU parity for the 64-bit test kernels built on the rt64 runtime
//! (`tests/kernels/rt64.S`, `rt64.c`): exceptions of every class, page
//! faults with 4 KiB pages, IST and double fault, ring 3, far transfers,
//! and a gcc -O2 C program. Same harness as `qemu_parity.rs`; where QEMU
//! 7.2 departs from the SDM, a cjemu-only test checks the SDM's answer.

#[path = "kernels/harness.rs"]
mod harness;

use harness::{build_rt64, parity, run_cjemu};

/// (V << 1) | 1 for a debug-exit write of V.
fn exit_status(v: i32) -> i32 {
    (v << 1) | 1
}

/// Assert that `text` contains each of `lines` as a whole line.
fn has_lines(text: &str, lines: &[&str]) {
    for l in lines {
        assert!(
            text.lines().any(|t| t == *l),
            "missing line {l:?} in:\n{text}"
        );
    }
}

#[test]
fn exceptions_of_every_class_with_error_codes() {
    let k = build_rt64("exceptions", &["exceptions.c"], false);
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x20), "{}", r.text());
    let t = r.text();
    // Faults report the faulting instruction, traps the next one (SDM 6.5).
    has_lines(
        &t,
        &[
            "  #DE vector=0 rip=de_at+0x0 cs=0x8",
            "  #DE vector=0 rip=idiv_min_at+0x0 cs=0x8",
            "  #DB vector=1 rip=int_1_at+0x2 cs=0x8",
            "  #BP vector=3 rip=int3_at+0x1 cs=0x8",
            "  #BP vector=3 rip=int_3_at+0x2 cs=0x8",
            "  #UD vector=6 rip=into64_at+0x0 cs=0x8",
            "  #OF vector=4 rip=into32_at+0x1 cs=0x30",
            "  #UD vector=6 rip=into32_clear_at+0x1 cs=0x30",
            "  #BR vector=5 rip=bound_hi_at+0x0 cs=0x30",
            "  #BR vector=5 rip=bound_lo_at+0x0 cs=0x30",
            // BOUND r32, m32&32 with a disp32 is 6 bytes; the UD2 after it.
            "  #UD vector=6 rip=bound_in_at+0x6 cs=0x30",
            "  #NM vector=7 rip=nm_x87_at+0x0 cs=0x8",
            "  #NM vector=7 rip=nm_sse_at+0x0 cs=0x8",
            "  #NM vector=7 rip=nm_fwait_at+0x0 cs=0x8",
            // IST1 at TSS offset 36 lies past the limit: #TS(TR), EXT=0.
            "  #TS vector=10 err=0x50 rip=ts_ist_at+0x0 cs=0x8",
            "  #NP vector=11 err=0x48 rip=np_ds_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x48 rip=np_es_rpl_at+0x0 cs=0x8",
            "  #SS vector=12 err=0x48 rip=ss_np_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x80 rip=gp_limit_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x8 rip=gp_code_ss_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x10 rip=gp_rpl_ss_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x10 rip=gp_data_cs_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x0 rip=gp_noncanon_at+0x0 cs=0x8",
            "  #GP vector=13 err=0x38 rip=gp_ltr_busy_at+0x0 cs=0x8",
            "  #PF vector=14 err=0x0 rip=pf_read_at+0x0 cs=0x8 cr2=0x40000000",
            "  #PF vector=14 err=0x2 rip=pf_write_at+0x0 cs=0x8 cr2=0x40001234",
            // FSW: ES | ZE.
            "  #MF vector=16 rip=mf_fwait_at+0x0 cs=0x8 fsw&0xbf=0x84",
            "events=31",
        ],
    );
    assert!(!t.contains("no exception"), "{t}");
}

#[test]
fn exceptions_where_qemu_departs_from_the_sdm_cjemu_only() {
    let k = build_rt64("exceptions", &["exceptions.c"], false);
    let r = run_cjemu(&k, &["-append", "sdm", "-no-reboot"]);
    assert_eq!(r.status, exit_status(0x20), "{}", r.text());
    has_lines(
        &r.text(),
        &[
            // ICEBP: a trap through vector 1 (SDM vol. 3, 17.3.1.2).
            "  #DB vector=1 rip=icebp_at+0x1 cs=0x8",
            // IDT error code: index << 3 | IDT (2), EXT = 0 for INT n.
            "  #GP vector=13 err=0x20a rip=gp_idt_limit_at+0x0 cs=0x8",
            // A waiting x87 instruction reports the pending #Z.
            "  #MF vector=16 rip=mf_next_at+0x0 cs=0x8 fsw&0xbf=0x84",
            // MXCSR: ZM clear (0x1d80) | ZE.
            "  #XM vector=19 rip=xm_at+0x0 cs=0x8 mxcsr=0x1d84",
            "  #UD vector=6 rip=xm_ud_at+0x0 cs=0x8",
            "events=36",
        ],
    );
}

#[test]
fn page_faults_with_4k_pages_and_double_fault_on_ist() {
    let k = build_rt64("paging", &["paging.c"], false);
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x21), "{}", r.text());
    // Error code bits: P (1), W (2), U (4), RSVD (8), I/D (0x10).
    has_lines(
        &r.text(),
        &[
            "  vector=14 err=0x0 cr2=region+0x1010 rip=rd_np_at+0x0 cpl=0",
            "  vector=14 err=0x2 cr2=region+0x1ffc rip=wr_np_at+0x0 cpl=0",
            "  vector=14 err=0x3 cr2=region+0x2008 rip=wr_ro_at+0x0 cpl=0",
            "  vector=14 err=0x3 cr2=region+0x5000 rip=wr_sro_at+0x0 cpl=0",
            "  vector=14 err=0x11 cr2=region+0x4000 rip=region+0x4000 cpl=0",
            "  vector=14 err=0x10 cr2=region+0x1800 rip=region+0x1800 cpl=0",
            // The second page of a split write is the one that faults.
            "  vector=14 err=0x2 cr2=region+0x1000 rip=split_at+0x0 cpl=0",
            "  vector=14 err=0x5 cr2=region+0x3000 rip=u_rd_sup_at+0x0 cpl=3",
            "  vector=14 err=0x7 cr2=region+0x2000 rip=u_wr_ro_at+0x0 cpl=3",
            "  vector=14 err=0x4 cr2=region+0x1abc rip=u_rd_np_at+0x0 cpl=3",
            "  vector=14 err=0x15 cr2=region+0x3000 rip=region+0x3000 cpl=3",
            "  vector=14 err=0x15 cr2=region+0x4000 rip=region+0x4000 cpl=3",
            "  vector=14 err=0x5 cr2=region+0x5000 rip=u_rd_sro_at+0x0 cpl=3",
            "word at page 0=0x9",
            // #PF pushing onto the unmapped stack: CR2 is the first push.
            "  #DF vector=8 err=0x0 cr2=region+0x1ff8 on IST1 stack=yes saved rsp=region+0x2000 cpl=0",
            // TSS.RSP0 = page 2 - 0x10: SS goes at RSP0 - 8.
            "  #DF vector=8 err=0x0 cr2=region+0x1fe8 on IST1 stack=yes saved rsp=user_stack_top+0x0 cpl=3",
            "events=15",
        ],
    );
}

#[test]
fn reserved_bit_page_fault_cjemu_only() {
    // QEMU 7.2 reports 0x8 (RSVD without P); the SDM (4.7) says RSVD is
    // set only together with P.
    let k = build_rt64("paging", &["paging.c"], false);
    let r = run_cjemu(&k, &["-append", "rsvd", "-no-reboot"]);
    assert_eq!(r.status, exit_status(0x21), "{}", r.text());
    has_lines(
        &r.text(),
        &[
            "  vector=14 err=0x9 cr2=region+0x6000 rip=rsvd_at+0x0 cpl=0",
            "events=16",
        ],
    );
}

#[test]
fn ring_3_via_iretq_and_sysretq_back_via_syscall_and_interrupts() {
    let k = build_rt64("ring3", &["ring3.c"], false);
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x22), "{}", r.text());
    let ring3 = "ring 3 saw cs=0x2b ss=0x23 cpl=3";
    let frame = "frame cs=0x2b ss=0x23 cpl=3";
    has_lines(
        &r.text(),
        &[
            // SYSCALL: RCX = next RIP, R11 = RFLAGS (DF set by the user),
            // FMASK clears DF in the kernel.
            &format!("  syscall 1: {ring3}; kernel cs=0x8 ss=0x10 cpl=0 rcx=u_syscall+0xc r11=0x402 rflags=0x2"),
            &format!("  syscall 2: {ring3}; kernel cs=0x8 ss=0x10 cpl=0 rcx=u_syscall+0x18 r11=0x2 rflags=0x2"),
            &format!("  vector=128: {ring3}; {frame} rip=u_int80+0x6 rsp=user_stack_top+0x0 rflags=0x2; handler on the RSP0 stack, cs=0x8"),
            &format!("  vector=13 err=0x0: {ring3}; {frame} rip=u_gp_at+0x0 rsp=user_stack_top+0x0 rflags=0x2; handler on the RSP0 stack, cs=0x8"),
            &format!("  vector=13 err=0x0: {ring3}; {frame} rip=u_io_at+0x0 rsp=user_stack_top+0x0 rflags=0x2; handler on the RSP0 stack, cs=0x8"),
            &format!("  syscall 2: {ring3}; kernel cs=0x8 ss=0x10 cpl=0 rcx=u_syscall+0x38 r11=0x3002 rflags=0x2"),
        ],
    );
    assert_eq!(r.text().matches("result=0x1").count(), 5, "{}", r.text());
}

#[test]
fn int_through_a_dpl_0_gate_from_ring_3_cjemu_only() {
    // QEMU 7.2 pushes vector * 16 + 2 in IA-32e mode; the SDM's IDT error
    // code is vector * 8 + 2 (IDT bit), here 0x81 * 8 + 2.
    let k = build_rt64("ring3", &["ring3.c"], false);
    let r = run_cjemu(&k, &["-append", "sdm", "-no-reboot"]);
    assert_eq!(r.status, exit_status(0x22), "{}", r.text());
    assert!(
        r.text().contains("  vector=13 err=0x40a: ring 3 saw cs=0x2b ss=0x23 cpl=3; frame cs=0x2b ss=0x23 cpl=3 rip=u_int81_at+0x0"),
        "{}",
        r.text()
    );
}

#[test]
fn gcc_o2_c_program_in_long_mode_with_sse2_doubles() {
    let k = build_rt64("app", &["app.c"], true);
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x30), "{}", r.text());
    // Known values: pi(10^5) = 9592, their sum 454396537, pi(10^4) = 1229;
    // CRC-32 check value cbf43926 and the fox sentence's 414fa339.
    has_lines(
        &r.text(),
        &[
            "app: freestanding C, gcc -O2, long mode, cr0=80010033 cr4=620",
            "sieve: 9592 primes <= 100000, sum 454396537, largest 99991, 1229 below 10000",
            "crc32: table[1]=77073096 table[255]=2d02ef8d \"123456789\"=cbf43926 fox=414fa339",
            "format: [   42|-7|00123|beef|Zok] (25 chars)",
            "truncate: \"truncat\" wanted 16",
            "math: e=2.718281828459 pi=3.141592653590 zeta(2)~1.644924067 sqrt(2)=1.414213562373 sqrt(2)^2-2=1 ulp",
            "math: 1e16+1-1e16=0.0, 0.1+0.2=0.30000000000000004, -2.5 rounds to -3, 7/3=2.333333333333334",
            "math: (i64)-3.99=-3 (u32)3e9=3000000000 (double)(1<<53)+1=9007199254740992.0",
            "done",
        ],
    );
    let t = r.text();
    assert!(t.contains("sorted=yes, same sum=yes"), "{t}");
}

#[test]
fn far_transfers_between_64_bit_and_compatibility_mode() {
    let k = build_rt64("far", &["far.c"], false);
    let r = parity(&k, &["-no-reboot"]);
    assert_eq!(r.status, exit_status(0x23), "{}", r.text());
    let t = r.text();
    // Pushes are 4 bytes in 32-bit code, 8 in 64-bit code; a far call
    // with 32-bit operands pushes CS then EIP, each 4 bytes (SDM CALL).
    for section in [
        "JMP m16:32 to 32-bit code, JMP ptr16:32 back\n  32-bit cs=0x30\n  32-bit push bytes=0x4\n  64-bit cs=0x8\n  64-bit push bytes=0x8\n",
        "CALL m16:32 to 32-bit code, LRET back\n  32-bit cs=0x30\n  pushed cs=0x8\n  pushed eip=fc_ret+0x0\n  64-bit cs after=0x8\n",
        "CALL m16:64 (REX.W) to 64-bit code, LRETQ back\n  pushed cs=0x8\n  pushed rip=fcq_ret+0x0\n",
        "LRETQ to 32-bit code, JMP ptr16:32 back\n  32-bit cs=0x30\n  64-bit cs=0x8\n",
        "LRET 8 in 32-bit code\n  argument seen=0x1234\n  rsp change=0x0\n",
        "32-bit LRET back\n  64-bit cs=0x8\n  pushed cs=0x30\n  pushed eip=c32_ret+0x0\n  32-bit cs after=0x30\n",
    ] {
        assert!(t.contains(section), "missing {section:?} in:\n{t}");
    }
}
