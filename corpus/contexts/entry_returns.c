/* Contexts whose function returns: uc_link decides what runs next. A's
 * uc_link is B, which has not started yet, so A's return starts B; B's
 * uc_link is main, so B's return resumes main's swapcontext. Last, C has no
 * uc_link: when its function returns the program exits with status 0
 * (glibc's rule), and main's last line never prints. Same source natively
 * (glibc) and on wasm (runtime-shim/include/ucontext.h). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)

static ucontext_t main_ctx, a_ctx, b_ctx, c_ctx;
static int trail;

static void a_fn(int x, int y) {
    printf("A runs with %d and %d\n", x, y);
    trail = trail * 10 + 1;
    printf("A returns\n");
}

static void b_fn(void) {
    printf("B runs, trail %d\n", trail);
    trail = trail * 10 + 2;
    printf("B returns\n");
}

static void c_fn(int code) {
    printf("C runs, trail %d, returns with no uc_link (%d)\n", trail, code);
    fflush(stdout);
}

static void make(ucontext_t *uc, ucontext_t *link) {
    getcontext(uc);
    uc->uc_stack.ss_sp = malloc(STACK_SIZE);
    uc->uc_stack.ss_size = STACK_SIZE;
    uc->uc_link = link;
}

int main(void) {
    make(&b_ctx, &main_ctx);
    makecontext(&b_ctx, b_fn, 0);
    make(&a_ctx, &b_ctx);
    makecontext(&a_ctx, (void (*)(void))a_fn, 2, 7, 35);
    printf("main starts A\n");
    swapcontext(&main_ctx, &a_ctx);
    printf("main resumed, trail %d\n", trail);

    make(&c_ctx, NULL);
    makecontext(&c_ctx, (void (*)(void))c_fn, 1, 3);
    setcontext(&c_ctx);
    printf("not reached\n");
    return 1;
}
