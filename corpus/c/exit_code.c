/* The exit code of main and a line on stderr survive the shim: main jumps
 * back once, writes to both streams, and returns 3. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;

int main(void) {
    volatile int stage = 0;
    int r = setjmp(env);
    stage++;
    printf("stage %d, setjmp returned %d\n", stage, r);
    if (r == 0)
        longjmp(env, 2);
    fprintf(stderr, "exit_code: returning 3 from main\n");
    return r + 1;
}
