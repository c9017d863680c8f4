#include "lib.h"

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

/* 115200 8N1, FIFOs on, interrupts off: everything the kernel relies on is
   set here, since QEMU's SeaBIOS leaves the UART in its own state. */
void serial_init(void)
{
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    outb(COM1 + 4, 0x03);
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

void put_hex(u32 v)
{
    puts("0x");
    for (int i = 28; i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 15]);
}

void put_dec(u32 v)
{
    char buf[11];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc(buf[--n]);
}

void put_kv(const char *key, u32 v)
{
    puts(key);
    putc('=');
    put_hex(v);
    putc('\n');
}

u32 strlen(const char *s)
{
    u32 n = 0;
    while (s[n])
        n++;
    return n;
}

void exit_code(u32 v)
{
    outl(DEBUG_EXIT, v);
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ---- Interrupt runtime (see lib.h): GDT, IDT, PIC, CMOS, command line ---- */

static u64 gdt32[3] __attribute__((aligned(8))) = {
    0,
    0x00cf9a000000ffffull, /* 0x08: flat 32-bit code */
    0x00cf92000000ffffull, /* 0x10: flat data */
};

struct gate32 {
    u16 off0, sel;
    u8 zero, type;
    u16 off1;
} __attribute__((packed));

static struct gate32 idt32[256] __attribute__((aligned(8)));
static irq_fn irq_handlers[16];

/* Stubs for vectors 0-47, 16 bytes apart: push a dummy error code unless
   the CPU pushed one, push the vector, then PUSHA and isr_dispatch(frame). */
extern char isr_stubs32[];
__asm__(".text\n"
        ".macro ISR_STUB v\n"
        " .align 16\n"
        " .if (\\v == 8) || (\\v >= 10 && \\v <= 14) || (\\v == 17)\n"
        " .else\n"
        "  push $0\n"
        " .endif\n"
        " push $\\v\n"
        " jmp isr_common\n"
        ".endm\n"
        " .align 16\n"
        "isr_stubs32:\n"
        ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,"
        "24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47\n"
        " ISR_STUB \\v\n"
        ".endr\n"
        "isr_common:\n"
        " pusha\n"
        " push %esp\n"
        " call isr_dispatch\n"
        " add $4, %esp\n"
        " popa\n"
        " add $8, %esp\n"
        " iret\n");

void set_gate(u32 v, void (*entry)(void))
{
    u32 a = (u32)entry;
    idt32[v] = (struct gate32){
        .off0 = (u16)a, .sel = KCODE, .type = 0x8e, .off1 = (u16)(a >> 16)};
}

void cpu_init(void)
{
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) gdtr = {sizeof gdt32 - 1, (u32)gdt32},
      idtr = {sizeof idt32 - 1, (u32)idt32};
    __asm__ volatile("lgdt %0\n"
                     " ljmp $0x08, $1f\n"
                     "1: mov $0x10, %%eax\n"
                     " mov %%eax, %%ds\n mov %%eax, %%es\n mov %%eax, %%ss\n"
                     " mov %%eax, %%fs\n mov %%eax, %%gs\n"
                     :
                     : "m"(gdtr)
                     : "eax", "memory");
    for (u32 v = 0; v < 48; v++)
        set_gate(v, (void (*)(void))(isr_stubs32 + 16 * v));
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void irq_set(u32 irq, irq_fn fn) { irq_handlers[irq & 15] = fn; }

void pic_eoi(u32 irq)
{
    if (irq >= 8)
        outb(0xa0, 0x20);
    outb(0x20, 0x20);
}

void isr_dispatch(struct iframe *f)
{
    if (f->vector < IRQ_VECTOR) {
        puts("exception ");
        put_dec(f->vector);
        puts(" err=");
        put_hex(f->err);
        puts(" eip=");
        put_hex(f->eip);
        putc('\n');
        exit_code(0x7e);
    }
    u32 irq = f->vector - IRQ_VECTOR;
    if (irq_handlers[irq])
        irq_handlers[irq](f);
    else {
        puts("unexpected IRQ ");
        put_dec(irq);
        putc('\n');
    }
    pic_eoi(irq);
}

void pic_remap(u16 mask)
{
    static const u8 icw[2][4] = {
        {0x11, IRQ_VECTOR, 0x04, 0x01},     /* master: slave on IRQ2 */
        {0x11, IRQ_VECTOR + 8, 0x02, 0x01}, /* slave: cascade identity 2 */
    };
    for (int p = 0; p < 2; p++) {
        u16 base = p ? 0xa0 : 0x20;
        outb(base, icw[p][0]);
        for (int i = 1; i < 4; i++)
            outb(base + 1, icw[p][i]);
    }
    outb(0x21, (u8)mask);
    outb(0xa1, (u8)(mask >> 8));
}

u8 cmos_read(u8 reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

void cmos_write(u8 reg, u8 v)
{
    outb(0x70, reg);
    outb(0x71, v);
}

static const char *cmdline(u32 mb_info)
{
    const u32 *mb = (const u32 *)mb_info;
    return mb && (mb[0] & 4) ? (const char *)mb[4] : "";
}

/* The text after `key` at the start of a word, or 0. */
static const char *find_word(const char *s, const char *key)
{
    u32 n = strlen(key);
    for (const char *p = s; *p; p++) {
        if (p != s && p[-1] != ' ')
            continue;
        u32 i = 0;
        while (i < n && p[i] == key[i])
            i++;
        if (i == n)
            return p + n;
    }
    return 0;
}

int cmdline_has(u32 mb_info, const char *w)
{
    const char *r = find_word(cmdline(mb_info), w);
    return r && (*r == 0 || *r == ' ');
}

u32 cmdline_num(u32 mb_info, const char *key, u32 dflt)
{
    const char *r = find_word(cmdline(mb_info), key);
    if (!r || *r != '=' || r[1] < '0' || r[1] > '9')
        return dflt;
    u32 v = 0;
    for (r++; *r >= '0' && *r <= '9'; r++)
        v = v * 10 + (u32)(*r - '0');
    return v;
}

/* ---- PIT timing regions (see lib.h) ---- */

volatile u32 ticks;
u32 region_tsc;

__asm__(".text\n"
        ".globl tick_stub, timed_loop, hlt_wait\n"
        "tick_stub:\n"
        " incl ticks\n"
        " push %eax\n"
        " mov $0x20, %al\n"
        " out %al, $0x20\n" /* non-specific EOI */
        " pop %eax\n"
        " iret\n"

        /* Program channel 0 (lobyte/hibyte, mode 2, binary) with the divisor
           in BX; the count is loaded by the second OUT to 0x40. From the
           first RDTSC to the second: RDTSC, MOV, MOV, OUT, STI (5), the wait,
           CLI (1), plus 6 per tick. */
        ".macro PIT_START\n"
        " movl $0, ticks\n"
        " mov $0x34, %al\n"
        " out %al, $0x43\n"
        " mov %bl, %al\n"
        " out %al, $0x40\n"
        " rdtsc\n"
        " mov %eax, %esi\n"
        " mov %bh, %al\n"
        " out %al, $0x40\n"
        " sti\n"
        ".endm\n"
        ".macro REGION_END\n"
        " cli\n"
        " rdtsc\n"
        " sub %esi, %eax\n"
        " mov %eax, region_tsc\n"
        ".endm\n"

        "timed_loop:\n"
        " push %ebx\n push %esi\n"
        " mov 12(%esp), %ecx\n"
        " mov 16(%esp), %ebx\n"
        " PIT_START\n"
        "1: dec %ecx\n"
        " jnz 1b\n"
        " REGION_END\n"
        " mov ticks, %eax\n"
        " pop %esi\n pop %ebx\n"
        " ret\n"

        "hlt_wait:\n"
        " push %ebx\n push %esi\n"
        " mov 12(%esp), %ecx\n"
        " mov 16(%esp), %ebx\n"
        " PIT_START\n"
        "1: hlt\n" /* IF=1: wakes on IRQ0; IRET keeps IF=1 */
        " cmp %ecx, ticks\n"
        " jb 1b\n"
        " REGION_END\n"
        " pop %esi\n pop %ebx\n"
        " ret\n");


void pit_quiet(void)
{
    outb(0x43, 0x34);
    __asm__ volatile("sti; nop; cli" ::: "memory");
}
