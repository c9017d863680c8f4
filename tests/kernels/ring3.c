/* Ring 3 and back: into ring 3 through IRETQ and through SYSRETQ, back to
   ring 0 through SYSCALL, through INT 0x80 (a DPL-3 gate) and through a
   #GP raised in ring 3, which lands on TSS.RSP0. Ring 3 reads its own CS
   and SS; the kernel prints them with the CPL and what it saw on entry
   (RCX/R11 for SYSCALL, the interrupt frame and which stack it is on for
   interrupts). Exits with 0x22. */
#include "rt64.h"

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_FMASK 0xc0000084

static u64 user_stack[512] __attribute__((aligned(16)));
static u8 syscall_stack[4096] __attribute__((aligned(16)));
extern char syscall_entry[], sysret_to_user[];
u64 syscall_user_rsp;
u8 *syscall_stack_top = syscall_stack + sizeof syscall_stack;

/* SYSCALL entry: RSP is still the user's; switch to syscall_stack, call
   on_syscall(rdi, rsi, rdx, rcx = user RIP, r8 = user RFLAGS from R11,
   r9 = RFLAGS here). A zero result goes back to ring 3 with SYSRETQ, any
   other returns it from user_call() / enter_user_sysret(). */
__asm__(".text\n"
        "syscall_entry:\n"
        " mov %rsp, syscall_user_rsp(%rip)\n"
        " mov syscall_stack_top(%rip), %rsp\n"
        " push %rcx\n"
        " push %r11\n"
        " mov %r11, %r8\n"
        " pushfq\n"
        " pop %r9\n"
        " call on_syscall\n"
        " pop %r11\n"
        " pop %rcx\n"
        " test %rax, %rax\n"
        " jnz 1f\n"
        " mov syscall_user_rsp(%rip), %rsp\n"
        " sysretq\n"
        "1: mov kernel_rsp(%rip), %rsp\n"
        " jmp user_resume\n");

/* u64 enter_user_sysret(void (*fn)(void), u64 user_rsp): like user_call()
   (same saved registers, same way back) but enters ring 3 with SYSRETQ. */
u64 enter_user_sysret(void (*fn)(void), u64 user_rsp);
__asm__(".text\n"
        "enter_user_sysret:\n"
        " push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
        " mov %rsp, kernel_rsp(%rip)\n"
        " mov %rdi, %rcx\n"
        " mov $2, %r11d\n"
        " mov %rsi, %rsp\n"
        " sysretq\n");

/* Ring-3 code. Each reads CS into ESI and SS into EDX, then leaves. */
extern char u_syscall[], u_syscall_ret1[], u_syscall_ret2[], u_int80[], u_int80_ret[], u_gp[],
    u_gp_at[], u_io[], u_io_at[], u_io_ok[], u_int81[], u_int81_at[];
__asm__(".text\n"
        "u_syscall:\n"
        " mov %cs, %esi\n mov %ss, %edx\n mov $1, %edi\n"
        " std\n"
        " syscall\n"
        "u_syscall_ret1:\n"
        " cld\n"
        " mov %cs, %esi\n mov %ss, %edx\n mov $2, %edi\n"
        " syscall\n"
        "u_syscall_ret2:\n"
        " ud2\n"
        "u_int80:\n"
        " mov %cs, %esi\n mov %ss, %edx\n"
        " int $0x80\n"
        "u_int80_ret:\n"
        " ud2\n"
        "u_gp:\n"
        " mov %cs, %esi\n mov %ss, %edx\n"
        "u_gp_at: hlt\n"
        " ud2\n"
        "u_io_ok:\n"
        " mov $0x55, %al\n outb %al, $0x80\n"
        " mov %cs, %esi\n mov %ss, %edx\n mov $2, %edi\n syscall\n"
        " ud2\n"
        "u_io:\n"
        " mov %cs, %esi\n mov %ss, %edx\n"
        "u_io_at: outb %al, $0x80\n"
        " ud2\n"
        "u_int81:\n"
        " mov %cs, %esi\n mov %ss, %edx\n"
        "u_int81_at: int $0x81\n"
        " ud2\n");

/* The label the saved RIPs are printed relative to. */
static const char *lbl = "u_syscall";
static u64 lbl_at;

static void cs_ss(u64 cs, u64 ss)
{
    puts(" cs=");
    put_hexn(cs);
    puts(" ss=");
    put_hexn(ss);
    puts(" cpl=");
    put_dec(cs & 3);
}

