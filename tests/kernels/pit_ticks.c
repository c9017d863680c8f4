/* PIT channel 0 in mode 2 on IRQ0, counted two ways. "loop": program a
   divisor, run a counted loop of n iterations (DEC/JNZ, 2 instructions
   each) with interrupts on, report the ticks seen and the RDTSC delta
   across the timed region. "hlt": program a divisor, wait with STI;HLT
   until k ticks arrived, report the RDTSC delta. Both timed regions are
   assembly, so their instruction counts are known to the test: the tick
   handler is 6 instructions (INC, PUSH, MOV, OUT, POP, IRET). Parameters
   from the command line: n= div= k= hdiv=. Prints only relative figures;
   initialises the PICs and the PIT itself. Exits with 0x31. */
#include "lib.h"

void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    cpu_init();
    outb(0x43, 0x34);
    pic_remap(0xfffe); /* IRQ0 only */
    set_gate(IRQ_VECTOR + 0, (void (*)(void))tick_stub);
    pit_quiet();
    puts("pit_ticks\n");

    u32 n = cmdline_num(info, "n", 4400000), div = cmdline_num(info, "div", 1000);
    u32 t = timed_loop(n, div);
    puts("loop n=");
    put_dec(n);
    puts(" div=");
    put_dec(div);
    puts(" ticks=");
    put_dec(t);
    puts(" tsc=");
    put_dec(region_tsc);
    putc('\n');
    pit_quiet();

    u32 k = cmdline_num(info, "k", 10), hdiv = cmdline_num(info, "hdiv", 11932);
    hlt_wait(k, hdiv);
    puts("hlt k=");
    put_dec(k);
    puts(" div=");
    put_dec(hdiv);
    puts(" ticks=");
    put_dec(ticks);
    puts(" tsc=");
    put_dec(region_tsc);
    putc('\n');
    exit_code(0x31);
}
