"""Holds back the last N clean training-side episodes of the host split (as
PROBE's splits/host.parquet places them) from STORE's index; prints their
index lines (needs pyarrow).

    python3 benches/warm_hold.py STORE PROBE N > held.jsonl
"""
import json, sys
import pyarrow.parquet as pq
store, probe, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
split = pq.read_table(f"{probe}/splits/host.parquet").to_pylist()
train = {(r["host_id"], r["episode_id"]) for r in split if r["side"] == "train"}
truth = [json.loads(l) for l in open(f"{store}/truth.jsonl")]
clean = {(t["host_id"], t["episode_id"]) for t in truth if t["outcome"] == "accepted" and not t["quality"]}
lines = open(f"{store}/index.jsonl").read().splitlines()
key = lambda l: (json.loads(l)["host_id"], json.loads(l)["episode_id"])
held = [i for i, l in enumerate(lines) if key(l) in train and key(l) in clean][-n:]
open(f"{store}/index.jsonl", "w").write("\n".join(l for i, l in enumerate(lines) if i not in held) + "\n")
print("\n".join(lines[i] for i in held))
