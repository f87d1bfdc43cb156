"""The owner's event loop, watched: the statistics fed wake-up times, the probe on a real
gevent loop blocked on purpose (``time.sleep`` in a greenlet, as a slow merge would), and a
real master whose locustfile blocks its loop at each worker report, beside one that does not."""

from __future__ import annotations

import logging
import re

import gevent
import gevent.monkey
import pytest

from locust_perfx.loop import LIMIT, PERIOD, STALL, WINDOW, Lateness, LoopWatch, loop_line
from tests.fixtures.locust import ROOT, LocustRunner, Target
from tests.fixtures.platform import PlatformServer
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until
from tests.test_export_e2e import exported_cluster_run


def steady(lateness: Lateness, start: float, seconds: float, late: float = 0.001) -> float:
    """Wake-ups every PERIOD from ``start`` for ``seconds``, each ``late``; the last's time."""
    at = start
    for _ in range(round(seconds / PERIOD)):
        at += PERIOD
        lateness.wake(at, late)
    return at


def test_a_loop_that_wakes_on_time_is_no_bottleneck() -> None:
    lateness = Lateness(started=0.0)
    at = steady(lateness, 0.0, 120.0)
    assert lateness.judge(at) is None
    figures = lateness.figures(at)
    assert figures["stalls"] == 0
    assert figures["lateness_p99_ms"] == 1.0
    assert figures["bottleneck"] is False
    assert figures["watched_s"] == 120.0


def test_stalls_past_the_limit_in_one_window_make_a_bottleneck_once_then_a_recovery() -> None:
    lateness = Lateness(started=0.0)
    at = steady(lateness, 0.0, 10.0)
    stalls = 0.0
    while stalls <= LIMIT:  # 0.3 s stalls until they add up past 0.6 s
        at += 0.3
        lateness.wake(at, 0.3)
        stalls += 0.3
        assert lateness.judge(at) == (None if stalls <= LIMIT else "bottleneck")
    assert lateness.judge(at + 1) is None  # said once
    assert lateness.figures(at)["bottleneck"] is True
    # A whole window without a stall: the stalls leave it, the loop has recovered.
    at = steady(lateness, at, WINDOW)
    assert lateness.judge(at) == "recovered"
    assert lateness.judge(at + 1) is None
    figures = lateness.figures(at)
    assert figures["bottleneck"] is True  # it was one during the run
    assert figures["stalls"] == 3
    assert figures["stalled_s"] == pytest.approx(0.9)
    assert figures["worst_window_stalled_s"] == pytest.approx(0.9)
    assert figures["lateness_max_ms"] == 300.0


def test_stalls_spread_thinner_than_the_limit_per_window_are_no_bottleneck() -> None:
    """0.15 s every 25 s: three at most in any minute, 0.45 s, under the 0.6 s limit."""
    lateness = Lateness(started=0.0)
    at = 0.0
    for _ in range(30):
        at = steady(lateness, at, 25.0)
        lateness.wake(at, 0.15)
        assert lateness.judge(at) is None
    figures = lateness.figures(at)
    assert figures["stalls"] == 30
    assert figures["worst_window_stalled_s"] == pytest.approx(0.45)
    assert figures["bottleneck"] is False


def test_stalls_spent_waiting_for_a_cpu_are_not_the_process_s_own() -> None:
    """Another process held the CPU: the thread was runnable, the kernel counted the wait."""
    lateness = Lateness(started=0.0)
    lateness.waited(0.0, 5.0)
    for second in range(1, 5):
        lateness.wake(second, 0.3)
        lateness.waited(second, 5.0 + 0.3 * second)
        assert lateness.judge(second) is None
    figures = lateness.figures(4.0)
    assert figures["stalled_s"] == pytest.approx(1.2)
    assert figures["cpu_wait_s"] == pytest.approx(1.2)
    assert figures["bottleneck"] is False
    lateness.wake(5.0, 0.3)  # one of its own
    lateness.wake(5.5, 0.4)
    lateness.waited(5.5, 6.2)
    assert lateness.judge(5.5) == "bottleneck"  # 1.9 s of stalls, 1.2 s of waiting


def test_only_wake_ups_later_than_the_stall_limit_are_stalls() -> None:
    lateness = Lateness(started=0.0)
    lateness.wake(1.0, STALL)
    lateness.wake(2.0, STALL + 0.001)
    assert lateness.figures(2.0)["stalls"] == 1


def test_an_early_wake_up_counts_as_on_time() -> None:
    lateness = Lateness(started=0.0)
    lateness.wake(1.0, -0.004)  # the loop's clock, read before a long turn, was behind
    assert lateness.figures(1.0)["lateness_max_ms"] == 0.0


def test_each_interval_has_its_own_figures() -> None:
    lateness = Lateness(started=0.0)
    at = steady(lateness, 0.0, 400 * PERIOD, late=0.002)  # p99 of 401: not the one
    lateness.wake(at + 0.25, 0.25)
    first = lateness.take_interval()
    assert (first.p99_ms, first.max_ms, first.stalled_ms) == (2.0, 250.0, 250.0)
    steady(lateness, at + 0.25, 1.0, late=0.0004)
    second = lateness.take_interval()
    assert (second.p99_ms, second.max_ms, second.stalled_ms) == (0.4, 0.4, 0.0)
    assert lateness.figures(at)["lateness_max_ms"] == 250.0  # the whole run keeps it


