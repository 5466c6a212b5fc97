/* setjmp in a loop of 100000 iterations, each taking a checkpoint and
 * jumping back to it once (from a helper, with a value derived from the
 * iteration), so 100000 checkpoints and 100000 restores. Prints a checksum
 * of the values setjmp returned. */
#include <setjmp.h>
#include <stdio.h>

#define ITERATIONS 100000

static jmp_buf env;

static void jump(int val) { longjmp(env, val); }

int main(void) {
    volatile unsigned long long checksum = 0;
    volatile int i;
    for (i = 0; i < ITERATIONS; i++) {
        int r = setjmp(env);
        if (r == 0)
            jump(i % 997 + 1);
        checksum = checksum * 1000003ull + (unsigned long long)(r * (i + 1));
    }
    printf("%d iterations, checksum %llu\n", ITERATIONS, checksum);
    return 0;
}
