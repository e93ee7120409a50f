#!/usr/bin/env bash
# A window-length change against a cold run that produces the same outputs.
#
#   benches/window_change.sh BIN STORE OUT [ROUNDS]
#
# Each round: an empty OUT, a cold `run` at the default 10 s window (timed),
# a `run --window-s 20` (not timed), then `run --window-s 10` (timed): its
# outputs equal the cold run's, so the two times compare like with like.
# Prints wall and CPU (user + sys) of both and the change's share of cold.
# OUT is deleted at the start of every round.
set -euo pipefail
BIN=$1 STORE=$2 OUT=$3 ROUNDS=${4:-5}
timed() { /usr/bin/time -f "%e %U %S" "$@" 2>&1 >/dev/null | tail -1; }
for _ in $(seq "$ROUNDS"); do
  rm -rf "$OUT"; sync
  read -r cold_wall cold_user cold_sys < <(timed "$BIN" run --store "$STORE" --out "$OUT" -q)
  "$BIN" run --store "$STORE" --out "$OUT" -q --window-s 20 >/dev/null
  read -r win_wall win_user win_sys < <(timed "$BIN" run --store "$STORE" --out "$OUT" -q --window-s 10)
  python3 -c "
cw, cc = $cold_wall, $cold_user + $cold_sys
ww, wc = $win_wall, $win_user + $win_sys
print(f'cold {cw:.2f} s (cpu {cc:.2f})  window change {ww:.2f} s (cpu {wc:.2f})  = {100*ww/cw:.1f}% wall, {100*wc/cc:.1f}% cpu')"
done
