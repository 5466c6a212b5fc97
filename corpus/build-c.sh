#!/usr/bin/env bash
# Builds one C program for wasm32-wasi (WASI preview 1) with clang and
# wasi-libc, using our setjmp.h:
#
#   corpus/build-c.sh SRC.c OUT.wasm
#
# Then: wasm-rewind instrument OUT.wasm OUT.rw.wasm && wasm-rewind run OUT.rw.wasm
#
# Flags (see DEVELOPERS.md):
#   --target=wasm32-wasi      WASI preview 1 (clang 19); wasm32-wasip1 for clang 22
#                             and later, which is where Debian installs their
#                             compiler-rt builtins. Both names point at the same
#                             wasi-libc in the sysroot made here.
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
# Link flags: -Wl,--export=__stack_low tells a WASIX host (Wasmer) where the C
# stack begins; `wasm-rewind instrument` refuses a module that calls the WASIX
# stack functions without it when the stack follows the data (clang 19's
# layout). clang 22 puts the stack first, where the pass can tell by itself.
#
# Environment: CLANG (default clang-19), WASI_SYSROOT (default: made here),
# EXTRA_CFLAGS (added when compiling), EXTRA_LDFLAGS (added when linking),
# EXPORT_STACK_LOW=0 (link without -Wl,--export=__stack_low).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SRC.c OUT.wasm" >&2
    exit 2
fi
src=$1
out=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=corpus/prelude.sh
. "$here/prelude.sh"
include=$here/../runtime-shim/include
clang=${CLANG:-clang-19}
need "$clang" "Debian: apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sysroot=$(wasi_sysroot "$tmp")
target=$(wasm_target "$clang")
common=("--target=$target" "--sysroot=$sysroot")
# shellcheck disable=SC2086 # EXTRA_CFLAGS is a list of words
"$clang" "${common[@]}" -I "$include" -O2 -Wall -Wextra ${EXTRA_CFLAGS:-} \
    -c "$src" -o "$tmp/prog.o"
# `wasm-rewind instrument` exports __stack_pointer and the bounds it finds;
# __stack_low must exist for that (see above). EXTRA_LDFLAGS is for modules
# other tools instrument (Binaryen's input also needs
# --export=__stack_pointer).
# shellcheck disable=SC2086 # EXTRA_LDFLAGS is a list of words
stack_low=(-Wl,--export=__stack_low)
if [ "${EXPORT_STACK_LOW:-1}" = 0 ]; then stack_low=(); fi
# shellcheck disable=SC2086 # EXTRA_LDFLAGS is a list of words
"$clang" "${common[@]}" "$tmp/prog.o" "${stack_low[@]}" ${EXTRA_LDFLAGS:-} -o "$out"
