/* A small SQL shell over SQLite, for wasm32-wasi and natively: runs the SQL
 * in the file named by argv[1] (stdin when there is none, or "-") against the
 * database argv[2] (":memory:" when there is none).
 *
 * Input is cut into chunks as sqlite3's shell does: lines are gathered until
 * sqlite3_complete() says they end a statement, then each statement of the
 * chunk is prepared and stepped in turn. Output is plain and stable, so a
 * wasm build and a native build can be compared byte for byte:
 *
 *   - a statement that returns columns prints its column names, then one line
 *     per row, values separated by '|': NULL as "NULL", integers and reals as
 *     SQLite's own text conversion (not printf: libcs differ), text as is,
 *     blobs as X'hex';
 *   - an error prints "error near line N: [EXTENDED-CODE] MESSAGE" on stderr
 *     and skips the rest of its chunk; the next chunk runs as usual;
 *   - the exit status is 1 if any statement failed, else 0.
 *
 * Built with -DSETJMP_FUNCTIONS, the driver also registers SQL functions that use setjmp/longjmp inside
 * themselves only (never across SQLite's frames, which SQLite does not
 * expect): under wasm-rewind each setjmp and longjmp unwinds and rewinds the
 * whole stack, SQLite's VDBE frames included, while SQLite's state stays
 * valid. Natively they use glibc's setjmp.h, so results must agree:
 *
 *   sj_div(a, b)    a / b on 64-bit integers; division by zero and
 *                   INT64_MIN / -1 longjmp out of a helper and become SQL
 *                   errors.
 *   sj_depth(n)     recurses n frames deep (0 <= n <= 10000), longjmps from
 *                   the bottom to the top and returns how many frames it
 *                   went through.
 *   sj_sum(x)       an aggregate: sums integers, each step behind its own
 *                   setjmp; a non-integer longjmps out of the step and makes
 *                   the aggregate fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite3.h"

#ifdef SETJMP_FUNCTIONS
#include <limits.h>
#include <setjmp.h>

/* ---- setjmp/longjmp inside SQL functions -------------------------------- */

/* Why a helper gave up, passed through longjmp (never 0). */
enum { JUMP_DIV_ZERO = 1, JUMP_OVERFLOW = 2, JUMP_NOT_INTEGER = 3 };

/* Divides or jumps: the jump leaves this frame and its caller's callee
 * frames only, landing in sj_div's setjmp. */
static sqlite3_int64 divide(jmp_buf env, sqlite3_int64 a, sqlite3_int64 b) {
  if (b == 0)
    longjmp(env, JUMP_DIV_ZERO);
  if (a == LLONG_MIN && b == -1)
    longjmp(env, JUMP_OVERFLOW);
  return a / b;
}

static void sj_div(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL ||
      sqlite3_value_type(argv[1]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  jmp_buf env;
  sqlite3_int64 a = sqlite3_value_int64(argv[0]);
  sqlite3_int64 b = sqlite3_value_int64(argv[1]);
  switch (setjmp(env)) {
  case 0:
    sqlite3_result_int64(ctx, divide(env, a, b));
    break;
  case JUMP_DIV_ZERO:
    sqlite3_result_error(ctx, "sj_div: division by zero", -1);
    break;
  default:
    sqlite3_result_error(ctx, "sj_div: integer overflow", -1);
    break;
  }
}

/* Frames entered by descend(); a global, so its value after the jump is
 * the one written last (a non-volatile local would be indeterminate). */
static volatile int frames_entered;

/* Recurses `left` more frames, then jumps back to the top. The arithmetic
 * on the result keeps the call from being a tail call; the test of the
 * (volatile, so unknown to the compiler) counter, always true, gives the
 * bottom a way to return, without which gcc warns of infinite recursion. */
static int descend(jmp_buf env, int left) {
  frames_entered++;
  if (left == 0) {
    if (frames_entered > 0)
      longjmp(env, 1);
    return 0;
  }
  return descend(env, left - 1) + 1;
}

static void sj_depth(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  sqlite3_int64 n = sqlite3_value_int64(argv[0]);
  if (n < 0 || n > 10000) {
    sqlite3_result_error(ctx, "sj_depth: depth out of range 0..10000", -1);
    return;
  }
  jmp_buf env;
  frames_entered = 0;
  if (setjmp(env) == 0) {
    descend(env, (int)n);
    sqlite3_result_error(ctx, "sj_depth: returned without jumping", -1);
  } else {
    sqlite3_result_int(ctx, frames_entered);
  }
}

/* sj_sum's state, in SQLite's aggregate context (heap memory). */
struct sum_state {
  sqlite3_int64 total;
  int failed;
};

/* Adds `v` to `state` or jumps when `v` is not an integer. */
static void add_integer(jmp_buf env, struct sum_state *state,
                        sqlite3_value *v) {
  if (sqlite3_value_type(v) != SQLITE_INTEGER)
    longjmp(env, JUMP_NOT_INTEGER);
  /* Unsigned addition wraps instead of overflowing (undefined in C). */
  state->total = (sqlite3_int64)((sqlite3_uint64)state->total +
                                 (sqlite3_uint64)sqlite3_value_int64(v));
}

static void sj_sum_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  /* Allocated (and so published to SQLite) before setjmp: clang may not
   * assume memory it has not seen escape is unchanged by the jump. */
  struct sum_state *state = sqlite3_aggregate_context(ctx, sizeof *state);
  if (state == NULL) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (state->failed || sqlite3_value_type(argv[0]) == SQLITE_NULL)
    return;
  jmp_buf env;
  if (setjmp(env) == 0)
    add_integer(env, state, argv[0]);
  else
    state->failed = 1;
}

