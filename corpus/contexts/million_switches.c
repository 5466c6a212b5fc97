/* One million switches: two coroutines ping-pong 500,000 times each (plus
 * the switches into and out of them), each step folding a counter into a
 * checksum. Prints the checksum, never a time. Same source natively (glibc)
 * and on wasm (runtime-shim/include/ucontext.h). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)
#define ROUNDS 500000

static ucontext_t main_ctx, ping_ctx, pong_ctx;
static unsigned long long checksum = 1469598103934665603ull;
static long switches;

static void mix(unsigned long long v) {
    checksum ^= v;
    checksum *= 1099511628211ull;
}

static void ping(void) {
    for (long i = 0; i < ROUNDS; i++) {
        mix((unsigned long long)i * 2);
        switches++;
        swapcontext(&ping_ctx, &pong_ctx);
    }
}

static void pong(void) {
    for (long i = 0; i < ROUNDS; i++) {
        mix((unsigned long long)i * 2 + 1);
        switches++;
        swapcontext(&pong_ctx, &ping_ctx);
    }
}

static void make(ucontext_t *uc, void (*fn)(void)) {
    getcontext(uc);
    uc->uc_stack.ss_sp = malloc(STACK_SIZE);
    uc->uc_stack.ss_size = STACK_SIZE;
    uc->uc_link = &main_ctx;
    makecontext(uc, fn, 0);
}

int main(void) {
    make(&ping_ctx, ping);
    make(&pong_ctx, pong);
    /* ping returns after its last switch to pong is answered: uc_link = main */
    swapcontext(&main_ctx, &ping_ctx);
    printf("switches %ld\n", switches);
    printf("checksum %016llx\n", checksum);
    return 0;
}
