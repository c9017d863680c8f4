/* The interface of one benchmark guest's core: plain C with no runtime
   dependencies, compiled twice with the same gcc -O2 -- into a multiboot
   kernel (kmain.c on the tests/kernels rt64 runtime) and into a host
   program (host.c) -- so the host CPU is the oracle of the checksum. */
#ifndef GUEST_H
#define GUEST_H

#include <stdint.h>

/* The guest's name, printed with the checksum. */
extern const char guest_name[];

/* Do `size` units of work (the guest defines the unit); returns a checksum
   of everything computed, so no work can be optimised away. */
uint64_t work(uint64_t size);

#endif
