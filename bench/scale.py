"""Part 5: the master's event loop at 10,000 request names, plain Locust and the plugin.

A real distributed run: a master and 2 worker processes, ``FastHttpUser``s with no wait against
nginx on 127.0.0.1, every one of ``--names`` request names requested every export interval.
Plain Locust and the plugin (synced with ``perfx-platform serve``, exporting to
VictoriaMetrics at its default 5 s interval) run in alternating rounds on the same servers.
Inside the master, ``bench/probe.py`` sleeps 5 ms in a loop and records how late it wakes (the
delay every user of the loop sees), times gen-2 garbage collections, and charges the CPU of
each slice the plugin's greenlets run to the plugin. From outside, psutil reads the master's
CPU and RSS and the export process's RSS over the same window.

Exactness, per round: nginx's request counter (``stub_status``) over the whole run equals
Locust's total (its ``--csv`` summary), and with the plugin also the run summary's total on the
platform and the sum of every interval's request count read back from VictoriaMetrics.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from bench.common import BENCH, ROOT, free_port, log, percentile, wait_for
from bench.load import Servers

PLUGIN = ROOT / "perfx_plugin.py"
LOCUSTFILE = BENCH / "scale_locustfile.py"
EXPORT_INTERVAL = 5.0  # the plugin's default: what the issue measures
STALL_MS = 100.0


def run_round(
    servers: Servers,
    config: str,
    round_: int,
    names: int,
    users: int,
    rate: float,
    warmup: float,
    window: float,
) -> dict[str, Any]:
    """One headless distributed run; measure [load starts + warmup, + window]."""
    logs = servers.tmp / f"{config}-{round_}"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFX_", "LOCUST_"))}
    env["BENCH_NAMES"] = str(names)
    env["BENCH_USERS"], env["BENCH_RATE"] = str(users), str(rate)
    host = f"http://127.0.0.1:{servers.nginx_port}"
    files, extra, run_id = str(LOCUSTFILE), ["--host", host], ""
    if config == "perfx":
        run_id = servers.create_run()
        files = f"{PLUGIN},{LOCUSTFILE}"
        extra = ["--run-id", run_id, "--platform-url", servers.platform_url]
        extra += ["--influxdb-url", servers.vm_url, "--influxdb-token", "bench"]
        extra += ["--influxdb-org", "perf", "--influxdb-bucket", "bench"]
        extra += ["--influxdb-max-names", str(names + 10)]
    port = free_port()
    run_time = f"{int(warmup + window + 3)}s"
    master = [
        *(sys.executable, "-m", "locust", "-f", files, "--headless", "--only-summary"),
        *("-u", str(users), "-r", str(users), "-t", run_time, *extra, "--master"),
        *("--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)),
        *("--expect-workers", "2", "--csv", str(logs / "locust")),
        # Users finish the request in flight at the end: nginx served exactly what Locust counts.
        *("--stop-timeout", "10"),
    ]
    worker = [sys.executable, "-m", "locust", "-f", files, "--worker"]
    worker += ["--master-host", "127.0.0.1", "--master-port", str(port)]
    probe_file = logs / "probe.json"
    polls = [0]  # nginx counts our own status requests too

    def served() -> int:
        polls[0] += 1
        return servers.requests_served()

    served_before = served()
    procs = []
    for i, (command, extra_env) in enumerate(
        [(master, {"BENCH_PROBE_FILE": str(probe_file)}), (worker, {}), (worker, {})]
    ):
        with (logs / f"locust-{i}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=BENCH,
                    env={**env, **extra_env},
                )
            )
    try:
        wait_for(lambda: served() > served_before + 100, 60, f"{config} load starts")
        time.sleep(warmup)
        master_ps = psutil.Process(procs[0].pid)
        begin, cpu_begin = time.time(), sum(master_ps.cpu_times()[:2])
        faults_begin = _minor_faults(master_ps.pid)
        time.sleep(window)
        end, cpu_end = time.time(), sum(master_ps.cpu_times()[:2])
        faults_end = _minor_faults(master_ps.pid)
        master_rss = master_ps.memory_info().rss
        export_rss = []
        for child in master_ps.children():
            # The master's forked reader may be among them, exiting (a zombie): skip it.
            with contextlib.suppress(psutil.Error):
                if "locust_perfx.export_process" in " ".join(child.cmdline()):
                    export_rss.append(child.memory_info().rss)
        codes = [proc.wait(120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    served_after = served()
    served_total = served_after - served_before - (polls[0] - 1)
    if any(codes):
        output = "".join(p.read_text(errors="replace")[-3000:] for p in logs.glob("*.log"))
        raise RuntimeError(f"{config} round {round_} exited with {codes}:\n{output}")
    probe = json.loads(probe_file.read_text())
    lateness = [late for at, late in probe["wakes"] if begin <= at <= end]
    collections = [ms for at, ms in probe["collections"] if begin <= at <= end]
    slices = [
        (cpu, wall, who) for at, cpu, wall, who in probe["plugin_slices"] if begin <= at <= end
    ]
    by_function: dict[str, float] = {}
    for cpu, _, who in slices:
        by_function[who] = by_function.get(who, 0.0) + cpu
    intervals = window / EXPORT_INTERVAL
    result: dict[str, Any] = {
        "config": config,
        "round": round_,
        "window_s": end - begin,
        "wakes": len(lateness),
        "p99_late_ms": percentile(lateness, 0.99),
        "p50_late_ms": percentile(lateness, 0.5),
        "stalls": sum(late > STALL_MS for late in lateness),
        "longest_late_ms": max(lateness, default=0.0),
        "gen2_collections": len(collections),
        "gen2_longest_ms": max(collections, default=0.0),
        "plugin_cpu_ms_per_interval": sum(cpu for cpu, _, _ in slices) / intervals,
        "plugin_cpu_ms_per_interval_by_function": {
            who: round(cpu / intervals, 2) for who, cpu in sorted(by_function.items())
        },
        "plugin_longest_slice_ms": max((wall for _, wall, _ in slices), default=0.0),
        "master_cpu_ms_per_interval": (cpu_end - cpu_begin) * 1000 / intervals,
        "master_minor_faults_per_interval": (faults_end - faults_begin) / intervals,
        "master_rss_mib": master_rss / 2**20,
        "export_rss_mib": export_rss[0] / 2**20 if export_rss else None,
        "served": served_total,
        "locust_total": _locust_total(logs / "locust_stats.csv"),
    }
    if config == "perfx":
        summary = _platform_run(servers, run_id)["summary"]
        result["summary_total"] = summary["total"]["requests"]
        found = _vm_export(servers, f'{{__name__="locust_requests_requests",run_id="{run_id}"}}')
        # A write that timed out but was stored, then retried, is stored twice by
        # VictoriaMetrics; InfluxDB keeps one point per series and timestamp: so do we.
        result["tsdb_total"] = int(
            sum(sum(dict(zip(s["timestamps"], s["values"], strict=True)).values()) for s in found)
        )
        result["tsdb_names"] = len({series["metric"]["name"] for series in found})
    log(
        f"{config} round {round_}: p99 late {result['p99_late_ms']:.1f} ms, stalls "
        f"{result['stalls']}, gen-2 {result['gen2_collections']}, plugin CPU "
        f"{result['plugin_cpu_ms_per_interval']:.1f} ms/interval, master CPU "
        f"{result['master_cpu_ms_per_interval']:.0f} ms/interval, served {served_total:,}"
    )
    return result


def _minor_faults(pid: int) -> int:
    """The process's minor page faults so far (``/proc/PID/stat`` field 10): copy-on-write
    after a ``fork()`` shows here, in whichever greenlet touches the page."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


