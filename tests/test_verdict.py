"""The verdict: Locust's exit code decides, and the reason names the most fundamental cause."""

from __future__ import annotations

import pytest

from locust_perfx.lifecycle import Outcome, Verdict, decide


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (Outcome(exit_code=0, requests=10), Verdict(False)),
        (
            Outcome(exit_code=1, requests=200, failures=3),
            Verdict(
                True,
                "request failures: 3 of 200 requests failed (1.5%); "
                "exit code 1 (--exit-code-on-error)",
            ),
        ),
        (
            Outcome(exit_code=1, failures=3, exceptions=("ValueError('x')", "KeyError('y')")),
            Verdict(True, "unhandled exception in user code: ValueError('x') (and 1 more)"),
        ),
        (
            Outcome(
                exit_code=3,
                failures=3,
                exceptions=("ValueError('x')",),
                exit_code_set_by="the quitting listener check in locustfile",
            ),
            Verdict(True, "exit code 3 set by the quitting listener check in locustfile"),
        ),
        (
            Outcome(
                exit_code=3,
                exit_code_set_by="locust-plugins' quitting listener do_checks",
                breaches=("p95_ms < 500: observed 730",),
            ),
            Verdict(
                True,
                "exit code 3 set by locust-plugins' quitting listener do_checks; "
                "thresholds also breached: p95_ms < 500: observed 730",
            ),
        ),
        (
            Outcome(exit_code=0, failures=3, exceptions=("ValueError('x')",)),
            Verdict(False),  # --exit-code-on-error 0: Locust passes the test, so does the run
        ),
        (
            Outcome(exit_code=0, signal="SIGTERM", failures=3),
            Verdict(True, "interrupted by SIGTERM before the test finished"),
        ),
        (
            Outcome(exit_code=0, workers_lost=True),
            Verdict(True, "all workers were lost (heartbeat timeout); no load was generated"),
        ),
        (
            Outcome(exit_code=0, workers_lost=True, requests=81),
            Verdict(
                True, "all workers were lost (heartbeat timeout); 81 requests were made before"
            ),
        ),
        (
            Outcome(exit_code=0, signal="SIGINT", plugin_error="KeyError: 'x' (in tick)"),
            Verdict(True, "the perfx plugin failed: KeyError: 'x' (in tick)"),
        ),
        (
            Outcome(exit_code=2),
            Verdict(True, "Locust exited with code 2 (an event listener raised; see its log)"),
        ),
        (
            Outcome(exit_code=0, breaches=("p95_ms < 500: observed 730",)),
            Verdict(True, "thresholds breached: p95_ms < 500: observed 730"),
        ),
        (
            Outcome(
                exit_code=1,
                requests=100,
                failures=3,
                breaches=("failure_ratio <= 0.01: observed 0.03",),
            ),
            Verdict(
                True,
                "request failures: 3 of 100 requests failed (3.0%); exit code 1 "
                "(--exit-code-on-error); thresholds also breached: failure_ratio <= 0.01: "
                "observed 0.03",
            ),
        ),
        (
            Outcome(
                exit_code=0,
                aborted=True,
                breaches=("p95_ms < 500: observed 730", "rps >= 9: observed 2.00"),
            ),
            Verdict(
                True, "aborted by a threshold: p95_ms < 500: observed 730; rps >= 9: observed 2.00"
            ),
        ),
        (
            Outcome(exit_code=0, signal="SIGTERM", aborted=True, breaches=("x",)),
            Verdict(True, "interrupted by SIGTERM before the test finished"),
        ),
        (
            Outcome(
                exit_code=1, exceptions=("ValueError('x')",), breaches=("rps >= 9: observed 2",)
            ),
            Verdict(
                True,
                "unhandled exception in user code: ValueError('x'); "
                "thresholds also breached: rps >= 9: observed 2",
            ),
        ),
    ],
)
def test_verdicts(outcome: Outcome, verdict: Verdict) -> None:
    assert decide(outcome) == verdict
    assert verdict.call == ("fail" if verdict.failed else "complete")