def test_the_tab_line_names_a_bottleneck_and_its_limit() -> None:
    lateness = Lateness(started=0.0)
    for second in range(3):
        lateness.wake(second + 0.4, 0.4)
    lateness.judge(3.0)
    line = loop_line(lateness.figures(3.0))
    assert line.startswith("BOTTLENECK: up to 1.2 s of stalls in 60 s (limit 0.6 s)")
    assert "3 stall(s) over 100 ms" in line


blocking_sleep = gevent.monkey.get_original("time", "sleep")
"""``time.sleep`` as it was before Locust made it yield to gevent."""


def block(seconds: float, times: int) -> None:
    for _ in range(times):
        blocking_sleep(seconds)  # holds the whole gevent loop, as a long merge does
        gevent.sleep(0.05)


def test_the_probe_sees_a_blocked_loop_and_the_check_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = LoopWatch(master=True, names=lambda: 10_000)
    watch.start()
    gevent.spawn(block, 0.3, 3).join()
    with caplog.at_level(logging.INFO, logger="locust_perfx.loop"):
        watch.check()
        watch.check()
    watch.stop()
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("perfx: the load generator is the bottleneck: this master's")
    assert "10000 request name(s)" in warning and "name=" in warning
    figures = watch.figures()
    assert figures is not None
    assert figures["stalls"] == 3
    assert 0.3 - PERIOD <= figures["lateness_max_ms"] / 1000 <= 0.3 + 0.1  # at most PERIOD short
    assert figures["bottleneck"] is True
    assert watch.take_interval().stalled_ms >= 3 * 270


def test_a_local_runner_is_told_to_spread_its_users_over_processes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = LoopWatch(master=False)
    watch.start()
    gevent.spawn(block, 0.35, 2).join()
    with caplog.at_level(logging.WARNING, logger="locust_perfx.loop"):
        watch.check()
    watch.stop()
    [warning] = [r.getMessage() for r in caplog.records]
    assert "this process's event loop" in warning
    assert "--processes N" in warning and "blocks without yielding to gevent" in warning


def test_a_stopped_probe_wakes_no_more() -> None:
    watch = LoopWatch(master=False)
    watch.start()
    assert watch.lateness is not None
    started = watch.lateness.last_at
    wait_until(lambda: watch.lateness.last_at > started, message="the probe wakes")
    watch.stop()
    figures = watch.figures()
    gevent.sleep(3 * PERIOD)  # an absence: three of its periods pass without a wake-up
    assert watch.figures() == figures


def test_an_error_in_the_probe_is_raised_by_the_next_check() -> None:
    watch = LoopWatch(master=False)
    watch.start()
    assert watch.lateness is not None
    watch.lateness.histogram = None  # type: ignore[assignment]  # a bug in the statistics
    gevent.sleep(3 * PERIOD)
    with pytest.raises(AttributeError):
        watch.check()
    watch.check()  # said once: the probe stopped


SLOW_MERGE = ROOT / "tests" / "locustfiles" / "slow_merge.py"
HOLD = 0.3
"""Seconds the master blocks at each worker report: two workers report every 3 s, so the
0.6 s limit is passed within the first few reports of a 10 s test."""


def series_values(vm: VictoriaMetrics, field: str, run_id: str) -> list[float]:
    [series] = vm.export(f'{{__name__="locust_totals_{field}",run_id="{run_id}"}}')
    return series["values"]  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.parametrize("hold", [HOLD, 0.0], ids=["slow-merge", "normal"])
def test_a_master_whose_loop_stalls_is_named_the_bottleneck_in_log_summary_and_tsdb(
    hold: float,
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    # A warning, not a failure: the run completes.
    run_id, master = exported_cluster_run(
        locust_runner,
        platform_server,
        target,
        victoria_metrics,
        "-u 4 -r 4 -t 10s",
        SLOW_MERGE,
        {"SLOW_MERGE_SECONDS": str(hold)},
    )
    warnings = re.findall(
        r"perfx: the load generator is the bottleneck: this master's event loop stalled for "
        r"[\d.]+ s of the last 60 s in its own work .*too many request names for one master",
        master.output,
    )
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed"
    loop = run["summary"]["loop"]

    # Every interval's stalls reach the TSDB: their sum is the summary's (rounded each way).
    # VictoriaMetrics makes the last interval searchable a moment after taking it.
    def stalls_add_up() -> bool:
        stalled_ms = series_values(victoria_metrics, "loop_stalled_ms", run_id)
        return abs(sum(stalled_ms) - loop["stalled_s"] * 1000) <= 1 + len(stalled_ms)

    wait_until(stalls_add_up, timeout=5, message=f"interval stalls adding up to {loop}")
    worst = max(series_values(victoria_metrics, "loop_lateness_max_ms", run_id))
    if hold:
        assert len(warnings) == 1, master.output
        assert loop["bottleneck"] is True, loop
        assert loop["stalls"] >= 3
        assert loop["lateness_max_ms"] >= (HOLD - PERIOD) * 1000
        assert worst == loop["lateness_max_ms"]
    else:
        assert loop["bottleneck"] is False, loop
        assert warnings == [] and "bottleneck" not in master.output
    page = platform_server.api("GET", f"/runs/{run_id}").text
    assert "event loop" in page and f"&#34;bottleneck&#34;: {str(bool(hold)).lower()}" in page
