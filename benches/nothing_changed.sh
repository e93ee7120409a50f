#!/bin/sh
# Issue 28: a re-run with nothing changed, per store: a cold run, then three
# re-runs (wall, user, sys, peak RSS).
# Usage: benches/nothing_changed.sh BIN STORE...
bin=$1; shift
for s in "$@"; do
  n=$(basename $s); o=/tmp/nothing-changed-$n; rm -rf $o
  /usr/bin/time -f "$n cold: %e s wall, %U user, %S sys, %M KB" $bin run --store $s --out $o --workers 2 -q 2>&1 | tail -1
  for i in 1 2 3; do
    /usr/bin/time -f "$n again: %e s wall, %U user, %S sys, %M KB" $bin run --store $s --out $o --workers 2 -q 2>&1 | tail -1
  done
done
