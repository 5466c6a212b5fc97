/* A small stand-in for Lua's lua.c, for wasm32-wasi: runs the script named
 * by argv[1] (stdin when there is none) with the remaining arguments in `arg`
 * and as `...`, and reports an uncaught error as lua.c does: "PROG: MSG" and a
 * stack traceback on stderr, exit status 1. PROG is "lua5.4", the name
 * Debian's interpreter prints, so the output can be compared with it exactly
 * (argv[0] under `wasm-rewind run` is the module's name). */
#include <stdio.h>
#include <stdlib.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#ifndef PROGNAME
#define PROGNAME "lua5.4"
#endif

static void l_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", PROGNAME, msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    l_message(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

/* lua.c's message handler: turns a non-string error object into a string
 * (its __tostring, or "(error object is a T value)") and appends a
 * traceback. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* arg[0] is the script, arg[-1] the interpreter, arg[1..] the arguments. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  lua_pushstring(L, PROGNAME);
  lua_rawseti(L, -2, -script);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Runs the script in protected mode (the Lua side of main). */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  const char *fname = argc > 1 ? argv[1] : NULL;
  luaL_checkversion(L);
  luaL_openlibs(L);
  createargtable(L, argv, argc, fname != NULL ? 1 : 0);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0); /* as lua.c */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = 0;
    for (int i = 2; i < argc; i++, n++)
      lua_pushstring(L, argv[i]);
    int base = lua_gettop(L) - n;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    status = lua_pcall(L, n, LUA_MULTRET, base);
    lua_remove(L, base);
  }
  lua_pushboolean(L, report(L, status) == LUA_OK);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP); /* as lua.c: no GC while building the state */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int ok = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
