/* Resets the machine through the keyboard controller (command 0xfe to
   port 0x64) on its first boot, after counting the boot in RAM outside
   its image (0x500000, which a reset keeps). Without -no-reboot the
   machine resets, boots again, prints the second boot and exits with
   0x14; with -no-reboot the run stops at the reset with status 0. */
#include "lib.h"

#define BOOTS ((volatile u32 *)0x500000)
#define BOOT_MAGIC 0x6b626400u /* "\0dbk" + count */

void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    u32 boots = (*BOOTS & ~0xffu) == BOOT_MAGIC ? (*BOOTS & 0xff) + 1 : 1;
    *BOOTS = BOOT_MAGIC | boots;
    put_kv("boot", boots);
    if (boots == 1) {
        while (inb(0x64) & 0x02)
            ;
        outb(0x64, 0xfe);
        for (;;)
            ; /* the reset happens at the OUT */
    }
    exit_code(0x14);
}
