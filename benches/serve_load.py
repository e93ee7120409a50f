#!/usr/bin/env python3
"""Measures `epiflow serve` (SPEC section 15) on loopback; stdlib only.

    benches/serve_load.py --epiflow target/release/epiflow --store STORE --out OUT \
        [--held N] [--windows 10000]

STORE's index should hold back its last N lines (--held): they are appended
one by one to time an index append → `perf` event. OUT must hold a trained
`host/gbt-realistic` (e.g. `epiflow run --split host` with `[train] archs =
["gbt"]`). Prints, as JSON lines:

* events/s delivered to 1 and to 50 concurrent SSE clients while 16 replays
  run at speed 100, 300, 1000 and flat out (1e6): per client and in all, and the
  clients dropped for falling behind;
* latency from an index append to the `perf` event of its publication;
* a replay at speed 10 over a whole episode: drift of each event's server
  stamp from the replay clock (start + due time / speed);
* serve's resident memory before and after 10,000 replayed windows.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


def request(addr, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


class Stream:
    """One SSE client over a raw socket (chunked framing ignored: chunk
    size lines never start with a field name)."""

    def __init__(self, addr):
        host, port = addr.split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(f"GET /events HTTP/1.1\r\nhost: {addr}\r\n\r\n".encode())
        self.buf = b""

    def events(self, timeout=60):
        self.sock.settimeout(timeout)
        while True:
            while b"\n\n" in self.buf:
                block, self.buf = self.buf.split(b"\n\n", 1)
                fields = dict(l.split(": ", 1) for l in block.decode().splitlines() if ": " in l)
                if "id" in fields and "data" in fields:
                    yield int(fields["id"]), fields.get("event"), fields["data"]
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return
            # Drop the chunk-size lines of chunked encoding.
            self.buf += re.sub(rb"\r\n[0-9a-f]+\r\n", b"", chunk)


def metric(addr, series):
    with urllib.request.urlopen(f"http://{addr}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def replays(addr, key, n, speed):
    """Starts n replays at once; the events they will publish in all."""
    total, threads, lock = [0], [], threading.Lock()

    def one():
        body = {"host_id": key[0], "episode_id": key[1], "model": "gbt-realistic", "speed": speed}
        while True:
            try:
                answer = request(addr, "POST", "/api/replay", body)
                break
            except urllib.error.HTTPError as e:
                if e.code != 429:  # 16 replays still running: wait for one to end
                    raise
                time.sleep(0.05)
        with lock:
            total[0] += answer["events"]

    for _ in range(n):
        threads.append(threading.Thread(target=one))
        threads[-1].start()
    for t in threads:
        t.join()
    return total[0]


MARKERS = (b"event: replay_started\n", b"event: telemetry\n", b"event: prediction\n")


def fan_out(addr, key, clients, speed, rounds=3):
    """Events/s to `clients` SSE clients while 16 replays run at `speed`."""
    results = []
    for _ in range(rounds):
        streams = [Stream(addr) for _ in range(clients)]
        for s in streams:  # the current state
            for _, event, _ in s.events():
                if event == "profiles":
                    break
        dropped = metric(addr, "epiflow_clients_dropped_total")
        counts, ends = [0] * clients, [0.0] * clients
        expected = [None]
        ready = threading.Event()

        def read(i):
            # Counted in the raw bytes (a parser in Python would be what is
            # measured); the last bytes are kept so a marker split across
            # two reads is counted once.
            sock, tail = streams[i].sock, streams[i].buf[-64:]
            counts[i] = sum(streams[i].buf.count(m) for m in MARKERS)
            sock.settimeout(30)
            while not (ready.is_set() and counts[i] >= expected[0]):
                try:
                    chunk = sock.recv(1 << 20)
                except OSError:
                    return
                if not chunk:
                    return
                joined = tail + chunk
                counts[i] += sum(joined.count(m) - tail.count(m) for m in MARKERS)
                tail = joined[-64:]
                ends[i] = time.perf_counter()

        threads = [threading.Thread(target=read, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        start = time.perf_counter()
        expected[0] = replays(addr, key, 16, speed)
        ready.set()
        for t in threads:
            t.join(timeout=30)
        # Clients still reading after 30 s (dropped ones) are cut off.
        for s in streams:
            s.sock.shutdown(socket.SHUT_RDWR)
        complete = [i for i in range(clients) if counts[i] == expected[0]]
        per_client = [counts[i] / (ends[i] - start) for i in complete]
        for s in streams:
            s.sock.close()
        for t in threads:
            t.join()
        results.append({
            "clients": clients, "speed": speed, "events_per_client": expected[0],
            "wall_s": round(max(ends) - start, 3),
            "median_client_events_per_s": round(sorted(per_client)[len(per_client) // 2]) if per_client else 0,
            "total_events_per_s": round(sum(per_client)),
            "complete_clients": len(complete),
            "dropped": metric(addr, "epiflow_clients_dropped_total") - dropped,
        })
    return results


def append_latency(addr, store, held):
    stream = Stream(addr)
    events = stream.events()
    episodes = None
    for _, event, data in events:
        if event == "perf":
            episodes = json.loads(data)["episodes"]
        if event == "profiles":
            break
    latencies = []
    for line in held:
        with open(os.path.join(store, "index.jsonl"), "a") as f:
            f.write(line + "\n")
        t0 = time.time_ns()
        for _, event, data in events:
            d = json.loads(data)
            if event == "perf" and d["episodes"] == episodes + 1:
                episodes += 1
                latencies.append((d["time"] - t0) / 1e6)
                break
    return {"append_to_perf_ms": [round(x, 1) for x in latencies],
            "median_ms": round(sorted(latencies)[len(latencies) // 2], 1) if latencies else None}


def drift(addr, key, speed=10.0):
    stream = Stream(addr)
    events = stream.events()
    for _, event, _ in events:
        if event == "profiles":
            break
    expected = replays(addr, key, 1, speed)
    start, hz, worst, last, n = None, None, 0.0, 0.0, 0
    for _, event, data in events:
        d = json.loads(data)
        if event == "replay_started":
            start = d["time"]
        elif event == "telemetry" and start is not None:
            due = start + (d["t_s"] + 0.5) / speed * 1e9  # at_s = t_s + 1/hz; hz = 2 in the default config
            late = (d["time"] - due) / 1e6
            worst, last = max(worst, abs(late)), late
        if event in ("replay_started", "telemetry", "prediction"):
            n += 1
            if n == expected:
                break
    return {"speed": speed, "events": expected, "episode_wall_s": round((d["time"] - start) / 1e9, 2),
            "max_abs_drift_ms": round(worst, 2), "final_drift_ms": round(last, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epiflow", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--held", type=int, default=5)
    ap.add_argument("--windows", type=int, default=10000)
    ap.add_argument("--phases", default="fan_out,append,drift,memory")
    args = ap.parse_args()
    index = os.path.join(args.store, "index.jsonl")
    lines = open(index).read().splitlines()
    held = lines[-args.held:]
    open(index, "w").write("\n".join(lines[:-args.held]) + "\n")
    serve = subprocess.Popen([args.epiflow, "serve", "--store", args.store, "--out", args.out,
                              "--addr", "127.0.0.1:0", "-q"], stdout=subprocess.PIPE, text=True)
    try:
        addr = serve.stdout.readline().strip().removeprefix("dashboard on http://").rstrip("/")
        first = Stream(addr)
        for _, event, _ in first.events(300):
            if event == "profiles":
                break
        first.sock.close()
        accepted = request(addr, "GET", "/api/episodes?outcome=accepted")
        key = (accepted[0]["host_id"], accepted[0]["episode_id"])
        windows_per_replay = accepted[0]["windows"]
        phases = args.phases.split(",")
        for clients in (1, 50) if "fan_out" in phases else ():
            for speed in (100, 300, 1000, 1e6):
                for r in fan_out(addr, key, clients, speed):
                    print(json.dumps({"fan_out": r}), flush=True)
        if "append" in phases:
            print(json.dumps({"append": append_latency(addr, args.store, held)}), flush=True)
        if "drift" in phases:
            print(json.dumps({"drift": drift(addr, key)}), flush=True)
        if "memory" not in phases:
            return
        before = rss_mb(serve.pid)
        done, marks = 0, []
        while done < args.windows:
            replays(addr, key, 16, 1e6)
            done += 16 * windows_per_replay
            if not marks or done >= marks[-1][0] + args.windows // 4:
                time.sleep(0.5)
                marks.append((done, round(rss_mb(serve.pid), 1)))
        print(json.dumps({"memory": {"rss_mb_before": round(before, 1), "after_windows": marks}}), flush=True)
    finally:
        serve.kill()
        open(index, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
