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
            Verdict(True, "request failures: 3 of 200 requests failed (1.5%)"),
        ),
        (
            Outcome(exit_code=1, failures=3, exceptions=("ValueError('x')", "KeyError('y')")),
            Verdict(True, "unhandled exception in user code: ValueError('x') (and 1 more)"),
        ),
        (
            Outcome(exit_code=3, failures=3, exit_code_set_by_user=True),
            Verdict(True, "exit code 3 set by the locustfile (process_exit_code)"),
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
            Outcome(exit_code=1, failures=3, breaches=("failure_ratio <= 0.01: observed 0.03",)),
            Verdict(True, "thresholds breached: failure_ratio <= 0.01: observed 0.03"),
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
            Verdict(True, "unhandled exception in user code: ValueError('x')"),
        ),
    ],
)
def test_verdicts(outcome: Outcome, verdict: Verdict) -> None:
    assert decide(outcome) == verdict
    assert verdict.call == ("fail" if verdict.failed else "complete")
