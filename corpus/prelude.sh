# Shared by the corpus build scripts (corpus/build-c.sh, corpus/lua/build.sh,
# corpus/sqlite/build.sh): sourced, never run. Each function says what it
# needs; each failure names the Debian package that fixes it.

# Where this file is, so the scripts' cache keys can cover it.
corpus_prelude=${BASH_SOURCE[0]}

# need TOOL HINT: fails unless TOOL is on the PATH.
need() {
    command -v "$1" >/dev/null || {
        echo "$0: $1 not found ($2)" >&2
        exit 1
    }
}

# wasi_sysroot DIR: prints a sysroot for clang. $WASI_SYSROOT when set (a real
# one, e.g. wasi-sdk's); otherwise DIR/sysroot, made of symlinks: Debian
# installs wasi-libc in /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi,
# and clang wants both under one sysroot, named by the target triple
# (wasm32-wasi for clang 19, wasm32-wasip1 for clang 22 and later).
wasi_sysroot() {
    if [ -n "${WASI_SYSROOT:-}" ]; then
        echo "$WASI_SYSROOT"
        return
    fi
    local d triple sysroot=$1/sysroot
    for d in /usr/include/wasm32-wasi /usr/lib/wasm32-wasi; do
        [ -d "$d" ] || {
            echo "$0: $d missing (Debian: apt-get install wasi-libc), or set WASI_SYSROOT" >&2
            exit 1
        }
    done
    mkdir -p "$sysroot/include" "$sysroot/lib"
    for triple in wasm32-wasi wasm32-wasip1; do
        ln -sfn /usr/include/wasm32-wasi "$sysroot/include/$triple"
        ln -sfn /usr/lib/wasm32-wasi "$sysroot/lib/$triple"
    done
    echo "$sysroot"
}

# wasm_target CLANG: the triple under which Debian installs CLANG's
# compiler-rt builtins for wasm: wasm32-wasi up to clang 21, wasm32-wasip1
# from clang 22. Both name the same wasi-libc in the sysroot above.
wasm_target() {
    local major
    major=$("$1" -dumpversion | cut -d. -f1)
    if [ "$major" -ge 22 ]; then echo wasm32-wasip1; else echo wasm32-wasi; fi
}

# crate_dir DIR NAME VERSION [FEATURES]: prints the directory of crate NAME
# at exactly VERSION, as cargo downloads and unpacks it into its registry
# (FEATURES: extra keys of its dependency table, such as
# `default-features = false`). The sources of
# Lua and SQLite come this way and are never committed. DIR holds a
# throwaway project (`[workspace]` keeps it out of ours); `cargo metadata`
# names the crate's manifest. --offline first: no network when the crate is
# already in ~/.cargo.
crate_dir() {
    local fetch=$1 name=$2 version=$3 manifest
    local dependency="$name = { version = \"=$version\"${4:+, $4} }"
    mkdir -p "$fetch"
    cat >"$fetch/Cargo.toml.$$" <<TOML
[package]
name = "corpus-src-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "lib.rs"

[dependencies]
$dependency

[workspace]
TOML
    mv "$fetch/Cargo.toml.$$" "$fetch/Cargo.toml" # atomic: tests may run this twice at once
    : >"$fetch/lib.rs"
    need cargo "rustup.rs"
    manifest=$({
        cargo metadata --offline --format-version 1 --manifest-path "$fetch/Cargo.toml" \
            2>/dev/null ||
            cargo metadata --format-version 1 --manifest-path "$fetch/Cargo.toml"
    } | grep -o "\"manifest_path\":\"[^\"]*/$name-$version/Cargo.toml\"" |
        head -n 1 | sed 's/^"manifest_path":"//; s/"$//')
    [ -n "$manifest" ] || {
        echo "$0: cargo did not locate the crate $name $version" >&2
        exit 1
    }
    dirname "$manifest"
}

# publish FILE DEST: moves a finished build into the cache. Atomic, so tests
# that run a build script twice at once never see half a file.
publish() {
    mkdir -p "$(dirname "$2")"
    mv "$1" "$2.new.$$"
    mv "$2.new.$$" "$2"
}
