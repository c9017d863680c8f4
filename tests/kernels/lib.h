/* Freestanding helpers shared by the C test kernels: port I/O, a polled
   COM1 driver, number printing and the debug-exit port. */
#ifndef KLIB_H
#define KLIB_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void serial_init(void);
void putc(char c);
void puts(const char *s);
void put_hex(u32 v);
void put_dec(u32 v);
void put_kv(const char *key, u32 v); /* "key=0x...\n" */
void exit_code(u32 v) __attribute__((noreturn));
u32 strlen(const char *s);

/* Interrupt-driven kernels (the runtime at the end of lib.c): cpu_init()
   loads our own flat GDT (code 0x08, data 0x10; multiboot leaves GDTR
   undefined) and an IDT whose vectors 0-31 print the exception and exit
   with 0x7e, and whose vectors 0x20-0x2f (the remapped PICs) call the C
   handler given to irq_set() and then send the EOI. */
#define KCODE 0x08
#define IRQ_VECTOR 0x20 /* IRQ n arrives on vector 0x20 + n */

struct iframe {
    u32 edi, esi, ebp, esp0, ebx, edx, ecx, eax; /* PUSHA */
    u32 vector, err;
    u32 eip, cs, eflags;
};

void cpu_init(void);
/* Point `vector` at `entry` (a 32-bit interrupt gate: IF cleared on entry). */
void set_gate(u32 vector, void (*entry)(void));
typedef void (*irq_fn)(struct iframe *);
void irq_set(u32 irq, irq_fn fn);
/* ICW1-4 for both 8259As (edge, cascade on IRQ2, vectors 0x20/0x28,
   8086 mode, normal EOI), then the 16-bit mask (bit n masks IRQ n). */
void pic_remap(u16 mask);
void pic_eoi(u32 irq);
u8 cmos_read(u8 reg);
void cmos_write(u8 reg, u8 v);
/* Multiboot command line (kmain's info argument) contains word `w`. */
int cmdline_has(u32 mb_info, const char *w);
/* The number after "key=" on the command line, or `dflt`. */
u32 cmdline_num(u32 mb_info, const char *key, u32 dflt);

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (u64)hi << 32 | lo;
}
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
/* STI; HLT: the STI shadow makes "enable and wait" atomic, so an IRQ that
   arrives after the caller's check still wakes the HLT. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

/* PIT channel 0 timing regions, in assembly so their instruction counts
   are known: tick_stub is an IRQ0 gate entry of 6 instructions (INC ticks,
   PUSH, MOV, OUT EOI, POP, IRET). Each region zeroes `ticks`, programs
   channel 0 (mode 2, binary) with `divisor`, enables interrupts, waits,
   disables them and leaves in region_tsc the RDTSC delta across it:
   5 instructions (RDTSC, MOV, MOV, OUT loading the count, STI) + the wait
   + CLI + 6 per tick taken. timed_loop waits n iterations of DEC/JNZ (2n
   instructions) and returns the ticks; hlt_wait loops on HLT until `ticks`
   reaches k (the RDTSC delta then measures k PIT periods). */
extern volatile u32 ticks;
extern u32 region_tsc;
extern char tick_stub[];
u32 timed_loop(u32 n, u32 divisor);
void hlt_wait(u32 k, u32 divisor);
/* Stop channel 0 (a control word stops it until a new count is written)
   and take any IRQ0 latched before, so it is not counted later. */
void pit_quiet(void);

#endif
