/* The cost of one context switch made DEPTH calls down, on both sides:
 *   switch_depth DEPTH ITERATIONS
 * Builds natively with glibc's <ucontext.h> and for wasm with ours
 * (runtime-shim/include/ucontext.h over WASIX contexts). Main and a worker
 * context each descend DEPTH calls and swapcontext to the other at the
 * bottom; an iteration is two switches. Time it with ITERATIONS = N and 0:
 * the difference over 2N is the cost of one switch (bench/run does). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

static ucontext_t main_uc, worker_uc;
static int depth;
static volatile long long work;

/* Each level keeps a real frame (a volatile read after the call), so the
 * unwind and rewind of a switch really cross DEPTH frames. */
__attribute__((noinline)) static void descend(int level, ucontext_t *from, ucontext_t *to) {
    volatile int mine = level;
    if (level == 0) {
        swapcontext(from, to);
        return;
    }
    descend(level - 1, from, to);
    work += mine;
}

static void worker(void) {
    for (;;)
        descend(depth, &worker_uc, &main_uc);
}

int main(int argc, char **argv) {
    depth = argc > 1 ? atoi(argv[1]) : 1;
    int iterations = argc > 2 ? atoi(argv[2]) : 1000;
    static char stack[256 * 1024];
    getcontext(&worker_uc);
    worker_uc.uc_stack.ss_sp = stack;
    worker_uc.uc_stack.ss_size = sizeof stack;
    worker_uc.uc_link = NULL;
    makecontext(&worker_uc, worker, 0);
    for (int i = 0; i < iterations; i++)
        descend(depth, &main_uc, &worker_uc);
    printf("%d %d %lld\n", depth, iterations, (long long)work);
    return 0;
}
