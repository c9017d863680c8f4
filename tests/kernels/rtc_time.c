/* MC146818 RTC: reads the date and time (BCD or binary, 12 or 24 hours,
   as register B says; the command line picks: "binary", "h12"), then
   counts periodic interrupts (IRQ8, PIE) in RDTSC-timed windows: at
   1024 Hz for 2 s plus half a period (2048 expected), then at 2 Hz for
   1.75 s (3 expected), reading the time after each. Each window starts at
   an interrupt, so its phase is known; the interrupts counted are those
   whose handler ran inside the window. Run with -rtc base=2024-02-29T23:59:58
   (QEMU: add clock=vm). Initialises the PICs and RTC registers A and B
   itself. Exits with 0x33. */
#include "lib.h"

static u8 reg_b;
static volatile u32 irqs;  /* periodic interrupts since the window began */
static volatile u32 in_window, beyond;
static volatile u64 t0, window;

static u32 bcd(u8 v) { return (reg_b & 0x04) ? v : (u32)(v >> 4) * 10 + (v & 15); }

static void put2(u32 v)
{
    putc((char)('0' + v / 10 % 10));
    putc((char)('0' + v % 10));
}

/* One consistent reading: wait out an update in progress, read, and
   retry if the seconds moved meanwhile. */
static void print_time(const char *label)
{
    u8 r[10], c;
    u8 again;
    do {
        while (cmos_read(0x0a) & 0x80)
            ;
        for (int i = 0; i < 10; i++)
            r[i] = cmos_read((u8)i);
        c = cmos_read(0x32);
        again = cmos_read(0x00);
    } while (again != r[0]);
    u32 hour = bcd(r[4] & 0x7f);
    if (!(reg_b & 0x02)) /* 12-hour mode: 12 AM is 0, bit 7 = PM */
        hour = hour % 12 + ((r[4] & 0x80) ? 12 : 0);
    puts(label);
    putc(' ');
    put2(bcd(c));
    put2(bcd(r[9]));
    putc('-');
    put2(bcd(r[8]));
    putc('-');
    put2(bcd(r[7]));
    putc(' ');
    put2(hour);
    putc(':');
    put2(bcd(r[2]));
    putc(':');
    put2(bcd(r[0]));
    putc('\n');
}

static void on_rtc(struct iframe *f)
{
    (void)f;
    u64 now = rdtsc();
    if (!(cmos_read(0x0c) & 0x40)) /* reading C also acknowledges */
        return;
    if (irqs++ == 0)
        t0 = now;
    else if (now - t0 <= window)
        in_window++;
    else
        beyond++;
}

/* Rate select `rs` (divider 32.768 kHz), window in ns: count the
   interrupts after the first that fall inside the window. */
static void count_periodic(u32 rs, const char *rate, u64 win_ns)
{
    cli();
    cmos_write(0x0a, (u8)(0x20 | rs));
    irqs = in_window = beyond = 0;
    window = win_ns;
    cmos_write(0x0b, reg_b | 0x40);
    (void)cmos_read(0x0c);
    while (!beyond)
        sti_hlt();
    cli();
    cmos_write(0x0b, reg_b);
    (void)cmos_read(0x0c);
    puts("irq8 ");
    puts(rate);
    puts(" window_us=");
    put_dec((u32)win_ns / 1000); /* windows stay below 4.29 s */
    puts(" count=");
    put_dec(in_window);
    putc('\n');
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    cpu_init();
    pic_remap(0xfefb); /* IRQ2 (cascade) and IRQ8 */
    irq_set(8, on_rtc);
    reg_b = (cmdline_has(info, "binary") ? 0x04 : 0) | (cmdline_has(info, "h12") ? 0 : 0x02);
    cmos_write(0x0a, 0x26); /* 32.768 kHz time base, 1024 Hz rate */
    cmos_write(0x0b, reg_b);
    (void)cmos_read(0x0c);
    puts("rtc_time ");
    puts(reg_b & 0x04 ? "binary" : "bcd");
    puts(reg_b & 0x02 ? " 24h\n" : " 12h\n");
    print_time("start");
    count_periodic(6, "1024Hz", 2000000000ull + 488281); /* + half a period */
    print_time("after");
    count_periodic(15, "2Hz", 1750000000ull);
    print_time("after");
    exit_code(0x33);
}
