#!/usr/bin/env python3
"""Times commands round-robin and reports each one's wall time relative to the first.

hyperfine runs all rounds of one command before the next, so a noisy neighbour
that comes and goes skews one command more than another. Here every round runs
each command once, in turn, and the ratio to the first command is taken within
the round; the median of those ratios is robust to drifting machine speed.

    python3 benches/interleaved.py -r 15 'epiflow validate ...' 'epiflow features ...'
"""

import argparse
import shlex
import statistics
import subprocess
import time


def wall(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(shlex.split(command), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--rounds", type=int, default=15)
    parser.add_argument("-w", "--warmup", type=int, default=1)
    parser.add_argument("commands", nargs="+")
    args = parser.parse_args()

    for _ in range(args.warmup):
        for command in args.commands:
            wall(command)
    times = [[] for _ in args.commands]
    for _ in range(args.rounds):
        for i, command in enumerate(args.commands):
            times[i].append(wall(command))

    base = times[0]
    for command, t in zip(args.commands, times):
        ratios = [a / b for a, b in zip(t, base)]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(
            f"{statistics.median(t):7.3f} s median  "
            f"ratio {statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})  {command}"
        )


if __name__ == "__main__":
    main()
