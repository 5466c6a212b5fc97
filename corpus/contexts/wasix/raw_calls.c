/* WASIX API only (wasm): the raw wasix_32v1.context_* imports, called
 * without <wasix/context.h>, as wasix-libc's wrappers call them: no stack of
 * the context's own, no descriptor after the id. Checks what the runtime
 * itself answers (errno values are WASI's: EINVAL 28):
 *   - create with an index past the end of the table: 28;
 *   - create with a table entry of another type (int (int)): 28;
 *   - switch to the running context: 0; destroy the main context: 28;
 *   - a context that switches back and forth and then is destroyed: 0;
 *   - an entrypoint that returns: the program ends with status 129 (Wasmer's
 *     rule; here no header catches it, the runtime does). */
#include <stdint.h>
#include <stdio.h>

#define WASIX(name) __attribute__((import_module("wasix_32v1"), import_name(#name)))
WASIX(context_create) int32_t raw_create(uint64_t *id, uint32_t entry);
WASIX(context_switch) int32_t raw_switch(uint64_t id);
WASIX(context_destroy) int32_t raw_destroy(uint64_t id);

/* Table indices of functions: a function pointer is its index on wasm32. */
#define INDEX(f) ((uint32_t)(uintptr_t)(f))

static volatile int counter;

static int wrong_type(int x) {
    return x + 1;
}

static void ping(void) {
    for (;;) {
        counter++;
        raw_switch(0);
    }
}

static void returns(void) {
    printf("returns: runs once and returns\n");
    fflush(stdout);
}

int main(void) {
    uint64_t a = 0, b = 0;
    printf("create past the table: %d\n", raw_create(&a, 0x7fffffff));
    printf("create with int (int): %d\n", raw_create(&a, INDEX(wrong_type)));
    printf("switch to self: %d\n", raw_switch(0));
    printf("destroy main: %d\n", raw_destroy(0));
    int rc = raw_create(&a, INDEX(ping));
    printf("create ping: %d, id is not 0: %d\n", rc, a != 0);
    for (int i = 0; i < 3; i++)
        printf("switch to ping: %d, counter %d\n", raw_switch(a), counter);
    printf("destroy ping: %d, switch to it: %d\n", raw_destroy(a), raw_switch(a));
    rc = raw_create(&b, INDEX(returns));
    printf("create returns: %d, a new id: %d\n", rc, b != a && b != 0);
    fflush(stdout);
    raw_switch(b);
    printf("main resumed: wrong\n");
    return 0;
}
