/* longjmp to a jmp_buf whose setjmp caller has returned: the embedded
 * runtime must trap in __wasm_rewind_stale_snapshot (the host shim:
 * StaleSnapshot), never rewind into frames that are gone. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf target;

__attribute__((noinline)) static int arm(int n) {
    volatile char pad[256]; /* a frame on the C stack below main's */
    pad[n & 255] = (char)n;
    if (setjmp(target) != 0) {
        puts("rewound into a returned frame");
        return -1;
    }
    return pad[n & 255];
}

int main(void) {
    printf("armed: %d\n", arm(7));
    fflush(stdout);
    longjmp(target, 1);
}
