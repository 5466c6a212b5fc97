/* longjmp out of a libc callback: a qsort comparator that jumps back to main
 * on its first call (qsort is abandoned half way, which C allows), then a
 * normal qsort of the same data, then bsearch whose comparator jumps out.
 * Only implementation-independent facts are printed (libc qsort algorithms
 * differ in the order and number of comparisons). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf abort_sort;
static int jump_value;

static int cmp_jump(const void *a, const void *b) {
    (void)a;
    (void)b;
    longjmp(abort_sort, jump_value);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_key_jump(const void *key, const void *elem) {
    int k = *(const int *)key, e = *(const int *)elem;
    if (e == k)
        longjmp(abort_sort, 1000 + k);
    return (k > e) - (k < e);
}

int main(void) {
    int data[64];
    unsigned seed = 12345;
    for (int i = 0; i < 64; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (int)((seed >> 8) % 1000);
    }
    for (jump_value = 1; jump_value <= 3; jump_value++) {
        int r = setjmp(abort_sort);
        if (r == 0) {
            qsort(data, 64, sizeof data[0], cmp_jump);
            printf("qsort returned normally (wrong)\n");
        } else {
            printf("comparator jumped out of qsort: %d\n", r);
        }
    }
    long sum_before = 0;
    for (int i = 0; i < 64; i++)
        sum_before += data[i];
    qsort(data, 64, sizeof data[0], cmp_int);
    long sum_after = 0;
    int sorted = 1;
    for (int i = 0; i < 64; i++) {
        sum_after += data[i];
        if (i > 0 && data[i - 1] > data[i])
            sorted = 0;
    }
    printf("sum %ld -> %ld, sorted %d\n", sum_before, sum_after, sorted);
    printf("first %d %d %d last %d %d %d\n", data[0], data[1], data[2], data[61], data[62],
           data[63]);
    int key = data[37];
    int r = setjmp(abort_sort);
    if (r == 0) {
        bsearch(&key, data, 64, sizeof data[0], cmp_key_jump);
        printf("bsearch returned normally (wrong)\n");
    } else {
        printf("bsearch comparator found %d and jumped: %d\n", key, r);
    }
    return 0;
}
