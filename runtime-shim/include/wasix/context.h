/*
 * <wasix/context.h> for stock wasi-libc: WASIX contexts (cooperative
 * multitasking) on top of the wasix_32v1.context_* calls, with a C stack of
 * its own for every context.
 *
 * The API is wasix-libc's <wasix/context.h> (same names, same return
 * convention: 0, or -1 with errno set), so code written for WASIX builds
 * unchanged with `-I runtime-shim/include`. What this header adds:
 *
 *   - wasix_context_create allocates the new context's C stack (malloc) and
 *     wasix_context_destroy frees it. wasix-libc leaves every context on the
 *     one C stack of the program, so two contexts with stack frames in
 *     linear memory overwrite each other (docs/contexts.md shows it on
 *     Wasmer 7.4.2);
 *   - the size of those stacks: WASIX_CONTEXT_STACK_SIZE (bytes, default
 *     64 KiB, wasm-ld's default for the main stack) when the program is
 *     compiled, wasix_context_set_stack_size() at run time;
 *   - wasix_context_switch keeps the stack pointer of the context it leaves
 *     and puts it back when that context is resumed.
 *
 * Served by `wasm-rewind run` (runtime-shim), by --embed-runtime, and by
 * Wasmer. Link with -Wl,--export-table: context entrypoints are looked up in
 * the exported function table. docs/contexts.md has the semantics, Wasmer's
 * and ours.
 *
 * ABI (wasm32; wasix_64v1 with 64-bit pointers on wasm64):
 *
 *   wasix_32v1.context_create(new_context: i32, entrypoint: i32) -> i32 errno
 *       Creates a suspended context whose first resumption calls the
 *       `() -> ()` function at index `entrypoint` of the function table, and
 *       writes its id (u64) at `new_context`.
 *   wasix_32v1.context_switch(target: i64) -> i32 errno
 *       Suspends the running context and resumes `target`; returns when
 *       something switches back. Switching to the running context does
 *       nothing and returns 0.
 *   wasix_32v1.context_destroy(id: i64) -> i32 errno
 *       Destroys a suspended context (a no-op for an unknown id). The running
 *       context and the main context (id 0) cannot be destroyed: EINVAL.
 *
 * How a new context gets its C stack (no runtime support needed, so it works
 * on Wasmer as well as on ours):
 *
 *   1. wasix_context_create allocates the stack and a record (struct
 *      __wasix_ctx_record) and passes the address of the record as
 *      `new_context`. The record starts with the u64 the host writes the id
 *      into, followed by a descriptor of the stack: magic 0x58435257
 *      ("WRCX" in memory) at +8, version 1 at +12, the lowest address of the
 *      stack (u64) at +16 and its top (u64, 16-aligned, the first
 *      __stack_pointer) at +24. Wasmer writes the id and ignores the rest;
 *      our runtime reads the descriptor during context_create, because its
 *      checkpoints need each context's stack bounds (docs/contexts.md).
 *   2. The entrypoint passed to the host is always this header's trampoline,
 *      __wasix_ctx_start. wasix_context_switch sets __wasix_ctx_current to the
 *      target before calling context_switch, so the trampoline, on the new
 *      context's first run, finds its record by that id, sets
 *      __stack_pointer to the top of its stack, and calls the entrypoint.
 *   3. wasix_context_switch reads __stack_pointer before context_switch and
 *      writes it back after it returns, so a resumed context finds its own
 *      stack pointer whatever the others did. A runtime that restores
 *      __stack_pointer itself on a switch agrees with this.
 *
 * What WASIX does not allow, and what happens here:
 *   - an entrypoint that returns: Wasmer ends the program with exit status
 *     129; this header does the same on every runtime (a message on stderr,
 *     then exit(129)), before the host sees the return;
 *   - using a context id after destroying it: EINVAL from context_switch.
 *
 * Contexts do not nest in setjmp/longjmp: a longjmp must stay in the context
 * that called setjmp (docs/contexts.md).
 */
#ifndef _WASM_REWIND_WASIX_CONTEXT_H
#define _WASM_REWIND_WASIX_CONTEXT_H 1

#pragma GCC system_header

#if !defined(__wasm__)
#error "this <wasix/context.h> is for WebAssembly (wasm32/wasm64 with wasi-libc) only"
#endif

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of C stack for each context wasix_context_create makes, unless
 * wasix_context_set_stack_size says otherwise. Every translation unit of a
 * program must see the same value (the linker keeps one). */
#ifndef WASIX_CONTEXT_STACK_SIZE
#define WASIX_CONTEXT_STACK_SIZE 65536
#endif

/* The smallest stack accepted: room for the trampoline and one call. */
#define __WASIX_CONTEXT_MIN_STACK 1024

typedef uint64_t wasix_context_id_t;

#if defined(__wasm64__)
#define __WASIX_CTX_MODULE "wasix_64v1"
#define __WASIX_CTX_SP_TYPE "i64"
#else
#define __WASIX_CTX_MODULE "wasix_32v1"
#define __WASIX_CTX_SP_TYPE "i32"
#endif

