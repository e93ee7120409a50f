#!/usr/bin/env python3
"""The same store read the straightforward Python way (tarfile + zstandard +
json.loads per line + numpy columns), so the README can state epiflow's
speed-up honestly. Usage: python3 benches/python_baseline.py STORE

Needs: pip install zstandard numpy
"""
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import zstandard

CHANNELS = {
    "telemetry-proc.jsonl": ["cpu_user_jiffies", "cpu_sys_jiffies", "rss_bytes", "vsize_bytes"],
    "telemetry-guest.jsonl": ["mem_available_bytes", "swap_used_bytes"],
    "telemetry-qmp.jsonl": ["vm_running"],
    "netflow.jsonl": ["pkts_in", "pkts_out", "bytes_in", "bytes_out", "syn_count"],
}


def main(store: Path) -> None:
    rows = [json.loads(l) for l in (store / "index.jsonl").read_text().splitlines() if l.strip()]
    start = time.perf_counter()
    episodes = decompressed = parsed = 0
    dctx = zstandard.ZstdDecompressor()
    for r in rows:
        path = store / "episodes" / r["host_id"] / f"{r['episode_id']}.tar.zst"
        try:
            raw = dctx.stream_reader(io.BytesIO(path.read_bytes())).read()
            with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
                for m in tf.getmembers():
                    name = m.name.rsplit("/", 1)[-1]
                    f = tf.extractfile(m)
                    if f is None:
                        continue
                    data = f.read()
                    decompressed += len(data)
                    if not name.endswith(".jsonl"):
                        continue
                    objs = []
                    for line in data.splitlines():
                        try:
                            objs.append(json.loads(line))
                        except ValueError:
                            pass
                    parsed += len(objs)
                    t = np.array([o.get("t_wall_ns", 0) for o in objs], dtype=np.int64)
                    cols = {c: np.array([o.get(c, np.nan) for o in objs], dtype=np.float64)
                            for c in CHANNELS.get(name, [])}
                    del t, cols
        except Exception:  # a damaged archive: counted, not fatal
            pass
        episodes += 1
    secs = time.perf_counter() - start
    print(json.dumps({"episodes": episodes, "rows": parsed, "decompressed_mb": round(decompressed / 1e6, 1),
                      "wall_s": round(secs, 3), "episodes_per_s": round(episodes / secs, 1),
                      "mb_per_s": round(decompressed / 1e6 / secs, 1)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
