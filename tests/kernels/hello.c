/* Prints a greeting over COM1 (polling LSR), then exits through the
   debug-exit port with 0x10 (process status 0x21). */
#include "lib.h"

void kmain(u32 magic, u32 info)
{
    (void)info;
    serial_init();
    puts("Hello from a multiboot kernel!\n");
    put_kv("magic", magic);
    exit_code(0x10);
}
