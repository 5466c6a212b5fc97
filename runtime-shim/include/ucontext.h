/*
 * <ucontext.h> for stock wasi-libc: getcontext, makecontext, swapcontext and
 * setcontext on top of WASIX contexts (<wasix/context.h>, in this directory),
 * so coroutine code written for POSIX builds unchanged.
 *
 * Build: `-I runtime-shim/include`, as for setjmp.h, and link with
 * -Wl,--export-table (context entrypoints are looked up in the exported
 * function table); then `wasm-rewind instrument`. Runs on `wasm-rewind run`,
 * with --embed-runtime on any engine, and on Wasmer; docs/contexts.md.
 *
 * What maps onto what:
 *   - makecontext(ucp, fn, argc, ...) creates a WASIX context on the stack
 *     the program put in ucp->uc_stack (ss_sp, ss_size), or, when ss_sp is
 *     NULL, on one it allocates (WASIX_CONTEXT_STACK_SIZE bytes). `fn` runs
 *     when the context is first activated. When it returns, the context in
 *     ucp->uc_link (read when makecontext is called, as glibc does) is
 *     activated; with no uc_link the program exits with status 0.
 *   - swapcontext(oucp, ucp) saves "the running context, stopped here" in
 *     oucp and activates ucp: a WASIX context_switch. Activating oucp later
 *     returns 0 from this swapcontext.
 *   - setcontext(ucp) activates ucp and does not return.
 *   - getcontext(ucp) saves the running context at this point, with a
 *     setjmp (our setjmp.h, so the module needs `wasm-rewind instrument`):
 *     activating ucp later, from this context or another, returns 0 from
 *     this getcontext again, as long as the function that called it has not
 *     returned (the jump itself is a longjmp inside the context that called
 *     getcontext, never across contexts).
 *
 * Limits, and why:
 *   - A WASIX context resumes only where it last stopped: a ucontext saved by
 *     swapcontext can be activated once, for that stop. Activating it again
 *     after the context has run on (POSIX lets one resume the same saved
 *     ucontext any number of times) fails: setcontext/swapcontext return -1
 *     with errno EINVAL and a message on stderr. So does activating a
 *     makecontext'd ucontext a second time (it restarts nothing) or one whose
 *     function has returned. getcontext's ucontexts can be activated any
 *     number of times: that is what the setjmp is for.
 *   - makecontext passes at most 8 arguments, each an int, and calls `fn`
 *     through a pointer of type void (*)(int, ..., int) with that many:
 *     WebAssembly traps on a call whose type differs from the function's, so
 *     `fn` must really take that many 32-bit arguments (int, unsigned, or a
 *     pointer on wasm32, where pointers are 32 bits) and return void.
 *     On wasm64 a pointer does not fit in an int: pass it in a global or
 *     split it, as on x86-64.
 *   - No signals on WASI: uc_sigmask is kept but never applied; uc_mcontext
 *     is opaque.
 *   - Only contexts made through this header are known to it: do not mix
 *     wasix_context_switch with swapcontext in one program.
 *   - A context whose function has returned is destroyed by the next
 *     context that runs (a context cannot destroy itself); its stack, when
 *     the program gave one, is the program's to free.
 */
#ifndef _WASM_REWIND_UCONTEXT_H
#define _WASM_REWIND_UCONTEXT_H 1

#pragma GCC system_header

#if !defined(__wasm__)
#error "this ucontext.h is for WebAssembly (wasm32/wasm64 with wasi-libc) only"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <__typedef_sigset_t.h> /* wasi-libc's sigset_t, without <signal.h> */
#include <setjmp.h>             /* ours: getcontext is a setjmp */
#include <wasix/context.h>      /* ours */

