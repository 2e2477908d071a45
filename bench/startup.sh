#!/usr/bin/env bash
# startup.sh: start-up time of `prunert -e ''` against `lua5.4 -e ''`: the median wall time of
# RUNS runs each (default 20), in milliseconds. Timing uses bash's $EPOCHREALTIME around each
# run, so no extra process is forked inside the measured interval.
# Usage: bench/startup.sh [path/to/prunert] [runs]   (default: build/bin/prunert, 20)
# Prints: "prunert_ms <median>", "lua_ms <median>", "target_ms 20", and exits 1 above target.
set -euo pipefail
PRUNERT=${1:-${PRUNERT_BUILD_DIR:-build}/bin/prunert}
RUNS=${2:-20}
LUA=${LUA:-lua5.4}
[ -x "$PRUNERT" ] || { echo "startup.sh: no executable at $PRUNERT (build first)" >&2; exit 2; }

median_ms() {
    local times=() t0 t1
    "$@" >/dev/null # warm the page cache; not counted
    for ((i = 0; i < RUNS; i++)); do
        t0=$EPOCHREALTIME
        "$@" >/dev/null
        t1=$EPOCHREALTIME
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) * 1000 }')")
    done
    printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%.2f\n", v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

p=$(median_ms "$PRUNERT" -e '')
l=$(median_ms "$LUA" -e '')
echo "prunert_ms $p"
echo "lua_ms $l"
echo "target_ms 20"
awk -v p="$p" 'BEGIN { exit !(p <= 20) }'
