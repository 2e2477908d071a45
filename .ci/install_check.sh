#!/usr/bin/env bash
# install_check.sh: installs the build into a throw-away prefix and uses it the three ways a
# user would: the installed `prunert` program, a stock lua5.4 with the prefix's Lua paths, and a
# C host compiled against prunert.pc. Run by .ci/run after the tests; also by hand:
#   bash .ci/install_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${PRUNERT_BUILD_DIR:-build}}
PREFIX=$(mktemp -d /tmp/prunert-install.XXXXXX)
trap 'rm -rf "$PREFIX"' EXIT

cmake --install "$BUILD_DIR" --prefix "$PREFIX" >/dev/null
pc=$(find "$PREFIX" -name prunert.pc)
luadir=$(dirname "$(find "$PREFIX" -path '*/prunert/init.lua' | head -1)")
cmod=$(find "$PREFIX" -name core.so -path '*/prunert/*')
[ -n "$pc" ] && [ -n "$luadir" ] && [ -n "$cmod" ] || { echo "install_check: files missing under $PREFIX" >&2; exit 1; }

# 1. The installed program finds its Lua library next to itself, with no LUA_PATH at all.
out=$(env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 PREFIX="$PREFIX" \
    "$PREFIX/bin/prunert" -e 'local pr = require "prunert"
        local found = package.searchpath("prunert", package.path)
        assert(found:find(os.getenv("PREFIX"), 1, true) == 1, "not the installed library: " .. found)
        print(pr.ones(2, 2):sum():item())')
[ "$out" = "4.0" ] || { echo "install_check: installed prunert printed '$out'" >&2; exit 1; }

# 2. A stock lua5.4 with the prefix's directories on its paths.
out=$(LUA_PATH="$(dirname "$luadir")/?.lua;$(dirname "$luadir")/?/init.lua;;" \
      LUA_CPATH="$(dirname "$(dirname "$cmod")")/?.so;;" \
      lua5.4 -e 'local pr = require "prunert"; print(pr.ones(3):sum():item())')
[ "$out" = "3.0" ] || { echo "install_check: lua5.4 printed '$out'" >&2; exit 1; }

# 3. A C host built with pkg-config against the installed library and header.
export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cc -Wall -Wextra -o "$PREFIX/embed" examples/embed.c $(pkg-config --cflags --libs prunert)
LD_LIBRARY_PATH="$(pkg-config --variable=libdir prunert)" "$PREFIX/embed" >/dev/null

echo "install_check: ok (program, lua5.4 and a pkg-config host all work from $PREFIX)"
