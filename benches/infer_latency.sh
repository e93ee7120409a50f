#!/usr/bin/env bash
# Live inference latency per model (issue 17): `epiflow infer` on every
# archive of the held-out host, per architecture and channel set, with the
# checkpoint's size on disk and the peak memory of one single-archive call.
# Rejected archives of that host are reported (exit 1) and left out of the
# figures.
#
#   cargo build --release && ./target/release/epiflow demo --keep /tmp/dm -q
#   benches/infer_latency.sh /tmp/dm/store ./target/release/epiflow
set -euo pipefail
store=${1:?usage: infer_latency.sh STORE [EPIFLOW]}
epiflow=${2:-./target/release/epiflow}
out="$store/derived"
host=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['test_host'])" "$out/splits/host.json")
archives=("$store/episodes/$host"/*.tar.zst)
printf '%-22s %8s %9s %9s %9s %9s %9s %8s %9s\n' model episodes ep_med_ms ep_p95_ms win_med_ms win_p95_ms accuracy size_kb peak_mb
for model in "$out"/models/host/*/; do
  name=$(basename "$model")
  summary=$({ "$epiflow" infer --model "$model" --json "${archives[@]}" 2>/dev/null || true; } | tail -n 1)
  size=$(du -sk "$model" | cut -f1)
  peak=$( { /usr/bin/time -f '%M' "$epiflow" infer --model "$model" -q "${archives[0]}" >/dev/null; } 2>&1 | tail -n 1)
  python3 - "$name" "$summary" "$size" "$peak" <<'PY'
import json, sys
name, summary, size, peak = sys.argv[1], json.loads(sys.argv[2])["summary"], sys.argv[3], int(sys.argv[4])
print(f"{name:<22} {summary['archives']:>8} {summary['episode_ms_median']:>9.2f} {summary['episode_ms_p95']:>9.2f} "
      f"{summary['window_ms_median']:>9.4f} {summary['window_ms_p95']:>9.4f} {summary['accuracy']:>9.3f} {size:>8} {peak / 1024:>9.1f}")
PY
done
