/* longjmp through calls made by function pointer: a table of operations
 * that call each other indirectly, one of which jumps out from deep inside
 * the chain. */
#include <setjmp.h>
#include <stdio.h>

typedef int (*op_fn)(unsigned n, int step);

static jmp_buf escape;
static int calls;

static int op_a(unsigned n, int step);
static int op_b(unsigned n, int step);
static int op_c(unsigned n, int step);
static const op_fn ops[3] = {op_a, op_b, op_c};

static int dispatch(unsigned n, int step) {
    calls++;
    return ops[(n + (unsigned)step) % 3](n, step + 1);
}

static int op_a(unsigned n, int step) { return dispatch((n * 3 + 1) & 0xfffff, step) + 1; }
static int op_b(unsigned n, int step) { return dispatch(n / 2 + (unsigned)step, step) ^ 5; }
static int op_c(unsigned n, int step) {
    if (step >= 40)
        longjmp(escape, (int)(n % 1000) + 1);
    return dispatch(n + 7, step) - 2;
}

/* Called only through a volatile pointer, so it stays an indirect call. */
static int run(unsigned seed) {
    int r = setjmp(escape);
    if (r != 0)
        return r;
    dispatch(seed, 0);
    return -1; /* not reached */
}

int main(void) {
    int (*volatile runner)(unsigned) = run;
    for (unsigned seed = 1; seed <= 5; seed++) {
        calls = 0;
        int r = runner(seed);
        printf("seed %u: escaped with %d after %d indirect calls\n", seed, r, calls);
    }
    return 0;
}
