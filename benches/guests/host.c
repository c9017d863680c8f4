/* Host side of a benchmark guest: `host-<name> N` prints the line the
   kernel prints for size=N, computed by the host CPU. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include "guest.h"

int main(int argc, char **argv)
{
    uint64_t size = argc > 1 ? strtoull(argv[1], 0, 10) : 1;
    if (!size)
        size = 1;
    printf("%s size=%" PRIu64 " checksum=0x%016" PRIx64 "\n", guest_name, size, work(size));
    return 0;
}
