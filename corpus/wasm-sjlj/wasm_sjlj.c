/* The runtime that LLVM's compile-time lowering of setjmp/longjmp to wasm
 * exceptions calls (clang -mllvm -wasm-enable-sjlj; see setjmp.h here).
 * wasi-sdk ships it in its libc as libsetjmp; Debian's wasi-libc does not,
 * so it is written here from what the lowered code expects:
 *
 *   - In a function that calls setjmp, LLVM reserves a stack slot whose
 *     address identifies this invocation of the function, numbers the setjmp
 *     calls in it from 1, and makes each `setjmp(env)` call
 *     `__wasm_setjmp(env, label, id)` and then continue with 0.
 *   - `longjmp(env, val)` becomes `__wasm_longjmp(env, val)`, which must
 *     throw the tag `__c_longjmp` (declared in c_longjmp_tag.s) with the
 *     address of a `{void *env; int val}` pair.
 *   - Every call in such a function that may longjmp sits in a try_table
 *     that catches `__c_longjmp`, reads env and val from the pair, and calls
 *     `__wasm_setjmp_test(env, id)`: a nonzero label means "jump to that
 *     setjmp call of mine, which returns val"; 0 means the jump is for
 *     another function, and it calls `__wasm_longjmp(env, val)` again to
 *     throw it on.
 *
 * The pair lives in the jmp_buf itself: it must outlive the frames the
 * exception unwinds, and the jmp_buf belongs to the setjmp caller, whose
 * frame is still there when the jump is valid C.
 *
 * Compile with -mexception-handling (for __builtin_wasm_throw); it needs no
 * -wasm-enable-sjlj itself. */
#include "setjmp.h"

#include <stdint.h>

void __wasm_setjmp(void *env, uint32_t label, void *invocation) {
    struct __wasm_sjlj_buf *buf = env;
    /* The lowering never passes these: a 0 would read as "not mine". */
    if (label == 0 || invocation == 0)
        __builtin_trap();
    buf->__invocation = invocation;
    buf->__label = label;
}

uint32_t __wasm_setjmp_test(void *env, void *invocation) {
    struct __wasm_sjlj_buf *buf = env;
    /* A jmp_buf that setjmp never filled: undefined in C, refused here. */
    if (buf->__label == 0)
        __builtin_trap();
    return buf->__invocation == invocation ? buf->__label : 0;
}

_Noreturn void __wasm_longjmp(void *env, int val) {
    struct __wasm_sjlj_buf *buf = env;
    buf->__env = env;
    buf->__val = val == 0 ? 1 : val; /* C: setjmp never returns 0 twice */
    /* Tag 1 is __c_longjmp (tag 0 is C++'s __cpp_exception); the payload is
     * the address of the {env, val} pair. */
    __builtin_wasm_throw(1, &buf->__env);
}
