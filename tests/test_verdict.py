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
    ],
)
def test_verdicts(outcome: Outcome, verdict: Verdict) -> None:
    assert decide(outcome) == verdict
    assert verdict.call == ("fail" if verdict.failed else "complete")
