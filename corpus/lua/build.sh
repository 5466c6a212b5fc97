#!/usr/bin/env bash
# Builds Lua 5.4 for wasm32-wasi with our setjmp.h (Lua's errors and
# coroutines use setjmp/longjmp) and corpus/lua/driver.c as its `main`:
#
#   corpus/lua/build.sh [OUT.wasm]
#   LUA_SJLJ=wasm-exceptions corpus/lua/build.sh [OUT.wasm]   (see below)
#
# Prints the path of the built lua.wasm, cached as
# TARGET/lua-wasm/HASH/lua.wasm (TARGET: $CARGO_TARGET_DIR or target/), HASH
# covering every input, so a second run builds nothing; copies it to OUT.wasm
# when given. Then: wasm-rewind instrument lua.wasm lua.rw.wasm.
#
# Lua's sources are never committed: they come from the crate lua-src
# (=551.1.0, which holds lua-5.4.9/) through cargo, in a throwaway project
# under TARGET/lua-wasm/src-fetch.
#
# LUA_SJLJ=wasm-exceptions builds the reference instead: Lua as wasi-sdk
# users build it, setjmp/longjmp lowered to wasm exceptions by LLVM at
# compile time (clang-22 -mllvm -wasm-enable-sjlj -mllvm
# -wasm-use-legacy-eh=false), against corpus/wasm-sjlj/ (its setjmp.h and
# the small runtime the lowering calls, which Debian's wasi-libc lacks). It
# imports WASI only and runs as it is, on an engine with exception handling
# (`wasm-rewind run`: wasmtime 48 has it on by default); it is not to be
# instrumented. Unset (or LUA_SJLJ=wasix): the default build above.
#
# Environment: CLANG (default clang-19; clang-22 for LUA_SJLJ=wasm-exceptions,
# which needs clang 22 or later), WASI_SYSROOT (default: made here, as in
# corpus/build-c.sh), LUA_SJLJ, LUA_CFLAGS and LUA_LDFLAGS (below).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=corpus/prelude.sh
. "$root/corpus/prelude.sh"
case ${LUA_SJLJ:-wasix} in
wasix)
    include=$root/runtime-shim/include
    clang=${CLANG:-clang-19}
    ;;
wasm-exceptions)
    include=$root/corpus/wasm-sjlj
    clang=${CLANG:-clang-22}
    ;;
*)
    echo "$0: LUA_SJLJ=$LUA_SJLJ: expected wasix (the default) or wasm-exceptions" >&2
    exit 2
    ;;
esac
target=${CARGO_TARGET_DIR:-$root/target}
cache=$target/lua-wasm
need "$clang" "Debian: apt-get install $clang lld-${clang#clang-} libclang-rt-${clang#clang-}-dev-wasm32 wasi-libc"

lua=$(crate_dir "$cache/src-fetch" lua-src 551.1.0)/lua-5.4.9
[ -f "$lua/lua.h" ] || { echo "$0: $lua/lua.h missing" >&2; exit 1; }

