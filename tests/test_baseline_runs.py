"""Real runs compared with a baseline run: the summaries the platform stores carry each
name's per-interval series and histogram, and the comparison of two real runs flags the name
whose latency the test raised, with its numbers, and nothing in identical runs."""

from __future__ import annotations

from typing import Any

import pytest

from locust_perfx.compare import compare
from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.openapi import validate_request
from tests.fixtures.platform import PlatformServer

LOCUSTFILE = ROOT / "tests" / "locustfiles" / "thresholds.py"
FAST, SLOW = 0.1, 0.2
"""Seconds the target takes to answer /fast and /slow: real latencies, far above the jitter
of a busy test machine's scheduler (at 20 ms, a machine busy with other tests made an A/A
pair differ by 19%: a real difference between the runs, which the test rightly saw)."""


def summary_of_a_run(
    locust_runner: LocustRunner, platform: PlatformServer, target: Target, options: str
) -> dict[str, Any]:
    run_id = platform.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform.url, f"{options} --influxdb-interval 1"),
        locustfile=LOCUSTFILE,
        timeout=60,
    )
    assert code == 0, output
    summary: dict[str, Any] = platform.get_run(run_id)["summary"]
    return summary


@pytest.fixture
def latencies(target: Target) -> Target:
    target.delays.update({"/fast": FAST})
    target.slow_seconds = SLOW
    return target


def test_the_summary_carries_each_names_series_and_histogram(
    locust_runner: LocustRunner, platform_server: PlatformServer, latencies: Target
) -> None:
    summary = summary_of_a_run(locust_runner, platform_server, latencies, "-u 4 -t 4s")
    [fast, slow] = summary["requests"]
    for row in (summary["total"], fast, slow):
        series = row["series"]
        assert series["interval_s"] == 1.0 and series["stride"] == 1
        assert 3 <= len(series["requests"]) <= 4  # whole intervals only
        assert sum(series["requests"]) <= row["requests"]
        assert sum(count for _, count in row["histogram"]) == row["requests"]
    assert min(p for p in slow["series"]["p95_ms"] if p is not None) >= SLOW * 1000
    assert min(ms for ms, _ in slow["histogram"]) >= SLOW * 1000
    complete = {"finished_at": summary["finished_at"], "summary": summary}
    validate_request("POST", "/api/perf/runs/{run_id}/complete", complete)


def test_identical_runs_flag_nothing_and_a_slower_name_is_flagged_alone(
    locust_runner: LocustRunner, platform_server: PlatformServer, latencies: Target
) -> None:
    options = "-u 8 -t 8s"
    baseline = summary_of_a_run(locust_runner, platform_server, latencies, options)
    same = summary_of_a_run(locust_runner, platform_server, latencies, options)
    latencies.slow_seconds = SLOW * 1.3
    slower = summary_of_a_run(locust_runner, platform_server, latencies, options)

    assert compare(baseline, same).regressions == []
    table = compare(baseline, slower)
    flagged = {(r.name, r.metric) for r in table.regressions}
    assert ("GET /slow", "p95_ms") in flagged, table.rows
    assert not any(name == "GET /fast" for name, _ in flagged), table.rows
    worst = next(r for r in table.regressions if r.name == "GET /slow")
    assert worst.p is not None and worst.p < 0.05
    assert worst.current is not None and worst.baseline is not None
    assert worst.current >= worst.baseline * 1.2, worst.reason
