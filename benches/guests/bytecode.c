/* (3) A small stack-machine bytecode interpreter, dispatched through a
   table of label addresses (GCC's computed goto): every bytecode ends in
   an indirect jump whose target depends on the next opcode -- the
   indirect-branch pattern of real interpreters. One unit = 100 turns of
   the bytecode loop below (~25 bytecodes each). */
#include "guest.h"

const char guest_name[] = "bytecode";

enum op { PUSHI, LOAD, STORE, ADD, SUB, MUL, XOR, AND, SHL, SHR, DUP, JZ, JNZ, HALT };

/* var0 = turns left, var1 = a, var2 = b. Each turn:
     a = a * 31 ^ var0;  b += a >> 7;  if (b & 3) a ^= b << 3;
   and the result is a ^ b. Operands follow their opcode. */
static const uint32_t program[] = {
    /*  0 */ LOAD, 1, PUSHI, 31, MUL, LOAD, 0, XOR, STORE, 1,
    /* 10 */ LOAD, 1, SHR, 7, LOAD, 2, ADD, STORE, 2,
    /* 19 */ LOAD, 2, PUSHI, 3, AND, JZ, 35,
    /* 26 */ LOAD, 1, LOAD, 2, SHL, 3, XOR, STORE, 1,
    /* 35 */ LOAD, 0, PUSHI, 1, SUB, DUP, STORE, 0, JNZ, 0,
    /* 45 */ LOAD, 1, LOAD, 2, XOR, HALT,
};

static uint64_t run(const uint32_t *code, uint64_t *vars)
{
    static void *const dispatch[] = {
        [PUSHI] = &&op_pushi, [LOAD] = &&op_load, [STORE] = &&op_store, [ADD] = &&op_add,
        [SUB] = &&op_sub,     [MUL] = &&op_mul,   [XOR] = &&op_xor,     [AND] = &&op_and,
        [SHL] = &&op_shl,     [SHR] = &&op_shr,   [DUP] = &&op_dup,     [JZ] = &&op_jz,
        [JNZ] = &&op_jnz,     [HALT] = &&op_halt,
    };
    uint64_t stack[16];
    uint64_t *sp = stack; /* next free slot */
    const uint32_t *pc = code;
#define NEXT goto *dispatch[*pc++]
    NEXT;
op_pushi:
    *sp++ = *pc++;
    NEXT;
op_load:
    *sp++ = vars[*pc++];
    NEXT;
op_store:
    vars[*pc++] = *--sp;
    NEXT;
op_add:
    sp--;
    sp[-1] += sp[0];
    NEXT;
op_sub:
    sp--;
    sp[-1] -= sp[0];
    NEXT;
op_mul:
    sp--;
    sp[-1] *= sp[0];
    NEXT;
op_xor:
    sp--;
    sp[-1] ^= sp[0];
    NEXT;
op_and:
    sp--;
    sp[-1] &= sp[0];
    NEXT;
op_shl:
    sp[-1] <<= *pc++;
    NEXT;
op_shr:
    sp[-1] >>= *pc++;
    NEXT;
op_dup:
    sp[0] = sp[-1];
    sp++;
    NEXT;
op_jz:
    pc = *--sp ? pc + 1 : code + *pc;
    NEXT;
op_jnz:
    pc = *--sp ? code + *pc : pc + 1;
    NEXT;
op_halt:
    return sp > stack ? sp[-1] : 0;
#undef NEXT
}

uint64_t work(uint64_t size)
{
    uint64_t vars[3] = {size * 100, 0x12345678, 0};
    return run(program, vars);
}