u64 on_syscall(u64 nr, u64 cs, u64 ss, u64 rcx, u64 r11, u64 kflags)
{
    u16 kcs, kss;
    __asm__ volatile("mov %%cs, %0; mov %%ss, %1" : "=r"(kcs), "=r"(kss));
    puts("  syscall ");
    put_dec(nr);
    puts(": ring 3 saw");
    cs_ss(cs, ss);
    puts("; kernel");
    cs_ss(kcs, kss);
    puts(" rcx=");
    put_rel("u_syscall", rcx, (u64)u_syscall);
    puts(" r11=");
    put_hexn(r11);
    puts(" rflags=");
    put_hexn(kflags);
    putc('\n');
    return nr == 2;
}

static const char *where(u64 a)
{
    if (a >= (u64)rsp0_stack && a < (u64)rsp0_stack + sizeof rsp0_stack)
        return "RSP0";
    if (a >= (u64)user_stack && a < (u64)(user_stack + 512))
        return "user";
    return "other";
}

/* INT 0x80 and #GP from ring 3: print the frame and the stack it is on. */
static void on_trap(struct frame *f)
{
    u16 kcs;
    __asm__ volatile("mov %%cs, %0" : "=r"(kcs));
    puts("  vector=");
    put_dec(f->vector);
    if (f->vector == 13) {
        puts(" err=");
        put_hexn(f->err);
    }
    puts(": ring 3 saw");
    cs_ss(f->rsi, f->rdx);
    puts("; frame");
    cs_ss(f->cs, f->ss);
    puts(" rip=");
    put_rel(lbl, f->rip, lbl_at);
    puts(" rsp=");
    put_rel("user_stack_top", f->rsp, (u64)(user_stack + 512));
    puts(" rflags=");
    put_hexn(f->rflags);
    puts("; handler on the ");
    puts(where((u64)f));
    puts(" stack, cs=");
    put_hexn(kcs);
    putc('\n');
    user_return(f, 1);
}

void kmain(void)
{
    wrmsr(MSR_STAR, (u64)UCODE32 << 48 | (u64)KCODE << 32);
    wrmsr(MSR_LSTAR, (u64)syscall_entry);
    wrmsr(MSR_FMASK, 0x47700); /* AC, NT, DF, IF, TF: cleared on SYSCALL */
    handlers[0x80] = on_trap;
    handlers[13] = on_trap;
    set_gate(0x80, 3, 0);
    u64 top = (u64)(user_stack + 512);
    puts("ring3\n");

    puts("IRETQ to ring 3, SYSCALL back, SYSRETQ, SYSCALL again\n");
    u64 r = user_call((void (*)(void))u_syscall, top, 0x202 & ~0x200ull);
    put_kv("  result", r);

    puts("SYSRETQ to ring 3, INT 0x80 (DPL 3 gate) back\n");
    lbl = "u_int80";
    lbl_at = (u64)u_int80;
    r = enter_user_sysret((void (*)(void))u_int80, top);
    put_kv("  result", r);

    lbl = "u_int80";
    lbl_at = (u64)u_int80;
    puts("IRETQ to ring 3, HLT: #GP(0) on TSS.RSP0\n");
    lbl = "u_gp_at";
    lbl_at = (u64)u_gp_at;
    r = user_call((void (*)(void))u_gp, top, 2);
    put_kv("  result", r);

    puts("IRETQ to ring 3 with IOPL 0, OUT: #GP(0)\n");
    lbl = "u_io_at";
    lbl_at = (u64)u_io_at;
    r = user_call((void (*)(void))u_io, top, 2);
    put_kv("  result", r);
    puts("IRETQ to ring 3 with IOPL 3, OUT is allowed (then SYSCALL)\n");
    r = user_call((void (*)(void))u_io_ok, top, 0x3002);
    put_kv("  result", r);
    if (cmdline_has("sdm")) {
        /* QEMU 7.2 reports vector * 16 + 2 here (SDM: vector * 8 + 2). */
        puts("INT 0x81 from ring 3 through a DPL 0 gate: #GP(0x40a)\n");
        lbl = "u_int81_at";
        lbl_at = (u64)u_int81_at;
        r = user_call((void (*)(void))u_int81, top, 2);
        put_kv("  result", r);
    }
    exit_code(0x22);
}
