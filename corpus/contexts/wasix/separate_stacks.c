/* WASIX API only (wasm): each context has a C stack of its own. A context
 * keeps a buffer in its stack frame (linear memory) across switches, while
 * main returns from the function that switched to it and calls one with a
 * large frame. Where contexts share the program's one C stack (wasix-libc's
 * wasix_context_create on Wasmer 7.4.2), main's new frame lands on the
 * suspended context's buffer; with runtime-shim/include/wasix/context.h it
 * cannot. Prints whether both buffers survived.
 *
 * Built with -DSHARED_STACK, it calls the raw WASIX imports the way
 * wasix-libc does (no stack of its own, stack pointer not kept): on Wasmer
 * 7.4.2 the context's buffer is then overwritten ("no"). */
#include <stdio.h>
#include <wasix/context.h>

#ifdef SHARED_STACK
#define wasix_context_switch(id) __wasix_context_switch_raw(id)
static void body(void);
static int create_shared(wasix_context_id_t *id) {
    return __wasix_context_create_raw(id, (unsigned)(unsigned long)&body) ? -1 : 0;
}
#define wasix_context_create(id, fn) create_shared(id)
#endif

#define N 256

static wasix_context_id_t ctx;

__attribute__((__noinline__)) static void fill(volatile unsigned char *b, int n, int v) {
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)v;
}

__attribute__((__noinline__)) static int intact(volatile unsigned char *b, int n, int v) {
    for (int i = 0; i < n; i++)
        if (b[i] != (unsigned char)v)
            return 0;
    return 1;
}

/* A large frame, written all over. */
__attribute__((__noinline__)) static void big_frame(void) {
    volatile unsigned char big[8192];
    fill(big, (int)sizeof big, 0x55);
}

static void body(void) {
    volatile unsigned char mine[N];
    fill(mine, N, 0xC1);
    for (int round = 1;; round++) {
        wasix_context_switch(wasix_context_main);
        printf("round %d: context's buffer intact: %s\n", round, intact(mine, N, 0xC1) ? "yes" : "no");
    }
}

/* Switches from a frame of its own, then returns: main's stack pointer goes
 * back above the point where the context was started. */
__attribute__((__noinline__)) static void start_from_a_frame(void) {
    volatile unsigned char pad[N];
    fill(pad, N, 1);
    wasix_context_switch(ctx);
}

int main(void) {
    volatile unsigned char mine[N];
    fill(mine, N, 0xA0);
    if (wasix_context_create(&ctx, body) != 0) {
        printf("create failed\n");
        return 1;
    }
    start_from_a_frame();
    for (int i = 0; i < 3; i++) {
        big_frame();
        wasix_context_switch(ctx);
    }
    printf("main's buffer intact: %s\n", intact(mine, N, 0xA0) ? "yes" : "no");
    wasix_context_destroy(ctx);
    return 0;
}
