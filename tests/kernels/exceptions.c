/* One probe per exception class, in 64-bit mode unless the instruction only
   exists in 32-bit code (INTO, BOUND: run in a compatibility-mode code
   segment reached by a far call). Each probe is a small assembly function
   with a label at the instruction that should fault or trap; the handler
   prints vector, error code (vectors that have one), the saved RIP
   relative to that label, and CS, then resumes at the probe's exit label.
   Not probed: #AC (cjemu does not implement alignment checking), #DB from
   TF single-step (not implemented), #DB from ICEBP (F1: QEMU 7.2 raises #UD
   for it in 64-bit mode; the SDM says #DB, as cjemu does), and #SS(0) for a non-canonical stack
   address (QEMU's TCG raises #GP(0) for every non-canonical address,
   unlike the SDM). Exits with 0x20. */
#include "rt64.h"

static const char *const names[20] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "(9)",
    "#TS", "#NP", "#SS", "#GP", "#PF", "(15)", "#MF", "#AC", "#MC", "#XM",
};

static int has_error_code(u64 v)
{
    return v == 8 || (v >= 10 && v <= 14) || v == 17;
}

/* The probe being run. */
static const char *at_name;
static u64 at, resume;
static int events;

static void on_fault(struct frame *f)
{
    u64 v = f->vector;
    events++;
    puts("  ");
    puts(v < 20 ? names[v] : "?");
    puts(" vector=");
    put_dec(v);
    if (has_error_code(v)) {
        puts(" err=");
        put_hexn(f->err);
    }
    puts(" rip=");
    put_rel(at_name, f->rip, at);
    puts(" cs=");
    put_hexn(f->cs);
    if (v == 14) {
        puts(" cr2=");
        put_hexn(read_cr2());
    }
    if (v == 7) /* #NM: let the probe go on */
        __asm__ volatile("clts");
    if (v == 16) { /* #MF: report and clear the pending x87 exception */
        u16 sw;
        __asm__ volatile("fnstsw %0; fnclex" : "=m"(sw));
        puts(" fsw&0xbf=");
        put_hexn(sw & 0xbf);
    }
    if (v == 19) { /* #XM: report the flags, mask everything again */
        u32 m;
        __asm__ volatile("stmxcsr %0" : "=m"(m));
        puts(" mxcsr=");
        put_hexn(m);
        m = 0x1f80;
        __asm__ volatile("ldmxcsr %0" : : "m"(m));
    }
    putc('\n');
    f->rip = resume;
}

/* PROBE(name, body): `name_fn` runs body (which defines `name_at`), then
   returns from `name_resume`, with the stack pointer it had on entry (kept
   in R11: a probe may fault with values pushed). */
