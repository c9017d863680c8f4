/* (4) Table-driven CRC-32 (the IEEE 802.3 polynomial, reflected, as zlib
   computes it) over a 64 KiB buffer; one unit = one pass over the buffer,
   the previous CRC seeding the next pass. A byte load, a table load, shifts
   and XORs per byte. */
#include "guest.h"

const char guest_name[] = "crc32";

#define LEN 65536

static uint32_t table[256];
static uint8_t buf[LEN];

static void make_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
}

static uint32_t crc32(uint32_t crc, const uint8_t *p, uint64_t n)
{
    crc = ~crc;
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint64_t work(uint64_t size)
{
    make_table();
    uint32_t x = 12345;
    for (uint64_t i = 0; i < LEN; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    /* The CRC-32 of "123456789" is 0xcbf43926: fold it in so a wrong table
       cannot go unnoticed. */
    uint64_t acc = (uint64_t)crc32(0, (const uint8_t *)"123456789", 9) << 32;
    uint32_t crc = 0;
    for (uint64_t pass = 0; pass < size; pass++)
        crc = crc32(crc, buf, LEN);
    return acc | crc;
}
