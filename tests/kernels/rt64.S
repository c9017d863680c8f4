/* Entry and low-level part of the 64-bit test-kernel runtime (see rt64.h):
   multiboot header, the 32-bit entry that switches to long mode (PAE,
   1 GiB identity-mapped with user-accessible 2 MiB pages, EFER.LME/SCE/NXE,
   CR0.PG/WP/MP/NE with EM/TS clear, CR4.OSFXSR/OSXMMEXCPT), the GDT, and
   256 interrupt stubs that push (error code, vector) and call trap().
   Assembled as x86-64 ELF; the link result is turned into ELF32 with
   objcopy since multiboot loaders only take 32-bit ELF. */
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
    mov %eax, mb_magic
    mov %ebx, mb_info
    /* PML4[0] -> PDPT -> PD; PD[i] = 2 MiB page i, present+write+user. */
    movl $pdpt + 7, pml4
    movl $pd + 7, pdpt
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x87, %eax
    mov %eax, pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    mov $0x620, %eax            /* PAE | OSFXSR | OSXMMEXCPT */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER */
    rdmsr
    or $0x901, %eax             /* SCE | LME | NXE */
    wrmsr
    mov %cr0, %eax
    and $~0xc, %eax             /* EM, TS off */
    or $0x80010023, %eax        /* PG | WP | NE | MP | PE */
    mov %eax, %cr0
    lgdt gdtr
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %rsp
    call rt_init
    call kmain
    mov $0x3e, %eax             /* kmain returned: not expected */
    out %eax, $0xf4
2:  cli
    hlt
    jmp 2b

/* Interrupt stubs, 16 bytes apart: stub v is at isr_stubs + 16 * v. The
   vectors with a CPU-pushed error code skip the dummy push. */
    .align 16
    .globl isr_stubs
isr_stubs:
    .set v, 0
    .rept 256
    .align 16
    .if (v == 8) || (v >= 10 && v <= 14) || (v == 17) || (v == 21) || (v == 29) || (v == 30)
    .else
    pushq $0
    .endif
    .byte 0x68
    .long v
    jmp isr_common
    .set v, v + 1
    .endr

isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    cld
    call trap
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

/* u64 user_call(void (*fn)(void), u64 user_rsp, u64 rflags): run fn in
   ring 3 (CS 0x2b, SS 0x23) through IRETQ. Comes back when a handler calls
   user_return(), which resumes at user_resume with the kernel stack saved
   here; the value it passes is the result. */
    .globl user_call, user_resume, kernel_rsp
user_call:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, kernel_rsp(%rip)
    pushq $0x23
    push %rsi
    push %rdx
    pushq $0x2b
    push %rdi
    iretq
user_resume:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    .data
    .align 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff    /* 0x10 kernel data */
    .quad 0x00cffa000000ffff    /* 0x18 user code, 32-bit */
    .quad 0x00cff2000000ffff    /* 0x20 user data */
    .quad 0x00affa000000ffff    /* 0x28 user code, 64-bit */
    .quad 0x00cf9a000000ffff    /* 0x30 kernel code, 32-bit (compatibility mode) */
    .quad 0, 0                  /* 0x38 TSS, filled by rt_init */
    .fill 7, 8, 0               /* 0x48.. free for the tests */
gdt_end:
    .globl gdtr
gdtr:
    .word gdt_end - gdt - 1
    .quad gdt

kernel_rsp: .quad 0
    .globl mb_magic, mb_info
mb_magic: .long 0
mb_info:  .long 0

    .bss
    .align 4096
    .globl pml4, pdpt, pd, stack_top
pml4: .space 4096
pdpt: .space 4096
pd:   .space 4096
    .space 16384
stack_top:
