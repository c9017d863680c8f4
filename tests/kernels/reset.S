/* Triple-faults on its first boot (an empty IDT, then INT3) after counting
   the boot in RAM outside its image (0x500000, which a reset keeps).
   Without -no-reboot the machine resets, boots again, prints "rebooted"
   and exits with 0x16; with -no-reboot the run stops at the triple fault
   with status 0. Needs the system instructions (LIDT, exception delivery
   in 32-bit mode). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003
#define COUNTER 0x500000

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .text
    .globl _start
_start:
    mov $0x3fb, %dx
    mov $0x03, %al
    out %al, %dx
    mov $msg_boot, %esi
    call puts
    mov COUNTER, %eax
    add $'0', %al
    call putc
    mov $'\n', %al
    call putc
    cmpl $0, COUNTER
    jne 1f
    incl COUNTER
    lidt idtr_empty
    int3
1:  mov $msg_again, %esi
    call puts
    mov $0x16, %eax
    out %eax, $0xf4
2:  cli
    hlt
    jmp 2b

putc:
    mov %al, %bl
    mov $0x3fd, %dx
3:  in %dx, %al
    test $0x20, %al
    jz 3b
    mov %bl, %al
    mov $0x3f8, %dx
    out %al, %dx
    ret

puts:
    lodsb
    test %al, %al
    jz 4f
    call putc
    jmp puts
4:  ret

    .section .rodata
msg_boot:  .asciz "boot "
msg_again: .asciz "rebooted\n"
    .align 4
idtr_empty:
    .word 0
    .long 0
