/* (1) Integer loop: xorshift64 and an LCG mixed with multiplies, rotates
   and a data-dependent branch; one unit = 1000 iterations. Pure register
   work: measures the engine on ALU, flags and a tight backward branch. */
#include "guest.h"

const char guest_name[] = "intloop";

static inline uint64_t rotl(uint64_t x, int r) { return x << r | x >> (64 - r); }

uint64_t work(uint64_t size)
{
    uint64_t x = 0x9e3779b97f4a7c15ull, lcg = 1, acc = 0;
    for (uint64_t i = 0; i < size * 1000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t m = (x ^ lcg) * 0xff51afd7ed558ccdull;
        if (m & 0x100)
            acc += rotl(m, 23);
        else
            acc ^= m >> 29;
    }
    return acc ^ x ^ lcg;
}
