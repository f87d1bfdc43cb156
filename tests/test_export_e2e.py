"""Live metrics from real locust processes into a real TSDB (VictoriaMetrics, InfluxDB v2 API)."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fixtures.faults import FaultServer
from tests.fixtures.locust import ROOT, LocustProcess, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until
from tests.test_influx import exited

BEHAVIOURS = ROOT / "tests" / "locustfiles" / "behaviours.py"


def influx_args(vm: VictoriaMetrics) -> tuple[str, ...]:
    return (
        "--influxdb-url",
        vm.url,
        "--influxdb-token",
        "tsdb-token",
        "--influxdb-org",
        "perf",
        "--influxdb-bucket",
        "locust",
        "--influxdb-interval",
        "1",
        "--influxdb-tags",
        "team=search",
    )


def exported_cluster_run(
    locust_runner: LocustRunner,
    platform: PlatformServer,
    target: Target,
    vm: VictoriaMetrics,
    options: str,
    locustfile: Path,
    env: dict[str, str],
) -> tuple[str, LocustProcess]:
    """A new run on a master and two workers exporting to ``vm``, ended: its id and master
    (which exited 0, as did its workers)."""
    run_id = platform.create_run(None, target.url)
    master, workers = locust_runner.start_distributed(
        *headless(run_id, platform.url, options),
        *influx_args(vm),
        locustfile=locustfile,
        env=env,
    )
    assert master.wait(60) == 0, master.output
    for worker in workers:
        assert worker.wait(30) == 0
    return run_id, master


def requests_per_name(vm: VictoriaMetrics, run_id: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for series in vm.export(f'{{__name__="locust_requests_requests",run_id="{run_id}"}}'):
        metric: dict[str, Any] = series["metric"]  # type: ignore[assignment]
        assert metric["team"] == "search"
        counts[metric["name"]] += int(sum(series["values"]))  # type: ignore[arg-type]
    return counts


def arrived(vm: VictoriaMetrics, run_id: str, target: Target) -> None:
    """VictoriaMetrics makes a write searchable a moment after acknowledging it."""
    wait_until(
        lambda: (
            requests_per_name(vm, run_id) == target.counts and len(event_kinds(vm, run_id)) == 2
        ),
        timeout=5,
        message=f"interval counts {requests_per_name(vm, run_id)} add up to {target.counts}",
    )


def event_kinds(vm: VictoriaMetrics, run_id: str) -> list[str]:
    series = vm.export(f'{{__name__="locust_events_text",run_id="{run_id}"}}')
    return sorted(s["metric"]["kind"] for s in series)  # type: ignore[index]


def passed_shop_run(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    export_args: tuple[str, ...],
) -> tuple[str, str]:
    """A 3 s headless run of three users for endpoint ``shop`` in environment ``ci``, exported
    with ``export_args``, that must pass: its run id and Locust's output."""
    run_id = platform_server.create_run(None, target.url, endpoint="shop", environment="ci")
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 3 -r 3 -t 3s"),
        *export_args,
        locustfile=BEHAVIOURS,
    )
    assert code == 0, output
    return run_id, output


