#!/bin/sh
# Build one C test kernel by hand: build.sh NAME OUTDIR (the tests do the same).
set -e
d=$(dirname "$0")
CFLAGS="-m32 -march=i686 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables -mgeneral-regs-only -fno-builtin -Wall -Werror"
gcc $CFLAGS -c "$d/boot.S" -o "$2/boot.o"
gcc $CFLAGS -c "$d/lib.c" -o "$2/lib.o"
gcc $CFLAGS -c "$d/$1.c" -o "$2/$1.o"
ld -m elf_i386 -nostdlib -T "$d/kernel.ld" -o "$2/$1.elf" "$2/boot.o" "$2/lib.o" "$2/$1.o"
