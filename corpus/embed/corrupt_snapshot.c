/* A wild write over the embedded runtime's snapshot store, then a longjmp:
 * the runtime must notice (its hash no longer matches) and trap in
 * __wasm_rewind_corrupt_snapshot instead of rewinding garbage frames.
 *
 * The store is where the runtime's memory.grow put it: the memory's size
 * before the first setjmp. Its slot data (the arena) starts after the
 * 16-byte header, the 1 MiB buffer and 1024 slots of 32 bytes
 * (transform/src/embed/runtime.wat). Only meaningful with --embed-runtime. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static jmp_buf target;

int main(void) {
    unsigned long region = __builtin_wasm_memory_size(0) * 65536ul;
    if (setjmp(target) != 0) {
        puts("rewound from a corrupt snapshot");
        return 1;
    }
    memset((char *)(region + 16 + (1ul << 20) + 32 * 1024), 0xa5, 4096);
    puts("scribbled over the store");
    fflush(stdout);
    longjmp(target, 1);
}
