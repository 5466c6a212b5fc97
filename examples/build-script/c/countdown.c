/* A small C program for the build-script example: a countdown driven by
 * longjmp from a nested call back to a setjmp in main, then a normal exit
 * with a status the host passes on. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf again;

static void tick(int n) {
    printf("tick %d\n", n);
    if (n > 0)
        longjmp(again, n); /* back into main's setjmp, which returns n */
}

int main(void) {
    volatile int left = 3;
    int from = setjmp(again);
    if (from != 0)
        left = from - 1;
    tick(left);
    printf("done after %d jumps\n", 3);
    return 7;
}
