/* Entry of the C test kernels: a multiboot v1 header (ELF kernel, so no
   address fields: flag 16 clear), a stack, then kmain(magic, info). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, want memory info */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    cld
    push %ebx
    push %eax
    call kmain
1:  hlt
    jmp 1b

    .bss
    .align 16
    .space 16384
stack_top:
