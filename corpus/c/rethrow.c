/* try/catch emulation with a stack of handlers: an inner handler catches,
 * rethrows to the outer one; handlers several frames apart; a throw that
 * skips an inner try without a matching catch; cleanups counted. */
#include <setjmp.h>
#include <stdio.h>

struct handler {
    jmp_buf env;
    struct handler *prev;
};

static struct handler *top;
static int cleanups;

static void throw_exc(int code) {
    struct handler *h = top;
    if (!h) {
        printf("uncaught %d\n", code);
        return;
    }
    top = h->prev; /* pop before jumping: the handler's frame is resuming */
    longjmp(h->env, code);
}

#define PUSH(h) (h.prev = top, top = &h)
#define END_TRY(h) (top = h.prev)

static int parse_digit(char c) {
    if (c < '0' || c > '9')
        throw_exc(100 + (c & 63));
    return c - '0';
}

static int parse(const char *s) {
    int v = 0;
    while (*s)
        v = v * 10 + parse_digit(*s++);
    return v;
}

/* Catches only codes below 200 and rethrows the rest after a cleanup. */
static int guarded_parse(const char *s, int depth) {
    struct handler h;
    volatile int result = -1;
    PUSH(h);
    int code = setjmp(h.env);
    if (code == 0) {
        if (depth > 0)
            result = guarded_parse(s, depth - 1) + 1;
        else if (s[0] == '!')
            throw_exc(250);
        else
            result = parse(s);
        END_TRY(h);
        return result;
    }
    cleanups++;
    if (code < 200) {
        printf("  depth %d caught %d\n", depth, code);
        throw_exc(code + 100); /* translate and rethrow */
    }
    printf("  depth %d passes %d on\n", depth, code);
    throw_exc(code);
    return -2; /* not reached */
}

static void attempt(const char *s, int depth) {
    struct handler outer;
    PUSH(outer);
    int code = setjmp(outer.env);
    if (code == 0) {
        int v = guarded_parse(s, depth);
        END_TRY(outer);
        printf("\"%s\" depth %d -> %d\n", s, depth, v);
    } else {
        printf("\"%s\" depth %d -> outer caught %d\n", s, depth, code);
    }
}

int main(void) {
    attempt("123", 0);
    attempt("4x5", 0);
    attempt("4x5", 3);
    attempt("!", 2);
    attempt("77", 5);
    printf("cleanups %d, handler stack %s\n", cleanups, top ? "not empty" : "empty");
    return 0;
}
