/* Memory is not rolled back by longjmp: volatile locals (scalars and an
 * array), static data and heap data all keep the latest values written before
 * the jump. (A non-volatile local changed after setjmp would be indeterminate;
 * and the heap pointer is published in a global before setjmp, because clang
 * assumes a block that has not escaped yet cannot change across the call.) */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf env;
static int global_counter;
static int *heap;

static void bump(volatile int *p, volatile int *arr, int times) {
    for (int i = 0; i < times; i++) {
        (*p)++;
        arr[i % 4] += i;
        heap[i % 8] ^= i * 7;
        global_counter += 3;
    }
    longjmp(env, times);
}

int main(void) {
    volatile int v = 10;
    volatile long long big = 1;
    volatile double d = 0.5;
    volatile int arr[4] = {1, 2, 3, 4};
    heap = calloc(8, sizeof *heap);
    volatile int jumps = 0;
    int r = setjmp(env);
    printf("setjmp returned %d: v=%d big=%lld d=%.3f jumps=%d global=%d\n", r, v, big, d,
           jumps, global_counter);
    printf("  arr=%d,%d,%d,%d heap=%d,%d,%d,%d\n", arr[0], arr[1], arr[2], arr[3], heap[0],
           heap[1], heap[6], heap[7]);
    if (jumps < 4) {
        jumps++;
        big *= -3;
        d *= 3.0;
        bump(&v, arr, jumps * 5);
    }
    free(heap);
    return 0;
}
