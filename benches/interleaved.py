#!/usr/bin/env python3
"""Times commands round-robin and reports each one's wall time relative to the first.

hyperfine runs all rounds of one command before the next, so a noisy neighbour
that comes and goes skews one command more than another. Here every round runs
each command once, in turn, and the ratio to the first command is taken within
the round; the median of those ratios is robust to drifting machine speed.
With --cpu it also reports the CPU time (user + system) of each command and
its children, the same way: less sensitive than wall time to a neighbour that
takes a core away.

    python3 benches/interleaved.py -r 15 'epiflow validate ...' 'epiflow features ...'
"""

import argparse
import resource
import shlex
import statistics
import subprocess
import time


def timed(command: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system, children included) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(shlex.split(command), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(label: str, commands: list[str], times: list[list[float]]) -> None:
    base = times[0]
    for command, t in zip(commands, times):
        ratios = [a / b for a, b in zip(t, base)]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(
            f"{label}{statistics.median(t):7.3f} s median  "
            f"ratio {statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})  {command}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--rounds", type=int, default=15)
    parser.add_argument("-w", "--warmup", type=int, default=1)
    parser.add_argument("--cpu", action="store_true", help="also report CPU time")
    parser.add_argument("commands", nargs="+")
    args = parser.parse_args()

    for _ in range(args.warmup):
        for command in args.commands:
            timed(command)
    walls = [[] for _ in args.commands]
    cpus = [[] for _ in args.commands]
    for _ in range(args.rounds):
        for i, command in enumerate(args.commands):
            wall, cpu = timed(command)
            walls[i].append(wall)
            cpus[i].append(cpu)
    report("wall " if args.cpu else "", args.commands, walls)
    if args.cpu:
        report("cpu  ", args.commands, cpus)


if __name__ == "__main__":
    main()
