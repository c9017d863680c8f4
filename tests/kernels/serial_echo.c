/* Serial echo on RX interrupts: COM1 with FIFOs (trigger level 1, or 14
   with "fifo14" on the command line: then the bytes short of a trigger
   level arrive through the character-timeout interrupt),
   IER = received-data-available, MCR with OUT2 (which gates the UART's
   interrupt line on a PC), IRQ4 unmasked at the PIC. The IRQ4 handler
   drains the receiver and echoes each byte upper-cased; '@' bytes are
   dropped unechoed (the input starts with a run of them, since bytes the
   host delivered before the kernel reset the FIFO are lost) and '#' ends
   the run: the kernel then prints the counts and exits with 0x32. The main
   loop only waits with STI;HLT. */
#include "lib.h"

#define COM1 0x3f8

static volatile int done;
static u32 echoed, irqs, lsr_errors;

static void on_com1(struct iframe *f)
{
    (void)f;
    irqs++;
    u8 lsr;
    while ((lsr = inb(COM1 + 5)) & 0x01) {
        if (lsr & 0x1e) /* overrun, parity, framing, break */
            lsr_errors++;
        u8 c = inb(COM1);
        if (done || c == '@')
            continue;
        if (c == '#') {
            done = 1;
            continue;
        }
        if (c >= 'a' && c <= 'z')
            c -= 'a' - 'A';
        putc((char)c);
        echoed++;
    }
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    cpu_init();
    pic_remap(0xffef); /* IRQ4 only */
    irq_set(4, on_com1);
    /* FIFO on, both cleared, RX trigger at 1 byte or 14 */
    outb(COM1 + 2, cmdline_has(info, "fifo14") ? 0xc7 : 0x07);
    outb(COM1 + 4, 0x0b); /* DTR, RTS, OUT2 */
    outb(COM1 + 1, 0x01); /* IER: received data available */
    (void)inb(COM1 + 2);  /* read IIR/LSR/MSR once: no stale status */
    (void)inb(COM1 + 5);
    (void)inb(COM1 + 6);
    while (!done)
        sti_hlt();
    cli();
    outb(COM1 + 1, 0x00);
    puts("\nechoed=");
    put_dec(echoed);
    puts(irqs ? " irqs>0" : " irqs=0");
    puts(" lsr_errors=");
    put_dec(lsr_errors);
    putc('\n');
    exit_code(0x32);
}