/* The raw WASIX calls. Each returns a WASI errno (wasi-libc's E* values are
 * the same numbers). The entrypoint is an index into the function table:
 * 32 bits on wasm32 and wasm64 alike, as Wasmer declares it. */
int32_t __wasix_context_create_raw(wasix_context_id_t *__new_context, uint32_t __entrypoint)
    __attribute__((__import_module__(__WASIX_CTX_MODULE), __import_name__("context_create"),
                   __nothrow__));
int32_t __wasix_context_switch_raw(wasix_context_id_t __target)
    __attribute__((__import_module__(__WASIX_CTX_MODULE), __import_name__("context_switch"),
                   __nothrow__));
int32_t __wasix_context_destroy_raw(wasix_context_id_t __id)
    __attribute__((__import_module__(__WASIX_CTX_MODULE), __import_name__("context_destroy"),
                   __nothrow__));

#undef __WASIX_CTX_MODULE

/* Magic and version of the stack descriptor that follows the id. */
#define __WASIX_CTX_DESC_MAGIC 0x58435257u /* "WRCX" in little-endian memory */
#define __WASIX_CTX_DESC_VERSION 1u

/* One per context this header created. The first 32 bytes are the layout
 * described at the top (the host writes `__id`, reads the rest). */
struct __wasix_ctx_record {
    wasix_context_id_t __id;      /* +0: written by context_create */
    uint32_t __magic;             /* +8 */
    uint32_t __version;           /* +12 */
    uint64_t __stack_low;         /* +16 */
    uint64_t __stack_high;        /* +24: the first __stack_pointer */
    /* Below: this header's own, never read by a runtime. */
    struct __wasix_ctx_record *__next;
    void (*__entry)(void);        /* wasix_context_create's entrypoint, or */
    void (*__entry_arg)(void *);  /* the one of __wasix_context_create_ex */
    void *__arg;
    void *__owned_stack;          /* freed by destroy; NULL when the caller's */
};

#ifdef __cplusplus
#define __WASIX_CTX_ASSERT static_assert
#else
#define __WASIX_CTX_ASSERT _Static_assert
#endif
__WASIX_CTX_ASSERT(__builtin_offsetof(struct __wasix_ctx_record, __magic) == 8,
                   "context descriptor: magic at 8");
__WASIX_CTX_ASSERT(__builtin_offsetof(struct __wasix_ctx_record, __stack_low) == 16,
                   "context descriptor: stack low at 16");
__WASIX_CTX_ASSERT(__builtin_offsetof(struct __wasix_ctx_record, __stack_high) == 24,
                   "context descriptor: stack high at 24");
#undef __WASIX_CTX_ASSERT

/* State shared by every translation unit: weak definitions, the linker keeps
 * one of each. */
__attribute__((__weak__)) wasix_context_id_t __wasix_ctx_current = 0;
__attribute__((__weak__)) struct __wasix_ctx_record *__wasix_ctx_records = 0;
__attribute__((__weak__)) size_t __wasix_ctx_stack_size = WASIX_CONTEXT_STACK_SIZE;

/* __stack_pointer, read and written from C. */
static __inline__ __attribute__((__always_inline__, __unused__)) uintptr_t
__wasix_ctx_get_sp(void) {
    uintptr_t __sp;
    __asm__ __volatile__(".globaltype __stack_pointer, " __WASIX_CTX_SP_TYPE "\n\t"
                         "global.get __stack_pointer\n\t"
                         "local.set %0"
                         : "=r"(__sp));
    return __sp;
}

static __inline__ __attribute__((__always_inline__, __unused__)) void
__wasix_ctx_set_sp(uintptr_t __sp) {
    __asm__ __volatile__(".globaltype __stack_pointer, " __WASIX_CTX_SP_TYPE "\n\t"
                         "local.get %0\n\t"
                         "global.set __stack_pointer"
                         :
                         : "r"(__sp));
}

#undef __WASIX_CTX_SP_TYPE

static __inline__ __attribute__((__unused__)) struct __wasix_ctx_record *
__wasix_ctx_find(wasix_context_id_t __id) {
    struct __wasix_ctx_record *__r = __wasix_ctx_records;
    while (__r && __r->__id != __id)
        __r = __r->__next;
    return __r;
}

/* Runs on the context's own stack. Not inlined into the trampoline, whose
 * frame must stay empty: it starts on the stack of the context that
 * switched. */
static __attribute__((__noinline__, __noreturn__, __unused__)) void
__wasix_ctx_run(struct __wasix_ctx_record *__r) {
    if (__r->__entry_arg)
        __r->__entry_arg(__r->__arg);
    else
        __r->__entry();
    fprintf(stderr, "wasix context %llu: its entrypoint returned, which WASIX does not allow\n",
            (unsigned long long)__r->__id);
    exit(129); /* what Wasmer does */
}

/* The entrypoint every context is created with. */
static __attribute__((__unused__)) void __wasix_ctx_start(void) {
    struct __wasix_ctx_record *__r = __wasix_ctx_find(__wasix_ctx_current);
    if (!__r)
        __builtin_trap(); /* started without wasix_context_switch: nowhere to run */
    __wasix_ctx_set_sp((uintptr_t)__r->__stack_high);
    __wasix_ctx_run(__r);
}

