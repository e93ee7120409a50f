#!/bin/sh
# Issue 28: window changes alone, interleaved between builds: per round and
# per BIN:OUT pair a change 10 -> 20 s, then per pair back 20 -> 10 s
# (CPU = user + sys). Each OUT must already hold a cold run at 10 s of STORE
# by its BIN, so every build reads its own cache.
#
# The builds take turns going first (forward on odd rounds, reversed on even
# ones), as in cold_window.sh: a build that runs after another may pay for
# the writeback of the other's outputs.
# Usage: benches/window_change_builds.sh STORE ROUNDS BIN:OUT...
store=$1; rounds=$2; shift 2
reversed=""; for p in "$@"; do reversed="$p $reversed"; done
for i in $(seq $rounds); do
  order="$*"; [ $((i % 2)) -eq 0 ] && order=$reversed
  for pair in $order; do b=${pair%%:*}; o=${pair#*:}; n=$(basename $b)
    /usr/bin/time -f "$n w20 %U %S %e" $b run --store $store --out $o --workers 2 -q --window-s 20 2>&1 | tail -1
  done
  for pair in $order; do b=${pair%%:*}; o=${pair#*:}; n=$(basename $b)
    /usr/bin/time -f "$n w10 %U %S %e" $b run --store $store --out $o --workers 2 -q 2>&1 | tail -1
  done
done
