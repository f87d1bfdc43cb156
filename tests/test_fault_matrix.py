"""A fault on any platform call, of any kind, still ends the run truthfully.

Each cell runs a real Locust test through a FaultProxy in front of the real reference
platform; the proxy breaks the first call of one kind in one way (see FAULTS), then passes
everything through. The invariant is read from the platform's own state and call log:

- a run whose start was never confirmed generated no load, is not left running, and the
  plugin exited non-zero with a one-line ``perfx: ...`` message;
- otherwise the run ends in exactly one terminal state, Locust's verdict: delivered at the
  end of the test, or saved and then delivered by the ``perfx resend`` command the plugin
  printed.

No run is left running. The session prints every cell as a table ("fault matrix").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from itertools import groupby

import pytest

from locust_perfx.lifecycle import EXIT_STATUS_REFUSED, EXIT_STATUS_SAVED
from tests.fixtures.faults import (
    CALLS,
    FAULTS,
    MATRIX,
    RETRY_AFTER,
    FaultProxy,
    FaultProxyFactory,
)
from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer
from tests.test_cli import perfx

BEHAVIOURS = ROOT / "tests" / "locustfiles" / "behaviours.py"
OPTIONS = "-u 1 -t {seconds}s --platform-timeout 3 --platform-progress 0.5"
"""Short tests; retries end within 3 s; progress at every tick (1 s), so it gets faulted too."""
STARTED = re.compile(r"perfx: run \S+ started on")
SAVED = re.compile(r"perfx resend (\S+) --platform-url (\S+)")
REFUSED = re.compile(r"perfx: the platform refused the (?:complete|fail) of run")
PERFX_LINE = re.compile(r"^perfx: \S.*$", re.MULTILINE)
VERDICT = {"ok": "completed", "fail": "failed"}
EXIT_CODE = {"delivered": 0, "resend": EXIT_STATUS_SAVED, "refused": EXIT_STATUS_REFUSED}
"""The exit code of a test that passed, by what became of its final status."""

MATRIX.columns = ("call", "fault", "verdict", "exit", "run", "through proxy", "platform log")
MATRIX.columns += ("outcome", "s")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformServer]:
    """One platform for the matrix, a run per cell. No watchdog: nothing but the plugin
    ends a run, so a run the plugin strands shows as running."""
    server = PlatformServer(
        tmp_path_factory.mktemp("matrix") / "platform.sqlite3", progress_timeout=0
    )
    server.start()
    yield server
    server.stop()


CELLS = [
    pytest.param(
        kind,
        fault,
        id=f"{kind}-{fault}",
        # The held answer costs DEFAULT_TIMEOUT + 1 s, about twice any other cell.
        marks=[pytest.mark.slow] if fault == "applied-timeout" else [],
    )
    for kind in CALLS
    for fault in FAULTS
]


@pytest.mark.parametrize(("kind", "fault"), CELLS)
def test_a_fault_on_one_call_still_ends_the_run_truthfully(
    kind: str,
    fault: str,
    platform: PlatformServer,
    fault_proxy: FaultProxyFactory,
    locust_runner: LocustRunner,
    target: Target,
) -> None:
    behaviour = "fail" if kind == "fail" else "ok"  # a failed verdict, so `fail` is faulted
    verdict = VERDICT[behaviour]
    run_id = platform.create_run(None, target.url)
    proxy = fault_proxy(platform.url, kind, fault)
    began = time.monotonic()
    code, output = locust_runner.run(
        *headless(run_id, proxy.url, OPTIONS.format(seconds=2 if kind == "progress" else 1)),
        locustfile=BEHAVIOURS,
        env={"BEHAVIOUR": behaviour},
        timeout=60,
    )
    outcome = classify(output)
    row = [kind, fault, verdict, str(code), "", through(proxy), "", outcome, ""]
    try:
        assert proxy.fired, f"no {kind} call came to fault:\n{output}"
        assert "Traceback" not in output, output
        if outcome == "not started":
            assert_never_started(platform, run_id, target, code, output)
        else:
            if verdict == "completed":
                assert code == EXIT_CODE[outcome], output
            else:
                assert code != 0, output  # the run failed: saved or refused changes nothing
            if outcome == "resend":
                assert_resend_delivers(platform, run_id, SAVED.findall(output)[-1], output)
            assert_ended_once_as(platform, run_id, verdict, output)
        if fault in ("429", "503") and kind != "progress":  # progress is never retried
            assert_retry_after_was_honoured(proxy)
    finally:
        row[4] = platform.get_run(run_id)["status"]
        row[6] = platform_log(platform, run_id)
        row[8] = f"{time.monotonic() - began:.1f}"
        MATRIX.rows.append(tuple(row))
    assert row[4] != "running"


def classify(output: str) -> str:
    """What the plugin says became of the run: not started, delivered, resend or refused."""
    if not STARTED.search(output):
        return "not started"
    if SAVED.search(output):
        return "resend"
    return "refused" if REFUSED.search(output) else "delivered"


def assert_never_started(
    platform: PlatformServer, run_id: str, target: Target, code: int, output: str
) -> None:
    """No load, a run not left running, a non-zero exit and one line that says why."""
    assert target.total == 0
    assert platform.get_run(run_id)["status"] in ("pending", "failed"), output
    assert code != 0
    assert PERFX_LINE.search(output), output


def assert_resend_delivers(
    platform: PlatformServer, run_id: str, command: tuple[str, str], output: str
) -> None:
    """The saved final status is not on the platform yet; the printed command delivers it."""
    assert platform.get_run(run_id)["status"] == "running", output
    path, url = command
    resent = perfx("resend", path, "--platform-url", url)
    assert resent.returncode == 0, resent.stderr


def assert_ended_once_as(platform: PlatformServer, run_id: str, verdict: str, output: str) -> None:
    """The run's one terminal state is the verdict, set by exactly one accepted final call."""
    accepted = [
        c["call"]
        for c in platform.calls(run_id)
        if c["call"] in ("complete", "fail") and c["http_status"] == 200
    ]
    assert platform.get_run(run_id)["status"] == verdict, output
    assert len(accepted) == 1, (accepted, output)


def assert_retry_after_was_honoured(proxy: FaultProxy) -> None:
    fired, retries = proxy.fired, proxy.after_fault()
    assert fired is not None and fired.answered_at is not None and retries
    assert retries[0].at - fired.answered_at >= RETRY_AFTER


def through(proxy: FaultProxy) -> str:
    """The calls through the proxy in order, the faulted one marked ``!``: "get start! start"."""
    return _runs(f"{s.kind or '?'}{'!' if s.fault else ''}" for s in proxy.seen)


def platform_log(platform: PlatformServer, run_id: str) -> str:
    """The platform's log of state calls, with the status of any it did not accept."""
    calls = platform.calls(run_id)
    return _runs(
        c["call"] + ("" if c["http_status"] == 200 else f":{c['http_status']}") for c in calls
    )


def _runs(names: Iterable[str]) -> str:
    """Names in order, a repeated one folded: "progress progress" as "progressx2"."""
    return " ".join(
        f"{name}x{n}" if (n := len(list(g))) > 1 else name for name, g in groupby(names)
    )
