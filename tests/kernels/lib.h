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

#endif
