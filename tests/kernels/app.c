/* The "done means" program: freestanding C compiled with gcc -O2
   (SSE2 allowed) into a multiboot kernel on the rt64 runtime (32-bit entry
   that switches to long mode itself, 2 MiB identity pages, FPU/SSE set up,
   COM1 polled through LSR, exit through port 0xf4). It does real work and
   prints the results: a prime sieve, a sort of pseudo-random numbers, a
   CRC-32 table and checksum, string formatting, and double arithmetic.
   Exits with 0x30. */
#include "rt64.h"

/* ---- a small formatter: %d %u %x %s %c %f (fixed, with .N) ---- */

struct out {
    char *buf;
    u64 len, cap;
};

static void emit(struct out *o, char c)
{
    if (o->len + 1 < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

static void emit_u(struct out *o, u64 v, unsigned base, int width, char pad)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (width-- > n)
        emit(o, pad);
    while (n)
        emit(o, t[--n]);
}

/* Fixed-point output of a double, rounded half away from zero. */
static void emit_f(struct out *o, double x, int prec)
{
    if (x < 0) {
        emit(o, '-');
        x = -x;
    }
    u64 scale = 1;
    for (int i = 0; i < prec; i++)
        scale *= 10;
    u64 v = (u64)(x * (double)scale + 0.5);
    emit_u(o, v / scale, 10, 0, ' ');
    if (prec) {
        emit(o, '.');
        emit_u(o, v % scale, 10, prec, '0');
    }
}

static u64 format(char *buf, u64 cap, const char *f, __builtin_va_list ap)
{
    struct out o = {buf, 0, cap};
    for (; *f; f++) {
        if (*f != '%') {
            emit(&o, *f);
            continue;
        }
        f++;
        char pad = ' ';
        int width = 0, prec = 6;
        if (*f == '0')
            pad = '0';
        while (*f >= '0' && *f <= '9')
            width = width * 10 + (*f++ - '0');
        if (*f == '.') {
            prec = 0;
            f++;
            while (*f >= '0' && *f <= '9')
                prec = prec * 10 + (*f++ - '0');
        }
        switch (*f) {
        case 'd': {
            i64 v = __builtin_va_arg(ap, i64);
            if (v < 0) {
                emit(&o, '-');
                v = -v;
            }
            emit_u(&o, (u64)v, 10, width, pad);
            break;
        }
        case 'u':
            emit_u(&o, __builtin_va_arg(ap, u64), 10, width, pad);
            break;
        case 'x':
            emit_u(&o, __builtin_va_arg(ap, u64), 16, width, pad);
            break;
        case 's':
            for (const char *s = __builtin_va_arg(ap, const char *); *s; s++)
                emit(&o, *s);
            break;
        case 'c':
            emit(&o, (char)__builtin_va_arg(ap, int));
            break;
        case 'f':
            emit_f(&o, __builtin_va_arg(ap, double), prec);
            break;
        default:
            emit(&o, *f);
        }
    }
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = 0;
    return o.len;
}

static u64 snprintf(char *buf, u64 cap, const char *f, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, f);
    u64 n = format(buf, cap, f, ap);
    __builtin_va_end(ap);
    return n;
}

static void printf(const char *f, ...)
{
    char buf[256];
    __builtin_va_list ap;
    __builtin_va_start(ap, f);
    format(buf, sizeof buf, f, ap);
    __builtin_va_end(ap);
    puts(buf);
}

/* ---- the work ---- */

static u8 composite[100001];

static void sieve(void)
{
    u64 n = 100000, count = 0, sum = 0, last = 0;
    for (u64 i = 2; i * i <= n; i++)
        if (!composite[i])
            for (u64 j = i * i; j <= n; j += i)
                composite[j] = 1;
    for (u64 i = 2; i <= n; i++)
        if (!composite[i]) {
            count++;
            sum += i;
            last = i;
        }
    u64 below10k = 0;
    for (u64 i = 2; i < 10000; i++)
        below10k += !composite[i];
    printf("sieve: %u primes <= %u, sum %u, largest %u, %u below 10000\n", count, n, sum, last,
           below10k);
}

