"""Pass/fail criteria kept on the reference platform reach real Locust runs and come back
judged: an endpoint's, a run's own over them, ``--threshold`` over both, a malformed one
refused before any load, and the results worded by ``perfx-platform show``.

Every final status the plugin sent is checked against openapi.yaml as well: the server
already refuses a body that breaks it, this judges it by the contract's own reading
(jsonschema's date-time check, not the server's).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from locust_perfx.criteria import METRICS
from locust_perfx.lifecycle import EXIT_THRESHOLDS
from locust_perfx.registry import COMMAND_LINE
from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.openapi import validate_request
from tests.fixtures.platform import PlatformServer
from tests.test_reference_cli import perfx_platform

LOCUSTFILE = ROOT / "tests" / "locustfiles" / "thresholds.py"
SLOW = 0.2
"""Seconds the target takes to answer /slow in these tests: 200 ms, over a 100 ms limit."""
STRICT = "p95_ms < 100 for GET /slow"
LENIENT = "p95_ms < 2000 for GET /slow"


def run_judged(
    locust_runner: LocustRunner, platform: PlatformServer, run_id: str, *flags: str
) -> tuple[int, str, dict[str, Any]]:
    """Run a short test of ``run_id``; return the exit code, the output and the run as the
    platform recorded it, whose final status must match the contract."""
    code, output = locust_runner.run(
        *headless(run_id, platform.url, "-u 2 -t 3s"), *flags, locustfile=LOCUSTFILE
    )
    run = platform.get_run(run_id)
    if run["status"] == "completed":
        validate_request(
            "POST",
            "/api/perf/runs/{run_id}/complete",
            {"finished_at": run["finished_at"], "summary": run["summary"]},
        )
    elif run["status"] == "failed":
        validate_request(
            "POST",
            "/api/perf/runs/{run_id}/fail",
            {key: run[key] for key in ("finished_at", "reason", "exit_code", "summary")},
        )
    return code, output, run


def slow_p95(run: dict[str, Any]) -> float:
    slow = next(r for r in run["summary"]["requests"] if r["name"] == "/slow")
    return float(slow["p95_ms"])


def test_an_endpoints_criteria_judge_every_run_of_it(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    run_id = platform_server.create_run(None, target.url, endpoint_thresholds=[STRICT])

    code, output, run = run_judged(locust_runner, platform_server, run_id)

    assert code == EXIT_THRESHOLDS, output
    assert run["status"] == "failed"
    assert (
        run["reason"]
        == f"thresholds breached: {STRICT}: observed {slow_p95(run):g} over the whole run"
    )
    [result] = run["summary"]["thresholds"]
    assert (result["criterion"], result["passed"]) == (STRICT, False)
    assert result["source"] == "endpoint 'demo' on the platform"


def test_a_runs_own_criterion_overrides_the_endpoints_of_the_same_metric_and_scope(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    run_id = platform_server.create_run(
        None, target.url, endpoint_thresholds=[STRICT], thresholds=[LENIENT]
    )

    code, output, run = run_judged(locust_runner, platform_server, run_id)

    assert code == 0, output
    assert run["status"] == "completed"
    [result] = run["summary"]["thresholds"]
    assert (result["criterion"], result["passed"]) == (LENIENT, True)
    assert result["source"] == f"run {run_id} on the platform"
    assert result["observed"] == slow_p95(run)


def test_a_threshold_on_the_command_line_overrides_the_endpoints_and_the_runs(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    run_id = platform_server.create_run(
        None,
        target.url,
        endpoint_thresholds=[STRICT],
        thresholds=[{"metric": "p95_ms", "op": "<", "limit": 150, "scope": "GET /slow"}],
    )

    code, output, run = run_judged(locust_runner, platform_server, run_id, "--threshold", LENIENT)

    assert code == 0, output
    assert run["status"] == "completed"
    [result] = run["summary"]["thresholds"]
    assert (result["criterion"], result["source"], result["passed"]) == (
        LENIENT,
        COMMAND_LINE,
        True,
    )


def test_a_malformed_criterion_on_the_platform_is_refused_before_any_load(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    run_id = platform_server.create_run(
        None,
        target.url,
        endpoint_thresholds=["p95 < 5"],
        thresholds=[{"metric": "p99", "op": "<", "limit": 5}],
    )

    code, output, run = run_judged(locust_runner, platform_server, run_id)

    assert code == 2, output
    expected = ", ".join(METRICS)
    assert [line for line in output.splitlines() if line.startswith("perfx: ")] == [
        "perfx: threshold 'p95 < 5' (from endpoint 'demo' on the platform): unknown metric "
        f"'p95'; expected one of {expected}",
        f"perfx: threshold 'p99 < 5' (from run {run_id} on the platform): unknown metric "
        f"'p99'; expected one of {expected}",
    ]
    assert target.total == 0
    assert run["status"] == "pending"


def test_perfx_platform_show_words_each_result_after_a_run(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    target.slow_seconds = SLOW
    run_id = platform_server.create_run(
        None, target.url, endpoint_thresholds=[STRICT], thresholds=["requests >= 1"]
    )
    _, output, run = run_judged(locust_runner, platform_server, run_id)

    shown = perfx_platform("show", run_id, "--url", platform_server.url)

    assert shown.returncode == 0, shown.stderr
    breached, passed = run["summary"]["thresholds"]
    *criteria, breach_line, pass_line = shown.stderr.splitlines()
    assert criteria == [
        f"threshold of endpoint demo: {STRICT}",
        f"threshold of run {run_id}: requests >= 1",
    ]
    breach = re.fullmatch(
        rf"BREACHED  {re.escape(STRICT)}: observed (\d+), limit 100, "
        r"from endpoint 'demo' on the platform, first breached at (\S+)",
        breach_line,
    )
    assert breach, f"{breach_line}\n{output}"
    assert float(breach[1]) == breached["observed"] == slow_p95(run)
    assert abs(datetime.fromisoformat(breach[2]).timestamp() - breached["first_breach_at"]) < 1e-3
    assert pass_line == (
        f"passed    requests >= 1: observed {int(passed['observed'])}, limit 1, "
        f"from run {run_id} on the platform"
    )
