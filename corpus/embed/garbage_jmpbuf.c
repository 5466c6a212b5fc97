/* longjmp to a jmp_buf that setjmp never filled: the embedded runtime must
 * trap in __wasm_rewind_unknown_snapshot (the host shim: UnknownSnapshot). */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static jmp_buf target;

int main(void) {
    jmp_buf real;
    if (setjmp(real) == 0) /* the store exists: the failure is the jmp_buf */
        puts("armed a real one");
    memset(target, 0x5a, sizeof target);
    puts("jumping to garbage");
    fflush(stdout);
    longjmp(target, 1);
}
