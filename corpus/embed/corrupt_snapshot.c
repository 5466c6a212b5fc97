/* A wild write over the embedded runtime's snapshot store, then a longjmp:
 * the runtime must notice (its hash no longer matches) and trap in
 * __wasm_rewind_corrupt_snapshot instead of rewinding garbage frames.
 *
 * The store is where the runtime's first memory.grow put it: a chunk of 4
 * pages at the end of memory once the first setjmp has returned (the
 * program's malloc, set up just before, grew memory first). In the chunk:
 * the 16-byte header and 16 KiB buffer, 1024 buckets of 4 bytes, 64 slots
 * of 40 bytes (one saved global), the 8 KiB displaced ring, 8 bytes of
 * scratch for the saved global and the 12 KiB table of last slots, then the
 * frame nodes, which this overwrites (transform/src/embed/runtime.wat).
 * Only meaningful with --embed-runtime. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static jmp_buf target;

int main(void) {
    if (setjmp(target) != 0) {
        puts("rewound from a corrupt snapshot");
        return 1;
    }
    unsigned long chunk = __builtin_wasm_memory_size(0) * 65536ul - 4 * 65536ul;
    unsigned long nodes = 16 + 16384 + 1024 * 4 + 64 * 40 + 1024 * 8 + 8 + 1024 * 12;
    memset((char *)(chunk + nodes), 0xa5, 8192);
    puts("scribbled over the store");
    fflush(stdout);
    longjmp(target, 1);
}