#ifdef __cplusplus
extern "C" {
#endif

/* wasi-libc names stack_t but never defines struct sigaltstack (it has no
 * signals); this is POSIX's (and glibc's) member order. */
#ifndef __wasm_rewind_struct_sigaltstack
#define __wasm_rewind_struct_sigaltstack 1
struct sigaltstack {
    void *ss_sp;
    int ss_flags;
    size_t ss_size;
};
#endif
typedef struct sigaltstack stack_t;

typedef struct {
    unsigned long __opaque[2];
} mcontext_t;

/* One per context this header knows: the main context's is
 * __wasix_uc_main, the others are allocated by makecontext. */
struct __wasix_uc_ctx {
    wasix_context_id_t __id;
    unsigned long __stops;         /* how many times it has been suspended */
    int __finished;                /* its function has returned */
    struct ucontext_t *__link;     /* uc_link when makecontext was called */
    void (*__fn)(void);
    int __argc;
    int __argv[8];
};

#define __WASIX_UC_NONE 0
#define __WASIX_UC_GET 1  /* getcontext: a setjmp in __jb */
#define __WASIX_UC_MADE 2 /* makecontext: a context not started yet */
#define __WASIX_UC_SWAP 3 /* swapcontext's first argument: stopped there */

typedef struct ucontext_t {
    unsigned long uc_flags;
    struct ucontext_t *uc_link;
    stack_t uc_stack;
    mcontext_t uc_mcontext;
    sigset_t uc_sigmask;
    /* this header's */
    int __kind;
    struct __wasix_uc_ctx *__ctx;
    unsigned long __stops; /* __ctx->__stops this ucontext is valid for */
    jmp_buf __jb;
} ucontext_t;

__attribute__((__weak__)) struct __wasix_uc_ctx __wasix_uc_main = {0, 0, 0, 0, 0, 0, {0}};
__attribute__((__weak__)) struct __wasix_uc_ctx *__wasix_uc_current = 0;
/* A context whose function returned, for the next one to destroy. */
__attribute__((__weak__)) struct __wasix_uc_ctx *__wasix_uc_zombie = 0;
/* A getcontext to jump to once `__wasix_uc_jump_ctx` runs again. */
__attribute__((__weak__)) struct __jmp_buf_tag *__wasix_uc_jump = 0;
__attribute__((__weak__)) struct __wasix_uc_ctx *__wasix_uc_jump_ctx = 0;

static __inline__ __attribute__((__unused__)) struct __wasix_uc_ctx *__wasix_uc_self(void) {
    return __wasix_uc_current ? __wasix_uc_current : &__wasix_uc_main;
}

static __attribute__((__unused__)) int __wasix_uc_refuse(const char *__why) {
    fprintf(stderr, "ucontext: %s\n", __why);
    errno = EINVAL;
    return -1;
}

/* The one place that switches. Returns 0 when this context runs again (or
 * jumps to a pending getcontext of this context), -1 with errno if the
 * switch failed. */
static __attribute__((__noinline__, __unused__)) int
__wasix_uc_switch(struct __wasix_uc_ctx *__target, struct __jmp_buf_tag *__jump) {
    struct __wasix_uc_ctx *__self = __wasix_uc_self();
    __wasix_uc_jump = __jump;
    __wasix_uc_jump_ctx = __jump ? __target : 0;
    __self->__stops++;
    __wasix_uc_current = __target;
    if (wasix_context_switch(__target->__id) != 0) {
        int __e = errno;
        __self->__stops--;
        __wasix_uc_current = __self;
        __wasix_uc_jump = 0;
        __wasix_uc_jump_ctx = 0;
        errno = __e;
        return -1;
    }
    __wasix_uc_current = __self;
    if (__wasix_uc_zombie && __wasix_uc_zombie != __self) {
        (void)wasix_context_destroy(__wasix_uc_zombie->__id);
        __wasix_uc_zombie = 0;
    }
    if (__wasix_uc_jump && __wasix_uc_jump_ctx == __self) {
        struct __jmp_buf_tag *__jb = __wasix_uc_jump;
        __wasix_uc_jump = 0;
        __wasix_uc_jump_ctx = 0;
        longjmp(__jb, 1);
    }
    return 0;
}

/* Where `__target` of `ucp` may be resumed from the running context; 0 if
 * it can, -1 with errno EINVAL (and a message) if not. */
static __inline__ __attribute__((__unused__)) int __wasix_uc_check(const ucontext_t *__ucp) {
    struct __wasix_uc_ctx *__c;
    if (!__ucp || __ucp->__kind == __WASIX_UC_NONE || !__ucp->__ctx)
        return __wasix_uc_refuse("activating a ucontext that getcontext, makecontext or "
                                 "swapcontext never filled");
    __c = __ucp->__ctx;
    if (__c->__finished)
        return __wasix_uc_refuse("activating a context whose function has returned");
    if (__ucp->__kind == __WASIX_UC_GET)
        return 0;
    if (__c == __wasix_uc_self() || __c->__stops != __ucp->__stops)
        return __wasix_uc_refuse("activating a saved ucontext whose context has run since it "
                                 "was saved: a WASIX context resumes only where it last "
                                 "stopped (docs/contexts.md)");
    return 0;
}

static __inline__ __attribute__((__unused__)) int setcontext(const ucontext_t *ucp) {
    if (__wasix_uc_check(ucp) != 0)
        return -1;
    if (ucp->__kind == __WASIX_UC_GET && ucp->__ctx == __wasix_uc_self())
        longjmp(((ucontext_t *)ucp)->__jb, 1);
    if (__wasix_uc_switch(ucp->__ctx, ucp->__kind == __WASIX_UC_GET
                                          ? ((ucontext_t *)ucp)->__jb
                                          : 0) != 0)
        return -1;
    /* Nothing holds a ucontext for the stop this call made. */
    return __wasix_uc_refuse("a context resumed inside setcontext");
}

static __inline__ __attribute__((__unused__)) int swapcontext(ucontext_t *oucp,
                                                               const ucontext_t *ucp) {
    struct __wasix_uc_ctx *__self = __wasix_uc_self();
    if (!oucp)
        return __wasix_uc_refuse("swapcontext without a ucontext to save into");
    if (__wasix_uc_check(ucp) != 0)
        return -1;
    if (ucp->__kind == __WASIX_UC_GET && ucp->__ctx == __self) {
        /* A jump inside this context: nothing stops, oucp cannot name it. */
        oucp->__kind = __WASIX_UC_NONE;
        longjmp(((ucontext_t *)ucp)->__jb, 1);
    }
    oucp->__kind = __WASIX_UC_SWAP;
    oucp->__ctx = __self;
    oucp->__stops = __self->__stops + 1; /* the stop __wasix_uc_switch makes */
    return __wasix_uc_switch(ucp->__ctx, ucp->__kind == __WASIX_UC_GET
                                             ? ((ucontext_t *)ucp)->__jb
                                             : 0);
}

/* Runs as the WASIX entrypoint of every makecontext'd context. */
static __attribute__((__noreturn__, __unused__)) void __wasix_uc_entry(void *__p) {
    struct __wasix_uc_ctx *__c = (struct __wasix_uc_ctx *)__p;
    int *__a = __c->__argv;
    switch (__c->__argc) {
    case 0: ((void (*)(void))__c->__fn)(); break;
    case 1: ((void (*)(int))__c->__fn)(__a[0]); break;
    case 2: ((void (*)(int, int))__c->__fn)(__a[0], __a[1]); break;
    case 3: ((void (*)(int, int, int))__c->__fn)(__a[0], __a[1], __a[2]); break;
    case 4: ((void (*)(int, int, int, int))__c->__fn)(__a[0], __a[1], __a[2], __a[3]); break;
    case 5:
        ((void (*)(int, int, int, int, int))__c->__fn)(__a[0], __a[1], __a[2], __a[3], __a[4]);
        break;
    case 6:
        ((void (*)(int, int, int, int, int, int))__c->__fn)(__a[0], __a[1], __a[2], __a[3],
                                                             __a[4], __a[5]);
        break;
    case 7:
        ((void (*)(int, int, int, int, int, int, int))__c->__fn)(__a[0], __a[1], __a[2], __a[3],
                                                                  __a[4], __a[5], __a[6]);
        break;
    default:
        ((void (*)(int, int, int, int, int, int, int, int))__c->__fn)(
            __a[0], __a[1], __a[2], __a[3], __a[4], __a[5], __a[6], __a[7]);
        break;
    }
    __c->__finished = 1;
    if (!__c->__link)
        exit(0); /* glibc: the thread exits; here, the only thread */
    __wasix_uc_zombie = __c;
    setcontext(__c->__link);
    fprintf(stderr, "ucontext: could not activate uc_link after a context's function returned\n");
    abort();
}

static __inline__ __attribute__((__unused__)) void makecontext(ucontext_t *ucp, void (*func)(void),
                                                               int argc, ...) {
    struct __wasix_uc_ctx *__c;
    va_list __ap;
    int __i;
    if (argc < 0 || argc > 8) {
        fprintf(stderr, "ucontext: makecontext passes at most 8 int arguments, not %d\n", argc);
        abort();
    }
    __c = (struct __wasix_uc_ctx *)calloc(1, sizeof *__c);
    if (!__c) {
        fprintf(stderr, "ucontext: makecontext: out of memory\n");
        abort();
    }
    __c->__fn = func;
    __c->__argc = argc;
    __c->__link = ucp->uc_link;
    va_start(__ap, argc);
    for (__i = 0; __i < argc; __i++)
        __c->__argv[__i] = va_arg(__ap, int);
    va_end(__ap);
    if (__wasix_context_create_ex(&__c->__id, 0, __wasix_uc_entry, __c, ucp->uc_stack.ss_sp,
                                  ucp->uc_stack.ss_sp ? ucp->uc_stack.ss_size : 0) != 0) {
        fprintf(stderr, "ucontext: makecontext: context_create failed (errno %d)\n", errno);
        abort();
    }
    ucp->__kind = __WASIX_UC_MADE;
    ucp->__ctx = __c;
    ucp->__stops = 0;
}

/* Saves the running context here; returns 0, and 0 again each time the
 * ucontext is activated. Always inlined: the setjmp must be in the caller's
 * frame. */
static __inline__ __attribute__((__always_inline__, __returns_twice__, __unused__)) int
getcontext(ucontext_t *ucp) {
    ucp->__kind = __WASIX_UC_GET;
    ucp->__ctx = __wasix_uc_self();
    ucp->__stops = 0;
    (void)setjmp(ucp->__jb);
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* _WASM_REWIND_UCONTEXT_H */
