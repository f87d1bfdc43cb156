"""A fault on any platform call, of any kind, still ends the run truthfully.

A FaultProxy in front of the real reference platform breaks the first call of one kind in
one way (see FAULTS), then passes everything through. Every (call x fault) cell is played
in-process at the level the plugin talks to the platform: its ``PlatformClient`` and
``PlatformSync`` (fetch the run, start it, report progress, send the verdict, save it for
``perfx resend`` when it cannot be delivered), against the platform's app served on a thread
over real HTTP with a real SQLite file. A few cells per call kind are played again by real
Locust processes, end to end. The invariant is read from the platform's own state and log:

- a run whose start was never confirmed is not left running, and the error is one line;
- otherwise the run ends in exactly one terminal state, Locust's verdict: delivered at the
  end of the test, or saved and then delivered by ``perfx resend``.

No run is left running. The session prints every cell as a table ("fault matrix").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import pytest
from locust.env import Environment
from locust.event import Events

from locust_perfx.exceptions import PlatformError
from locust_perfx.lifecycle import (
    EXIT_STATUS_REFUSED,
    EXIT_STATUS_SAVED,
    Delivery,
    Outcome,
    PlatformSync,
    SavedStatus,
    decide,
    resend,
)
from locust_perfx.platform import PlatformClient
from locust_perfx.snapshot import summarize
from locust_perfx.watch import RunWatch
from tests.fixtures.faults import (
    CALLS,
    FAULTS,
    MATRIX_ROW,
    RETRY_AFTER,
    FaultProxy,
    FaultProxyFactory,
)
from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformApi, PlatformServer, PlatformThread
from tests.fixtures.waiting import wait_until
from tests.test_cli import perfx

RETRY_FOR = 3.0
"""``--platform-timeout``: every cell's retries end within 3 s."""
VERDICT = {"ok": "completed", "fail": "failed"}
PERFX_LINE = re.compile(r"^perfx: \S.*$", re.MULTILINE)


def behaviour_of(kind: str) -> str:
    """The test's behaviour: a failed verdict when the ``fail`` call is the one faulted."""
    return "fail" if kind == "fail" else "ok"


def cells(pairs: Iterable[tuple[str, str]], slow: Iterable[str] = ()) -> list[object]:
    return [
        pytest.param(kind, fault, id=f"{kind}-{fault}", marks=[pytest.mark.slow] * (fault in slow))
        for kind, fault in pairs
    ]


# -- every cell, in-process ---------------------------------------------------------------------

CLIENT_TIMEOUT = 2.0
"""The client's per-call timeout here (the plugin's is 5 s); ``applied-timeout`` holds past it."""
HOLD = CLIENT_TIMEOUT + 1
PROGRESS_EVERY = 0.01
"""Seconds between progress reports: each ``progress`` call below may send one."""
OUTCOME = {Delivery.DELIVERED: "delivered", Delivery.SAVED: "resend", Delivery.REFUSED: "refused"}


@pytest.fixture(scope="module")
def platform_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformThread]:
    """One platform for the in-process cells, a run per cell. No watchdog: nothing but the
    plugin's calls end a run, so a run they strand shows as running."""
    server = PlatformThread(tmp_path_factory.mktemp("matrix") / "platform.sqlite3")
    yield server
    server.stop()


@dataclass
class Played:
    """What the plugin's platform calls made of one run."""

    outcome: str
    """"not started", or what became of the final status: delivered, resend, refused."""
    error: str = ""
    """The error that kept the run from starting."""


def play(url: str, run_id: str, behaviour: str, proxy: FaultProxy) -> Played:
    """One run's platform calls as the plugin makes them, on a real Locust ``Environment``: GET
    the run, start it, progress from the watch's ticks, then the verdict with the summary.

    The ticks go on until one report after the faulted one got through (after any pause the
    platform asked for), as a running test keeps reporting.
    """
    environment = Environment(events=Events())
    runner = environment.create_local_runner()
    for _ in range(4):
        environment.stats.log_request("GET", "/", 5, 0)
        if behaviour == "fail":
            environment.stats.log_error("GET", "/", "boom")
    with PlatformClient(url, timeout=CLIENT_TIMEOUT) as client:
        try:
            info = client.get_run(run_id, retry_for=RETRY_FOR)
            sync = PlatformSync(client, run_id, retry_for=RETRY_FOR, progress_every=PROGRESS_EVERY)
            sync.start({}, info.host, {"mode": "local", "users": 1})
        except PlatformError as err:
            return Played("not started", str(err))
        watch = RunWatch(runner, sync, None, stop_test=runner.quit)
        watch.start()

        def reported() -> bool:
            watch.tick()
            return len([s for s in proxy.seen if s.kind == "progress"]) >= 2

        wait_until(reported, 10, PROGRESS_EVERY, "progress goes on after the fault")
        watch.stop()
        total = environment.stats.total
        verdict = decide(
            Outcome(
                exit_code=int(total.num_failures > 0),
                requests=total.num_requests,
                failures=total.num_failures,
            )
        )
        assert verdict.failed == (behaviour == "fail")
        summary = summarize(
            environment.stats,
            users_peak=1,
            workers=0,
            started_at=total.start_time,
            finished_at=time.time(),
        )
        delivery = sync.finish(verdict, summary, int(verdict.failed))
        return Played(OUTCOME[delivery])


