"""Part 3: what one export interval costs a master with 8 workers at 1,000 and 10,000 names.

Real worker reports: 8 worker ``RequestStats`` log requests and serialize them with Locust's
own ``report_to_master`` listener; the master (a real ``MasterRunner`` on 127.0.0.1) gets
them through ``environment.events.worker_report``, where Locust's own listener merges them
into ``environment.stats`` exactly as over ZeroMQ. The exporter and its export process write
to a real VictoriaMetrics. Each export interval gets the 13 reports of 8 workers reporting
every 3 s during the default 5 s; ``--interval`` below 5 compresses time.

Two measurements, side by side in one process:

- live: the exporter's greenlets in the master under gevent (the ticker that forks the child
  that reads and pipes the changed stats, and waits for it; the listener that takes the
  export process's reports);
  ``greenlet.settrace`` times every slice they run between two switches (the longest is the
  longest they block the loop), summed per interval. ``gc.callbacks`` time the garbage
  collections that run inside those slices: a collection is the whole process's, triggered
  by whoever allocates next, so the longest slice is shown with and without them. The
  export process's own CPU is read from ``/proc`` (psutil);
- direct: the same reports through three designs, each timed without pauses: the design of
  commit ``BASELINE_COMMIT`` (sum every worker report in Python, on the master's loop), the
  export work of this one (diff the mirrored stats in C: what the export process does, and
  what the master did itself until that design), and the read of the changed entries and
  their pickling for the pipe (a forked child's work now; the master's loop's before, and
  still where ``fork()`` fails); plus their memory (tracemalloc).

Prints one JSON object on stdout.
"""

# Locust monkey-patches the process at import: it must come before anything else.
import locust  # noqa: F401  # isort: skip

import argparse
import gc
import importlib
import json
import logging
import pickle
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import gevent
import greenlet
import psutil
from locust.env import Environment
from locust.event import Events
from locust.stats import RequestStats, setup_distributed_stats_event_listeners

from bench.common import BASELINE_COMMIT, ROOT, free_port, median, percentile
from locust_perfx.exporter import MetricsExporter
from locust_perfx.handoff import ChangeReader, Entries, StatsMirror
from locust_perfx.influx import InfluxConfig, PerfxLayout
from locust_perfx.snapshot import IntervalTracker, Sample
from tests.fixtures.tsdb import VictoriaMetrics

WORKERS = 8
REPORT_EVERY = 3.0  # seconds: Locust's worker report interval
EXPORT_INTERVAL = 5.0  # seconds: the exporter's default interval
REPORTS_PER_INTERVAL = round(WORKERS * EXPORT_INTERVAL / REPORT_EVERY)  # 13
TAGS = {"run_id": "bench", "endpoint": "bench", "environment": "bench"}


def make_reports(names: int, rps: float, seed: int = 1) -> list[dict[str, Any]]:
    """One report per worker and a few more: real serialized ``StatsEntry`` deltas.

    Each covers ``REPORT_EVERY`` seconds of one worker at ``rps / WORKERS`` requests/s,
    spread over all names, response times log-normal around 50 ms, 1% failures.
    """
    rng = random.Random(seed)
    per_report = int(rps / WORKERS * REPORT_EVERY)
    reports = []
    for worker in range(WORKERS * 2):
        stats, events = RequestStats(), Events()
        setup_distributed_stats_event_listeners(events, stats)
        for i in range(per_report):
            name = f"/api/item/{(i * 7919 + worker) % names}"
            stats.log_request("GET", name, rng.lognormvariate(3.9, 0.6), 512)
            if rng.random() < 0.01:
                stats.log_error("GET", name, f"HTTP {rng.choice((500, 503))}")
        data: dict[str, Any] = {"user_classes_count": {}}
        events.report_to_master.fire(client_id=f"w{worker}", data=data)
        reports.append(data)
    return reports


