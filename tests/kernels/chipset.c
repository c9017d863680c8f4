/* The PC chipset devices a kernel programs before it takes interrupts:
   the 8259A pair (ELCR masking, ICW1-4, masks, IMR/IRR/ISR read-back),
   the i8042 (command byte, self-test) and the RTC/CMOS (date, registers
   A/B, memory sizes). Run with -rtc base=2020-02-29T12:00:00, so the date
   is fixed; only the date is printed (the time of day moves with host
   time under QEMU). SeaBIOS has programmed everything under QEMU before
   the kernel runs, so each value printed is one the kernel set itself or
   one that does not depend on the firmware. Exits with 0x13. */
#include "lib.h"

static void io_wait(void) { outb(0x80, 0); } /* the I/O-delay port */

static u8 pic_read_ocw3(u16 cmd_port, u8 ocw3)
{
    outb(cmd_port, ocw3);
    return inb(cmd_port);
}

static void pic_init(u16 base, u8 vector, u8 icw3)
{
    outb(base, 0x11); /* ICW1: edge, cascade, ICW4 follows */
    io_wait();
    outb(base + 1, vector); /* ICW2 */
    io_wait();
    outb(base + 1, icw3); /* ICW3 */
    io_wait();
    outb(base + 1, 0x01); /* ICW4: 8086 mode, normal EOI */
    io_wait();
}

static void kbd_wait_write(void)
{
    for (int i = 0; i < 100000 && (inb(0x64) & 0x02); i++)
        ;
}

/* The next byte from the controller, or 0x100 | status on a timeout. */
static u32 kbd_read(void)
{
    u8 st = 0;
    for (int i = 0; i < 100000; i++) {
        st = inb(0x64);
        if (st & 0x01)
            return inb(0x60);
    }
    return 0x100 | st;
}

static void kbd_cmd(u8 c)
{
    kbd_wait_write();
    outb(0x64, c);
}

static u8 cmos(u8 reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    /* Stop PIT channel 0's IRQ0 edges (SeaBIOS left it in mode 2): mode 0
       with the longest count keeps OUT low for 55 ms, long after the IRR
       is read below. */
    outb(0x43, 0x30);
    outb(0x40, 0x00);
    outb(0x40, 0x00);

    /* ELCR: IRQ0-2, 8 and 13 are always edge-triggered. */
    u8 elcr0 = inb(0x4d0), elcr1 = inb(0x4d1);
    outb(0x4d0, 0xff);
    outb(0x4d1, 0xff);
    u8 elcr_m = inb(0x4d0), elcr_s = inb(0x4d1);
    outb(0x4d0, 0x00);
    outb(0x4d1, 0x00);
    u8 elcr_z = inb(0x4d0) | inb(0x4d1);

    pic_init(0x20, 0x20, 0x04);
    pic_init(0xa0, 0x28, 0x02);
    u8 imr_m0 = inb(0x21), imr_s0 = inb(0xa1); /* ICW1 clears the IMR */
    outb(0x21, 0xb8);
    outb(0xa1, 0x5a);
    u8 imr_m = inb(0x21), imr_s = inb(0xa1);
    u8 irr_m = pic_read_ocw3(0x20, 0x0a), irr_s = pic_read_ocw3(0xa0, 0x0a);
    u8 isr_m = pic_read_ocw3(0x20, 0x0b), isr_s = pic_read_ocw3(0xa0, 0x0b);
    u8 isr_again = inb(0x20); /* the selection sticks */
    outb(0x20, 0x0a);
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    u8 imr_all = inb(0x21) & inb(0xa1);
    (void)elcr0;
    (void)elcr1;

    serial_init();
    put_kv("elcr master after 0xff", elcr_m);
    put_kv("elcr slave after 0xff", elcr_s);
    put_kv("elcr after 0", elcr_z);
    put_kv("imr after init", imr_m0 | (imr_s0 << 8));
    put_kv("imr master", imr_m);
    put_kv("imr slave", imr_s);
    /* Bit 0 (IRQ0) is masked out: under QEMU without -icount the PIT runs
       on host time, and a host stall of more than 55 ms between the PIT
       write above and this read would set it. */
    put_kv("irr master (IRQ0 masked out)", irr_m & 0xfe);
    put_kv("irr slave", irr_s);
    put_kv("isr master", isr_m);
    put_kv("isr slave", isr_s);
    put_kv("isr master again", isr_again);
    put_kv("imr all masked", imr_all);

    /* i8042: drain, then the command byte with interrupts off. */
    for (int i = 0; i < 16 && (inb(0x64) & 0x01); i++)
        (void)inb(0x60);
    kbd_cmd(0x60);
    kbd_wait_write();
    outb(0x60, 0x64); /* translate, keyboard clock off, system flag */
    kbd_cmd(0x20);
    put_kv("i8042 command byte", kbd_read());
    kbd_cmd(0xaa);
    put_kv("i8042 self-test", kbd_read());
    kbd_cmd(0x60);
    kbd_wait_write();
    outb(0x60, 0x45); /* translate, system flag, keyboard interrupt */
    kbd_cmd(0x20);
    put_kv("i8042 command byte 2", kbd_read());
    put_kv("i8042 status bit 0 after reads", inb(0x64) & 0x01);

    /* RTC: wait out an update in progress, then the date. */
    for (int i = 0; i < 1000000 && (cmos(0x0a) & 0x80); i++)
        ;
    u8 year = cmos(0x09), month = cmos(0x08), day = cmos(0x07), wday = cmos(0x06);
    u8 century = cmos(0x32);
    put_kv("rtc century", century);
    put_kv("rtc year", year);
    put_kv("rtc month", month);
    put_kv("rtc day", day);
    put_kv("rtc weekday", wday);
    put_kv("rtc reg A", cmos(0x0a) & 0x7f);
    put_kv("rtc reg B", cmos(0x0b));
    put_kv("rtc reg D", cmos(0x0d));
    put_kv("cmos base memory KiB", cmos(0x15) | (cmos(0x16) << 8));
    put_kv("cmos extended memory KiB", cmos(0x17) | (cmos(0x18) << 8));
    put_kv("cmos extended memory KiB (0x30)", cmos(0x30) | (cmos(0x31) << 8));
    put_kv("cmos memory above 16M / 64K", cmos(0x34) | (cmos(0x35) << 8));
    put_kv("cmos memory above 4G / 64K", cmos(0x5b) | (cmos(0x5c) << 8) | (cmos(0x5d) << 16));
    outb(0x70, 0x00); /* leave NMI unmasked, index 0 */
    exit_code(0x13);
}
