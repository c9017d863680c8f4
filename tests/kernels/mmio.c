/* MMIO reads and writes to pc-testdev's IORAM at 0xff000000 (paging is off:
   a physical address), at every width, unaligned, and with REP MOVS/STOS
   in both directions. Exits with 0x13. */
#include "lib.h"

#define IORAM ((volatile u8 *)0xff000000)

static u32 sum(const volatile u8 *p, u32 n)
{
    u32 s = 0;
    for (u32 i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    put_kv("ioram[0] at start", *(volatile u32 *)IORAM);
    *(volatile u32 *)(IORAM + 0) = 0xdeadbeef;
    *(volatile u16 *)(IORAM + 4) = 0x1234;
    IORAM[6] = 0x56;
    *(volatile u32 *)(IORAM + 0x101) = 0xa1b2c3d4; /* unaligned */
    put_kv("dword 0", *(volatile u32 *)(IORAM + 0));
    put_kv("dword 4", *(volatile u32 *)(IORAM + 4));
    put_kv("word 2", *(volatile u16 *)(IORAM + 2));
    put_kv("dword 0x100", *(volatile u32 *)(IORAM + 0x100));
    put_kv("dword 0x102", *(volatile u32 *)(IORAM + 0x102));
    put_kv("last byte", IORAM[0xffff]);

    static u8 src[200], back[200];
    for (u32 i = 0; i < sizeof src; i++)
        src[i] = (u8)(i * 7 + 3);
    void *d = (void *)(IORAM + 0x1000);
    const void *s = src;
    u32 n = sizeof src;
    __asm__ volatile("cld; rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    d = back;
    s = (const void *)(IORAM + 0x1000);
    n = sizeof back / 4;
    __asm__ volatile("cld; rep movsl" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    put_kv("sum src", sum(src, sizeof src));
    put_kv("sum ioram", sum(IORAM + 0x1000, sizeof src));
    put_kv("sum back", sum(back, sizeof back));
    d = (void *)(IORAM + 0x2000);
    n = 16;
    __asm__ volatile("cld; rep stosl" : "+D"(d), "+c"(n) : "a"(0x5a5aa5a5) : "memory");
    put_kv("sum stos", sum(IORAM + 0x2000, 64));
    exit_code(0x13);
}
