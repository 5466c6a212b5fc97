#!/usr/bin/env bash
# A `wasm-opt` that hands the asyncify pass to wasm-rewind.
#
# Put it where a build looks for wasm-opt (first on the PATH, or as
# $BINARYEN_ROOT/bin/wasm-opt for Emscripten), named `wasm-opt`. Without
# --asyncify it is the real wasm-opt, unchanged. With --asyncify, the real
# wasm-opt runs every other argument first (optimisations, feature flags,
# strip passes, input and -o output), then `wasm-rewind instrument` rewrites
# the result in place with the asyncify pass arguments (--pass-arg=asyncify-*,
# which it reads in wasm-opt's spelling). Our output needs no optimiser
# afterwards, so running -O before the pass loses nothing.
#
# Environment:
#   REAL_WASM_OPT  the real wasm-opt (default: /usr/bin/wasm-opt)
#   WASM_REWIND    the wasm-rewind binary (default: wasm-rewind on the PATH)
set -euo pipefail

real=${REAL_WASM_OPT:-/usr/bin/wasm-opt}
rewind=${WASM_REWIND:-wasm-rewind}

asyncify=0
ours=()
theirs=()
output=
while [ $# -gt 0 ]; do
    case $1 in
        --asyncify) asyncify=1 ;;
        --pass-arg=asyncify-*) ours+=("$1") ;;
        --pass-arg | -pa)
            if [ $# -ge 2 ] && [[ $2 == asyncify-* ]]; then
                ours+=("--pass-arg=$2")
            else
                theirs+=("$1" "${2:-}")
            fi
            shift
            ;;
        -o)
            output=${2:-}
            theirs+=("$1" "${2:-}")
            shift
            ;;
        *) theirs+=("$1") ;;
    esac
    shift
done

if [ "$asyncify" = 0 ]; then
    exec "$real" "${theirs[@]}" "${ours[@]}"
fi
if [ -z "$output" ]; then
    echo "wasm-opt wrapper: --asyncify needs -o OUTPUT (wasm-rewind writes a file)" >&2
    exit 1
fi
"$real" "${theirs[@]}"
exec "$rewind" instrument "$output" -o "$output" "${ours[@]}"
