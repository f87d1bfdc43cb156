"""Pass/fail criteria judge real runs: against a target whose latency the test sets, on the
local runner and on a master with workers, with the reference platform recording the verdict."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from locust_perfx.lifecycle import EXIT_THRESHOLDS
from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until
from tests.test_export_e2e import event_kinds
from tests.test_lifecycle import status_calls

LOCUSTFILE = ROOT / "tests" / "locustfiles" / "thresholds.py"
SLOW = 0.2
"""Seconds the target takes to answer /slow in these tests."""


def judged_run(
    locust_runner: LocustRunner,
    platform: PlatformServer,
    target: Target,
    options: str,
    *thresholds: str,
    timeout: float = 60,
) -> tuple[str, int, str, dict[str, Any]]:
    run_id = platform.create_run(None, target.url)
    flags = [arg for criterion in thresholds for arg in ("--threshold", criterion)]
    code, output = locust_runner.run(
        *headless(run_id, platform.url, options), *flags, locustfile=LOCUSTFILE, timeout=timeout
    )
    return run_id, code, output, platform.get_run(run_id)


def test_a_run_within_its_thresholds_completes_with_each_result(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    _, code, output, run = judged_run(
        locust_runner,
        platform_server,
        target,
        "-u 2 -t 3s",
        "p95_ms < 2000",
        "failure_ratio <= 0.01",
        "requests >= 1 for GET /slow",
    )
    assert code == 0, output
    assert run["status"] == "completed"
    results = {r["criterion"]: r for r in run["summary"]["thresholds"]}
    assert list(results) == [
        "p95_ms < 2000",
        "failure_ratio <= 0.01",
        "requests >= 1 for GET /slow",
    ]
    assert all(r["passed"] and r["first_breach_at"] is None for r in results.values())
    slow = next(r for r in run["summary"]["requests"] if r["name"] == "/slow")
    assert results["requests >= 1 for GET /slow"]["observed"] == slow["requests"]
    assert results["failure_ratio <= 0.01"]["observed"] == 0


def test_a_latency_breach_fails_the_run_naming_the_criterion_and_what_was_observed(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    _, code, output, run = judged_run(
        locust_runner, platform_server, target, "-u 2 -t 3s", "p95_ms < 100 for GET /slow"
    )
    assert code == EXIT_THRESHOLDS, output
    assert run["status"] == "failed"
    reason = re.fullmatch(
        r"thresholds breached: p95_ms < 100 for GET /slow: observed (\d+) over the whole run",
        run["reason"],
    )
    assert reason, run["reason"]
    slow = next(r for r in run["summary"]["requests"] if r["name"] == "/slow")
    assert int(reason.group(1)) == slow["p95_ms"] >= SLOW * 1000
    [result] = run["summary"]["thresholds"]
    assert result["passed"] is False and result["first_breach_at"] is not None
    assert "perfx: threshold breached: p95_ms < 100 for GET /slow" in output


def test_an_aborting_criterion_stops_a_long_test_within_an_interval(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    started = time.monotonic()
    _, code, output, run = judged_run(
        locust_runner,
        platform_server,
        target,
        "-u 2 -t 60s --influxdb-interval 1",
        "max_ms < 100 for GET /slow, abort",
    )
    assert code == EXIT_THRESHOLDS, output
    assert time.monotonic() - started < 30  # a 60 s test, stopped after about one interval
    assert run["reason"].startswith("aborted by a threshold: max_ms < 100 for GET /slow: observed")
    assert "perfx: stopping the test: max_ms < 100 for GET /slow" in output
    assert status_calls(platform_server, run["id"]) == [("start", 200), ("fail", 200)]


@pytest.mark.slow
def test_a_master_judges_the_workers_merged_stats(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    run_id = platform_server.create_run(None, target.url)
    master, workers = locust_runner.start_distributed(
        *headless(run_id, platform_server.url, "-u 4 -r 4 -t 4s"),
        *("--threshold", "p95_ms < 100 for /slow", "--threshold", "requests > 0"),
        locustfile=LOCUSTFILE,
    )
    assert master.wait(60) == EXIT_THRESHOLDS, master.output
    for worker in workers:
        assert worker.wait(30) == 0
    run = platform_server.get_run(run_id)
    results = {r["criterion"]: r for r in run["summary"]["thresholds"]}
    assert (
        results["requests > 0"]["observed"] == run["summary"]["total"]["requests"] == target.total
    )
    slow = next(r for r in run["summary"]["requests"] if r["name"] == "/slow")
    assert results["p95_ms < 100 for /slow"]["observed"] == slow["p95_ms"]
    observed = f"observed {slow['p95_ms']} over the whole run"
    assert run["reason"] == f"thresholds breached: p95_ms < 100 for /slow: {observed}"


def test_without_criteria_nothing_is_judged(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    _, code, output, run = judged_run(locust_runner, platform_server, target, "-u 1 -t 1s")
    assert code == 0, output
    assert run["status"] == "completed"
    assert "thresholds" not in run["summary"]
    assert "threshold" not in output


def test_malformed_criteria_are_refused_before_any_load(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    _, code, output, run = judged_run(
        locust_runner, platform_server, target, "-u 1 -t 5s", "p95 < 100", "rps >= many"
    )
    assert code == 2, output
    assert [line for line in output.splitlines() if line.startswith("perfx: ")] == [
        "perfx: threshold 'p95 < 100' (from the command line): unknown metric 'p95'; expected "
        "one of p50_ms, p90_ms, p95_ms, p99_ms, avg_ms, max_ms, failure_ratio, failures, rps, "
        "requests",
        "perfx: threshold 'rps >= many' (from the command line): the limit must be a number, "
        "got 'many'",
    ]
    assert run["status"] == "pending"
    assert target.total == 0


def test_results_and_breaches_reach_influxdb(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    target.slow_seconds = SLOW
    influx = f"--influxdb-url {victoria_metrics.url} --influxdb-org o --influxdb-bucket b"
    run_id, code, output, run = judged_run(
        locust_runner,
        platform_server,
        target,
        f"-u 2 -t 3s --influxdb-interval 1 {influx}",
        "p95_ms < 100 for GET /slow",
        "requests > 0",
    )
    assert code == EXIT_THRESHOLDS, output

    def exported(field: str) -> dict[str, list[float]]:
        series = victoria_metrics.export(
            f'{{__name__="locust_thresholds_{field}",run_id="{run_id}"}}'
        )
        return {s["metric"]["criterion"]: s["values"] for s in series}  # type: ignore[index,misc]

    final = {r["criterion"]: r["observed"] for r in run["summary"]["thresholds"]}

    def latest(field: str) -> dict[str, float]:
        return {name: values[-1] for name, values in exported(field).items()}

    # VictoriaMetrics makes a write searchable a moment after acknowledging it.
    wait_until(lambda: latest("observed") == final, timeout=10, message=f"final points {final}")
    assert latest("passed") == {"p95_ms < 100 for GET /slow": 0, "requests > 0": 1}
    assert exported("limit")["p95_ms < 100 for GET /slow"][-1] == 100
    wait_until(
        lambda: event_kinds(victoria_metrics, run_id) == ["breach", "fail", "start"],
        timeout=10,
        message="the start, breach and fail annotations",
    )
