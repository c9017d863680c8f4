/* Shared 64-bit runtime of the long-mode test kernels (rt64.S, rt64.c):
   the multiboot entry switches to long mode with 1 GiB identity-mapped by
   2 MiB pages (user-accessible, so ring 3 can run anywhere), sets up the
   GDT, a 64-bit TSS and an IDT whose stubs all reach trap(), enables the
   FPU and SSE, then calls kmain(). */
#ifndef RT64_H
#define RT64_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

/* GDT selectors (SYSCALL/SYSRET need user32, user data, user64 in a row). */
#define KCODE 0x08
#define KDATA 0x10
#define UCODE32 0x18
#define UDATA 0x20
#define UCODE64 0x28
#define KCODE32 0x30
#define TSS_SEL 0x38
#define SPARE_SEL 0x48 /* gdt[9..15]: free for the tests */

/* What the interrupt stubs push, lowest address first. */
struct frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, err;
    u64 rip, cs, rflags, rsp, ss;
};

struct tss64 {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3, iomap;
} __attribute__((packed));

extern u64 gdt[16];
extern struct tss64 tss;
extern u8 ist_stack[4096], rsp0_stack[8192];
extern u64 pml4[512], pdpt[512], pd[512];
extern char stack_top[];
extern u32 mb_magic, mb_info; /* EAX and EBX at the multiboot entry */

/* Does the multiboot command line contain the word `w`? */
int cmdline_has(const char *w);

typedef void (*handler_fn)(struct frame *);
extern handler_fn handlers[256];

/* Set the IDT gate of `vector`: DPL and IST index. */
void set_gate(int vector, int dpl, int ist);

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u64 read_cr2(void) { u64 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u64 read_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr0(u64 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void write_cr4(u64 v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }
static inline void invlpg(u64 a) { __asm__ volatile("invlpg (%0)" : : "r"(a) : "memory"); }
static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (u64)hi << 32 | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" : : "a"((u32)v), "d"((u32)(v >> 32)), "c"(msr));
}

/* Run fn in ring 3 on user_rsp with rflags; returns the value a handler
   passes to user_return(). */
u64 user_call(void (*fn)(void), u64 user_rsp, u64 rflags);
/* From a handler of an event raised in ring 3 (or anywhere after
   user_call): make the IRETQ resume user_call's caller with `value`. */
void user_return(struct frame *f, u64 value);

void putc(char c);
void puts(const char *s);
void put_hex(u64 v);          /* 0x + 16 digits */
void put_hex32(u32 v);        /* 0x + 8 digits */
void put_hexn(u64 v);         /* 0x + no leading zeros */
void put_dec(u64 v);
void put_sdec(i64 v);
void put_kv(const char *key, u64 v); /* "key=0x...\n", shortest hex */
/* "base+0x..", the offset of `addr` from `base` (so link addresses don't
   show in the output). */
void put_rel(const char *base_name, u64 addr, u64 base);
void exit_code(u32 v) __attribute__((noreturn));
u64 strlen(const char *s);
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
int memcmp(const void *a, const void *b, u64 n);

void kmain(void);

#endif
