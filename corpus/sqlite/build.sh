#!/usr/bin/env bash
# Builds SQLite (the amalgamation bundled in the crate libsqlite3-sys) for
# wasm32-wasi with corpus/sqlite/driver.c, a small SQL shell, as its `main`:
#
#   corpus/sqlite/build.sh [OUT.wasm]              sqlite.wasm
#   corpus/sqlite/build.sh --setjmp [OUT.wasm]     sqlite-setjmp.wasm
#   corpus/sqlite/build.sh --native [OUT]          sqlite-native
#
# Prints the path of the built program on its last line, cached as
# TARGET/sqlite-wasm/HASH/NAME (TARGET: $CARGO_TARGET_DIR or target/), HASH
# covering every input, so a second run builds nothing; copies it to OUT when
# given. Then: wasm-rewind instrument sqlite.wasm sqlite.rw.wasm.
#
# The variants differ in the driver only:
#   (default)   plain SQLite: imports WASI only, so it also runs
#               uninstrumented (`wasm-rewind run` takes it as it is).
#   --setjmp    the driver also registers SQL functions that use setjmp and
#               longjmp inside themselves (driver.c says which) through our
#               setjmp.h: it imports the WASIX stack calls and so runs only
#               instrumented.
#   --native    for this machine, with gcc, glibc's setjmp.h and the same
#               SQLite options and driver functions as --setjmp: the
#               reference that tests/sqlite.rs compares the wasm builds with.
#
# SQLite's sources are never committed: they come from the crate
# libsqlite3-sys (=0.40.0, whose sqlite3/ holds SQLite 3.54.1's amalgamation,
# what its `bundled` feature compiles) through cargo, in a throwaway project
# under TARGET/sqlite-wasm/src-fetch.
#
# Environment: CLANG (default clang-19), CC (default gcc, for --native),
# WASI_SYSROOT (default: made here, as in corpus/build-c.sh).
set -euo pipefail

kind=wasm
case ${1:-} in
--setjmp) kind=setjmp; shift ;;
--native) kind=native; shift ;;
esac
if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
    echo "usage: $0 [--setjmp | --native] [OUT]" >&2
    exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=corpus/prelude.sh
. "$root/corpus/prelude.sh"
include=$root/runtime-shim/include
clang=${CLANG:-clang-19}
cc=${CC:-gcc}
target=${CARGO_TARGET_DIR:-$root/target}
cache=$target/sqlite-wasm
install_hint="Debian: apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc gcc"
if [ $kind = native ]; then compiler=$cc; else compiler=$clang; fi
need "$compiler" "$install_hint"

# No default features: they would pull pkg-config and vcpkg for nothing.
sqlite=$(crate_dir "$cache/src-fetch" libsqlite3-sys 0.40.0 "default-features = false")/sqlite3
[ -f "$sqlite/sqlite3.c" ] || { echo "$0: $sqlite/sqlite3.c missing" >&2; exit 1; }

# SQLite's options, the same for both builds, so their outputs can be
# compared. Close to libsqlite3-sys's `bundled` set (FTS3/5, R*Tree, STAT4,
# dbstat, soundex, column metadata, API armor, foreign keys on), minus what
# WASI has no use for:
#   SQLITE_THREADSAFE=0            no threads on wasm32-wasi (no pthreads).
#   SQLITE_OMIT_LOAD_EXTENSION     no dlopen.
#   SQLITE_OMIT_WAL                WAL needs shared memory (mmap of -shm).
#   SQLITE_MAX_MMAP_SIZE=0         no memory-mapped I/O either.
#   SQLITE_TEMP_STORE=3            temporary tables and indexes always in
#                                  memory: no temp files (no /tmp preopened).
#   SQLITE_OMIT_RANDOMNESS         (not set) the workload calls no random().
#   LONGDOUBLE_TYPE=double         wasm32's long double is a soft-float
#                                  binary128 (slow, and libsqlite3-sys sets
#                                  this for wasi); set natively too so both
#                                  builds convert floats the same way.
options=(-DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_WAL
    -DSQLITE_MAX_MMAP_SIZE=0 -DSQLITE_TEMP_STORE=3 -DLONGDOUBLE_TYPE=double
    -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_API_ARMOR
    -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB
    -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5
    -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_STAT4 -DSQLITE_SOUNDEX)

