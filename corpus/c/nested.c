/* Nested setjmp: an outer and an inner jmp_buf live at once, in two frames.
 * Jumps to the inner one (the outer stays valid), then to the outer one from
 * below the inner frame, then re-arms the inner one from the same frame. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf outer, inner;
static int trace[16];
static int ntrace;

static void note(int v) { trace[ntrace++] = v; }

static void thrower(int which, int val) {
    note(100 + which * 10 + val);
    if (which == 0)
        longjmp(inner, val);
    longjmp(outer, val);
}

static int middle(int round) {
    int r = setjmp(inner);
    if (r == 0) {
        note(1);
        thrower(0, round + 1);
    }
    note(r);
    printf("middle: round %d inner returned %d\n", round, r);
    if (round == 1)
        thrower(1, 7);
    return r * 2;
}

int main(void) {
    volatile int rounds = 0;
    int r = setjmp(outer);
    if (r == 0) {
        int a = middle(rounds);
        printf("main: middle gave %d\n", a);
        rounds++;
        a = middle(rounds);
        printf("not reached %d\n", a);
    } else {
        printf("main: outer returned %d after %d rounds\n", r, rounds);
    }
    printf("trace:");
    for (int i = 0; i < ntrace; i++)
        printf(" %d", trace[i]);
    printf("\n");
    return 0;
}
