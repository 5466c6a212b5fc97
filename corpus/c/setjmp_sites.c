/* Where a jump lands, when one function has several setjmp calls and several
 * live invocations: the cases an exceptions lowering must tell apart by
 * invocation and by call, not only by jmp_buf.
 *
 * - two setjmp calls in one function, both armed, and a jump to the first
 *   after the second ran;
 * - a recursive function whose every level arms its own jmp_buf, with jumps
 *   from the bottom to a level in the middle, passing through the levels
 *   below it (each of them catches the jump and must pass it on);
 * - a jump through a function pointer, and from inside qsort's callback;
 * - setjmp re-armed in a loop, the count kept in a volatile local. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf first, second;

static void jump_to(jmp_buf *where, int value) {
    longjmp(*where, value);
}

static int two_sites(int n) {
    volatile int hits = 0;
    int a = setjmp(first);
    hits++;
    if (a != 0) {
        printf("two_sites: first returned %d after %d hits\n", a, hits);
        return a + hits;
    }
    int b = setjmp(second);
    hits++;
    if (b == 0) {
        void (*jump)(jmp_buf *, int) = jump_to;
        jump(n % 2 ? &first : &second, 10 + n);
    }
    printf("two_sites: second returned %d after %d hits\n", b, hits);
    jump_to(&first, 20 + b);
    return -1;
}

static jmp_buf levels[12];

static void bottom(int target) {
    printf("bottom: jumping to level %d\n", target);
    longjmp(levels[target], 100 + target);
}

static int level(int depth, int target) {
    volatile int here = depth;
    int r = setjmp(levels[depth]);
    if (r != 0) {
        printf("level %d caught %d\n", here, r);
        return r;
    }
    if (depth == 11) {
        bottom(target);
    }
    int got = level(depth + 1, target);
    printf("level %d returns %d\n", depth, got + 1);
    return got + 1;
}

static jmp_buf sort_env;
static int compared;

static int cmp(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    if (++compared == 7) {
        longjmp(sort_env, compared);
    }
    return (a > b) - (a < b);
}

int main(void) {
    printf("two_sites(1) = %d\n", two_sites(1));
    printf("two_sites(2) = %d\n", two_sites(2));
    printf("level(0, 5) = %d\n", level(0, 5));
    printf("level(0, 0) = %d\n", level(0, 0));
    printf("level(0, 11) = %d\n", level(0, 11));

    int values[] = {9, 3, 7, 1, 8, 2, 6, 4, 5, 0};
    int r = setjmp(sort_env);
    if (r == 0) {
        qsort(values, 10, sizeof values[0], cmp);
        puts("qsort finished");
    } else {
        printf("qsort left by longjmp after %d comparisons\n", r);
    }

    volatile int rounds = 0;
    jmp_buf again;
    int v = setjmp(again);
    rounds++;
    if (rounds < 1000) {
        longjmp(again, rounds);
    }
    printf("loop: %d rounds, last value %d\n", rounds, v);
    return 0;
}
