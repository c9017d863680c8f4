/* A freestanding numeric workload run natively and in cjemu by
 * jit/tests/c_program.rs: double arithmetic, loops gcc -O2 vectorises
 * with SSE2 (float/double/int arrays, memset/memcpy-like byte loops) and
 * long double (x87). Built twice from this file: -DGUEST as a flat
 * binary at 0x100000 that writes its results to 0x200000 (SSE/integer
 * part) and 0x200800 (long double part) and halts; without it as a host
 * program that writes the same 4 KiB to stdout. */
typedef unsigned long size_t;
#define N 64
static float fa[N], fb[N];
static double da[N], db[N];
static int ia[N], ib[N];
static unsigned char bytes_src[256], bytes_dst[256];

static void fill(void) {
    for (int i = 0; i < N; i++) {
        fa[i] = (float)i * 0.37f - 3.0f;
        fb[i] = 1.0f / (float)(i + 1);
        da[i] = (double)i * 1.0625 - 7.5;
        db[i] = 1.0 / (double)(i + 3);
        ia[i] = i * 2654435761u;
        ib[i] = (i ^ 0x5a) - 40;
    }
    for (int i = 0; i < 256; i++) bytes_src[i] = (unsigned char)(i * 7 + 3);
}

__attribute__((noinline)) float sum_f(const float *a, const float *b) {
    float s = 0; for (int i = 0; i < N; i++) s += a[i] * b[i]; return s;
}
__attribute__((noinline)) void scale_d(double *a, double k) {
    for (int i = 0; i < N; i++) a[i] = a[i] * k + 0.5;
}
__attribute__((noinline)) int sum_i(const int *a, const int *b) {
    int s = 0; for (int i = 0; i < N; i++) s += a[i] * b[i]; return s;
}
__attribute__((noinline)) void copy_bytes(unsigned char *d, const unsigned char *s, int n) {
    for (int i = 0; i < n; i++) d[i] = s[i] ^ 0x33;
}
__attribute__((noinline)) void set_bytes(unsigned char *d, unsigned char v, int n) {
    for (int i = 0; i < n; i++) d[i] = v;
}
__attribute__((noinline)) double poly(double x) {
    double r = 0; for (int k = 10; k >= 0; k--) r = r * x + 1.0 / (k + 1); return r;
}
__attribute__((noinline)) long double ld_series(int n) {
    long double s = 0.0L, t = 1.0L;
    for (int k = 1; k <= n; k++) { t = t / k; s += t; }
    return s;
}
__attribute__((noinline)) long double ld_mix(long double a, double b) {
    return a * b - (long double)b / 3.0L + (long double)(long long)(a * 1000);
}

static void put(unsigned char *out, int *pos, const void *p, int n) {
    const unsigned char *c = p;
    for (int i = 0; i < n; i++) out[(*pos)++] = c[i];
}

/* Part A: SSE/SSE2 and integer; part B (out + 0x800): long double. */
void compute_sse(unsigned char *out) {
    int pos = 0;
    fill();
    float f = sum_f(fa, fb); put(out, &pos, &f, sizeof f);
    scale_d(da, 1.0 / 3.0); put(out, &pos, da, sizeof da);
    int s = sum_i(ia, ib); put(out, &pos, &s, sizeof s);
    copy_bytes(bytes_dst, bytes_src, 256); put(out, &pos, bytes_dst, 64);
    set_bytes(bytes_dst + 5, 0xa5, 200); put(out, &pos, bytes_dst, 256);
    double p = poly(0.3); put(out, &pos, &p, sizeof p);
    double q = da[7] / db[9] + (double)s; put(out, &pos, &q, sizeof q);
}
void compute_x87(unsigned char *out) {
    int pos = 0;
    long double e = ld_series(25); put(out, &pos, &e, 10);
    long double m = ld_mix(e, 2.5); put(out, &pos, &m, 10);
}

#ifdef GUEST
void *memset(void *d, int c, size_t n) { unsigned char *p = d; while (n--) *p++ = c; return d; }
void *memcpy(void *d, const void *s, size_t n) { unsigned char *p = d; const unsigned char *q = s; while (n--) *p++ = *q++; return d; }
__attribute__((section(".text.start"))) void _start(void) {
    compute_sse((unsigned char *)0x200000);
    /* The x87 starts with FCW = 0x40 after reset; a Linux process starts
     * with the FNINIT state (FCW = 0x37f), so make it the same. */
    __asm__ volatile("fninit");
    compute_x87((unsigned char *)0x200800);
    for (;;) __asm__ volatile("hlt");
}
#else
#include <stdio.h>
int main(void) {
    static unsigned char out[0x1000];
    compute_sse(out);
    compute_x87(out + 0x800);
    fwrite(out, 1, sizeof out, stdout);
    return 0;
}
#endif