# Every .c of Lua's core and libraries; lua.c and luac.c (their own mains)
# would be left out, lua-src ships neither.
srcs=()
for f in "$lua"/*.c; do
    case $(basename "$f") in lua.c | luac.c) ;; *) srcs+=("$f") ;; esac
done
srcs+=("$here/driver.c")
# The exceptions build links the lowering's runtime (C) and its tag (asm).
asm=()
if [ "${LUA_SJLJ:-wasix}" = wasm-exceptions ]; then
    srcs+=("$include/wasm_sjlj.c")
    asm+=("$include/c_longjmp_tag.s")
fi

# Flags, compile:
#   --target=wasm32-wasi, --sysroot   as corpus/build-c.sh.
#   -O2 -c                            optimise when compiling, not when linking.
#   -I runtime-shim/include           our setjmp.h: LUAI_THROW/LUAI_TRY use it
#                                     (corpus/wasm-sjlj's for the exceptions
#                                     build).
#   -I LUA                            lua.h, luaconf.h... for driver.c.
#   -D_WASI_EMULATED_PROCESS_CLOCKS   clock() (os.clock, ltablib's sort seed):
#                                     wasi-libc declares it only when asked;
#                                     its library is linked below.
#   -D_WASI_EMULATED_SIGNAL           signal(): no lua-5.4.9 file uses it (lua.c
#                                     did, driver.c does not); kept so a driver
#                                     that does still builds. Linked below.
#   -Wno-return-type                  liolib/loslib stubs for popen/tmpnam end in
#                                     luaL_error (never returns) without return.
#   -DLUA_USE_C89                     (not used) Lua's default (no LUA_USE_POSIX,
#                                     no LUA_USE_DLOPEN) already compiles.
#   LUA_CFLAGS (environment)          more, e.g. bench/run's build whose
#                                     LUAI_TRY does not call setjmp.
# The exceptions build adds:
#   -mexception-handling              the target feature (clang also turns it
#                                     on itself for -wasm-enable-sjlj, with
#                                     multivalue and reference-types for the
#                                     new proposal's exnref).
#   -mllvm -wasm-enable-sjlj          LLVM's lowering of setjmp/longjmp.
#   -mllvm -wasm-use-legacy-eh=false  to try_table/throw/exnref (the
#                                     standardised proposal, wasmtime's), not
#                                     the legacy try/catch.
sjlj_flags=()
if [ "${LUA_SJLJ:-wasix}" = wasm-exceptions ]; then
    sjlj_flags=(-mexception-handling -mllvm -wasm-enable-sjlj -mllvm -wasm-use-legacy-eh=false)
fi
# shellcheck disable=SC2206 # LUA_CFLAGS is a list of words
cflags=("--target=$(wasm_target "$clang")" -O2 -I "$include" -I "$lua" "${sjlj_flags[@]}"
    -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -Wno-return-type ${LUA_CFLAGS:-})
# Flags, link (no -O: clang would run wasm-opt if one is on the PATH):
#   -lwasi-emulated-signal -lwasi-emulated-process-clocks   see above.
#   -Wl,--export=__stack_low          where the C stack begins, for a WASIX
#                                     host (see corpus/build-c.sh); unused by
#                                     the exceptions build, harmless there.
#   (no -O: clang would run wasm-opt, and Binaryen 108's cannot even read the
#   exceptions build's try_table.)
#   LUA_LDFLAGS (environment)         more, e.g. bench/run's
#                                     -Wl,--export=__stack_pointer for the
#                                     build Binaryen instruments.
# shellcheck disable=SC2206 # LUA_LDFLAGS is a list of words
ldflags=(-lwasi-emulated-signal -lwasi-emulated-process-clocks -Wl,--export=__stack_low
    ${LUA_LDFLAGS:-})

# The cache key: this script, the sources, our header and the compiler.
key=$({
    cat "$0" "$corpus_prelude" "${srcs[@]}" "${asm[@]}" "$lua"/*.h "$include"/*.h
    "$clang" --version
    echo "${cflags[@]}" "${ldflags[@]}"
} | sha256sum | cut -c1-16)
out=$cache/$key/lua.wasm
if [ ! -f "$out" ]; then
    tmp=$(mktemp -d "$cache/build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    sysroot=$(wasi_sysroot "$tmp")
    objs=()
    pids=()
    for f in "${srcs[@]}"; do
        o=$tmp/$(basename "$f" .c).o
        objs+=("$o")
        "$clang" "--sysroot=$sysroot" "${cflags[@]}" -c "$f" -o "$o" &
        pids+=($!)
    done
    for f in "${asm[@]}"; do
        o=$tmp/$(basename "$f" .s).o
        objs+=("$o")
        "$clang" "${cflags[0]}" -mexception-handling -c "$f" -o "$o" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    "$clang" "${cflags[0]}" "--sysroot=$sysroot" "${objs[@]}" "${ldflags[@]}" -o "$tmp/lua.wasm"
    publish "$tmp/lua.wasm" "$out"
fi
if [ $# -ge 1 ]; then cp "$out" "$1"; fi
echo "$out"
