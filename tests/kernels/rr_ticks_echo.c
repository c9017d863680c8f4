/* Record/replay guest: PIT channel 0 at ~1 kHz on IRQ0 and COM1 receive
   interrupts on IRQ4. Each received byte is echoed with the tick count and
   the RDTSC value at which it arrived, so the output depends on when the
   host delivered each byte: only an exact replay reproduces it. '#' ends
   the run (exit 0x33); so does reaching "ticks=N" from the command line
   (default 3000) without one, so a replay that misses the terminator still
   stops. It prints "ready" once COM1 is set up (bytes sent before that
   would be lost to the FIFO reset). The main loop idles with STI;HLT. */
#include "lib.h"

#define COM1 0x3f8

static volatile u32 pit_ticks;
static volatile int done;
static u32 echoed;
static u32 sum; /* of every byte received: input shapes RAM */

static void on_pit(struct iframe *f)
{
    (void)f;
    pit_ticks++;
}

static void on_com1(struct iframe *f)
{
    (void)f;
    while (inb(COM1 + 5) & 0x01) {
        u8 c = inb(COM1);
        sum = sum * 31 + c;
        if (done)
            continue;
        if (c == '#') {
            done = 1;
            continue;
        }
        if (c == '\n' || c == '\r')
            continue;
        putc((char)c);
        puts(" t=");
        put_dec(pit_ticks);
        puts(" tsc=");
        put_dec((u32)rdtsc());
        putc('\n');
        echoed++;
    }
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    u32 limit = cmdline_num(info, "ticks", 3000);
    serial_init();
    cpu_init();
    pic_remap(0xffee); /* IRQ0 and IRQ4 */
    irq_set(0, on_pit);
    irq_set(4, on_com1);
    outb(0x43, 0x34); /* channel 0, LSB then MSB, mode 2 */
    outb(0x40, 1193 & 0xff);
    outb(0x40, 1193 >> 8);
    outb(COM1 + 2, 0x07); /* FIFO on and cleared, trigger 1 */
    outb(COM1 + 4, 0x0b); /* DTR, RTS, OUT2 */
    outb(COM1 + 1, 0x01); /* IER: received data available */
    (void)inb(COM1 + 5);
    puts("ready\n");
    while (!done && pit_ticks < limit)
        sti_hlt();
    cli();
    puts("echoed=");
    put_dec(echoed);
    puts(done ? " end=#" : " end=ticks");
    puts(" sum=");
    put_hex(sum);
    putc('\n');
    exit_code(0x33);
}
