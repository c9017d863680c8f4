/* (2) Sort and sieve: one unit = quicksort 4096 pseudo-random u32 values,
   check them sorted, and sieve the primes below 65536. Memory-bound
   integer code with unpredictable branches and recursion. */
#include "guest.h"

const char guest_name[] = "sortsieve";

#define N 4096
#define LIMIT 65536

static uint32_t nums[N];
static uint8_t composite[LIMIT];

static void quicksort(uint32_t *a, int64_t lo, int64_t hi)
{
    while (lo < hi) {
        uint32_t p = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                uint32_t t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        /* Recurse into the smaller side: the stack stays shallow. */
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

static uint64_t sieve(void)
{
    for (uint64_t i = 0; i < LIMIT; i++)
        composite[i] = 0;
    for (uint64_t i = 2; i * i < LIMIT; i++)
        if (!composite[i])
            for (uint64_t j = i * i; j < LIMIT; j += i)
                composite[j] = 1;
    uint64_t count = 0, sum = 0;
    for (uint64_t i = 2; i < LIMIT; i++)
        if (!composite[i]) {
            count++;
            sum += i;
        }
    return count << 32 ^ sum;
}

uint64_t work(uint64_t size)
{
    uint32_t rng = 2463534242u;
    uint64_t acc = 0;
    for (uint64_t round = 0; round < size; round++) {
        for (int i = 0; i < N; i++) {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            nums[i] = rng % 1000000;
        }
        quicksort(nums, 0, N - 1);
        uint64_t weighted = 0;
        for (int i = 0; i < N; i++) {
            if (i && nums[i - 1] > nums[i])
                return 0xbad; /* not sorted: a wrong checksum, loudly */
            weighted += (uint64_t)nums[i] * (uint64_t)(i + 1);
        }
        acc = acc * 31 + weighted + sieve();
    }
    return acc;
}
