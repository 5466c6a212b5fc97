/* The other spellings: sigsetjmp/siglongjmp with savemask 0 and 1, and
 * _setjmp/_longjmp, including a sigjmp_buf and a jmp_buf live at once and a
 * jump through one to a frame that holds the other. */
#define _DEFAULT_SOURCE 1
#include <setjmp.h>
#include <stdio.h>

static sigjmp_buf sig_env;
static jmp_buf plain_env;

static void sig_thrower(int v) { siglongjmp(sig_env, v); }
static void plain_thrower(int v) { _longjmp(plain_env, v); }

static int inner(void) {
    int r = _setjmp(plain_env);
    if (r == 0)
        sig_thrower(9); /* skips this frame entirely */
    return r;
}

int main(void) {
    for (volatile int mask = 0; mask < 2; mask++) {
        int r = sigsetjmp(sig_env, mask);
        if (r == 0)
            sig_thrower(mask + 5);
        printf("sigsetjmp(savemask=%d) returned %d\n", mask, r);
    }
    int r = _setjmp(plain_env);
    if (r == 0)
        plain_thrower(0);
    printf("_setjmp returned %d after _longjmp(env, 0)\n", r);
    r = sigsetjmp(sig_env, 1);
    if (r == 0) {
        inner();
        printf("not reached\n");
    }
    printf("siglongjmp past an _setjmp frame: %d\n", r);
    r = sigsetjmp(sig_env, 0);
    if (r == 0)
        siglongjmp(sig_env, 0);
    printf("siglongjmp(env, 0) -> %d\n", r);
    return 0;
}
