/* longjmp(env, 0) makes setjmp return 1, as C requires; other values,
 * including negative ones and INT_MAX/INT_MIN, come back unchanged. */
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;

static void jump(int val) { longjmp(env, val); }

int main(void) {
    static const int vals[] = {0, 1, 2, -1, 42, INT_MAX, INT_MIN, 0};
    for (volatile int k = 0; k < 8; k++) {
        int r = setjmp(env);
        if (r == 0) {
            jump(vals[k]);
        }
        printf("longjmp(env, %d) -> setjmp returned %d\n", vals[k], r);
    }
    return 0;
}
