/* What `wasm-rewind run` passes to a WASI program: arguments, environment,
 * a preopened directory, stdin, stderr and the exit code, with a longjmp on
 * the way so the shim is in the loop. tests/run.rs checks the output. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf env;

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        printf("arg%d=%s\n", i, argv[i]);
    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");
    char buf[64] = {0};
    FILE *f = fopen("/data/in.txt", "r");
    if (f && fgets(buf, sizeof buf, f))
        printf("file=%s", buf);
    else
        printf("file=(none)\n");
    if (f)
        fclose(f);
    char line[64] = {0};
    if (fgets(line, sizeof line, stdin))
        printf("stdin=%s", line);
    int jumped = setjmp(env);
    if (jumped == 0)
        longjmp(env, 7);
    fprintf(stderr, "jumped=%d\n", jumped);
    return jumped;
}