static u32 rng = 2463534242u;
static u32 xorshift32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static u32 nums[4096];

static void quicksort(u32 *a, i64 lo, i64 hi)
{
    while (lo < hi) {
        u32 p = a[lo + (hi - lo) / 2];
        i64 i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                u32 t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

static void sorting(void)
{
    u64 n = sizeof nums / sizeof nums[0], sum = 0;
    for (u64 i = 0; i < n; i++) {
        nums[i] = xorshift32() % 1000000;
        sum += nums[i];
    }
    quicksort(nums, 0, (i64)n - 1);
    int sorted = 1;
    u64 sum2 = 0, mix = 0;
    for (u64 i = 0; i < n; i++) {
        sum2 += nums[i];
        mix = mix * 31 + nums[i];
        if (i && nums[i - 1] > nums[i])
            sorted = 0;
    }
    printf("sort: %u numbers, sorted=%s, same sum=%s, min %u, median %u, max %u, hash %x\n", n,
           sorted ? "yes" : "no", sum == sum2 ? "yes" : "no", (u64)nums[0], (u64)nums[n / 2],
           (u64)nums[n - 1], mix);
}

static u32 crc_table[256];

static u32 crc32(const char *s, u64 n)
{
    u32 c = 0xffffffff;
    for (u64 i = 0; i < n; i++)
        c = crc_table[(c ^ (u8)s[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

static void crc(void)
{
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320 ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    const char *fox = "The quick brown fox jumps over the lazy dog";
    printf("crc32: table[1]=%08x table[255]=%08x \"123456789\"=%08x fox=%08x\n",
           (u64)crc_table[1], (u64)crc_table[255], (u64)crc32("123456789", 9),
           (u64)crc32(fox, strlen(fox)));
}

static void strings(void)
{
    char buf[64];
    u64 n = snprintf(buf, sizeof buf, "[%5d|%d|%05u|%x|%c%s]", (i64)42, (i64)-7, (u64)123,
                     (u64)0xbeef, 'Z', "ok");
    printf("format: %s (%u chars)\n", buf, n);
    n = snprintf(buf, 8, "%s", "truncated output");
    printf("truncate: \"%s\" wanted %u\n", buf, n);
}

static double sqrt(double x)
{
    return __builtin_sqrt(x);
}

static void math(void)
{
    double e = 1, term = 1;
    for (int k = 1; k < 20; k++) {
        term /= k;
        e += term;
    }
    double zeta2 = 0;
    for (int k = 1; k <= 100000; k++)
        zeta2 += 1.0 / ((double)k * k);
    /* Machin: pi = 16 atan(1/5) - 4 atan(1/239). */
    double pi = 0;
    for (int s = 0; s < 2; s++) {
        double x = s ? 1.0 / 239 : 1.0 / 5, p = x, a = 0;
        for (int k = 0; k < 30; k++, p *= -x * x)
            a += p / (2 * k + 1);
        pi += s ? -4 * a : 16 * a;
    }
    double r = sqrt(2.0);
    printf("math: e=%.12f pi=%.12f zeta(2)~%.9f sqrt(2)=%.12f sqrt(2)^2-2=%d ulp\n", e, pi, zeta2, r,
           (i64)((r * r - 2) / 4.440892098500626e-16));
    double c = 1e16;
    printf("math: 1e16+1-1e16=%.1f, 0.1+0.2=%.17f, -2.5 rounds to %.0f, 7/3=%.15f\n",
           c + 1 - c, 0.1 + 0.2, -2.5, 7.0 / 3);
    /* Conversions in both directions, truncation toward zero. */
    printf("math: (i64)-3.99=%d (u32)3e9=%u (double)(1<<53)+1=%.1f\n", (i64)-3.99, (u64)(u32)3e9,
           (double)((1ull << 53) + 1));
}

void kmain(void)
{
    printf("app: freestanding C, gcc -O2, long mode, cr0=%x cr4=%x\n", read_cr0() & 0x8005003f,
           read_cr4() & 0x6a0);
    sieve();
    sorting();
    crc();
    strings();
    math();
    printf("done\n");
    exit_code(0x30);
}
