/* 600 jmp_bufs armed in turn, 60,000 times in all, each written over with
 * other data once its jump has landed, as a jmp_buf in a reused stack frame
 * or a recycled heap object is. A snapshot store that finds a jmp_buf's
 * previous snapshot only through the jmp_buf's bytes never lets one go
 * (tests/embed.rs runs this under a 1 MiB cap). Prints the sum of what
 * setjmp returned. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#define BUFS 600
#define ARMS 60000

static jmp_buf bufs[BUFS];

__attribute__((noinline)) static void jump(jmp_buf b, int v) { longjmp(b, v); }

int main(void) {
    volatile long long sum = 0;
    for (volatile int i = 0; i < ARMS; i++) {
        jmp_buf *b = &bufs[(i * 7) % BUFS];
        int r = setjmp(*b);
        if (r == 0)
            jump(*b, i % 13 + 1);
        sum += r;
        memset(*b, 0xA5, sizeof *b);
    }
    printf("%d arms, sum %lld\n", ARMS, sum);
    return 0;
}
