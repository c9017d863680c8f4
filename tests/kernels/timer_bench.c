/* Compute loop for the timer-cost benchmark (benches/timers.rs): n
   iterations of a 12-instruction integer loop, with PIT channel 0 ticking
   on IRQ0 at hz (1000 -> divisor 1193, 10000 -> 119; 0: channel 0 stopped
   and every IRQ masked). The tick handler is lib.c's tick_stub (counts and
   EOIs). Prints the ticks, exits with 0x35 (0x36 if the loop's self-check
   fails). Command line: n= hz=. */
#include "lib.h"

static u32 scratch;

/* Returns 0, or 1 if the store/load check failed. */
static u32 compute(u32 n)
{
    u32 bad;
    __asm__ volatile("xor %%eax, %%eax\n"
                     " mov $1, %%ebx\n"
                     "1: add %%ebx, %%eax\n"
                     " xor %%eax, %%ebx\n"
                     " and $0x7fffffff, %%ebx\n"
                     " lea 7(%%eax,%%ebx,2), %%esi\n"
                     " sub %%ecx, %%esi\n"
                     " mov %%esi, (%%edi)\n"
                     " mov (%%edi), %%edx\n"
                     " inc %%ebx\n"
                     " cmp %%esi, %%edx\n"
                     " jne 2f\n"
                     " dec %%ecx\n"
                     " jnz 1b\n"
                     " xor %%eax, %%eax\n"
                     " jmp 3f\n"
                     "2: mov $1, %%eax\n"
                     "3:\n"
                     : "=a"(bad), "+c"(n)
                     : "D"(&scratch)
                     : "ebx", "edx", "esi", "memory", "cc");
    return bad;
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    cpu_init();
    u32 n = cmdline_num(info, "n", 10000000), hz = cmdline_num(info, "hz", 0);
    outb(0x43, 0x30); /* channel 0: mode 0, no count yet, so stopped */
    pic_remap(hz ? 0xfffe : 0xffff);
    set_gate(IRQ_VECTOR + 0, (void (*)(void))tick_stub);
    ticks = 0;
    if (hz) {
        u32 div = (1193182 + hz / 2) / hz;
        outb(0x43, 0x34);
        outb(0x40, (u8)div);
        outb(0x40, (u8)(div >> 8));
    }
    sti();
    u32 bad = compute(n);
    cli();
    puts("ticks=");
    put_dec(ticks);
    putc('\n');
    exit_code(bad ? 0x36 : 0x35);
}
