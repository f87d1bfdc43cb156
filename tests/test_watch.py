"""The run's watch in-process: a real Locust environment and runner, a real platform client."""

from __future__ import annotations

import time
from typing import Any

import gevent.pool
import pytest
from locust import User, task
from locust.env import Environment
from locust.event import Events

from locust_perfx import watch as watch_module
from locust_perfx.criteria import Judge, parse_criteria
from locust_perfx.lifecycle import PlatformSync
from locust_perfx.platform import PlatformClient
from locust_perfx.watch import RunWatch
from tests.test_compare import entry


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


def test_a_provisional_regression_aborts_and_stays_the_reason_if_the_end_does_not_confirm_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Live judging through the watch: the summary so far (its recorder's series) against the
    baseline's first seconds; the abort's reasons outlive a final judgement that passes."""
    clock = Clock()
    clock.now = time.time()  # the summary's duration runs from Locust's own start_time
    monkeypatch.setattr(watch_module, "time", clock)
    environment = Environment(user_classes=[Idle], events=Events())
    runner = environment.create_local_runner()
    baseline = {"total": entry("", [200] * 20), "requests": [entry("/slow", [200] * 20)]}
    criteria = parse_criteria(["p95_ms < baseline + 10% for each name, abort"], "test")
    judge = Judge(tuple(criteria), interval=1.0, baseline=baseline)
    stopped: list[str] = []
    greenlets = gevent.pool.Group()
    with PlatformClient("http://127.0.0.1:9") as client:  # progress is off: never called
        sync = PlatformSync(client, "run_1", retry_for=0, progress_every=0)
        run_watch = RunWatch(
            *(runner, sync, judge),
            stop_test=lambda: stopped.append("stop"),
            interval=1.0,
            greenlets=greenlets,
        )
        run_watch.start()
        for second in range(8):
            for _ in range(50):
                runner.stats.log_request("GET", "/slow", 600, 10)  # three times slower
            clock.now += 1
            run_watch.tick()
            if second == 3:  # 4 whole intervals: not judged yet
                [early] = run_watch.results()
                assert early.passed and "not judged yet: 4 of 5 intervals" in early.reason
        greenlets.join()
    runner.quit()

    assert stopped == ["stop"] and run_watch.aborted
    [stopped_by] = run_watch.stopped_by
    assert "p95_ms for GET /slow: 600 vs baseline 200 ms (+200%" in stopped_by
    assert stopped_by.endswith("after 5 intervals (provisional)")
    # Had the end not confirmed it, the run still fails, and says what stopped it.
    judge.judge_baseline(baseline, baseline)
    assert run_watch.results()[0].passed and run_watch.breaches() == (stopped_by,)
