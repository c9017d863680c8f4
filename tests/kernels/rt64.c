/* C part of the 64-bit test-kernel runtime: serial output, number
   printing, the debug-exit port, the IDT and TSS, and trap(). */
#include "rt64.h"

#define COM1 0x3f8

struct gate {
    u16 off0, sel;
    u8 ist, type;
    u16 off1;
    u32 off2, zero;
} __attribute__((packed));

static struct gate idt[256] __attribute__((aligned(16)));
struct tss64 tss __attribute__((aligned(16)));
handler_fn handlers[256];
extern char isr_stubs[];
u8 ist_stack[4096] __attribute__((aligned(16)));
/* TSS.RSP0: interrupts from ring 3 must not land on the stack the kernel
   that called user_call() is using. */
u8 rsp0_stack[8192] __attribute__((aligned(16)));

void set_gate(int v, int dpl, int ist)
{
    u64 a = (u64)isr_stubs + 16 * (u64)v;
    idt[v] = (struct gate){
        .off0 = (u16)a,
        .sel = KCODE,
        .ist = (u8)ist,
        .type = (u8)(0x8e | dpl << 5), /* present 64-bit interrupt gate */
        .off1 = (u16)(a >> 16),
        .off2 = (u32)(a >> 32),
    };
}

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    outb(COM1 + 4, 0x03);
}

void rt_init(void)
{
    serial_init();
    u64 b = (u64)&tss;
    tss.rsp[0] = (u64)rsp0_stack + sizeof rsp0_stack;
    tss.ist[0] = (u64)ist_stack + sizeof ist_stack;
    tss.iomap = sizeof tss;
    gdt[TSS_SEL / 8] = (sizeof tss - 1) | (b & 0xffffff) << 16 | 0x89ull << 40 |
                       (b >> 24 & 0xff) << 56;
    gdt[TSS_SEL / 8 + 1] = b >> 32;
    __asm__ volatile("ltr %w0" : : "r"(TSS_SEL));
    for (int v = 0; v < 256; v++)
        set_gate(v, 0, 0);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr = {sizeof idt - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
    u32 mxcsr = 0x1f80;
    __asm__ volatile("fninit; ldmxcsr %0" : : "m"(mxcsr));
}

void putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void hex_digits(u64 v, int n)
{
    puts("0x");
    for (int i = 4 * (n - 1); i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 15]);
}

void put_hex(u64 v) { hex_digits(v, 16); }
void put_hex32(u32 v) { hex_digits(v, 8); }

void put_hexn(u64 v)
{
    int n = 1;
    while (n < 16 && v >> (4 * n))
        n++;
    hex_digits(v, n);
}

void put_dec(u64 v)
{
    char buf[21];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc(buf[--n]);
}

void put_sdec(i64 v)
{
    if (v < 0) {
        putc('-');
        put_dec(-(u64)v);
    } else {
        put_dec((u64)v);
    }
}

void put_kv(const char *key, u64 v)
{
    puts(key);
    putc('=');
    put_hexn(v);
    putc('\n');
}

void put_rel(const char *base_name, u64 addr, u64 base)
{
    puts(base_name);
    if (addr >= base) {
        putc('+');
        put_hexn(addr - base);
    } else {
        putc('-');
        put_hexn(base - addr);
    }
}

void exit_code(u32 v)
{
    outl(0xf4, v);
    for (;;)
        __asm__ volatile("cli; hlt");
}

u64 strlen(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

void *memset(void *d, int c, u64 n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

int memcmp(const void *a, const void *b, u64 n)
{
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

void *memcpy(void *d, const void *s, u64 n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

extern char user_resume[];
extern u64 kernel_rsp;

void user_return(struct frame *f, u64 value)
{
    f->rip = (u64)user_resume;
    f->cs = KCODE;
    f->ss = KDATA;
    f->rsp = kernel_rsp;
    f->rflags = 2;
    f->rax = value;
}

int cmdline_has(const char *w)
{
    const u32 *info = (const u32 *)(u64)mb_info;
    if (mb_magic != 0x2badb002 || !(info[0] & 4))
        return 0;
    const char *c = (const char *)(u64)info[4];
    u64 n = strlen(w);
    for (; *c; c++) {
        if ((c == (const char *)(u64)info[4] || c[-1] == ' ') && !memcmp(c, w, n) &&
            (c[n] == 0 || c[n] == ' '))
            return 1;
    }
    return 0;
}

/* Every interrupt: the handler the kernel installed, else report and stop
   with status (0x3f << 1) | 1. */
void trap(struct frame *f)
{
    handler_fn h = handlers[f->vector & 255];
    if (h) {
        h(f);
        return;
    }
    puts("unexpected vector ");
    put_dec(f->vector);
    puts(" err=");
    put_hexn(f->err);
    puts(" cs=");
    put_hexn(f->cs);
    puts(" rip=");
    put_hex(f->rip);
    puts(" cr2=");
    put_hex(read_cr2());
    putc('\n');
    exit_code(0x3f);
}
