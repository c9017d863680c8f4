/* Switches from the multiboot 32-bit entry to 64-bit long mode (PAE page
   tables identity-mapping the first GiB with 2 MiB pages, EFER.LME, CR0.PG,
   a far jump into a 64-bit code segment), then prints from 64-bit code,
   including a 64-bit computation, and exits with 0x15. Needs the system
   instructions (MOV CR, RDMSR/WRMSR, LGDT, far JMP). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .text
    .code32
    .globl _start
_start:
    mov $stack_top, %esp
    mov $0x3fb, %dx
    mov $0x03, %al
    out %al, %dx
    mov $msg32, %esi
    call puts32

    /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = 2 MiB page i. */
    mov $pdpt + 3, %eax
    mov %eax, pml4
    mov $pd + 3, %eax
    mov %eax, pdpt
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax        /* PG */
    mov %eax, %cr0
    lgdt gdtr
    ljmp $0x08, $long64

puts32:
    lodsb
    test %al, %al
    jz 2f
    mov %al, %bl
    mov $0x3fd, %dx
3:  in %dx, %al
    test $0x20, %al
    jz 3b
    mov %bl, %al
    mov $0x3f8, %dx
    out %al, %dx
    jmp puts32
2:  ret

    .code64
long64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $stack_top, %esp        /* zero-extends into RSP */
    lea msg64(%rip), %rsi
    call puts64
    movabs $0x0123456789abcdef, %rax
    movabs $0x1111111111111111, %rbx
    add %rbx, %rax               /* 0x123456789abcdf00 + ... */
    mov $16, %ecx
4:  rol $4, %rax
    mov %rax, %rbx
    and $15, %ebx
    lea hex(%rip), %rsi
    mov (%rsi,%rbx), %bl
    push %rax
    push %rcx
    mov %bl, %al
    call putc64
    pop %rcx
    pop %rax
    loop 4b
    mov $'\n', %al
    call putc64
    mov $0x15, %eax
    out %eax, $0xf4
5:  cli
    hlt
    jmp 5b

putc64:
    mov %al, %bl
    mov $0x3fd, %dx
6:  in %dx, %al
    test $0x20, %al
    jz 6b
    mov %bl, %al
    mov $0x3f8, %dx
    out %al, %dx
    ret

puts64:
    lodsb
    test %al, %al
    jz 7f
    call putc64
    jmp puts64
7:  ret

    .section .rodata
msg32: .asciz "32-bit: entering long mode\n"
msg64: .asciz "64-bit: hello from long mode, sum 0x"
hex:   .ascii "0123456789abcdef"
    .align 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
gdtr:
    .word gdtr - gdt - 1
    .long gdt

    .bss
    .align 4096
pml4: .space 4096
pdpt: .space 4096
pd:   .space 4096
    .space 4096
stack_top:
