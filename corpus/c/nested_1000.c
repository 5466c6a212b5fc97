/* 1,000 nested setjmp levels: a recursion 1,000 deep where every level arms
 * its own jmp_buf and then descends. The deepest level longjmps to its
 * parent's jmp_buf; every handler then longjmps to its own parent, so the
 * stack is unwound outward one level at a time, 999 jumps in all, until the
 * top level's handler returns. A second pass does the same with a handler
 * that first re-arms its own jmp_buf and jumps to it once before moving
 * outward, and a third pass jumps from the bottom straight to the top. */
#include <setjmp.h>
#include <stdio.h>

#define LEVELS 1000

static jmp_buf bufs[LEVELS];
static unsigned long long checksum = 1;
static unsigned long visits;
static int mode;

static void mix(unsigned long long v) {
    checksum = (checksum * 31u + v) % 1000000007u;
}

static void level(int n) {
    int r = setjmp(bufs[n]);
    if (r == 0) {
        mix((unsigned long long)n);
        if (n < LEVELS - 1) {
            level(n + 1);
            printf("not reached: level %d returned\n", n);
            return;
        }
        /* the bottom: start the walk outward */
        if (mode == 2)
            longjmp(bufs[0], LEVELS + 1);
        longjmp(bufs[n - 1], n % 250 + 1);
    }
    /* handler of level n: reached from level n + 1 (or from the bottom) */
    visits++;
    mix((unsigned long long)(r * 7 + n));
    if (mode == 1) {
        /* re-arm this level's jmp_buf and take one round trip through it */
        volatile int again = 0;
        int r2 = setjmp(bufs[n]);
        if (r2 == 0)
            longjmp(bufs[n], 3);
        again = r2;
        mix((unsigned long long)again);
    }
    if (n > 0)
        longjmp(bufs[n - 1], n % 250 + 1);
}

int main(void) {
    for (mode = 0; mode < 3; mode++) {
        visits = 0;
        level(0);
        printf("pass %d: handlers run %lu, checksum %llu\n", mode, visits, checksum);
    }
    return 0;
}
