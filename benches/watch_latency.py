#!/usr/bin/env python3
"""Latency of `epiflow watch`: from an episode's index line being appended to
every output being republished (watch prints its epoch's statistics after
run.json, the last output, is written).

    python3 benches/watch_latency.py BIN STORE EXTRA [ROUNDS [WATCH ARGS...]]

STORE: a receiver store (its outputs go to STORE/derived, so a store that
was `run` before starts from a warm cache). EXTRA: another store whose
archives are appended to STORE one at a time, ROUNDS of them (default 10),
1 to 1.25 s apart (seeded jitter, so that a poll's phase is sampled evenly
rather than locked to the appends). STORE is changed: use a copy. WATCH ARGS go to `watch`
(e.g. `--split host --config slow.toml`: the models train in the background;
their lines are told apart from the publications' and skipped, and each
publication's model states are printed).
"""
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main():
    bin_, store, extra = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    lines = (extra / "index.jsonl").read_text().splitlines()[:rounds]
    args = sys.argv[5:]
    watch = subprocess.Popen([bin_, "watch", "--store", str(store), "--json", "-q", *args],
                             stdout=subprocess.PIPE, text=True)

    def publication():
        """The next publication's line (a models line has training counts)."""
        while True:
            stats = json.loads(watch.stdout.readline())
            if "train" not in stats["operators"]:
                return stats

    start = time.monotonic()
    first = publication()
    print(f"epoch 0: {first['episodes']} episodes after {time.monotonic() - start:.2f} s")
    latencies = []
    jitter = random.Random(7)
    for line in lines:
        row = json.loads(line)
        rel = Path("episodes") / row["host_id"] / f"{row['episode_id']}.tar.zst"
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(extra / rel, store / rel)
        time.sleep(1.0 + jitter.uniform(0.0, 0.25))
        t0 = time.monotonic()
        with open(store / "index.jsonl", "a") as index:
            index.write(line + "\n")
        stats = publication()
        latencies.append(time.monotonic() - t0)
        states = sorted(set(stats.get("model_states", {}).values()))
        print(f"+1 → {stats['episodes']} episodes: {latencies[-1]:.3f} s (epoch wall {stats['wall_s']:.3f} s)"
              + (f" models {'/'.join(states)}" if states else ""))
    # Prune's way: the index rewritten without a row and renamed into place.
    replaced = []
    for _ in range(max(1, rounds // 4)):
        time.sleep(1.0 + jitter.uniform(0.0, 0.25))
        rows = (store / "index.jsonl").read_text().splitlines()[:-1]
        (store / "index.jsonl.tmp").write_text("".join(r + "\n" for r in rows))
        t0 = time.monotonic()
        (store / "index.jsonl.tmp").rename(store / "index.jsonl")
        stats = publication()
        replaced.append(time.monotonic() - t0)
        print(f"-1 (rename) → {stats['episodes']} episodes: {replaced[-1]:.3f} s")
    watch.send_signal(2)
    code = watch.wait(timeout=60)
    summary("appends", latencies)
    summary("renamed indexes", replaced)
    print(f"exit {code}")


def summary(what, latencies):
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"latency over {len(latencies)} {what}: min {min(latencies):.3f} s, "
          f"median {statistics.median(latencies):.3f} s, p95 {p95:.3f} s, max {max(latencies):.3f} s")


if __name__ == "__main__":
    main()
