/* A minimal setjmp.h for LLVM's compile-time lowering of setjmp/longjmp to
 * wasm exceptions (clang -mllvm -wasm-enable-sjlj), the way wasi-sdk users
 * build: the reference that bench/run compares our post-link lowering with.
 * Debian's wasi-libc ships no setjmp.h, and runtime-shim/include's is ours
 * (the WASIX stack calls), so this one stands in for wasi-sdk's.
 *
 * setjmp and longjmp are plain extern functions on purpose: LLVM's pass
 * (WebAssemblyLowerEmscriptenEHSjLj) finds the calls by these names and
 * rewrites them into calls to the runtime in wasm_sjlj.c and a try_table
 * around every call that may longjmp. Nothing defines `setjmp` or `longjmp`
 * themselves, so a file compiled without -wasm-enable-sjlj fails to link
 * instead of silently doing something else.
 *
 * Only setjmp/longjmp: Lua 5.4 without LUA_USE_POSIX (our build) uses
 * nothing else. */
#ifndef WASM_SJLJ_SETJMP_H
#define WASM_SJLJ_SETJMP_H

#ifdef __cplusplus
extern "C" {
#endif

/* What wasm_sjlj.c keeps in a jmp_buf. The layout is ours: LLVM's code only
 * passes the jmp_buf's address to the runtime, and reads `{env, val}` (the
 * last two members) through the pointer the exception carries. */
struct __wasm_sjlj_buf {
    void *__invocation; /* which call of the function that ran setjmp */
    unsigned int __label; /* which setjmp call in it (1, 2, ...; 0: unset) */
    void *__env;          /* longjmp's payload: this jmp_buf... */
    int __val;            /* ...and the value setjmp returns (never 0) */
};

typedef struct __wasm_sjlj_buf jmp_buf[1];

__attribute__((returns_twice)) int setjmp(jmp_buf env);
_Noreturn void longjmp(jmp_buf env, int val);

#ifdef __cplusplus
}
#endif

#endif
