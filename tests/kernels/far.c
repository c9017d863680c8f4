/* Far transfers between 64-bit code (CS 0x08) and compatibility-mode code
   (CS 0x30): far JMP, far CALL and far RET (with and without an
   immediate) in both directions, and a far CALL/RET with 64-bit operands.
   The 32-bit code records what it sees (CS, the width of a push, the
   return address the far call pushed); the kernel prints it. Exits with
   0x23. */
#include "rt64.h"

u32 o_cs32, o_push32, o_ret_cs, o_ret_ip, o_cs64, o_push64;
u64 o_q_ip, o_q_cs, o_rsp_delta;
extern char far_jmp[], far_call[], far_call_q[], far_ret_q[], far_ret_imm[], call_from_32[],
    fc_ret[], fcq_ret[], c32_ret[];

__asm__(".text\n"
        /* 64 -> 32 by JMP m16:32; back by JMP ptr16:32. */
        "far_jmp:\n"
        " ljmp *fj_ptr(%rip)\n"
        "fj_ptr: .long fj32\n .word 0x30\n"
        ".code32\n"
        "fj32:\n"
        " mov %cs, o_cs32\n"
        " mov %esp, %eax\n push %eax\n sub %esp, %eax\n pop %ecx\n mov %eax, o_push32\n"
        " ljmp $0x08, $fj64\n"
        ".code64\n"
        "fj64:\n"
        " mov %cs, o_cs64(%rip)\n"
        " mov %rsp, %rax\n push %rax\n sub %rsp, %rax\n pop %rcx\n mov %eax, o_push64(%rip)\n"
        " ret\n"

        /* 64 -> 32 by CALL m16:32 (pushes 32-bit CS:EIP); back by LRET. */
        "far_call:\n"
        " lcall *fc_ptr(%rip)\n"
        "fc_ret:\n"
        " mov %cs, o_cs64(%rip)\n"
        " ret\n"
        "fc_ptr: .long fc32\n .word 0x30\n"
        ".code32\n"
        "fc32:\n"
        " mov %cs, o_cs32\n"
        " mov (%esp), %eax\n mov %eax, o_ret_ip\n"
        " mov 4(%esp), %eax\n mov %eax, o_ret_cs\n"
        " lret\n"
        ".code64\n"

        /* 64 -> 64 by CALL m16:64 (REX.W: 8-byte pushes); back by LRETQ. */
        "far_call_q:\n"
        " rex.W lcall *fcq_ptr(%rip)\n"
        "fcq_ret:\n"
        " ret\n"
        "fcq_ptr: .quad fcq64\n .word 0x08\n"
        "fcq64:\n"
        " mov (%rsp), %rax\n mov %rax, o_q_ip(%rip)\n"
        " mov 8(%rsp), %rax\n mov %rax, o_q_cs(%rip)\n"
        " lretq\n"

        /* 64 -> 32 by LRETQ of a built frame; back by JMP ptr16:32. */
        "far_ret_q:\n"
        " pushq $0x30\n"
        " lea fj32(%rip), %rax\n push %rax\n"
        " lretq\n"

        /* LRET imm16 in 32-bit code drops the caller's argument. */
        "far_ret_imm:\n"
        " mov %rsp, %rbx\n"
        " pushq $0x1234\n"
        " lcall *fri_ptr(%rip)\n"
        " sub %rsp, %rbx\n mov %rbx, o_rsp_delta(%rip)\n"
        " ret\n"
        "fri_ptr: .long fri32\n .word 0x30\n"
        ".code32\n"
        "fri32:\n"
        " mov 8(%esp), %eax\n mov %eax, o_ret_ip\n"
        " lret $8\n"
        ".code64\n"

        /* 32 -> 64 by CALL ptr16:32; back by a 32-bit LRET in 64-bit code. */
        "call_from_32:\n"
        " lcall *c32_ptr(%rip)\n"
        " ret\n"
        "c32_ptr: .long c32\n .word 0x30\n"
        ".code32\n"
        "c32:\n"
        " lcall $0x08, $c64\n"
        "c32_ret:\n"
        " mov %cs, o_cs32\n"
        " lret\n"
        ".code64\n"
        "c64:\n"
        " mov %cs, o_cs64(%rip)\n"
        " mov (%rsp), %eax\n mov %eax, o_ret_ip(%rip)\n"
        " mov 4(%rsp), %eax\n mov %eax, o_ret_cs(%rip)\n"
        " lretl\n");

static void clear(void)
{
    o_cs32 = o_push32 = o_ret_cs = o_ret_ip = o_cs64 = o_push64 = 0;
    o_q_ip = o_q_cs = o_rsp_delta = 0;
}

static void run(const char *title, char *fn)
{
    puts(title);
    putc('\n');
    clear();
    ((void (*)(void))fn)();
}

void kmain(void)
{
    puts("far transfers\n");
    run("JMP m16:32 to 32-bit code, JMP ptr16:32 back", far_jmp);
    put_kv("  32-bit cs", o_cs32);
    put_kv("  32-bit push bytes", o_push32);
    put_kv("  64-bit cs", o_cs64);
    put_kv("  64-bit push bytes", o_push64);

    run("CALL m16:32 to 32-bit code, LRET back", far_call);
    put_kv("  32-bit cs", o_cs32);
    put_kv("  pushed cs", o_ret_cs);
    puts("  pushed eip=");
    put_rel("fc_ret", o_ret_ip, (u64)fc_ret);
    putc('\n');
    put_kv("  64-bit cs after", o_cs64);

    run("CALL m16:64 (REX.W) to 64-bit code, LRETQ back", far_call_q);
    put_kv("  pushed cs", o_q_cs);
    puts("  pushed rip=");
    put_rel("fcq_ret", o_q_ip, (u64)fcq_ret);
    putc('\n');

    run("LRETQ to 32-bit code, JMP ptr16:32 back", far_ret_q);
    put_kv("  32-bit cs", o_cs32);
    put_kv("  64-bit cs", o_cs64);

    run("CALL m16:32 with an argument, LRET 8 in 32-bit code", far_ret_imm);
    put_kv("  argument seen", o_ret_ip);
    put_kv("  rsp change", o_rsp_delta);

    run("CALL ptr16:32 from 32-bit to 64-bit code, 32-bit LRET back", call_from_32);
    put_kv("  64-bit cs", o_cs64);
    put_kv("  pushed cs", o_ret_cs);
    puts("  pushed eip=");
    put_rel("c32_ret", o_ret_ip, (u64)c32_ret);
    putc('\n');
    put_kv("  32-bit cs after", o_cs32);
    exit_code(0x23);
}