static void sj_sum_final(sqlite3_context *ctx) {
  struct sum_state *state = sqlite3_aggregate_context(ctx, 0);
  if (state == NULL)
    sqlite3_result_int64(ctx, 0); /* no rows */
  else if (state->failed)
    sqlite3_result_error(ctx, "sj_sum: not an integer", -1);
  else
    sqlite3_result_int64(ctx, state->total);
}

static int register_functions(sqlite3 *db) {
  const int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC;
  int rc = sqlite3_create_function(db, "sj_div", 2, flags, NULL, sj_div, NULL,
                                   NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(db, "sj_depth", 1, flags, NULL, sj_depth,
                                 NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(db, "sj_sum", 1, flags, NULL, NULL,
                                 sj_sum_step, sj_sum_final);
  return rc;
}
#else
/* The plain build: no function, no setjmp, no WASIX import. */
static int register_functions(sqlite3 *db) {
  (void)db;
  return SQLITE_OK;
}
#endif

/* ---- the shell ----------------------------------------------------------- */

/* Reads all of `f` into a NUL-terminated heap buffer, or returns NULL. */
static char *read_all(FILE *f) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL)
    return NULL;
  for (;;) {
    if (cap - len < 4096) {
      char *more = realloc(buf, cap *= 2);
      if (more == NULL) {
        free(buf);
        return NULL;
      }
      buf = more;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0)
      break;
  }
  if (ferror(f)) {
    free(buf);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

static void print_value(sqlite3_stmt *stmt, int i) {
  switch (sqlite3_column_type(stmt, i)) {
  case SQLITE_NULL:
    fputs("NULL", stdout);
    break;
  case SQLITE_BLOB: {
    const unsigned char *p = sqlite3_column_blob(stmt, i);
    int n = sqlite3_column_bytes(stmt, i);
    fputs("X'", stdout);
    for (int k = 0; k < n; k++)
      printf("%02X", p[k]);
    fputc('\'', stdout);
    break;
  }
  default: /* integer, real, text: SQLite's own conversion to text */
    fwrite(sqlite3_column_text(stmt, i), 1, sqlite3_column_bytes(stmt, i),
           stdout);
    break;
  }
}

/* Reports the connection's current error for the statement starting at
 * `line`. */
static void report(sqlite3 *db, int line) {
  fflush(stdout);
  fprintf(stderr, "error near line %d: [%d] %s\n", line,
          sqlite3_extended_errcode(db), sqlite3_errmsg(db));
}

/* Runs every statement of `sql` (a complete chunk starting at `line`);
 * returns 0, or 1 after the first error (the rest of the chunk is skipped). */
static int run_chunk(sqlite3 *db, const char *sql, int line) {
  while (*sql != '\0') {
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, &tail) != SQLITE_OK) {
      report(db, line);
      return 1;
    }
    /* Lines before the next statement, for its error messages. */
    for (const char *p = sql; p < tail; p++)
      line += *p == '\n';
    sql = tail;
    if (stmt == NULL) /* only a comment or white space */
      continue;
    int ncol = sqlite3_column_count(stmt);
    for (int i = 0; i < ncol; i++)
      printf("%s%s", i ? "|" : "", sqlite3_column_name(stmt, i));
    if (ncol > 0)
      putchar('\n');
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      for (int i = 0; i < ncol; i++) {
        if (i)
          putchar('|');
        print_value(stmt, i);
      }
      putchar('\n');
    }
    if (rc != SQLITE_DONE) {
      report(db, line);
      sqlite3_finalize(stmt);
      return 1;
    }
    sqlite3_finalize(stmt);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "-";
  const char *db_path = argc > 2 ? argv[2] : ":memory:";
  FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (in == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    return 2;
  }
  char *text = read_all(in);
  if (in != stdin)
    fclose(in);
  if (text == NULL) {
    fprintf(stderr, "cannot read %s\n", path);
    return 2;
  }

  sqlite3 *db = NULL;
  if (sqlite3_open(db_path, &db) != SQLITE_OK ||
      register_functions(db) != SQLITE_OK) {
    fprintf(stderr, "cannot open database %s: %s\n", db_path,
            db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    free(text);
    return 2;
  }

  /* Gather lines into `chunk` until they form complete statements. */
  size_t len = strlen(text);
  char *chunk = malloc(len + 1);
  if (chunk == NULL) {
    fputs("out of memory\n", stderr);
    return 2;
  }
  size_t used = 0;
  int failed = 0, line = 1, chunk_line = 1;
  for (const char *p = text; *p != '\0';) {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) + 1 : strlen(p);
    if (used == 0)
      chunk_line = line;
    memcpy(chunk + used, p, n);
    used += n;
    chunk[used] = '\0';
    p += n;
    line++;
    if (sqlite3_complete(chunk)) {
      failed |= run_chunk(db, chunk, chunk_line);
      used = 0;
    }
  }
  /* A trailing incomplete statement is run too, to report its error. */
  if (used > 0 && strspn(chunk, " \t\r\n") < used)
    failed |= run_chunk(db, chunk, chunk_line);

  free(chunk);
  free(text);
  if (sqlite3_close(db) != SQLITE_OK) {
    fprintf(stderr, "close: %s\n", sqlite3_errmsg(db));
    failed = 1;
  }
  fflush(stdout);
  return failed;
}
