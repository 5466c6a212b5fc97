/* K nested checkpoints, all live at once, then unwound one level at a time:
 *   nested_checkpoints K ROUNDS
 * Each round recurses K levels, each level calling setjmp on its own jmp_buf
 * before descending; the deepest longjmps to its parent, whose handler
 * longjmps to its own parent, and so on to the top. So a round takes K
 * checkpoints with 1 to K live snapshots, and K - 1 restores.
 *
 * On wasm it prints the pages the memory grew by, from after the first
 * malloc (so the program's own allocator is set up) to the deepest point of
 * the last round: with --embed-runtime that is the runtime's memory, its
 * snapshots and buffer. bench/run times it and reads that line. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_LEVELS 4096

static jmp_buf bufs[MAX_LEVELS];
static int levels;
static unsigned long grown_pages;
static unsigned long start_pages;

static unsigned long pages(void) {
#ifdef __wasm__
    return __builtin_wasm_memory_size(0);
#else
    return 0;
#endif
}

__attribute__((noinline)) static void level(int n) {
    int r = setjmp(bufs[n]);
    if (r == 0) {
        if (n < levels - 1) {
            level(n + 1);
            return;
        }
        grown_pages = pages() - start_pages;
        longjmp(bufs[n - 1], 1);
    }
    if (n > 0)
        longjmp(bufs[n - 1], r + 1);
}

int main(int argc, char **argv) {
    levels = argc > 1 ? atoi(argv[1]) : 10;
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (levels < 2 || levels > MAX_LEVELS) {
        fprintf(stderr, "K between 2 and %d\n", MAX_LEVELS);
        return 2;
    }
    free(malloc(16));
    start_pages = pages();
    for (int i = 0; i < rounds; i++)
        level(0);
    printf("levels %d rounds %d grown_pages %lu\n", levels, rounds, grown_pages);
    return 0;
}