#define PROBE(name, body)                                                    \
    extern char name##_fn[], name##_at[], name##_resume[];                   \
    __asm__(".text\n" #name "_fn:\n mov %rsp, %r11\n" body "\n"            \
            #name "_resume:\n mov %r11, %rsp\n ret\n");

static void run(const char *title, char *fn, const char *label, char *l, char *res)
{
    puts(title);
    putc('\n');
    at_name = label;
    at = (u64)l;
    resume = (u64)res;
    int before = events;
    ((void (*)(void))fn)();
    if (events == before)
        puts("  no exception\n");
}
#define RUN(title, name) run(title, name##_fn, #name "_at", name##_at, name##_resume)

PROBE(de, "mov $1, %eax\n xor %edx, %edx\n xor %ecx, %ecx\n de_at: div %ecx")
PROBE(de_ovf, "mov $2, %edx\n xor %eax, %eax\n mov $2, %ecx\n de_ovf_at: div %ecx")
PROBE(idiv_min, "mov $0x80000000, %eax\n cltd\n mov $-1, %ecx\n idiv_min_at: idiv %ecx")
PROBE(int_1, "int_1_at: int $1")
PROBE(icebp, "icebp_at: .byte 0xf1")
PROBE(int3, "int3_at: int3")
PROBE(int_3, "int_3_at: .byte 0xcd, 0x03")
PROBE(into64, "into64_at: .byte 0xce")
PROBE(ud2, "ud2_at: ud2")
PROBE(lock_nop, "lock_nop_at: .byte 0xf0, 0x90")
PROBE(nm_x87, "nm_x87_at: fld1\n fstp %st(0)")
PROBE(nm_sse, "nm_sse_at: movaps %xmm0, %xmm1")
PROBE(nm_fwait, "nm_fwait_at: fwait")
PROBE(ts_ist, "ts_ist_at: int $0x40")
PROBE(np_ds, "mov $0x48, %eax\n np_ds_at: mov %eax, %ds")
PROBE(np_es_rpl, "mov $0x49, %eax\n np_es_rpl_at: mov %eax, %es")
PROBE(ss_np, "mov $0x48, %eax\n ss_np_at: mov %eax, %ss")
PROBE(gp_limit, "mov $0x80, %eax\n gp_limit_at: mov %eax, %ds")
PROBE(gp_code_ss, "mov $0x08, %eax\n gp_code_ss_at: mov %eax, %ss")
PROBE(gp_rpl_ss, "mov $0x13, %eax\n gp_rpl_ss_at: mov %eax, %ss")
PROBE(gp_data_cs, "pushq $0x10\n lea gp_data_cs_resume(%rip), %rax\n push %rax\n"
                  " gp_data_cs_at: lretq")
PROBE(gp_noncanon, "movabs $0x8000000000000000, %rax\n gp_noncanon_at: mov (%rax), %rax")
PROBE(gp_ltr_busy, "mov $0x38, %eax\n gp_ltr_busy_at: ltr %ax")
PROBE(gp_idt_limit, "gp_idt_limit_at: int $0x41")
PROBE(pf_read, "mov $0x40000000, %eax\n pf_read_at: mov (%rax), %eax")
PROBE(pf_write, "mov $0x40001234, %eax\n pf_write_at: movl $1, (%rax)")
PROBE(mf_fwait, "fninit\n fldcw mf_cw(%rip)\n fldz\n fld1\n fdivp %st, %st(1)\n"
                " mf_fwait_at: fwait\n fstp %st(0)\n fninit\n ret\n mf_cw: .word 0x37b")
PROBE(mf_next, "fninit\n fldcw mf_cw(%rip)\n fldz\n fld1\n fdivp %st, %st(1)\n"
               " mf_next_at: fld1\n fninit")
PROBE(xm, "ldmxcsr xm_csr(%rip)\n xorps %xmm1, %xmm1\n mov $1, %eax\n cvtsi2ss %eax, %xmm0\n"
          " xm_at: divss %xmm1, %xmm0\n ret\n xm_csr: .long 0x1d80")
PROBE(xm_ud, "ldmxcsr xm_csr(%rip)\n xorps %xmm1, %xmm1\n mov $1, %eax\n cvtsi2ss %eax, %xmm0\n"
             " xm_ud_at: divss %xmm1, %xmm0")

/* 32-bit probes: a far call through a m16:32 pointer to a compatibility-
   mode segment, which faults, then LRET (32-bit) back. */
#define PROBE32(name, body)                                                  \
    extern char name##_fn[], name##_at[], name##_resume[];                   \
    __asm__(".text\n" #name "_fn:\n lcall *" #name "_ptr(%rip)\n ret\n"      \
            #name "_ptr: .long " #name "_32\n .word 0x30\n"                  \
            ".code32\n" #name "_32:\n" body "\n" #name "_resume:\n lret\n"   \
            ".code64\n");

PROBE32(into32, "mov $0x7fffffff, %eax\n add $1, %eax\n into32_at: into")
PROBE32(into32_clear, "mov $1, %eax\n add $1, %eax\n into32_clear_at: into\n ud2")
PROBE32(bound_hi, "mov $11, %eax\n bound_hi_at: bound %eax, bounds")
PROBE32(bound_lo, "mov $-3, %eax\n bound_lo_at: bound %eax, bounds")
PROBE32(bound_in, "mov $10, %eax\n bound_in_at: bound %eax, bounds\n ud2")
PROBE32(ud32, "ud32_at: ud2")
__asm__(".data\n bounds: .long -2, 10\n .text\n");

static void sdm_only(void)
{
    puts("-- where QEMU 7.2 departs from the SDM --\n");
    RUN("INT1 (ICEBP)", icebp);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    u16 full = idtr.limit;
    idtr.limit = 0x41 * 16 + 7; /* vector 0x41 half inside */
    __asm__ volatile("lidt %0" : : "m"(idtr));
    RUN("INT 0x41 past the IDT limit", gp_idt_limit);
    idtr.limit = full;
    __asm__ volatile("lidt %0" : : "m"(idtr));
    RUN("unmasked x87 #Z, then FLD1", mf_next);
    RUN("unmasked SSE #Z with CR4.OSXMMEXCPT", xm);
    write_cr4(read_cr4() & ~0x400ull);
    RUN("unmasked SSE #Z without CR4.OSXMMEXCPT", xm_ud);
    write_cr4(read_cr4() | 0x400);
    u32 m = 0x1f80;
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
}

void kmain(void)
{
    for (int v = 0; v < 32; v++)
        handlers[v] = on_fault;
    handlers[0x40] = on_fault;
    handlers[0x41] = on_fault;
    gdt[SPARE_SEL / 8] = 0x00cf12000000ffffull; /* data, not present */
    puts("exceptions\n");
    RUN("divide by zero", de);
    RUN("divide overflow", de_ovf);
    RUN("idiv INT_MIN/-1", idiv_min);
    RUN("INT 1", int_1);
    RUN("INT3", int3);
    RUN("INT 3 (CD 03)", int_3);
    RUN("INTO in 64-bit mode", into64);
    RUN("INTO in 32-bit code, OF=1", into32);
    RUN("INTO in 32-bit code, OF=0 (ud2 after it)", into32_clear);
    RUN("BOUND above", bound_hi);
    RUN("BOUND below", bound_lo);
    RUN("BOUND inside (ud2 after it)", bound_in);
    RUN("UD2", ud2);
    RUN("UD2 in 32-bit code", ud32);
    RUN("LOCK NOP", lock_nop);

    write_cr0(read_cr0() | 8); /* TS */
    RUN("x87 with CR0.TS", nm_x87);
    write_cr0(read_cr0() | 8);
    RUN("SSE with CR0.TS", nm_sse);
    write_cr0(read_cr0() | 8);
    RUN("FWAIT with CR0.TS and CR0.MP", nm_fwait);
    write_cr0(read_cr0() & ~8ull);

    /* #TS: a TSS whose limit ends before IST1, and a gate using IST1. */
    u64 *tss_desc = &gdt[TSS_SEL / 8];
    u64 saved = tss_desc[0];
    gdt[SPARE_SEL / 8 + 1] = (saved & ~0xffffull & ~(2ull << 40)) | 0x27;
    gdt[SPARE_SEL / 8 + 2] = tss_desc[1];
    __asm__ volatile("ltr %w0" : : "r"(SPARE_SEL + 8));
    set_gate(0x40, 0, 1);
    RUN("INT 0x40 through an IST gate, TSS limit 0x27", ts_ist);
    set_gate(0x40, 0, 0);
    tss_desc[0] = saved & ~(2ull << 40); /* not busy, so LTR takes it again */
    __asm__ volatile("ltr %w0" : : "r"(TSS_SEL));

    RUN("MOV DS, not-present segment", np_ds);
    RUN("MOV ES, not-present segment, RPL 1 > DPL 0", np_es_rpl);
    RUN("MOV SS, not-present segment", ss_np);
    RUN("MOV DS, selector past the GDT limit", gp_limit);
    RUN("MOV SS, code segment", gp_code_ss);
    RUN("MOV SS, RPL 3 at CPL 0", gp_rpl_ss);
    RUN("LRETQ to a data segment", gp_data_cs);
    RUN("non-canonical load", gp_noncanon);
    RUN("LTR of the busy TSS", gp_ltr_busy);
    RUN("read of an unmapped page", pf_read);
    RUN("write to an unmapped page", pf_write);
    RUN("unmasked x87 #Z, then FWAIT", mf_fwait);
    if (cmdline_has("sdm"))
        sdm_only();
    puts("events=");
    put_dec(events);
    putc('\n');
    exit_code(0x20);
}
