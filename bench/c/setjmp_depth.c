/* The cost of one setjmp+longjmp with DEPTH frames between them:
 *   setjmp_depth DEPTH ITERATIONS
 * Each iteration does setjmp in main, descends DEPTH calls, and longjmps
 * back. Time it with ITERATIONS = N and 0; the difference over N is the cost
 * of one pair (bench/run does). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf target;

__attribute__((noinline)) static int descend(int depth, int acc) {
    /* Read after the call, so each level keeps a real frame: without it
     * clang turns the recursion into a loop and every depth costs one. */
    volatile int mine = depth;
    if (depth == 0)
        longjmp(target, acc | 1);
    return descend(depth - 1, acc * 3 + depth) + mine;
}

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 1;
    int iterations = argc > 2 ? atoi(argv[2]) : 1000;
    volatile long long sum = 0;
    for (volatile int i = 0; i < iterations; i++) {
        int r = setjmp(target);
        if (r == 0)
            descend(depth, i);
        else
            sum += r;
    }
    printf("%d %d %lld\n", depth, iterations, (long long)sum);
    return 0;
}
