/* Misuse (wasm only): a context longjmps to a jmp_buf that main set. Each
 * context has its own stack, so the jump cannot be made: wasm-rewind's
 * runtimes refuse it (the host shim with an error naming both contexts,
 * --embed-runtime by trapping in __wasm_rewind_longjmp_across_contexts).
 * Expected: the two lines, then the refusal; "main: returned from setjmp
 * with 7" never prints. */
#include <setjmp.h>
#include <stdio.h>
#include <wasix/context.h>

static jmp_buf main_env;

static void jumper(void) {
    printf("context: longjmp to main's jmp_buf\n");
    fflush(stdout);
    longjmp(main_env, 7);
}

int main(void) {
    wasix_context_id_t c;
    int v = setjmp(main_env);
    if (v != 0) {
        printf("main: returned from setjmp with %d\n", v);
        return 0;
    }
    printf("main: setjmp armed, switching\n");
    if (wasix_context_create(&c, jumper) != 0)
        return 1;
    wasix_context_switch(c);
    printf("main resumed: wrong\n");
    return 0;
}
