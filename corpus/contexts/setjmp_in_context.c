/* setjmp/longjmp inside a context: a coroutine runs jobs under a setjmp
 * "try"; a job that fails raises with longjmp from a nested call, and the
 * coroutine catches it, reports to main and goes on. Between the setjmp and
 * the longjmp the coroutine yields to main (and main to a second coroutine
 * with its own try), so each jump lands in the context that called setjmp
 * after other contexts have run. Same source natively (glibc) and on wasm
 * (runtime-shim/include/setjmp.h and ucontext.h). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)

static ucontext_t main_ctx, worker_ctx[2];
static jmp_buf try_point[2];
static int who;        /* which worker runs */
static int report[2];  /* what each worker tells main */
static int done[2];    /* its function has returned (uc_link: main) */

static void yield(void) {
    swapcontext(&worker_ctx[who], &main_ctx);
}

static void raise_error(int w, int code) {
    longjmp(try_point[w], code);
}

/* Fails (raises) on multiples of 3, after yielding once from deep inside. */
static int job(int w, int n, int depth) {
    if (depth > 0)
        return job(w, n, depth - 1) + 1;
    yield();
    if (n % 3 == 0)
        raise_error(w, 100 + n);
    return n * 10;
}

static void worker(int w) {
    for (volatile int n = 1; n <= 6; n++) {
        int attempt = n;
        int code = setjmp(try_point[w]);
        if (code == 0) {
            int r = job(w, attempt, 5 + w);
            report[w] = r;
            printf("worker %d: job %d returned %d\n", w, attempt, r);
        } else {
            report[w] = -code;
            printf("worker %d: job %d raised %d\n", w, attempt, code);
        }
        yield();
    }
    done[w] = 1;
}

int main(void) {
    for (int w = 0; w < 2; w++) {
        getcontext(&worker_ctx[w]);
        worker_ctx[w].uc_stack.ss_sp = malloc(STACK_SIZE);
        worker_ctx[w].uc_stack.ss_size = STACK_SIZE;
        worker_ctx[w].uc_link = &main_ctx;
        makecontext(&worker_ctx[w], (void (*)(void))worker, 1, w);
    }
    long total = 0;
    int resumes = 0;
    while (!done[0] || !done[1]) {
        for (int w = 0; w < 2; w++) {
            if (done[w])
                continue;
            who = w;
            report[w] = 0;
            swapcontext(&main_ctx, &worker_ctx[w]);
            resumes++;
            total += report[w];
        }
    }
    printf("resumes %d\n", resumes);
    printf("total %ld\n", total);
    return 0;
}
