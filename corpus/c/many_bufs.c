/* 64 jmp_bufs live at once, one per frame of a 64-deep recursion. The
 * deepest frame jumps to a chosen level; that level descends again (re-arming
 * the jmp_bufs below it) and the new bottom jumps to the next target. At the
 * end every level is visited on the way out, deepest first. */
#include <setjmp.h>
#include <stdio.h>

#define LEVELS 64

static jmp_buf bufs[LEVELS];
static const int targets[] = {63, 40, 52, 10, 11, 0, 63, 31, 62, 1};
static int next_target;
static unsigned long long checksum;
static int unwinding_all;

static void level(int i);

static void bottom(void) {
    if (next_target < (int)(sizeof targets / sizeof targets[0])) {
        int t = targets[next_target++];
        longjmp(bufs[t], 1000 + t);
    }
    /* Done: visit every level once more, deepest first. */
    unwinding_all = 1;
    longjmp(bufs[LEVELS - 1], 1);
}

static void level(int i) {
    int r = setjmp(bufs[i]);
    if (r == 0) {
        if (i + 1 < LEVELS)
            level(i + 1);
        else
            bottom();
        return;
    }
    checksum = checksum * 131 + (unsigned long long)(r + i);
    if (unwinding_all) {
        if (i > 0)
            longjmp(bufs[i - 1], i);
        return;
    }
    printf("level %d got %d\n", i, r);
    if (i + 1 < LEVELS)
        level(i + 1);
    else
        bottom();
}

int main(void) {
    level(0);
    printf("all levels visited, checksum %llu\n", checksum % 1000000007ull);
    return 0;
}
