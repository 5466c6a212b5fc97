/* A round-robin scheduler with 1,000 contexts. Task i runs i % 7 + 1 steps,
 * yielding to the scheduler after each; the scheduler resumes the live
 * tasks in order, round after round, until every task's function has
 * returned (uc_link brings the scheduler back). Prints per-round counts
 * and a checksum of the order in which steps ran. Same source natively
 * (glibc) and on wasm (runtime-shim/include/ucontext.h). */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define TASKS 1000
#define STACK_SIZE (16 * 1024)

static ucontext_t scheduler;
static ucontext_t task_ctx[TASKS];
static int finished[TASKS];
static int current;
static unsigned long long order_checksum;
static long steps;

static void yield(void) {
    swapcontext(&task_ctx[current], &scheduler);
}

/* makecontext passes ints: the task number is the argument. */
static void task(int id) {
    int local_steps = id % 7 + 1;
    for (int s = 0; s < local_steps; s++) {
        order_checksum = (order_checksum * 131 + (unsigned long long)(id * 10 + s)) % 4294967291ull;
        steps++;
        yield();
    }
    finished[id] = 1; /* returning: uc_link = scheduler */
}

int main(void) {
    for (int i = 0; i < TASKS; i++) {
        getcontext(&task_ctx[i]);
        task_ctx[i].uc_stack.ss_sp = malloc(STACK_SIZE);
        task_ctx[i].uc_stack.ss_size = STACK_SIZE;
        task_ctx[i].uc_link = &scheduler;
        makecontext(&task_ctx[i], (void (*)(void))task, 1, i);
    }
    int live = TASKS;
    for (int round = 1; live > 0; round++) {
        int ran = 0;
        for (int i = 0; i < TASKS; i++) {
            if (finished[i])
                continue;
            current = i;
            swapcontext(&scheduler, &task_ctx[i]);
            ran++;
            if (finished[i])
                live--;
        }
        printf("round %d: %d tasks ran, %d still live\n", round, ran, live);
    }
    printf("steps %ld, order checksum %llu\n", steps, order_checksum);
    for (int i = 0; i < TASKS; i++)
        free(task_ctx[i].uc_stack.ss_sp);
    return 0;
}
