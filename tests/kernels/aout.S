/* An a.out-kludge kernel (multiboot flag 16) in position-independent
   assembly. It is linked at 0x200000 (its ELF program headers say so), but
   its multiboot header asks for 0x100000: a loader that (rightly) prefers
   the header runs it at 0x100000 and it prints which address it runs at;
   one that used the ELF headers would jump to empty memory. Exits with
   0x14. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00010000
#define LOAD 0x100000
#define LINKED 0x200000
#define AT(sym) (LOAD + (sym) - LINKED)

    .text
    .globl _start
hdr:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long AT(hdr)       /* header_addr */
    .long LOAD          /* load_addr */
    .long AT(load_end)  /* load_end_addr */
    .long AT(bss_end)   /* bss_end_addr */
    .long AT(_start)    /* entry_addr */

_start:
    mov $0x3fb, %dx     /* LCR: 8N1 */
    mov $0x03, %al
    out %al, %dx
    call 1f
1:  pop %ebx            /* EBX = where label 1 really is */
    lea (msg - 1b)(%ebx), %esi
2:  lodsb
    test %al, %al
    jz 3f
    call putc
    jmp 2b
3:  mov %ebx, %eax               /* where the image starts: */
    sub $(1b - LINKED), %eax      /* 0x00100000 when loaded per the header */
    mov $8, %ecx
4:  rol $4, %eax
    push %eax
    and $15, %eax
    add $'0', %al
    cmp $'9', %al
    jbe 5f
    add $('a' - '0' - 10), %al
5:  call putc
    pop %eax
    loop 4b
    mov $'\n', %al
    call putc
    mov $0x14, %eax
    out %eax, $0xf4
6:  cli
    hlt
    jmp 6b

putc:
    mov %eax, %edi
    mov $0x3fd, %dx
7:  in %dx, %al
    test $0x20, %al
    jz 7b
    mov %edi, %eax
    mov $0x3f8, %dx
    out %al, %dx
    ret

msg: .asciz "a.out kludge kernel loaded at 0x"
load_end:
    .bss
    .space 64
bss_end:
