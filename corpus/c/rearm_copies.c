/* One jmp_buf armed again and again while the program keeps a copy of an
 * earlier arming, as exception libraries do around a nested setjmp:
 *
 * 1. armed at the same place with the same state each time (a setjmp in a
 *    loop: the embedded runtime keeps the snapshot it already holds), and
 *    every third jump goes through the copy;
 * 2. armed with a different state each time (a value live across setjmp
 *    changes), every fourth jump through the copy of an earlier arming;
 * 3. armed at one place, then at another (the first snapshot displaced),
 *    the copy put back, and armed at the first place again with the same
 *    state: the jmp_buf and the copy both land there.
 *
 * Every copy was armed in a frame that is still live, so each jump is
 * defined C. Prints what each part's setjmp returned. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static jmp_buf current, copy;

__attribute__((noinline)) static void jump(jmp_buf b, int v) { longjmp(b, v); }

__attribute__((noinline)) static int same_state(int rounds) {
    volatile int sum = 0;
    for (volatile int i = 0; i < rounds; i++) {
        int r = setjmp(current);
        if (r == 0) {
            if (i == 0)
                memcpy(copy, current, sizeof copy);
            jump(i % 3 == 2 ? copy : current, i % 11 + 1);
        }
        sum = sum * 31 + r;
    }
    return sum;
}

__attribute__((noinline)) static int changing_state(int rounds) {
    volatile int sum = 0;
    for (volatile int i = 0; i < rounds; i++) {
        /* Live across setjmp in a register: each arming's frames differ. */
        int tag = i * 7 + 1;
        int r = setjmp(current);
        if (r == 0) {
            if (i == 2)
                memcpy(copy, current, sizeof copy);
            jump(i >= 2 && i % 4 == 3 ? copy : current, tag);
        }
        sum = sum * 31 + r;
    }
    return sum;
}

/* Arms `current` here and jumps back once: another place, another state. */
__attribute__((noinline)) static int elsewhere(void) {
    int r = setjmp(current);
    if (r == 0)
        jump(current, 5);
    return r;
}

__attribute__((noinline)) static int put_back(void) {
    volatile int sum = 0;
    for (volatile int step = 0; step < 3; step++) {
        int r = setjmp(current);
        if (r == 0) {
            if (step == 0) {
                memcpy(copy, current, sizeof copy);
                sum += elsewhere();
                memcpy(current, copy, sizeof copy);
                jump(current, 2);
            }
            /* Armed here again, as before (step is volatile). */
            jump(step == 1 ? copy : current, 3 + step);
        }
        sum = sum * 31 + r;
    }
    return sum;
}

int main(void) {
    printf("same state: %d\n", same_state(500));
    printf("changing state: %d\n", changing_state(500));
    printf("put back: %d\n", put_back());
    return 0;
}
