/* More live jmp_bufs (each one's snapshot holding every frame below it) than
 * the embedded store holds: the runtime must trap in
 * __wasm_rewind_snapshot_store_full, never overwrite a live snapshot. */
#include <setjmp.h>
#include <stdio.h>

__attribute__((noinline)) static int nest(int depth) {
    jmp_buf here;
    if (setjmp(here) != 0)
        return -1;
    if (depth % 100 == 0) {
        printf("depth %d\n", depth);
        fflush(stdout);
    }
    if (depth == 1500)
        return depth;
    return nest(depth + 1) + (here[0].__user & 1);
}

int main(void) {
    printf("reached %d\n", nest(1));
}
