/* QEMU parity under -icount shift=N,sleep=off: the PIT, the PICs and the
   RTC programmed by the kernel, timer interrupts taken over fixed work,
   and only relative figures printed: PIT ticks and the RDTSC delta over a
   counted loop (lib.c's timed_loop), the RDTSC delta of 20 PIT periods
   waited for with HLT (hlt_wait), RTC periodic interrupts at 8192 Hz
   counted in an RDTSC window of 81.5 periods that starts at an interrupt
   (busy-waiting: QEMU 7.2 loses every other RTC periodic interrupt when
   the CPU halts between them with sleep=off), and the RTC date and time
   (run with -rtc base=2024-02-29T23:59:58,clock=vm; firmware and kernel
   take far less than a second of virtual time). Exits with 0x34. */
#include "lib.h"

static volatile u32 rtc_irqs, in_window, beyond;
static volatile u64 t0;
static u64 window;

static void on_rtc(struct iframe *f)
{
    (void)f;
    u64 now = rdtsc();
    if (!(cmos_read(0x0c) & 0x40))
        return;
    if (rtc_irqs++ == 0)
        t0 = now;
    else if (now - t0 <= window)
        in_window++;
    else
        beyond++;
}

static u32 from_bcd(u8 v) { return (u32)(v >> 4) * 10 + (v & 15); }

static void put2(u32 v)
{
    putc((char)('0' + v / 10 % 10));
    putc((char)('0' + v % 10));
}

static void print_rtc(void)
{
    while (cmos_read(0x0a) & 0x80)
        ;
    u8 sec = cmos_read(0), min = cmos_read(2), hour = cmos_read(4);
    u8 day = cmos_read(7), mon = cmos_read(8), year = cmos_read(9), cent = cmos_read(0x32);
    puts("rtc ");
    put2(from_bcd(cent));
    put2(from_bcd(year));
    putc('-');
    put2(from_bcd(mon));
    putc('-');
    put2(from_bcd(day));
    putc(' ');
    put2(from_bcd(hour));
    putc(':');
    put2(from_bcd(min));
    putc(':');
    put2(from_bcd(sec));
    putc('\n');
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    cpu_init();
    outb(0x43, 0x34);
    pic_remap(0xfefa); /* IRQ0, IRQ2 (cascade), IRQ8 */
    set_gate(IRQ_VECTOR + 0, (void (*)(void))tick_stub);
    irq_set(8, on_rtc);
    cmos_write(0x0a, 0x26); /* 32.768 kHz base, 1024 Hz */
    cmos_write(0x0b, 0x02); /* 24 h, BCD, no interrupts */
    (void)cmos_read(0x0c);
    pit_quiet();
    puts("icount_parity\n");
    print_rtc();

    u32 t = timed_loop(1500000, 119); /* about 10 kHz */
    puts("pit loop ticks=");
    put_dec(t);
    puts(" tsc=");
    put_dec(region_tsc);
    putc('\n');
    pit_quiet();

    hlt_wait(20, 1193); /* about 1 kHz */
    puts("pit hlt ticks=");
    put_dec(ticks);
    puts(" tsc=");
    put_dec(region_tsc);
    putc('\n');
    pit_quiet();

    cmos_write(0x0a, 0x23); /* 8192 Hz */
    window = 9948730;       /* 81.5 periods of 122070.3125 ns */
    cmos_write(0x0b, 0x42);
    (void)cmos_read(0x0c);
    sti();
    while (!beyond)
        ;
    cli();
    cmos_write(0x0b, 0x02);
    (void)cmos_read(0x0c);
    puts("rtc periodic 8192Hz window_ns=9948730 count=");
    put_dec(in_window);
    putc('\n');
    print_rtc();
    exit_code(0x34);
}
