/* A ring of 64 jmp_bufs in static storage, re-armed 100,000 times in all.
 * Each iteration arms ring[i % 64] (skipping the entry the enclosing frame
 * holds) and jumps to it once; every 7th iteration a helper frame arms a
 * second entry, takes a round trip through it and then jumps from below to
 * the entry armed by the loop frame. After each round of 999 iterations the
 * loop jumps out of its own frame to the entry its caller armed (still live:
 * that frame has not returned). Prints the number of arms and a checksum. */
#include <setjmp.h>
#include <stdio.h>

#define RING 64
#define ROUNDS 100
#define PER_ROUND 1000 /* arms per round: 1 by the caller, 999 in the loop */

static jmp_buf ring[RING];
static unsigned long arms;
static unsigned long long checksum = 7;

static void mix(unsigned long long v) {
    checksum = (checksum * 1000003u + v) % 4294967291u;
}

/* Arms ring[y], jumps to it once, then jumps to ring[x] (armed by the
 * caller's frame, which is still live). */
static void hop(int x, int y, int i) {
    int r = setjmp(ring[y]);
    arms++;
    if (r == 0)
        longjmp(ring[y], y + 1);
    mix((unsigned long long)r);
    longjmp(ring[x], 100 + (i % 50));
}

/* 999 arms (plus the hops), then a jump out to ring[held]. */
static void spin(int round, int held) {
    for (volatile int i = 0; i < PER_ROUND - 1; i++) {
        int x = (held + 1 + (round * 5 + i) % (RING - 1)) % RING;
        int r = setjmp(ring[x]);
        if (r == 0) {
            arms++;
            if (i % 7 == 3) {
                int y = (x + 1 + i % (RING - 2)) % RING;
                if (y == held)
                    y = (y + 1) % RING;
                if (y == x)
                    y = (y + 1) % RING;
                hop(x, y, i);
            }
            longjmp(ring[x], x + 1);
        }
        mix((unsigned long long)(r * 131 + x));
    }
    longjmp(ring[held], 1000 + round);
}

int main(void) {
    for (volatile int round = 0; round < ROUNDS; round++) {
        int held = round % RING;
        int r = setjmp(ring[held]);
        if (r == 0) {
            arms++;
            spin(round, held);
            printf("not reached: spin returned\n");
            return 1;
        }
        mix((unsigned long long)r);
        if (round % 25 == 24)
            printf("after round %d: arms %lu checksum %llu\n", round, arms, checksum);
    }
    printf("total arms %lu (loop and caller arms %d)\n", arms, ROUNDS * PER_ROUND);
    printf("checksum %llu\n", checksum);
    return 0;
}