/* wasix_context_create and the makecontext of <ucontext.h>: `__stack` NULL
 * means allocate one of the current default size. */
static __inline__ __attribute__((__unused__)) int
__wasix_context_create_ex(wasix_context_id_t *__context_id, void (*__entry)(void),
                          void (*__entry_arg)(void *), void *__arg, void *__stack,
                          size_t __size) {
    struct __wasix_ctx_record *__r;
    uintptr_t __low, __high;
    int32_t __err;
    if (!__context_id || (!__entry && !__entry_arg)) {
        errno = EINVAL;
        return -1;
    }
    __r = (struct __wasix_ctx_record *)calloc(1, sizeof *__r);
    if (!__r) {
        errno = ENOMEM;
        return -1;
    }
    if (!__stack) {
        __size = __wasix_ctx_stack_size;
        __stack = malloc(__size);
        if (!__stack) {
            free(__r);
            errno = ENOMEM;
            return -1;
        }
        __r->__owned_stack = __stack;
    }
    __low = (uintptr_t)__stack;
    __high = (__low + __size) & ~(uintptr_t)15;
    if (__size < __WASIX_CONTEXT_MIN_STACK || __high < __low + __WASIX_CONTEXT_MIN_STACK) {
        free(__r->__owned_stack);
        free(__r);
        errno = EINVAL;
        return -1;
    }
    __r->__magic = __WASIX_CTX_DESC_MAGIC;
    __r->__version = __WASIX_CTX_DESC_VERSION;
    __r->__stack_low = __low;
    __r->__stack_high = __high;
    __r->__entry = __entry;
    __r->__entry_arg = __entry_arg;
    __r->__arg = __arg;
    __err = __wasix_context_create_raw(&__r->__id,
                                      (uint32_t)(uintptr_t)&__wasix_ctx_start);
    if (__err != 0) {
        free(__r->__owned_stack);
        free(__r);
        errno = __err;
        return -1;
    }
    __r->__next = __wasix_ctx_records;
    __wasix_ctx_records = __r;
    *__context_id = __r->__id;
    return 0;
}

/* Id of the main context: always 0. */
static __inline__ __attribute__((__unused__)) wasix_context_id_t __wasix_context_main(void) {
    return 0;
}
#define wasix_context_main (__wasix_context_main())

/* Creates a suspended context that calls `entrypoint` on its first
 * resumption, on a fresh C stack. 0, or -1 with errno: EINVAL (no
 * entrypoint, or a stack size below 1 KiB), ENOMEM, or what the host says
 * (ENOTSUP, EAGAIN: no context-switching environment). */
static __inline__ __attribute__((__unused__)) int
wasix_context_create(wasix_context_id_t *context_id, void (*entrypoint)(void)) {
    return __wasix_context_create_ex(context_id, entrypoint, 0, 0, 0, 0);
}

/* Suspends the running context and resumes `target_context_id` where it
 * stopped (or at its entrypoint). Returns 0 when something switches back, or
 * at once when the target is the running context. -1 with errno: EINVAL (the
 * target does not exist, was destroyed, or has not been suspended). */
static __inline__ __attribute__((__unused__)) int
wasix_context_switch(wasix_context_id_t target_context_id) {
    wasix_context_id_t __self = __wasix_ctx_current;
    uintptr_t __sp = __wasix_ctx_get_sp();
    int32_t __err;
    __wasix_ctx_current = target_context_id; /* for the trampoline */
    __err = __wasix_context_switch_raw(target_context_id);
    __wasix_ctx_set_sp(__sp);
    __wasix_ctx_current = __self;
    if (__err != 0) {
        errno = __err;
        return -1;
    }
    return 0;
}

/* Destroys a suspended context and frees the stack this header gave it.
 * Destroying an unknown or already destroyed context does nothing and
 * returns 0. -1 with errno EINVAL for the running context and the main one. */
static __inline__ __attribute__((__unused__)) int
wasix_context_destroy(wasix_context_id_t context_id) {
    struct __wasix_ctx_record **__p;
    int32_t __err = __wasix_context_destroy_raw(context_id);
    if (__err != 0) {
        errno = __err;
        return -1;
    }
    for (__p = &__wasix_ctx_records; *__p; __p = &(*__p)->__next) {
        if ((*__p)->__id == context_id) {
            struct __wasix_ctx_record *__r = *__p;
            *__p = __r->__next;
            free(__r->__owned_stack);
            free(__r);
            break;
        }
    }
    return 0;
}

/* Sets the C stack size of the contexts created from now on (0: back to
 * WASIX_CONTEXT_STACK_SIZE); returns the previous size. Not a wasix-libc
 * function. */
static __inline__ __attribute__((__unused__)) size_t
wasix_context_set_stack_size(size_t size) {
    size_t __old = __wasix_ctx_stack_size;
    __wasix_ctx_stack_size = size ? size : (size_t)WASIX_CONTEXT_STACK_SIZE;
    return __old;
}

#ifdef __cplusplus
}
#endif

#endif /* _WASM_REWIND_WASIX_CONTEXT_H */