def test_a_local_run_streams_interval_counts_that_add_up(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    run_id, _ = passed_shop_run(
        locust_runner, platform_server, target, influx_args(victoria_metrics)
    )
    arrived(victoria_metrics, run_id, target)
    summary = platform_server.get_run(run_id)["summary"]
    # The summary leaves before the export's last writes (the verdict goes first): points
    # may be queued then, and arrived() shows they were sent. None may have been dropped.
    assert summary["export"]["points_dropped"] == 0
    assert summary["export"]["state"] == "closing"  # the test is over, its export ending
    [series] = victoria_metrics.export(f'{{__name__="locust_totals_users",run_id="{run_id}"}}')
    assert series["metric"]["endpoint"] == "shop"  # type: ignore[index]
    assert max(series["values"]) == 3  # type: ignore[type-var]


@pytest.mark.slow
def test_only_the_master_writes_and_it_counts_the_workers_last_reports(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
    fault_server: FaultServer,
) -> None:
    # Workers inherit an InfluxDB URL that records any request: none may arrive.
    run_id, _ = exported_cluster_run(
        locust_runner,
        platform_server,
        target,
        victoria_metrics,
        "-u 6 -r 6 -t 4s",
        BEHAVIOURS,
        {"PERFX_INFLUXDB_URL": fault_server.url},
    )
    assert fault_server.requests == []
    arrived(victoria_metrics, run_id, target)
    assert event_kinds(victoria_metrics, run_id) == ["complete", "start"]


def test_an_unreachable_tsdb_stops_the_run_before_any_load(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    run_id = platform_server.create_run(None, target.url)
    victoria_metrics.stop()
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-t 5s"),
        *influx_args(victoria_metrics),
        locustfile=BEHAVIOURS,
    )
    assert code == 1, output
    [refusal] = [line for line in output.splitlines() if line.startswith("perfx:")]
    assert refusal.startswith(f"perfx: InfluxDB at {victoria_metrics.url} is unreachable (")
    assert refusal.endswith("); check --influxdb-url and that the server is running")
    assert "Traceback" not in output
    assert target.total == 0
    assert platform_server.get_run(run_id)["status"] == "pending"


def test_a_rejected_token_stops_the_run_before_any_load(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics_with_auth: VictoriaMetrics,
) -> None:
    run_id = platform_server.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-t 5s"),
        *influx_args(victoria_metrics_with_auth),
        locustfile=BEHAVIOURS,
    )
    assert code == 1, output
    assert (
        f"perfx: InfluxDB at {victoria_metrics_with_auth.url} rejected the token (HTTP 401); "
        "check --influxdb-token" in output
    )
    assert "tsdb-token" not in output
    assert target.total == 0


def export_process(locust: LocustProcess) -> psutil.Process:
    """The export process ``locust`` started with its first test."""
    found: list[psutil.Process] = wait_until(
        lambda: [
            child
            for child in psutil.Process(locust.proc.pid).children()
            if "locust_perfx.export_process" in child.cmdline()
        ],
        message="the export process starts",
        ignore=(psutil.Error,),  # a child that exits while it is looked at
    )
    [process] = found
    return process


@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, signal.SIGTERM],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_stop_signal_to_every_process_still_exports_the_final_interval(
    signum: signal.Signals,
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    """The signal goes to every process, as systemd (``KillMode=control-group``) sends it:
    Locust's process group, and the export process in its session of its own (a terminal's
    Ctrl-C reaches only the group). The export process must outlive Locust's quit, send what
    Locust counted last, and exit."""
    run_id = platform_server.create_run(None, target.url)
    proc = locust_runner.start(
        *headless(run_id, platform_server.url, "-u 2 -t 60s"),
        *influx_args(victoria_metrics),
        locustfile=BEHAVIOURS,
    )
    wait_until(
        lambda: requests_per_name(victoria_metrics, run_id), message="a first interval arrives"
    )
    exporter = export_process(proc)

    exporter.send_signal(signum)
    os.killpg(proc.proc.pid, signum)

    assert proc.wait(30) != 0
    arrived(victoria_metrics, run_id, target)
    assert event_kinds(victoria_metrics, run_id) == ["fail", "start"]
    wait_until(lambda: exited(exporter.pid), message="the export process exits")


IMPORTS_PROBE = ROOT / "tests" / "locustfiles" / "imports_probe.py"


def imported_modules(output: str) -> set[str]:
    [listed] = [line for line in output.splitlines() if line.startswith("modules: ")]
    return set(json.loads(listed.removeprefix("modules: ")))


def test_the_export_costs_the_locust_process_no_library(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    """The start-up check and the export's handle load no library the same run without the
    export does not (influxdb_client cost the Locust process ~16 MB for good)."""
    locustfile = f"{BEHAVIOURS},{IMPORTS_PROBE}"
    runs = {}
    for exported, args in ((False, ()), (True, influx_args(victoria_metrics))):
        run_id = platform_server.create_run(None, target.url)
        code, output = locust_runner.run(
            *headless(run_id, platform_server.url, "-u 1 -r 1 -t 1s"), *args, locustfile=locustfile
        )
        assert code == 0, output
        runs[exported] = imported_modules(output)

    def packages(modules: set[str]) -> set[str]:
        # Python's dev mode (tox sets it) imports tracemalloc when it prints a warning,
        # whichever run happens to print one.
        return {name.partition(".")[0] for name in modules} - {"tracemalloc", "_tracemalloc"}

    assert packages(runs[True]) == packages(runs[False])  # gevent.fileobject: the pipes
    assert "influxdb_client" not in runs[True]
