/* Kernel side of a benchmark guest: reads `size=N` from the multiboot
   command line (-append), runs the core, prints
   "<name> size=<N> checksum=0x<16 hex digits>" on COM1 and leaves through
   isa-debug-exit with 0x10 (exit status 0x21 on QEMU and cjemu alike). */
#include "rt64.h"
#include "guest.h"

/* The default size when the command line has none: the smallest run. */
#define DEFAULT_SIZE 1

/* The decimal number after "size=" on the command line, else 0. */
static u64 cmdline_size(void)
{
    const u32 *info = (const u32 *)(u64)mb_info;
    if (mb_magic != 0x2badb002 || !(info[0] & 4))
        return 0;
    const char *c = (const char *)(u64)info[4];
    for (; *c; c++) {
        int word_start = c == (const char *)(u64)info[4] || c[-1] == ' ';
        if (word_start && !memcmp(c, "size=", 5)) {
            u64 n = 0;
            for (c += 5; *c >= '0' && *c <= '9'; c++)
                n = n * 10 + (u64)(*c - '0');
            return n;
        }
    }
    return 0;
}

void kmain(void)
{
    u64 size = cmdline_size();
    if (!size)
        size = DEFAULT_SIZE;
    u64 sum = work(size);
    puts(guest_name);
    puts(" size=");
    put_dec(size);
    puts(" checksum=");
    put_hex(sum);
    putc('\n');
    exit_code(0x10);
}