if [ $kind = native ]; then
    # Natively: glibc's setjmp.h (our include directory is not passed).
    cflags=(-O2 -I "$sqlite" "${options[@]}")
    ldflags=(-lm)
    name=sqlite-native
else
    # Flags, compile:
    #   --target=wasm32-wasi, --sysroot   as corpus/build-c.sh.
    #   -O2 -c                            optimise when compiling, not when linking.
    #   -I runtime-shim/include           our setjmp.h, for driver.c's functions.
    #   -I SQLITE                         sqlite3.h for driver.c.
    #   -D_WASI_EMULATED_MMAN             os_unix.c's system-call table holds
    #                                     mmap/munmap (never called with the
    #                                     options above); wasi-libc declares
    #                                     them only when asked.
    #   -D_WASI_EMULATED_GETPID           os_unix.c's getpid() (seeding).
    #   -D_WASI_EMULATED_SIGNAL           signal.h, as libsqlite3-sys passes.
    #   -D_WASI_EMULATED_PROCESS_CLOCKS   clock(), likewise.
    cflags=("--target=$(wasm_target "$clang")" -O2 -I "$include" -I "$sqlite" "${options[@]}"
        -D_WASI_EMULATED_MMAN -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_SIGNAL
        -D_WASI_EMULATED_PROCESS_CLOCKS)
    # Flags, link (no -O: clang would run wasm-opt if one is on the PATH): the
    # emulation libraries named above, and __stack_low exported for a WASIX
    # host (see corpus/build-c.sh).
    # SQLITE_LDFLAGS (environment) adds more, e.g. -Wl,--export=__stack_pointer
    # for a build Binaryen instruments.
    # shellcheck disable=SC2206 # SQLITE_LDFLAGS is a list of words
    ldflags=(-lwasi-emulated-mman -lwasi-emulated-getpid -lwasi-emulated-signal
        -lwasi-emulated-process-clocks -Wl,--export=__stack_low ${SQLITE_LDFLAGS:-})
    name=sqlite.wasm
fi
# The driver's setjmp functions: in every variant but the plain wasm one.
driver_flags=(-DSETJMP_FUNCTIONS)
case $kind in
wasm) driver_flags=() ;;
setjmp) name=sqlite-setjmp.wasm ;;
esac

# Two cache levels: the amalgamation's object (the slow part, 20 to 30 s
# here) is keyed by this script, SQLite's sources and the compiler, and
# shared by the variants; the linked program adds the driver and our header.
hash() { sha256sum | cut -c1-16; }
compiler_id=$("$compiler" --version)
obj_key=$({
    if [ $kind = native ]; then echo native; else echo wasm32-wasi; fi
    cat "$0" "$corpus_prelude" "$sqlite/sqlite3.c" "$sqlite/sqlite3.h"
    echo "$compiler_id"
} | hash)
key=$({
    echo "$obj_key $name ${ldflags[*]}"
    cat "$here/driver.c" "$include"/*.h
} | hash)
obj=$cache/obj-$obj_key/sqlite3.o
out=$cache/$key/$name
tmp=
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
if [ ! -f "$out" ]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/build.XXXXXX")
    if [ $kind = native ]; then
        cc_cmd=("$cc")
        link=("$cc")
    else
        sysroot=$(wasi_sysroot "$tmp")
        cc_cmd=("$clang" "--sysroot=$sysroot")
        link=("$clang" "${cflags[0]}" "--sysroot=$sysroot")
    fi
    # The driver compiles while the amalgamation does, if it must.
    "${cc_cmd[@]}" "${cflags[@]}" "${driver_flags[@]}" -c "$here/driver.c" -o "$tmp/driver.o" &
    driver_pid=$!
    if [ ! -f "$obj" ]; then
        "${cc_cmd[@]}" "${cflags[@]}" -c "$sqlite/sqlite3.c" -o "$tmp/sqlite3.o"
        publish "$tmp/sqlite3.o" "$obj"
    fi
    wait "$driver_pid"
    "${link[@]}" "$obj" "$tmp/driver.o" "${ldflags[@]}" -o "$tmp/$name"
    publish "$tmp/$name" "$out"
fi
if [ $# -ge 1 ]; then cp "$out" "$1"; fi
echo "$out"
