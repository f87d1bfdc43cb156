"""Part 4: a simulated 10-minute InfluxDB outage at 1,000 names, then recovery.

The export process's loop (``ExportLoop``), run here in-process so its memory can be read,
gets what a master sends: a real ``MasterRunner`` on 127.0.0.1 merges real worker reports,
a ``ChangeReader`` reads them, every message crosses ``pickle`` as over the pipe. The loop
writes to a real VictoriaMetrics that is stopped: 120 intervals, their read times 5 s apart
(10 minutes at the default interval), each write failing as it would. Then VictoriaMetrics
comes back, ``Close`` delivers the queue, and the points are read back. Prints JSON on stdout.
"""

# Locust monkey-patches the process at import: it must come before anything else.
import locust  # noqa: F401  # isort: skip

import argparse
import json
import logging
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from locust.env import Environment
from locust.event import Events

from bench.common import free_port
from bench.master import WORKERS, make_reports
from locust_perfx.export_process import ExportLoop
from locust_perfx.handoff import ChangeReader, Close, Setup
from locust_perfx.influx import DEFAULT_BUFFER_POINTS, InfluxConfig, run_tags
from locust_perfx.snapshot import Sample
from tests.fixtures.tsdb import VictoriaMetrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--buffer", type=int, default=DEFAULT_BUFFER_POINTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    intervals = int(args.minutes * 60 / args.interval)
    reports = make_reports(args.names, rps=args.names * 20.0)  # every name in every report
    vm = VictoriaMetrics(Path(tempfile.mkdtemp(prefix="perfx-bench-outage-")) / "data")
    vm.start()
    environment = Environment(events=Events())
    runner = environment.create_master_runner("127.0.0.1", free_port())
    now = time.time() - args.minutes * 60 - 60  # ten minutes ago: a real outage's times
    run_id = f"bench-outage-{args.names}"
    process = psutil.Process()
    result: dict[str, Any] = {"names": args.names, "intervals": intervals, "buffer": args.buffer}
    try:
        config = InfluxConfig(
            vm.url,
            token="bench",
            org="perf",
            bucket="bench",
            interval=args.interval,
            max_names=args.names + 10,
            buffer_points=args.buffer,
        )
        health: dict[str, Any] = {}

        def report(reported: dict[str, object], done: bool) -> None:
            health.update(reported)

        loop = ExportLoop(Setup(config, run_tags(config, run_id, "", "")), report)
        reader = ChangeReader()

        def send(reset: bool = False) -> None:
            sample = Sample(at=now, users=1000, workers=WORKERS)
            for message in reader.read(environment.stats, sample, reset=reset):
                loop.handle(pickle.loads(pickle.dumps(message, pickle.HIGHEST_PROTOCOL)))

        send(reset=True)
        vm.stop()
        rss_before = process.memory_info().rss
        peak_queued = peak_rss = 0
        for i in range(intervals):
            data = reports[i % len(reports)]
            environment.events.worker_report.fire(client_id=f"w{i % WORKERS}", data=data)
            now += args.interval
            send()  # one interval, and its write, refused (or skipped in backoff)
            peak_queued = max(peak_queued, int(health["points_queued"]))
            peak_rss = max(peak_rss, process.memory_info().rss)
        queued = loop._sink._buffer._points
        buffer_bytes = sum(sys.getsizeof(point) for point in queued) + 8 * len(queued)
        result.update(
            peak_queued=peak_queued,
            buffer_mib=buffer_bytes / 2**20,
            bytes_per_point=buffer_bytes / max(len(queued), 1),
            rss_growth_mib=(peak_rss - rss_before) / 2**20,
            writes_failed=health["writes_failed"],
        )
        vm.start()
        started = time.monotonic()
        loop.handle(Close(deadline=120))
        result["delivery_s"] = time.monotonic() - started
        result.update(
            points_written=health["points_written"],
            points_dropped=health["points_dropped"],
            points_queued_after=health["points_queued"],
        )
        expected = sum(e.num_requests for e in environment.stats.entries.values())
        found = vm.export(f'{{__name__="locust_requests_requests",run_id="{run_id}"}}')
        result["request_points_read_back"] = sum(len(s["values"]) for s in found)
        result["requests_read_back"] = int(sum(sum(s["values"]) for s in found))  # type: ignore[arg-type]
        result["requests_master_total"] = expected
    finally:
        runner.quit()
        vm.stop()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