def _locust_total(path: Path) -> int:
    with path.open() as file:
        [total] = [row for row in csv.DictReader(file) if row["Name"] == "Aggregated"]
    return int(total["Request Count"])


def _platform_run(servers: Servers, run_id: str) -> dict[str, Any]:
    url = f"{servers.platform_url}/api/perf/runs/{run_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body: dict[str, Any] = json.load(response)
    return body.get("data", body)


def _vm_export(servers: Servers, match: str) -> list[dict[str, Any]]:
    urllib.request.urlopen(f"{servers.vm_url}/internal/force_flush", timeout=10).close()
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{servers.vm_url}/api/v1/export?{query}", timeout=60) as got:
        return [json.loads(line) for line in got.read().decode().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="of each configuration")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=20, help="all workers together")
    parser.add_argument(
        "--rate",
        type=float,
        default=2500.0,
        help="requests per second of all users (0: unpaced). 2,500 requests each 5 s interval"
        " reach all 10,000 names and leave the machine's CPU to spare, so the master's loop"
        " shows the plugin's cost, not a saturated machine's turn-taking",
    )
    parser.add_argument("--quick", action="store_true", help="1 round each, 15 s windows")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.window = 1, 6.0, 15.0
    tmp = Path(tempfile.mkdtemp(prefix="perfx-bench-scale-"))
    servers = Servers(tmp, peer=False)
    rounds: list[dict[str, Any]] = []
    try:
        servers.start()
        for round_ in range(args.rounds):
            # Alternate which goes first, so neither always runs on a warmer machine.
            order = ("plain", "perfx") if round_ % 2 == 0 else ("perfx", "plain")
            for config in order:
                rounds.append(
                    run_round(
                        servers,
                        config,
                        round_,
                        args.names,
                        args.users,
                        args.rate,
                        args.warmup,
                        args.window,
                    )
                )
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(
        {"names": args.names, "rate": args.rate, "interval": EXPORT_INTERVAL, "rounds": rounds},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
