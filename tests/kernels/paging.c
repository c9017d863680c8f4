/* Page faults with 4 KiB pages built by the kernel, and the double fault
   on an IST stack.
   The 2 MiB at 8 MiB are remapped through a page table whose pages have
   different rights; supervisor and user (ring 3) reads, writes and
   fetches print the #PF error code and CR2 (relative to the region) and
   the faulting RIP (relative to a label). Then a #PF whose delivery
   itself faults because the stack is unmapped (kernel RSP, then TSS.RSP0
   for a fault in ring 3) becomes a #DF, delivered on the IST1 stack:
   error code 0, CR2 the stack address. Exits with 0x21. */
#include "rt64.h"

#define REGION 0x800000ull
#define PAGE(n) (REGION + 0x1000ull * (n))
#define P 1ull
#define RW 2ull
#define US 4ull
#define NX (1ull << 63)

static u64 pt[512] __attribute__((aligned(4096)));
static u64 user_stack[512] __attribute__((aligned(16)));

/* Page n of the region: its rights (its frame is the identity one). */
static const u64 rights[] = {
    P | RW | US,      /* 0: all */
    0,                /* 1: not present */
    P | US,           /* 2: read-only */
    P | RW,           /* 3: supervisor only */
    P | RW | US | NX, /* 4: no execute */
    P,                /* 5: supervisor read-only */
};

static const char *at_name;
static u64 at, resume;
static int events;

static void report(struct frame *f)
{
    events++;
    puts("  vector=");
    put_dec(f->vector);
    puts(" err=");
    put_hexn(f->err);
    puts(" cr2=");
    put_rel("region", read_cr2(), REGION);
    puts(" rip=");
    if (f->rip >= REGION && f->rip < REGION + 0x200000)
        put_rel("region", f->rip, REGION); /* a fetch fault */
    else
        put_rel(at_name, f->rip, at);
    puts(" cpl=");
    put_dec(f->cs & 3);
    putc('\n');
}

static void on_pf(struct frame *f)
{
    report(f);
    if (f->cs & 3)
        user_return(f, 1);
    else
        f->rip = resume;
}

