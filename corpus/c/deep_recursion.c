/* longjmp from the bottom of a recursion 1000 frames deep (each frame holds
 * locals live across the call), several times, to checkpoints taken at
 * different depths. The jump discards every frame in between. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf target;
static long long path_sum;
static volatile int jumping = 1; /* always 1; keeps gcc from calling descend endless */

static long long descend(int depth, int limit, long long acc) {
    long long mine = acc * 31 + depth;
    path_sum += mine & 0xffff;
    if (depth >= limit) {
        if (jumping)
            longjmp(target, depth % 251 + 1);
        return mine;
    }
    /* Locals used after the call keep the frame non-trivial. */
    long long below = descend(depth + 1, limit, mine);
    return below + mine + depth;
}

/* Takes the checkpoint `start` frames below main. */
static int arm_and_go(int start, int limit) {
    if (start > 0)
        return arm_and_go(start - 1, limit) + 1;
    int r = setjmp(target);
    if (r == 0)
        descend(0, limit, 1);
    return r;
}

int main(void) {
    static const int limits[] = {1000, 999, 10, 1000, 0, 500};
    for (int i = 0; i < 6; i++) {
        path_sum = 0;
        int r = arm_and_go(i * 3, limits[i]);
        printf("depth %d (armed %d below): setjmp returned %d, path sum %lld\n",
               limits[i], i * 3, r - i * 3, path_sum);
    }
    return 0;
}
