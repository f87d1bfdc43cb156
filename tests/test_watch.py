"""The run's watch in-process: a real Locust environment and runner, a real platform client."""

from __future__ import annotations

from typing import Any

import pytest
from locust import User, task
from locust.env import Environment
from locust.event import Events

from locust_perfx import watch as watch_module
from locust_perfx.criteria import Judge, parse_criteria
from locust_perfx.lifecycle import PlatformSync
from locust_perfx.platform import PlatformClient
from locust_perfx.watch import RunWatch


class Idle(User):
    @task
    def nothing(self) -> None:
        pass


class Clock:
    """``time.monotonic`` and ``time.time`` of the watch, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def test_after_a_stall_each_threshold_window_is_a_whole_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tick delayed by a slow progress call must not make the next windows about a second."""
    clock = Clock()
    monkeypatch.setattr(watch_module, "time", clock)
    environment = Environment(user_classes=[Idle], events=Events())
    runner = environment.create_local_runner()
    judge = Judge(tuple(parse_criteria(["rps >= 1, per interval"], "test")), interval=5.0)
    windows: list[float] = []
    check = judge.check

    def timed_check(stats: Any, now: float, **kwargs: Any) -> Any:
        windows.append(now - judge._interval_started)
        return check(stats, now, **kwargs)

    judge.check = timed_check  # type: ignore[method-assign]
    with PlatformClient("http://127.0.0.1:9") as client:  # progress is off: never called
        sync = PlatformSync(client, "run_1", retry_for=0, progress_every=0)
        run_watch = RunWatch(runner, sync, judge, stop_test=runner.quit)
        run_watch.start()
        for seconds in [1] * 5 + [7] + [1] * 15:  # one tick 7 s late
            clock.now += seconds
            run_watch.tick()
    runner.quit()

    assert windows[0] == 5.0 and windows[1] == 7.0  # the stalled window, judged late
    assert all(window == 5.0 for window in windows[2:]), windows
    assert len(windows) == 5
