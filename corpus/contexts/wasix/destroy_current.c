/* WASIX API only (wasm): destroying the running context is refused with
 * EINVAL, from a created context and from the main one; so is destroying
 * the main context from another context. Each refusal leaves the context
 * running; the program then finishes normally. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <wasix/context.h>

static wasix_context_id_t worker;

static const char *err_name(int e) {
    return e == EINVAL ? "EINVAL" : e == ENOTSUP ? "ENOTSUP" : e == EAGAIN ? "EAGAIN" : "other";
}

static void report(const char *what, int r) {
    if (r == 0)
        printf("%s -> 0\n", what);
    else
        printf("%s -> -1, errno %s\n", what, err_name(errno));
}

static void work(void) {
    report("worker destroys itself", wasix_context_destroy(worker));
    report("worker destroys the main context", wasix_context_destroy(wasix_context_main));
    printf("worker still runs\n");
    wasix_context_switch(wasix_context_main);
    printf("worker resumed after being destroyed: wrong\n");
}

int main(void) {
    if (wasix_context_create(&worker, work) != 0) {
        printf("create failed: errno %s\n", err_name(errno));
        return 1;
    }
    report("main destroys itself (the main context)", wasix_context_destroy(wasix_context_main));
    report("main switches to the worker", wasix_context_switch(worker));
    report("main destroys the suspended worker", wasix_context_destroy(worker));
    report("main destroys it again", wasix_context_destroy(worker));
    printf("done\n");
    return 0;
}
