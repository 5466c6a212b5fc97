/* Generators: two coroutines yield values one at a time (Fibonacci numbers
 * and squares) to a caller that interleaves them, through swapcontext; each
 * generator's function returns at the end and uc_link brings the caller
 * back, which sees a "done" flag. Same source natively (glibc) and on wasm
 * (runtime-shim/include/ucontext.h). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)

struct generator {
    ucontext_t caller;
    ucontext_t self;
    long value;
    int done;
    int limit;
};

/* Set before each generator starts: makecontext passes ints only, and a
 * pointer does not fit in one on x86-64. */
static struct generator *starting;

static void yield(struct generator *g, long v) {
    g->value = v;
    swapcontext(&g->self, &g->caller);
}

static void fibonacci(void) {
    struct generator *g = starting;
    long a = 0, b = 1;
    for (int i = 0; i < g->limit; i++) {
        yield(g, a);
        long t = a + b;
        a = b;
        b = t;
    }
    g->done = 1;
}

static void squares(void) {
    struct generator *g = starting;
    for (long i = 1; i <= g->limit; i++)
        yield(g, i * i);
    g->done = 1;
}

static void start(struct generator *g, void (*fn)(void), int limit) {
    g->done = 0;
    g->limit = limit;
    getcontext(&g->self);
    g->self.uc_stack.ss_sp = malloc(STACK_SIZE);
    g->self.uc_stack.ss_size = STACK_SIZE;
    g->self.uc_link = &g->caller;
    makecontext(&g->self, fn, 0);
}

/* Returns 0 when the generator has no more values. */
static int next(struct generator *g, long *out) {
    if (g->done)
        return 0;
    starting = g;
    swapcontext(&g->caller, &g->self);
    if (g->done)
        return 0;
    *out = g->value;
    return 1;
}

int main(void) {
    struct generator fib, sq;
    long v, sum = 0;
    int more_fib = 1, more_sq = 1;
    start(&fib, fibonacci, 20);
    start(&sq, squares, 12);
    while (more_fib || more_sq) {
        if (more_fib && (more_fib = next(&fib, &v))) {
            printf("fib %ld\n", v);
            sum += v;
        }
        if (more_sq && (more_sq = next(&sq, &v))) {
            printf("sq %ld\n", v);
            sum += v;
        }
    }
    printf("sum %ld\n", sum);
    free(fib.self.uc_stack.ss_sp);
    free(sq.self.uc_stack.ss_sp);
    return 0;
}