@pytest.mark.parametrize(("kind", "fault"), cells((k, f) for k in CALLS for f in FAULTS))
def test_a_fault_on_one_call_still_ends_the_run_truthfully(
    kind: str,
    fault: str,
    platform_thread: PlatformThread,
    fault_proxy: FaultProxyFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.chdir(tmp_path)  # where an undelivered final status is saved
    behaviour = behaviour_of(kind)
    run_id = platform_thread.create_run()
    proxy = fault_proxy(platform_thread.url, kind, fault, hold=HOLD)
    began = time.monotonic()
    played = play(proxy.url, run_id, behaviour, proxy)
    row = [
        kind,
        fault,
        VERDICT[behaviour],
        "in-process",
        played.outcome,
        "",
        through(proxy),
        "",
        "",
    ]
    try:
        assert proxy.fired, f"no {kind} call came to fault"
        if played.outcome == "not started":
            assert "\n" not in played.error and played.error, played
            assert platform_thread.get_run(run_id)["status"] in ("pending", "failed")
        else:
            if played.outcome == "resend":
                assert platform_thread.get_run(run_id)["status"] == "running"
                saved = tmp_path / f"perfx-{run_id}.final.json"
                with PlatformClient(proxy.url, timeout=CLIENT_TIMEOUT) as client:
                    resend(client, SavedStatus.load(saved), retry_for=RETRY_FOR)
            assert_ended_once_as(platform_thread, run_id, VERDICT[behaviour], "")
        if fault in ("429", "503"):
            assert_retry_after_was_honoured(proxy)
    finally:
        record(request, row, platform_thread, run_id, began)


def record(
    request: pytest.FixtureRequest,
    row: list[str],
    platform: PlatformApi,
    run_id: str,
    began: float,
) -> None:
    """Fill in the row from the platform and hand it to the session's table; no run left
    running."""
    row[5] = platform.get_run(run_id)["status"]
    row[7] = platform_log(platform, run_id)
    row[8] = f"{time.monotonic() - began:.1f}"
    request.node.user_properties.append((MATRIX_ROW, tuple(row)))
    assert row[5] != "running", row


# -- a few cells per call kind, end to end --------------------------------------------------------

BEHAVIOURS = ROOT / "tests" / "locustfiles" / "behaviours.py"
OPTIONS = "-u 1 -t {seconds}s --platform-timeout 3 --platform-progress 0.5"
"""Short tests; retries end within 3 s; progress at every tick (1 s), so it gets faulted too."""
STARTED = re.compile(r"perfx: run \S+ started on")
SAVED = re.compile(r"perfx resend (\S+) --platform-url (\S+)")
REFUSED = re.compile(r"perfx: the platform refused the (?:complete|fail) of run")
EXIT_CODE = {"delivered": 0, "resend": EXIT_STATUS_SAVED, "refused": EXIT_STATUS_REFUSED}
"""The exit code of a test that passed, by what became of its final status."""
END_TO_END = [
    ("get", "refused"),
    ("get", "503"),
    ("start", "applied-reset"),
    ("start", "500"),
    ("progress", "reset"),
    ("progress", "malformed"),
    ("complete", "applied-502"),
    ("complete", "applied-timeout"),
    ("fail", "409"),
    ("fail", "reset"),
]
"""Per call kind, a fault before the platform sees the call and one after it applied it."""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformServer]:
    """One ``perfx-platform serve`` for the end-to-end cells, without a watchdog."""
    server = PlatformServer(
        tmp_path_factory.mktemp("matrix") / "platform.sqlite3", progress_timeout=0
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(("kind", "fault"), cells(END_TO_END, slow=["applied-timeout"]))
def test_a_fault_on_one_call_of_a_real_locust_run_still_ends_it_truthfully(
    kind: str,
    fault: str,
    platform: PlatformServer,
    fault_proxy: FaultProxyFactory,
    locust_runner: LocustRunner,
    target: Target,
    request: pytest.FixtureRequest,
) -> None:
    behaviour = behaviour_of(kind)
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
    row = [kind, fault, verdict, f"locust, exit {code}", outcome, "", through(proxy), "", ""]
    try:
        assert proxy.fired, f"no {kind} call came to fault:\n{output}"
        assert "Traceback" not in output, output
        if outcome == "not started":
            assert target.total == 0
            assert platform.get_run(run_id)["status"] in ("pending", "failed"), output
            assert code != 0
            assert PERFX_LINE.search(output), output
        else:
            if verdict == "completed":
                assert code == EXIT_CODE[outcome], output
            else:
                assert code != 0, output  # the run failed: saved or refused changes nothing
            if outcome == "resend":
                assert platform.get_run(run_id)["status"] == "running", output
                path, url = SAVED.findall(output)[-1]
                resent = perfx("resend", path, "--platform-url", url)
                assert resent.returncode == 0, resent.stderr
            assert_ended_once_as(platform, run_id, verdict, output)
        if fault in ("429", "503") and kind != "progress":  # progress is never retried
            assert_retry_after_was_honoured(proxy)
    finally:
        record(request, row, platform, run_id, began)


def classify(output: str) -> str:
    """What the plugin says became of the run: not started, delivered, resend or refused."""
    if not STARTED.search(output):
        return "not started"
    if SAVED.search(output):
        return "resend"
    return "refused" if REFUSED.search(output) else "delivered"


# -- the invariant ------------------------------------------------------------------------------


def assert_ended_once_as(platform: PlatformApi, run_id: str, verdict: str, output: str) -> None:
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


def platform_log(platform: PlatformApi, run_id: str) -> str:
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
