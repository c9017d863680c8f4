/* Prints the multiboot information QEMU's -kernel gives: flags, memory
   sizes, boot device, command line, loader name, modules (address,
   size, string, first bytes) and the memory map. Exits with 0x11. */
#include "lib.h"

struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    u32 syms[4];
    u32 mmap_length, mmap_addr;
    u32 drives_length, drives_addr, config_table, boot_loader_name;
};

struct mb_mod {
    u32 start, end, string, reserved;
};

struct mb_mmap {
    u32 size;
    u64 base, len;
    u32 type;
} __attribute__((packed));

static void put_str(const char *key, u32 addr)
{
    puts(key);
    puts("=\"");
    puts((const char *)addr);
    puts("\"\n");
}

void kmain(u32 magic, struct mb_info *mb)
{
    serial_init();
    put_kv("magic", magic);
    put_kv("info", (u32)mb);
    put_kv("flags", mb->flags);
    puts("mem_lower=");
    put_dec(mb->mem_lower);
    puts(" mem_upper=");
    put_dec(mb->mem_upper);
    putc('\n');
    put_kv("boot_device", mb->boot_device);
    put_kv("cmdline_addr", mb->cmdline);
    put_str("cmdline", mb->cmdline);
    put_str("loader", mb->boot_loader_name);
    put_kv("mods_count", mb->mods_count);
    put_kv("mods_addr", mb->mods_addr);
    struct mb_mod *m = (struct mb_mod *)mb->mods_addr;
    for (u32 i = 0; i < mb->mods_count; i++) {
        puts("mod ");
        put_hex(m[i].start);
        puts("..");
        put_hex(m[i].end);
        puts(" string_addr=");
        put_hex(m[i].string);
        puts(" string=\"");
        puts((const char *)m[i].string);
        puts("\" bytes=\"");
        const char *p = (const char *)m[i].start;
        for (u32 j = 0; j < m[i].end - m[i].start && j < 16; j++)
            putc(p[j] >= ' ' && p[j] < 127 ? p[j] : '.');
        puts("\"\n");
    }
    put_kv("mmap_addr", mb->mmap_addr);
    put_kv("mmap_length", mb->mmap_length);
    u32 a = mb->mmap_addr;
    while (a < mb->mmap_addr + mb->mmap_length) {
        struct mb_mmap *e = (struct mb_mmap *)a;
        puts("mmap size=");
        put_dec(e->size);
        puts(" base=");
        put_hex((u32)(e->base >> 32));
        put_hex((u32)e->base);
        puts(" len=");
        put_hex((u32)(e->len >> 32));
        put_hex((u32)e->len);
        puts(" type=");
        put_dec(e->type);
        putc('\n');
        a += e->size + 4;
    }
    exit_code(0x11);
}
