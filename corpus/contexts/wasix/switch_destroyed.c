/* WASIX API only (wasm): switching to a destroyed context fails with EINVAL,
 * whether it was destroyed after running or before it ever started; so does
 * switching to an id that was never created. Destroying a destroyed
 * context again succeeds (a no-op). Switching to the running context
 * succeeds and does nothing. */
#include <errno.h>
#include <stdio.h>
#include <wasix/context.h>

static wasix_context_id_t ran, never_ran;
static int counter;

static const char *err_name(int e) {
    return e == EINVAL ? "EINVAL" : e == ENOTSUP ? "ENOTSUP" : e == EAGAIN ? "EAGAIN" : "other";
}

static void report(const char *what, int r) {
    if (r == 0)
        printf("%s -> 0\n", what);
    else
        printf("%s -> -1, errno %s\n", what, err_name(errno));
}

static void count(void) {
    for (;;) {
        counter++;
        wasix_context_switch(wasix_context_main);
    }
}

int main(void) {
    report("create a context", wasix_context_create(&ran, count));
    report("create another", wasix_context_create(&never_ran, count));
    report("switch to the main context from itself", wasix_context_switch(wasix_context_main));
    report("switch to the first", wasix_context_switch(ran));
    printf("counter %d\n", counter);
    report("destroy the first", wasix_context_destroy(ran));
    report("switch to the destroyed first", wasix_context_switch(ran));
    printf("counter %d\n", counter);
    report("destroy the second before it ran", wasix_context_destroy(never_ran));
    report("switch to the destroyed second", wasix_context_switch(never_ran));
    report("destroy the first again", wasix_context_destroy(ran));
    report("switch to an id never created", wasix_context_switch(ran + never_ran + 1000));
    printf("counter %d\n", counter);
    return 0;
}
