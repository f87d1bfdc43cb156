"""What the event-loop probe (``locust_perfx.loop``) costs the process that owns a run.

An idle gevent loop is the probe's worst case: every wake-up is a return from the loop's poll
that nothing else would have caused. A busy one (here 20 greenlets that each wake every 2 ms,
as a master's or a local runner's users and sockets keep it) already turns often, and the
timer mostly fires in turns taken anyway. In one process, rounds alternate without the probe
and with it at several periods, each round ``--seconds`` long, idle and busy; the process's
CPU per second (``time.process_time``) is compared with the rounds without it.

    python -m bench.loop_probe [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import gevent
import gevent.pool

from bench.common import median
from locust_perfx import loop


def busy() -> None:
    while True:
        gevent.sleep(0.002)
        sum(range(200))


def cpu_ms_per_second(seconds: float, period: float | None, busy_greenlets: int) -> float:
    """The process's CPU per second of a gevent loop, probed every ``period`` s."""
    group = gevent.pool.Group()
    for _ in range(busy_greenlets):
        group.spawn(busy)
    watch = None
    if period is not None:
        with mock.patch.object(loop, "PERIOD", period):
            watch = loop.LoopWatch(master=True)
            watch.start()
    start_cpu, start = time.process_time(), time.monotonic()
    gevent.sleep(seconds)
    used, took = time.process_time() - start_cpu, time.monotonic() - start
    if watch is not None:
        watch.stop()
    group.kill()
    return used / took * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    periods = [None, 0.01, 0.025, 0.05]
    print(f"{args.rounds} rounds of {args.seconds:g} s, alternating; now: PERIOD = {loop.PERIOD}")
    print(f"{'loop':>5}  {'probe period':>12}  {'CPU ms/s (median)':>17}  {'added':>7}  rounds")
    for load, greenlets in (("idle", 0), ("busy", 20)):
        results: dict[float | None, list[float]] = {p: [] for p in periods}
        for _ in range(args.rounds):
            for period in periods:
                results[period].append(cpu_ms_per_second(args.seconds, period, greenlets))
        plain = median(results[None])
        for period in periods:
            label = "none" if period is None else f"{period * 1000:g} ms"
            rounds = ", ".join(f"{v:.2f}" for v in results[period])
            cost = median(results[period])
            added = "" if period is None else f"{cost - plain:+.2f}"
            print(f"{load:>5}  {label:>12}  {cost:>17.2f}  {added:>7}  {rounds}")


if __name__ == "__main__":
    main()
