/* Port-I/O string instructions: REP OUTSB to COM1, REP INSB from the
   pc-testdev scratch register (port 0xe0), INSW/INSL from a port nothing
   decodes (all-ones), then exits with 0x12. */
#include "lib.h"

static void rep_outsb(u16 port, const void *p, u32 n)
{
    __asm__ volatile("cld; rep outsb" : "+S"(p), "+c"(n) : "d"(port) : "memory");
}

static void rep_insb(u16 port, void *p, u32 n)
{
    __asm__ volatile("cld; rep insb" : "+D"(p), "+c"(n) : "d"(port) : "memory");
}

static void rep_insw(u16 port, void *p, u32 n)
{
    __asm__ volatile("cld; rep insw" : "+D"(p), "+c"(n) : "d"(port) : "memory");
}

static const char msg[] = "REP OUTSB reached COM1\n";

void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    /* LSR says THR empty at once on both, so no polling between bytes. */
    rep_outsb(0x3f8, msg, sizeof msg - 1);

    outl(0xe0, 0x44332211);
    u8 b[6] = { 0, 0, 0, 0, 0, 0 };
    rep_insb(0xe0, b, 6); /* the same port six times: byte 0 each time */
    puts("insb 0xe0:");
    for (int i = 0; i < 6; i++) {
        putc(' ');
        put_hex(b[i]);
    }
    putc('\n');
    put_kv("inb 0xe1", inb(0xe1));
    put_kv("inw 0xe2", inw(0xe2));
    put_kv("inl 0xe8", inl(0xe8));
    outb(0xea, 0x99);
    put_kv("inl 0xe0 after outb 0xea", inl(0xe0));

    u16 w[3] = { 1, 2, 3 };
    rep_insw(0x1234, w, 3); /* nothing there */
    put_kv("insw unassigned", w[0] ^ w[1] ^ w[2]);
    put_kv("inl unassigned", inl(0x5678));
    put_kv("inb unassigned", inb(0x3e8 + 7)); /* COM3 is not configured */
    exit_code(0x12);
}
