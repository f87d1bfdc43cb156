"""SIGTERM (Kubernetes, systemd, ``docker stop``, CI timeouts) ends Locust in every mode, as it
would without the plugin, and the run the process owns ends ``failed`` with the signal named.

Each case is a real ``locust`` process (and its workers) against the real reference platform.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.locust import (
    FINISH_IN_FLIGHT,
    ROOT,
    LocustProcess,
    LocustRunner,
    Target,
    free_port,
    headless,
)
from tests.fixtures.platform import PlatformServer
from tests.fixtures.waiting import wait_until
from tests.test_lifecycle import BEHAVIOURS, STARTED, status_calls
from tests.test_webui import Ui

pytestmark = pytest.mark.locust_contract

SHAPE = ROOT / "tests" / "locustfiles" / "shape.py"
INTERRUPTED = "interrupted by SIGTERM before the test finished"
STOP_TIMEOUT = float(FINISH_IN_FLIGHT[1])
EXIT_DEADLINE = STOP_TIMEOUT + 15
"""Seconds a process may take to end after SIGTERM: users finish their request within
--stop-timeout, then the final status goes out (a loaded CI machine gets some slack)."""


@dataclass
class Started:
    """A process under test, and the state its run must end in after SIGTERM."""

    proc: LocustProcess
    status: str = "failed"
    reason: str | None = INTERRUPTED
    calls: tuple[tuple[str, int], ...] = (("start", 200), ("fail", 200))
    workers: tuple[LocustProcess, ...] = ()


Mode = Callable[[LocustRunner, PlatformServer, Target, str], Started]


def loading(started: Started, target: Target) -> Started:
    started.proc.wait_for(STARTED)
    wait_until(lambda: target.total > 0, timeout=30, message="load reaches the target")
    return started


def headless_local(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    args = headless(run_id, platform.url, "-u 2 -t 60s")
    return loading(Started(runner.start(*args, locustfile=BEHAVIOURS)), target)


def headless_shape(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    return loading(Started(runner.start(*headless(run_id, platform.url), locustfile=SHAPE)), target)


def master_shape(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    master, workers = runner.start_distributed(
        *headless(run_id, platform.url), workers=1, locustfile=SHAPE
    )
    return loading(Started(master, workers=tuple(workers)), target)


def master_running(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    master, workers = runner.start_distributed(
        *headless(run_id, platform.url, "-u 2 -t 60s"), workers=1, locustfile=BEHAVIOURS
    )
    return loading(Started(master, workers=tuple(workers)), target)


def master_waiting(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    args = ("--master", "--master-bind-port", str(free_port()), "--expect-workers", "2")
    proc = runner.start(*args, *headless(run_id, platform.url), locustfile=BEHAVIOURS)
    proc.wait_for(STARTED)
    return Started(proc)


def processes(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    args = headless(run_id, platform.url, "--processes 2 -u 2 -t 60s")
    return loading(Started(runner.start(*args, locustfile=BEHAVIOURS)), target)


def web_ui(
    runner: LocustRunner,
    platform: PlatformServer,
    run_id: str,
    *extra: str,
    locustfile: Path = BEHAVIOURS,
) -> tuple[LocustProcess, Ui]:
    """A Locust web UI on run ``run_id``, serving; ``extra`` are more options."""
    port = free_port()
    proc = runner.start(
        *("--run-id", run_id, "--platform-url", platform.url),
        *("--web-host", "127.0.0.1", "--web-port", str(port), *extra),
        locustfile=locustfile,
    )
    proc.wait_for("Starting web interface")
    ui = Ui(f"http://127.0.0.1:{port}")
    ui.ready()
    return proc, ui


FORM = {"user_count": "2", "spawn_rate": "2", "host": ""}


def web_ui_before_a_test(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    proc, _ = web_ui(runner, platform, run_id)
    return Started(proc, status="pending", reason=None, calls=())


def web_ui_during_a_test(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    proc, ui = web_ui(runner, platform, run_id)
    assert ui.post("/swarm", FORM).json()["success"] is True
    return loading(Started(proc), target)


def web_ui_after_a_test(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    proc, ui = web_ui(runner, platform, run_id)
    assert ui.post("/swarm", FORM).json()["success"] is True
    wait_until(lambda: target.total > 0, message="load reaches the target")
    ui.stop()
    wait_until(lambda: platform.get_run(run_id)["status"] == "completed", message="Stop completes")
    return Started(proc, status="completed", reason=None, calls=(("start", 200), ("complete", 200)))


def autostart(
    runner: LocustRunner, platform: PlatformServer, target: Target, run_id: str
) -> Started:
    proc, _ = web_ui(runner, platform, run_id, "--autostart", "-u", "2", "-t", "60s")
    return loading(Started(proc), target)


MODES: dict[str, Mode] = {
    "headless": headless_local,
    "headless-shape": headless_shape,
    "master-shape": master_shape,
    "master-running": master_running,
    "master-waiting-for-workers": master_waiting,
    "processes-parent": processes,
    "web-ui-before-a-test": web_ui_before_a_test,
    "web-ui-during-a-test": web_ui_during_a_test,
    "web-ui-after-a-test": web_ui_after_a_test,
    "autostart": autostart,
}


@pytest.mark.parametrize("mode", list(MODES))
def test_sigterm_ends_locust_and_the_run_in_every_mode(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target, mode: str
) -> None:
    run_id = platform_server.create_run(None, target.url)
    started = MODES[mode](locust_runner, platform_server, target, run_id)

    started.proc.signal(signal.SIGTERM)

    code = started.proc.wait(EXIT_DEADLINE)
    run = platform_server.get_run(run_id)
    assert (run["status"], run["reason"]) == (started.status, started.reason), started.proc.output
    assert tuple(status_calls(platform_server, run_id)) == started.calls
    if started.status == "failed":
        assert code != 0
        assert run["summary"]["total"]["requests"] > 0 or mode == "master-waiting-for-workers"
    for worker in started.workers:
        assert worker.wait(EXIT_DEADLINE) == 0, worker.output
    assert "Traceback" not in started.proc.output, started.proc.output
