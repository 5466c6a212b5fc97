/*
 * setjmp.h for wasi-libc, on top of the WASIX stack_checkpoint/stack_restore
 * calls, as implemented by the wasm-rewind runtime shim (and by Wasmer).
 *
 * Build: put this directory first on the include path (-I .../include); wasi-libc
 * ships no setjmp.h of its own. Link with -Wl,--export=__stack_low (a WASIX
 * host such as Wasmer unwinds into the free part of the C stack and must know
 * where it begins; not needed when the stack comes first, as with wasm-ld 22),
 * then instrument the module with `wasm-rewind instrument` and run it with
 * `wasm-rewind run` or `wasmer run` (or instrument with --embed-runtime and
 * run it anywhere). corpus/build-c.sh and DEVELOPERS.md have the whole
 * recipe.
 *
 * ABI (wasm32; wasix_64v1 with 64-bit pointers on wasm64):
 *
 *   wasix_32v1.stack_checkpoint(snapshot: i32, ret: i32) -> i32 errno
 *       Stores a snapshot of the call stack and writes its identity into the
 *       jmp_buf at `snapshot`; writes the u64 0 at `ret` and returns errno 0.
 *       After a stack_restore of that snapshot the same call returns again,
 *       this time with the restored value at `ret`.
 *   wasix_32v1.stack_restore(snapshot: i32, val: i64)
 *       Never returns: resumes the stack_checkpoint call that filled the
 *       jmp_buf, which then delivers `val`. longjmp passes 1 for 0, as C asks.
 *
 *   jmp_buf is WASIX's stack snapshot: { u64 user @0; u8 hash[16] @8 },
 *   24 bytes, aligned to 8. The host owns the contents; do not touch them.
 *
 * What a jump restores: the wasm locals of the frames between setjmp and the
 * host, and the globals (__stack_pointer above all). Linear memory is NOT
 * restored, so a `volatile` local (which lives in memory) keeps the latest
 * value written to it before the longjmp, as C requires; a non-volatile local
 * changed after setjmp is indeterminate after the jump, as in C. The frame
 * that called setjmp must still be live when longjmp is called.
 *
 * There is no signal mask on WASI: sigsetjmp ignores `savemask`, and
 * sigjmp_buf is jmp_buf.
 */
#ifndef _WASM_REWIND_SETJMP_H
#define _WASM_REWIND_SETJMP_H 1

/* Found through -I, but it is a libc header: no -pedantic noise in C89/C99. */
#pragma GCC system_header

#if !defined(__wasm__)
#error "this setjmp.h is for WebAssembly (wasm32/wasm64 with wasi-libc) only"
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct __jmp_buf_tag {
    unsigned long long __user;  /* WASIX `user` */
    unsigned char __hash[16];   /* WASIX `hash`: first 16 bytes of a keyed SHA-256 */
} __attribute__((__aligned__(8))) jmp_buf[1];

typedef jmp_buf sigjmp_buf;

#ifdef __cplusplus
#define __WASM_REWIND_ASSERT static_assert
#else
#define __WASM_REWIND_ASSERT _Static_assert
#endif
__WASM_REWIND_ASSERT(sizeof(jmp_buf) == 24, "WASIX jmp_buf is 24 bytes");
__WASM_REWIND_ASSERT(__alignof__(jmp_buf) == 8, "WASIX jmp_buf is aligned to 8");
__WASM_REWIND_ASSERT(__builtin_offsetof(struct __jmp_buf_tag, __user) == 0,
                     "WASIX jmp_buf: u64 user at 0");
__WASM_REWIND_ASSERT(__builtin_offsetof(struct __jmp_buf_tag, __hash) == 8,
                     "WASIX jmp_buf: 16-byte hash at 8");
#undef __WASM_REWIND_ASSERT

#if defined(__wasm64__)
#define __WASM_REWIND_WASIX_MODULE "wasix_64v1"
#else
#define __WASM_REWIND_WASIX_MODULE "wasix_32v1"
#endif

/* Returns twice: once when the snapshot is taken, once more per restore. */
int __wasm_rewind_stack_checkpoint(struct __jmp_buf_tag *__snapshot,
                                   unsigned long long *__ret)
    __attribute__((__import_module__(__WASM_REWIND_WASIX_MODULE),
                   __import_name__("stack_checkpoint"), __returns_twice__,
                   __nothrow__));

void __wasm_rewind_stack_restore(struct __jmp_buf_tag *__snapshot, long long __val)
    __attribute__((__import_module__(__WASM_REWIND_WASIX_MODULE),
                   __import_name__("stack_restore"), __noreturn__, __nothrow__));

#undef __WASM_REWIND_WASIX_MODULE

/*
 * One body for setjmp, _setjmp and sigsetjmp. `__ret` lives in the frame that
 * calls stack_checkpoint (this one, or its caller once inlined); the host
 * writes it on every return. The checkpoint import is itself returns_twice,
 * so the compiler treats its caller correctly whether or not this is inlined.
 * A failed checkpoint (errno != 0) cannot be reported through setjmp: trap.
 */
#define __WASM_REWIND_SETJMP_BODY(env)                              \
    unsigned long long __ret = 0;                                   \
    if (__wasm_rewind_stack_checkpoint((env), &__ret) != 0)         \
        __builtin_trap();                                           \
    return (int)__ret

static __inline__ __attribute__((__returns_twice__, __nothrow__, __unused__))
int setjmp(jmp_buf __env) {
    __WASM_REWIND_SETJMP_BODY(__env);
}

static __inline__ __attribute__((__returns_twice__, __nothrow__, __unused__))
int _setjmp(jmp_buf __env) {
    __WASM_REWIND_SETJMP_BODY(__env);
}

static __inline__ __attribute__((__returns_twice__, __nothrow__, __unused__))
int sigsetjmp(sigjmp_buf __env, int __savemask __attribute__((__unused__))) {
    __WASM_REWIND_SETJMP_BODY(__env);
}

#undef __WASM_REWIND_SETJMP_BODY

static __inline__ __attribute__((__noreturn__, __nothrow__, __unused__))
void longjmp(jmp_buf __env, int __val) {
    __wasm_rewind_stack_restore(__env, __val ? __val : 1);
}

static __inline__ __attribute__((__noreturn__, __nothrow__, __unused__))
void _longjmp(jmp_buf __env, int __val) {
    __wasm_rewind_stack_restore(__env, __val ? __val : 1);
}

static __inline__ __attribute__((__noreturn__, __nothrow__, __unused__))
void siglongjmp(sigjmp_buf __env, int __val) {
    __wasm_rewind_stack_restore(__env, __val ? __val : 1);
}

/* C says setjmp is a macro; some code tests for it. */
#define setjmp(env) setjmp(env)

#ifdef __cplusplus
}
#endif

#endif /* _WASM_REWIND_SETJMP_H */
