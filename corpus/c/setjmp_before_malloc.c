/* setjmp before the program's first malloc (nothing allocates before it: no
 * stdio either), then 80 blocks of 60,000 bytes filled with a pattern, 200
 * setjmp/longjmp round trips (each flipping one byte of one block and
 * allocating a small block before the jump, both undone after it), a final
 * jump back to the very first jmp_buf, and a check of every block. Debian's
 * wasi-libc malloc of 2022 claims all memory up to the end of memory on its
 * first call: the jumps must not touch what malloc handed out. Prints how
 * many blocks were corrupted and exits 1 if any were. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#define BLOCKS 80
#define SIZE 60000
#define ROUNDS 200
#define SMALL 1000

static jmp_buf first, trip;
static unsigned char *blocks[BLOCKS];
static unsigned char *small[ROUNDS];
static volatile int corrupted = -1;
static volatile int bad_values, bad_small;

static unsigned char pattern(int b, int j) {
    return (unsigned char)((b * 131 + j * 7 + (j >> 8)) & 0xff);
}

static int run(void) {
    for (int b = 0; b < BLOCKS; b++) {
        blocks[b] = malloc(SIZE);
        if (blocks[b] == NULL) {
            fprintf(stderr, "malloc of block %d failed\n", b);
            exit(2);
        }
        for (int j = 0; j < SIZE; j++)
            blocks[b][j] = pattern(b, j);
    }
    for (volatile int t = 0; t < ROUNDS; t++) {
        int r = setjmp(trip);
        if (r == 0) {
            blocks[t % BLOCKS][(t * 997) % SIZE] ^= 0x5a;
            small[t] = malloc(SMALL);
            if (small[t] == NULL) {
                fprintf(stderr, "malloc of small block %d failed\n", (int)t);
                exit(2);
            }
            for (int j = 0; j < SMALL; j++)
                small[t][j] = (unsigned char)(t + j);
            longjmp(trip, t + 1);
        }
        if (r != t + 1)
            bad_values++;
        blocks[t % BLOCKS][(t * 997) % SIZE] ^= 0x5a;
        for (int j = 0; j < SMALL; j++)
            if (small[t][j] != (unsigned char)(t + j)) {
                bad_small++;
                break;
            }
        free(small[t]);
    }
    int n = 0;
    for (int b = 0; b < BLOCKS; b++)
        for (int j = 0; j < SIZE; j++)
            if (blocks[b][j] != pattern(b, j)) {
                n++;
                break;
            }
    return n;
}

int main(void) {
    int r = setjmp(first);
    if (r == 0) {
        corrupted = run();
        longjmp(first, corrupted + 1);
    }
    printf("first jmp_buf returned %d\n", r);
    printf("%d blocks of %d bytes, %d round trips\n", BLOCKS, SIZE, ROUNDS);
    printf("bad setjmp values %d, bad small blocks %d\n", bad_values, bad_small);
    printf("corrupted blocks %d\n", corrupted);
    for (int b = 0; b < BLOCKS; b++)
        free(blocks[b]);
    return corrupted != 0 || bad_values != 0 || bad_small != 0;
}
