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