def baseline_modules() -> tuple[Any, Any] | None:
    """``snapshot`` and ``influx`` as of ``BASELINE_COMMIT``, importable beside today's."""
    package = Path(tempfile.mkdtemp(prefix="perfx-baseline-")) / "perfx_baseline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module in ("snapshot", "influx"):
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:locust_perfx/{module}.py"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode:
            return None
        source = shown.stdout.replace("locust_perfx.snapshot", "perfx_baseline.snapshot")
        (package / f"{module}.py").write_text(source)
    sys.path.insert(0, str(package.parent))
    return (
        importlib.import_module("perfx_baseline.snapshot"),
        importlib.import_module("perfx_baseline.influx"),
    )


def direct(names: int, reports: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Baseline design against this one on the same reports, timed without pauses."""
    stats, events = RequestStats(), Events()
    setup_distributed_stats_event_listeners(events, stats)
    tracker = IntervalTracker(max_names=names + 10)
    tracker.reset(stats)
    layout = PerfxLayout(TAGS)
    baseline = baseline_modules()
    old_accumulator = old_layout = None
    if baseline is not None:
        old_accumulator = baseline[0].ReportAccumulator(max_names=names + 10)
        old_layout = baseline[1].PerfxLayout(TAGS)
    sample = Sample(at=0.0, users=1000, workers=WORKERS)
    old_ms: list[float] = []
    new_ms: list[float] = []
    merge_ms: list[float] = []
    master_ms: list[float] = []
    reader = ChangeReader()
    counted = 0
    for round_ in range(rounds):
        for i in range(REPORTS_PER_INTERVAL):
            data = reports[(round_ * REPORTS_PER_INTERVAL + i) % len(reports)]
            started = time.thread_time()
            events.worker_report.fire(client_id="w", data=data)  # Locust's own merge
            merge_ms.append((time.thread_time() - started) * 1000)
            if old_accumulator is not None:
                old_accumulator.add(data)
        if old_accumulator is not None:
            started = time.thread_time()
            old_points = old_layout.interval_points(old_accumulator.take(), sample, round_)
            old_ms.append((time.thread_time() - started) * 1000)
            assert len(old_points) > names * 0.9
        started = time.thread_time()
        interval = tracker.take(stats)
        points = layout.interval_points(interval, sample, round_)
        new_ms.append((time.thread_time() - started) * 1000)
        started = time.thread_time()
        messages = list(reader.read(stats, sample))
        for message in messages:
            pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        master_ms.append((time.thread_time() - started) * 1000)
        handed = sum(len(m.states) for m in messages if isinstance(m, Entries))
        assert handed == len(interval.entries)  # every changed name, once
        counted += sum(e.requests for e in interval.entries)
    assert counted == sum(e.num_requests for e in stats.entries.values())

    # Memory: what each design keeps between intervals, and its peak within one.
    def measured(take: Any) -> tuple[float, float]:
        tracemalloc.start()
        kept = take()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del kept
        return current / 2**20, peak / 2**20

    def new_design() -> Any:
        fresh = IntervalTracker(max_names=names + 10)
        new_layout = PerfxLayout(TAGS)
        new_layout.interval_points(fresh.take(stats), sample, 1)
        return fresh, new_layout

    def old_design() -> Any:
        fresh = baseline[0].ReportAccumulator(max_names=names + 10)  # type: ignore[index]
        old = baseline[1].PerfxLayout(TAGS)  # type: ignore[index]
        for i in range(REPORTS_PER_INTERVAL):
            fresh.add(reports[i % len(reports)])
        old.interval_points(fresh.take(), sample, 1)
        return fresh, old

    def master_side() -> Any:
        fresh = ChangeReader()
        for message in fresh.read(stats, sample):
            pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        return fresh

    def export_side() -> Any:  # the export process: a mirror diffed chunk by chunk, points
        mirror = StatsMirror()
        fresh = IntervalTracker(max_names=names + 10, replaced_histograms=True)
        for message in ChangeReader().read(stats, sample):
            fresh.add(mirror.apply(message))
        export_layout = PerfxLayout(TAGS)
        export_layout.interval_points(fresh.take(mirror.stats), sample, 1)
        return mirror, fresh, export_layout

    new_kept, new_peak = measured(new_design)
    master_kept, master_peak = measured(master_side)
    export_kept, export_peak = measured(export_side)
    old_kept, old_peak = measured(old_design) if baseline else (float("nan"),) * 2
    return {
        "points": len(points),
        "baseline_ms": old_ms,
        "new_ms": new_ms,
        "locust_merge_ms": merge_ms,
        "master_ms": master_ms,
        "new_mem_mib": (new_kept, new_peak),
        "master_mem_mib": (master_kept, master_peak),
        "export_mem_mib": (export_kept, export_peak),
        "baseline_mem_mib": (old_kept, old_peak),
    }


def live(names: int, reports: list[dict[str, Any]], intervals: int, real: float) -> dict[str, Any]:
    """The exporter's greenlets under gevent, fed worker reports at 13 per interval."""
    data_dir = Path(tempfile.mkdtemp(prefix="perfx-bench-vm-"))
    vm = VictoriaMetrics(data_dir / "data")
    vm.start()
    environment = Environment(events=Events())
    runner = environment.create_master_runner("127.0.0.1", free_port())
    process = psutil.Process()
    try:
        config = InfluxConfig(
            vm.url,
            token="bench",
            org="perf",
            bucket="bench",
            interval=real,
            max_names=names + 10,
        )
        exporter = MetricsExporter(config, run_id=f"bench-master-{names}")
        per_interval: list[list[float]] = [[]]  # CPU ms of each slice, per interval
        walls: list[float] = []  # wall ms of every slice: how long the loop was ours
        cpu_without_gc: list[float] = []  # CPU ms of every slice, less its collections
        gc_in_slices: list[float] = []  # ms of each garbage collection inside a slice
        collecting = [0.0, 0.0]  # when the running collection started; all collections' ms

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collecting[0] = time.perf_counter()
            else:
                collecting[1] += (time.perf_counter() - collecting[0]) * 1000

        long_slices: list[tuple[float, float, str, str]] = []  # ms wall, CPU, from, to
        read = exporter._read

        def counted_read(**how: Any) -> None:
            per_interval.append([])
            read(**how)

        exporter._read = counted_read  # type: ignore[method-assign]
        exporter.check()  # as the session does at start-up
        rss_before = process.memory_info().rss
        before = exporter._health
        exporter.start(environment)
        assert exporter._process is not None
        export_process = psutil.Process(exporter._process.pid)
        wait_until_reported(exporter, before)
        export_rss_started = export_process.memory_info().rss
        export_cpu_before = sum(export_process.cpu_times()[:2])
        ours = {exporter._ticker, exporter._listener}
        switched_in: list[Any] = [0.0, 0.0, 0.0, ""]

        def trace(event: str, args: Any) -> None:
            if event in ("switch", "throw"):
                origin, target = args
                if target in ours:
                    switched_in[:] = (
                        time.perf_counter(),
                        time.thread_time(),
                        collecting[1],
                        _where(target),
                    )
                elif origin in ours and switched_in[0]:
                    walls.append((time.perf_counter() - switched_in[0]) * 1000)
                    cpu = (time.thread_time() - switched_in[1]) * 1000
                    collected = collecting[1] - switched_in[2]
                    if collected:
                        gc_in_slices.append(collected)
                    cpu_without_gc.append(cpu - collected)
                    if walls[-1] > 5 and len(long_slices) < 20:
                        where = switched_in[3], _where(origin)
                        long_slices.append((round(walls[-1], 1), round(cpu, 1), *where))
                    per_interval[-1].append(cpu)

        gc.callbacks.append(on_gc)
        greenlet.settrace(trace)
        fed = 0
        deadline = time.monotonic() + intervals * real
        while time.monotonic() < deadline:
            data = reports[fed % len(reports)]
            environment.events.worker_report.fire(client_id=f"w{fed % WORKERS}", data=data)
            fed += 1
            gevent.sleep(real / REPORTS_PER_INTERVAL)
        greenlet.settrace(None)
        gc.callbacks.remove(on_gc)
        rss_peak = process.memory_info().rss
        export_cpu = sum(export_process.cpu_times()[:2]) - export_cpu_before
        export_rss = export_process.memory_info().rss
        exporter.close()
        health = exporter.health()
        written = sum(
            len(series["values"])
            for series in vm.export(
                f'{{__name__="locust_requests_requests",run_id="bench-master-{names}"}}'
            )
        )
    finally:
        runner.quit()
        vm.stop()
    costs = [sum(slices) for slices in per_interval[1:] if slices]
    return {
        "intervals": len(costs),
        "interval_ms": costs,
        "longest_slice_ms": max(walls, default=0.0),
        "longest_slice_cpu_ms": max((max(s) for s in per_interval if s), default=0.0),
        "longest_slice_cpu_without_gc_ms": max(cpu_without_gc, default=0.0),
        "slices_over_5ms": sum(wall > 5 for wall in walls),
        "slices": len(walls),
        "long_slices": long_slices,
        "gc_in_slices_ms": gc_in_slices,
        "rss_growth_mib": (rss_peak - rss_before) / 2**20,
        "export_process_cpu_ms_per_interval": export_cpu * 1000 / max(len(costs), 1),
        "export_process_rss_mib": export_rss / 2**20,
        "export_process_rss_started_mib": export_rss_started / 2**20,
        "points_written": health["points_written"],
        "request_points_in_vm": written,
        "points_dropped": health["points_dropped"],
    }


def wait_until_reported(exporter: MetricsExporter, before: object) -> None:
    """Until the export process reported once (it starts in ~1 s): its start-up is not an
    interval's cost."""
    deadline = time.monotonic() + 30
    while exporter._health is before and time.monotonic() < deadline:
        gevent.sleep(0.05)  # reports arrive on the listener greenlet; nothing to wait on


def _where(glet: Any) -> str:
    """Where a greenlet of ours yielded: the innermost functions of ours on its stack, first."""
    frame, names = glet.gr_frame, []
    while frame is not None:
        if "locust_perfx" in frame.f_code.co_filename:
            names.append(frame.f_code.co_name)
        frame = frame.f_back
    return "<".join(names[:6])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--rps", type=float, default=10_000, help="all workers together")
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--interval", type=float, default=EXPORT_INTERVAL, help="real seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    reports = make_reports(args.names, args.rps)
    result: dict[str, Any] = {"names": args.names, "rps": args.rps}
    result["direct"] = direct(args.names, reports, rounds=args.intervals)
    result["live"] = live(args.names, reports, args.intervals, args.interval)
    summary = {
        "live_median_ms": median(result["live"]["interval_ms"]),
        "live_p99_ms": percentile(result["live"]["interval_ms"], 0.99),
        "live_longest_slice_ms": result["live"]["longest_slice_ms"],
        "live_longest_slice_cpu_ms": result["live"]["longest_slice_cpu_ms"],
        "live_longest_slice_cpu_without_gc_ms": result["live"]["longest_slice_cpu_without_gc_ms"],
        "gc_in_slices": len(result["live"]["gc_in_slices_ms"]),
        "gc_in_slices_max_ms": max(result["live"]["gc_in_slices_ms"], default=0.0),
        "direct_new_median_ms": median(result["direct"]["new_ms"]),
        "direct_baseline_median_ms": median(result["direct"]["baseline_ms"]),
        "locust_merge_median_ms": median(result["direct"]["locust_merge_ms"]),
        "direct_master_median_ms": median(result["direct"]["master_ms"]),
    }
    result["summary"] = summary
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