/* Probes, as in exceptions.c: the stack pointer on entry is kept in R11. */
#define PROBE(name, body)                                                    \
    extern char name##_fn[], name##_at[], name##_resume[];                   \
    __asm__(".text\n" #name "_fn:\n mov %rsp, %r11\n" body "\n"              \
            #name "_resume:\n mov %r11, %rsp\n ret\n");

PROBE(rd_np, "mov $0x801010, %eax\n rd_np_at: mov (%rax), %eax")
PROBE(wr_np, "mov $0x801ffc, %eax\n wr_np_at: movl $1, (%rax)")
PROBE(wr_ro, "mov $0x802008, %eax\n wr_ro_at: movb $1, (%rax)")
PROBE(wr_sro, "mov $0x805000, %eax\n wr_sro_at: movq $1, (%rax)")
PROBE(rd_ok, "mov $0x803000, %eax\n mov (%rax), %eax\n mov $0x800000, %eax\n movl $7, (%rax)\n"
             " mov $0x802000, %eax\n mov (%rax), %eax\n rd_ok_at: nop")
PROBE(fetch_nx, "mov $0x804000, %eax\n fetch_nx_at: call *%rax")
PROBE(fetch_np, "mov $0x801800, %eax\n fetch_np_at: call *%rax")
PROBE(fetch_ok, "mov $0x800100, %eax\n call *%rax\n fetch_ok_at: nop")
PROBE(rsvd, "mov $0x806000, %eax\n rsvd_at: mov (%rax), %eax")
PROBE(split, "mov $0x800ffe, %eax\n split_at: movl $0x11223344, (%rax)")
/* Faults with the stack unmapped: RSP at the top of page 1. */
PROBE(df_kernel, "mov $0x802000, %esp\n df_kernel_at: mov 0x801000, %eax")

/* Ring-3 probes: each reaches a #PF or returns 0 through INT 0x80. */
#define UPROBE(name, body)                                                   \
    extern char name##_fn[], name##_at[];                                    \
    __asm__(".text\n" #name "_fn:\n" body "\n int $0x80\n");

UPROBE(u_rd_sup, "mov $0x803000, %eax\n u_rd_sup_at: mov (%rax), %eax")
UPROBE(u_wr_ro, "mov $0x802000, %eax\n u_wr_ro_at: movl $1, (%rax)")
UPROBE(u_rd_np, "mov $0x801abc, %eax\n u_rd_np_at: mov (%rax), %eax")
UPROBE(u_fetch_sup, "mov $0x803000, %eax\n u_fetch_sup_at: call *%rax")
UPROBE(u_fetch_nx, "mov $0x804000, %eax\n u_fetch_nx_at: call *%rax")
UPROBE(u_rd_sro, "mov $0x805000, %eax\n u_rd_sro_at: mov (%rax), %eax")
UPROBE(u_ok, "mov $0x800000, %eax\n mov (%rax), %eax\n mov $0x802000, %eax\n mov (%rax), %eax\n"
             " mov $0x800000, %eax\n movl $9, (%rax)\n u_ok_at: nop")

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

static void on_int80(struct frame *f)
{
    user_return(f, 0);
}

static void urun(const char *title, char *fn, const char *label, char *l)
{
    puts(title);
    putc('\n');
    at_name = label;
    at = (u64)l;
    if (!user_call((void (*)(void))fn, (u64)(user_stack + 512), 2))
        puts("  no exception\n");
}
#define URUN(title, name) urun(title, name##_fn, #name "_at", name##_at)

static void on_df(struct frame *f)
{
    u64 here = (u64)__builtin_frame_address(0);
    events++;
    puts("  #DF vector=");
    put_dec(f->vector);
    puts(" err=");
    put_hexn(f->err);
    puts(" cr2=");
    put_rel("region", read_cr2(), REGION);
    puts(" on IST1 stack=");
    puts(here >= (u64)ist_stack && here < (u64)ist_stack + 4096 ? "yes" : "no");
    puts(" saved rsp=");
    if (f->cs & 3)
        put_rel("user_stack_top", f->rsp, (u64)(user_stack + 512));
    else
        put_rel("region", f->rsp, REGION);
    puts(" cpl=");
    put_dec(f->cs & 3);
    putc('\n');
    /* The state a #DF saves is not restartable: go back to the probe's
       caller (kernel) or user_call's caller (ring 3). */
    if (f->cs & 3) {
        user_return(f, 1);
    } else {
        f->rip = resume;
        f->rsp = f->r11;
    }
}

void kmain(void)
{
    for (int i = 0; i < 512; i++)
        pt[i] = (REGION + 0x1000ull * i) | P | RW | US;
    for (unsigned i = 0; i < sizeof rights / sizeof rights[0]; i++)
        pt[i] = (REGION + 0x1000ull * i) | rights[i];
    pt[6] |= 1ull << 51; /* above the 40 physical-address bits: reserved */
    pd[REGION >> 21] = (u64)pt | P | RW | US;
    write_cr3(read_cr3());
    /* Code in the region: a RET at page 4 (NX) and at offset 0x100 of
       page 0, a RET at page 3 (supervisor only). */
    *(volatile u8 *)PAGE(4) = 0xc3;
    *(volatile u8 *)(PAGE(0) + 0x100) = 0xc3;
    *(volatile u8 *)PAGE(3) = 0xc3;

    handlers[14] = on_pf;
    handlers[0x80] = on_int80;
    set_gate(0x80, 3, 0);
    puts("paging\n");
    RUN("read, not present", rd_np);
    RUN("write, not present", wr_np);
    RUN("write, read-only (CR0.WP=1)", wr_ro);
    RUN("write, supervisor read-only", wr_sro);
    RUN("allowed supervisor accesses", rd_ok);
    RUN("fetch, NX page", fetch_nx);
    RUN("fetch, not present", fetch_np);
    RUN("fetch, allowed", fetch_ok);
    RUN("dword write across into a not-present page", split);
    URUN("ring 3 read, supervisor page", u_rd_sup);
    URUN("ring 3 write, read-only page", u_wr_ro);
    URUN("ring 3 read, not present", u_rd_np);
    URUN("ring 3 fetch, supervisor page", u_fetch_sup);
    URUN("ring 3 fetch, NX page", u_fetch_nx);
    URUN("ring 3 read, supervisor read-only page", u_rd_sro);
    URUN("ring 3 allowed accesses", u_ok);
    put_kv("word at page 0", *(volatile u32 *)PAGE(0));
    if (cmdline_has("rsvd"))
        RUN("read, reserved bit 51 set", rsvd);

    handlers[8] = on_df;
    set_gate(8, 0, 1);
    RUN("#PF with the kernel stack unmapped", df_kernel);
    u64 rsp0 = tss.rsp[0];
    tss.rsp[0] = PAGE(2) - 0x10; /* top of page 1: not present */
    URUN("ring 3 #PF with TSS.RSP0 unmapped", u_rd_np);
    tss.rsp[0] = rsp0;
    puts("events=");
    put_dec(events);
    putc('\n');
    exit_code(0x21);
}
