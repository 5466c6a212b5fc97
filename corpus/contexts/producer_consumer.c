/* A producer/consumer pair: two coroutines that hand items through a
 * one-slot buffer, each switching straight to the other with swapcontext
 * (no scheduler between them). The consumer keeps a checksum and returns
 * when it has seen the end marker; uc_link brings main back. Same source
 * natively (glibc) and on wasm (runtime-shim/include/ucontext.h). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)
#define ITEMS 5000

static ucontext_t main_ctx, producer_ctx, consumer_ctx;
static int slot, slot_full;
static unsigned long long checksum;
static int consumed;

static void produce(void) {
    unsigned int x = 12345;
    for (int i = 0; i < ITEMS; i++) {
        x = x * 1103515245u + 12345u; /* a deterministic stream */
        slot = (int)((x >> 8) & 0xffff);
        slot_full = 1;
        swapcontext(&producer_ctx, &consumer_ctx);
    }
    slot = -1; /* end marker */
    slot_full = 1;
    swapcontext(&producer_ctx, &consumer_ctx);
    printf("producer resumed after the end: wrong\n");
}

static void consume(void) {
    for (;;) {
        if (!slot_full) {
            printf("consumer found the slot empty\n");
            return;
        }
        int item = slot;
        slot_full = 0;
        if (item < 0)
            return; /* uc_link: back to main */
        checksum = checksum * 31 + (unsigned long long)item;
        checksum %= 1000000007ull;
        if (++consumed % 1000 == 0)
            printf("consumed %d, checksum %llu\n", consumed, checksum);
        swapcontext(&consumer_ctx, &producer_ctx);
    }
}

static void make(ucontext_t *uc, void (*fn)(void), ucontext_t *link) {
    getcontext(uc);
    uc->uc_stack.ss_sp = malloc(STACK_SIZE);
    uc->uc_stack.ss_size = STACK_SIZE;
    uc->uc_link = link;
    makecontext(uc, fn, 0);
}

int main(void) {
    make(&producer_ctx, produce, &main_ctx);
    make(&consumer_ctx, consume, &main_ctx);
    swapcontext(&main_ctx, &producer_ctx);
    printf("done: %d items, checksum %llu\n", consumed, checksum);
    return 0;
}
