/* WASIX API only (wasm): a context entrypoint must not return. Wasmer ends
 * the program with exit status 129 when one does; the header does the same
 * on every runtime (a message on stderr naming the context, then
 * exit(129), which flushes stdout first). Expected: the two lines before
 * the return, then status 129; "main resumed" never prints. */
#include <stdio.h>
#include <wasix/context.h>

static void returns(void) {
    printf("entrypoint runs and returns\n");
}

int main(void) {
    wasix_context_id_t c;
    printf("main creates a context\n");
    if (wasix_context_create(&c, returns) != 0)
        return 1;
    wasix_context_switch(c);
    printf("main resumed: wrong\n");
    return 0;
}
