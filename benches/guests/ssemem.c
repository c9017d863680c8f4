/* (5) SSE2 memset and memcpy: 16-byte MOVDQA stores for memset, MOVDQU
   loads and MOVDQA stores for a copy from a misaligned source, over 64 KiB
   buffers, then a PADDQ/PXOR checksum of the result. One unit = one pass
   (a fill, a copy, a checksum), the pass number varying byte and offset so
   nothing can be hoisted. */
#include <emmintrin.h>
#include "guest.h"

const char guest_name[] = "ssemem";

#define LEN 65536

static uint8_t src[LEN + 64] __attribute__((aligned(16)));
static uint8_t dst[LEN] __attribute__((aligned(16)));

/* d 16-byte aligned, n a multiple of 64. */
static void sse_memset(void *d, int c, uint64_t n)
{
    __m128i v = _mm_set1_epi8((char)c);
    __m128i *p = d;
    for (uint64_t i = 0; i < n / 16; i += 4) {
        _mm_store_si128(p + i, v);
        _mm_store_si128(p + i + 1, v);
        _mm_store_si128(p + i + 2, v);
        _mm_store_si128(p + i + 3, v);
    }
}

/* d 16-byte aligned, s any alignment, n a multiple of 32. */
static void sse_memcpy(void *d, const void *s, uint64_t n)
{
    __m128i *p = d;
    const __m128i *q = s;
    for (uint64_t i = 0; i < n / 16; i += 2) {
        __m128i a = _mm_loadu_si128(q + i);
        __m128i b = _mm_loadu_si128(q + i + 1);
        _mm_store_si128(p + i, a);
        _mm_store_si128(p + i + 1, b);
    }
}

/* Sum and XOR of the 64-bit lanes. */
static uint64_t sse_checksum(const void *d, uint64_t n)
{
    const __m128i *p = d;
    __m128i sum = _mm_setzero_si128(), x = _mm_setzero_si128();
    for (uint64_t i = 0; i < n / 16; i++) {
        __m128i v = _mm_load_si128(p + i);
        sum = _mm_add_epi64(sum, v);
        x = _mm_xor_si128(x, _mm_slli_epi64(v, 1));
    }
    sum = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
    x = _mm_xor_si128(x, _mm_unpackhi_epi64(x, x));
    return (uint64_t)_mm_cvtsi128_si64(sum) * 3 ^ (uint64_t)_mm_cvtsi128_si64(x);
}

uint64_t work(uint64_t size)
{
    uint64_t acc = 0;
    for (uint64_t pass = 0; pass < size; pass++) {
        /* src: a fill, then a ramp in its first bytes so the copy's
           misalignment shows in the checksum. */
        sse_memset(src, (int)(pass * 37 + 1), LEN + 64);
        for (int i = 0; i < 64; i++)
            src[i] = (uint8_t)(i * 7 + pass);
        uint64_t off = pass % 17;
        sse_memcpy(dst, src + off, LEN);
        acc = acc * 0x100000001b3ull ^ sse_checksum(dst, LEN);
    }
    return acc;
}
