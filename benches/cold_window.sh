#!/bin/sh
# Issue 28: interleaved rounds of the one-thread zstd floor and, per binary, a
# cold `run`, a window change 10 -> 20 s and back 20 -> 10 s (CPU = user + sys).
# Usage: benches/cold_window.sh STORE ROUNDS BIN...
#
# Every cold run writes a new OUT, and the OUTs are deleted only after the
# last round: on an ext4 without a journal, a file created within a minute
# or so of many deletions costs the kernel a search past each inode freed
# (`recently_deleted`), which deleting the last round's OUT first added to
# the next cold run (its system time grew from 0.4 to 1.4 s over six rounds).
#
# The builds take turns going first (forward on odd rounds, reversed on even
# ones): a build that runs after another may pay for the writeback of the
# other's outputs.
#
# Each run prints a line as it ends ("floor U S E", "BUILD KIND U S E", in
# seconds); the medians and the ratios the issue asks for come last.
store=$1; rounds=$2; shift 2
reversed=""; for b in "$@"; do reversed="$b $reversed"; done
outs=$(mktemp -d /tmp/cold-window.XXXXXX); log=$outs/log
for i in $(seq $rounds); do
  cat $store/episodes/*/*.tar.zst > /dev/null
  /usr/bin/time -f "floor %U %S %e" zstd -dcq $store/episodes/*/*.tar.zst -o /dev/null -f 2>&1 | tail -1 | tee -a $log
  order="$*"; [ $((i % 2)) -eq 0 ] && order=$reversed
  for b in $order; do
    n=$(basename $b); o=$outs/$n-$i
    /usr/bin/time -f "$n cold %U %S %e" $b run --store $store --out $o --workers 2 -q 2>&1 | tail -1 | tee -a $log
    /usr/bin/time -f "$n w20 %U %S %e" $b run --store $store --out $o --workers 2 -q --window-s 20 2>&1 | tail -1 | tee -a $log
    /usr/bin/time -f "$n w10 %U %S %e" $b run --store $store --out $o --workers 2 -q 2>&1 | tail -1 | tee -a $log
  done
done
# CPU = user + sys per run, sorted by build and kind and then by CPU, so
# that each key's values arrive in order for its median.
awk '$1 == "floor" { print "floor", $2 + $3; next } NF == 5 { print $1 "/" $2, $3 + $4 }' $log |
  sort -k1,1 -k2,2n | awk '
  { v[$1, ++n[$1]] = $2 }
  END {
    for (k in n) { c = n[k]; med[k] = (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2 }
    printf "medians over %d rounds, CPU-s = user + sys: floor %.2f\n", n["floor"], med["floor"]
    for (k in med) if (k ~ /\/cold$/) {
      b = substr(k, 1, length(k) - 5)
      printf "%s: cold %.2f (%.2fx the floor), 10 -> 20 s %.2f (%.2f of cold), 20 -> 10 s %.2f (%.2f of cold)\n",
        b, med[k], med[k] / med["floor"], med[b "/w20"], med[b "/w20"] / med[k], med[b "/w10"], med[b "/w10"] / med[k]
    }
  }'
rm -rf $outs
