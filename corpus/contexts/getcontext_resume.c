/* getcontext/setcontext as POSIX has them: a ucontext saved by getcontext
 * can be activated again and again, and getcontext "returns" once more each
 * time. First inside one context (main loops three times through its own
 * getcontext), then from another context: a coroutine activates the
 * ucontext main saved, which resumes main at its getcontext while the
 * coroutine stays suspended. Same source natively (glibc) and on wasm
 * (runtime-shim/include/ucontext.h). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)

static ucontext_t here, main_ctx, co_ctx;
static volatile int passes;
static volatile int phase;

static void co(void) {
    printf("coroutine: activating main's getcontext (phase %d)\n", phase);
    phase = 2;
    setcontext(&here);
    printf("coroutine: not reached\n");
}

int main(void) {
    getcontext(&here);
    passes++;
    printf("after getcontext, pass %d\n", passes);
    if (passes < 3)
        setcontext(&here);

    if (phase == 0) {
        phase = 1;
        getcontext(&co_ctx);
        co_ctx.uc_stack.ss_sp = malloc(STACK_SIZE);
        co_ctx.uc_stack.ss_size = STACK_SIZE;
        co_ctx.uc_link = &main_ctx;
        makecontext(&co_ctx, co, 0);
        swapcontext(&main_ctx, &co_ctx);
        printf("main: swapcontext returned: not expected\n");
    }
    printf("main: done, phase %d, passes %d\n", phase, passes);
    return 0;
}
