#!/bin/sh
# Issue 28: a re-run with nothing changed, per store, by two builds on outputs
# made before (a run of STORE into OUT). Per store:
#   BEFORE x3 (a build without the run memo: the dataflow runs every time);
#   AFTER once (through the dataflow: the outputs were BEFORE's; writes the memo), then x3;
#   then 3 rounds of the index touched (its last line written again, which
#   changes nothing but the index's bytes): BEFORE, then AFTER — the run memo's
#   worst case: settings and outputs stand, so the plan waits for the index
#   and every archive's stat before it starts.
# Lines: label wall user sys peak-RSS.
# Usage: benches/nothing_changed.sh BEFORE AFTER STORE:OUT...
before=$1; after=$2; shift 2
timed() { label=$1; shift; /usr/bin/time -f "$label %e s wall, %U user, %S sys, %M KB" "$@" -q 2>&1 | tail -1; }
touch_index() { tail -n 1 "$1/index.jsonl" > /tmp/last-line && cat /tmp/last-line >> "$1/index.jsonl"; }
for pair in "$@"; do
  s=${pair%%:*}; o=${pair#*:}; n=$(basename "$s")
  for i in 1 2 3; do timed "$n before" $before run --store "$s" --out "$o" --workers 2; done
  timed "$n after-first" $after run --store "$s" --out "$o" --workers 2
  for i in 1 2 3; do timed "$n after" $after run --store "$s" --out "$o" --workers 2; done
  for i in 1 2 3; do
    touch_index "$s"; timed "$n touched-before" $before run --store "$s" --out "$o" --workers 2
    $after run --store "$s" --out "$o" --workers 2 -q >/dev/null
    touch_index "$s"; timed "$n touched-after" $after run --store "$s" --out "$o" --workers 2
  done
done
