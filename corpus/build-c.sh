#!/usr/bin/env bash
# Builds one C program for wasm32-wasi (WASI preview 1) with clang and
# wasi-libc, using our setjmp.h:
#
#   corpus/build-c.sh SRC.c OUT.wasm
#
# Then: wasm-rewind instrument OUT.wasm OUT.rw.wasm && wasm-rewind run OUT.rw.wasm
#
# Flags (see DEVELOPERS.md):
#   --target=wasm32-wasi      wasi-libc's triple (Debian's layout uses it).
#   --sysroot=DIR             Debian installs wasi-libc in /usr/include/wasm32-wasi
#                             and /usr/lib/wasm32-wasi; clang wants them under one
#                             sysroot, so we make a throwaway one of two symlinks.
#                             Set WASI_SYSROOT to use a real one (e.g. wasi-sdk's).
#   -I runtime-shim/include   our setjmp.h; wasi-libc has none, so it is found first.
#   -O2 -c                    optimise when compiling...
#   (no -O when linking)      ...not when linking: with -O, clang runs wasm-opt on
#                             the output if it finds one on the PATH.
# The name section is kept (no -s, no --strip-all): `wasm-rewind instrument`
# finds __stack_pointer through it and exports it for the shim.
#
# Environment: CLANG (default clang-19), WASI_SYSROOT (default: made here),
# EXTRA_CFLAGS (added when compiling), EXTRA_LDFLAGS (added when linking).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SRC.c OUT.wasm" >&2
    exit 2
fi
src=$1
out=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
include=$here/../runtime-shim/include
clang=${CLANG:-clang-19}

command -v "$clang" >/dev/null || {
    echo "$0: $clang not found (Debian: apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc)" >&2
    exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sysroot=${WASI_SYSROOT:-}
if [ -z "$sysroot" ]; then
    for d in /usr/include/wasm32-wasi /usr/lib/wasm32-wasi; do
        [ -d "$d" ] || {
            echo "$0: $d missing (Debian: apt-get install wasi-libc), or set WASI_SYSROOT" >&2
            exit 1
        }
    done
    sysroot=$tmp/sysroot
    mkdir -p "$sysroot/include" "$sysroot/lib"
    ln -s /usr/include/wasm32-wasi "$sysroot/include/wasm32-wasi"
    ln -s /usr/lib/wasm32-wasi "$sysroot/lib/wasm32-wasi"
fi

common=(--target=wasm32-wasi "--sysroot=$sysroot")
# shellcheck disable=SC2086 # EXTRA_CFLAGS is a list of words
"$clang" "${common[@]}" -I "$include" -O2 -Wall -Wextra ${EXTRA_CFLAGS:-} \
    -c "$src" -o "$tmp/prog.o"
# No extra link flags are needed: `wasm-rewind instrument` exports what the
# shim needs and gives the module its own memory for the unwind buffer.
# EXTRA_LDFLAGS is for modules other tools instrument (bench/run links
# Binaryen's input with --export=__stack_pointer,__stack_low).
# shellcheck disable=SC2086 # EXTRA_LDFLAGS is a list of words
"$clang" "${common[@]}" "$tmp/prog.o" ${EXTRA_LDFLAGS:-} -o "$out"
