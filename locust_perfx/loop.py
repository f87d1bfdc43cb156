"""The owner's own event loop, watched: is the load generator itself the bottleneck?

Everything the process that owns the run does (a master merging worker reports, a local
runner's users sending requests) takes turns on one gevent loop. While one turn runs long,
nothing else moves: a master answers its workers and merges their reports late, a local
runner's requests wait to be sent and their response times include the wait. A probe
measures this as a user would feel it: a timer due every :data:`PERIOD` seconds records how
late it fires. A wake-up later than :data:`STALL` is a stall. Stalls are the process's own
work (a long merge, a blocking call) or its wait for a CPU that other processes hold; the
rule counts the first: when stalls, less the time the loop's thread waited for a CPU (Linux
counts it per thread: :func:`cpu_wait`), add up to more than :data:`BOTTLENECK_SHARE` of
:data:`WINDOW`, the log says so once, with the likely cause and the fix, and says again
when the loop has recovered. The summary keeps both figures.

The probe is a timer watcher whose callback runs in the gevent hub, not a sleeping greenlet:
the same wake-ups without two greenlet switches each (on an idle master, measured: a greenlet
sleeping 10 ms cost 9-11 ms of CPU per second, a bare timer 4-4.5 ms). An error in it is
raised by the next :meth:`LoopWatch.check`, which the controller's supervised ticker calls
once a second: it fails the run as any bug of the plugin does.

>>> lateness = Lateness(started=0.0)
>>> for second in range(60):
...     lateness.wake(at=second + 0.5, late=0.001)
...     lateness.wake(at=second + 0.9, late=0.3 if second % 10 == 0 else 0.002)
>>> lateness.judge(at=60.0), lateness.figures(at=60.0)["stalled_s"]
('bottleneck', 1.8)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NamedTuple

import gevent

logger = logging.getLogger(__name__)

PERIOD: Final = 0.05
"""Seconds between two wake-ups of the probe: a stall is measured at most this much short.
Each wake-up costs an idle loop a return from its poll: ``bench/loop_probe.py`` measured
3.6 ms of CPU per second at 50 ms, 9.5 ms at 10 ms (idle; on a busy loop within the noise)."""

STALL: Final = 0.1
"""A wake-up later than this (seconds) is a stall: a request timed across it reads at least
100 ms slow, far more than the few ms of ordinary turn-taking between busy greenlets."""

WINDOW: Final = 60.0
"""Seconds of stalls the rule looks back on: long enough that one garbage collection or a
burst of spawning does not count as a bottleneck, short enough to warn within a minute."""

BOTTLENECK_SHARE: Final = 0.01
"""The load generator is the bottleneck when more than this share of :data:`WINDOW` (0.6 s
of each minute) went to stalls of its own (less its wait for a CPU); it has recovered when
they fall to half of that."""

LIMIT: Final = BOTTLENECK_SHARE * WINDOW
"""Seconds of stalls in one :data:`WINDOW` above which the load generator is the bottleneck."""

Change = Literal["bottleneck", "recovered"]


def cpu_wait() -> float | None:
    """Seconds the calling thread has waited, runnable, for a CPU: ``run_delay`` of
    ``/proc/thread-self/schedstat`` (Linux); None where there is none."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class IntervalFigures(NamedTuple):
    """The loop since the previous export interval, for ``locust_totals``."""

    p99_ms: float
    max_ms: float
    stalled_ms: float


def _bucket(ms: float) -> float:
    """A lateness in ms, rounded to two significant digits or so (a bounded histogram)."""
    if ms < 10:
        return round(ms, 1)
    if ms < 100:
        return float(round(ms))
    return float(round(ms, -1))


def _percentile(histogram: Mapping[float, int], share: float) -> float:
    """The bucket at ``share`` of ``histogram`` (0.0 when empty)."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    wanted, seen = share * total, 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= wanted:
            return bucket
    return max(histogram)


class Lateness:
    """The statistics of a probe's wake-ups, fed ``(at, late)`` in seconds; pure."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last_at = started
        self.histogram: dict[float, int] = {}
        self.max_late = 0.0
        self.stalls = 0
        self.stalled = 0.0
        self.worst_window = 0.0
        self.bottleneck = False
        """Whether the rule holds now (the window's stalls over :data:`LIMIT`)."""
        self.ever = False
        """Whether the rule held at any time since ``started``."""
        self._window: deque[tuple[float, float]] = deque()  # (at, late) of recent stalls
        self._waits: deque[tuple[float, float]] = deque()  # (at, cpu_wait()) samples
        self._first_wait: float | None = None
        self._in_window = 0.0
        self._interval: dict[float, int] = {}
        self._interval_max = 0.0
        self._interval_stalled = 0.0

    def wake(self, at: float, late: float) -> None:
        """One wake-up at ``at``, ``late`` seconds after it was due."""
        late = max(late, 0.0)
        self.last_at = at
        ms = _bucket(late * 1000)
        self.histogram[ms] = self.histogram.get(ms, 0) + 1
        self._interval[ms] = self._interval.get(ms, 0) + 1
        if late > self.max_late:
            self.max_late = late
        if late > self._interval_max:
            self._interval_max = late
        if late > STALL:
            self.stalls += 1
            self.stalled += late
            self._interval_stalled += late
            self._in_window = self.in_window(at) + late  # stalls older than WINDOW leave first
            self._window.append((at, late))
            self.worst_window = max(self.worst_window, self._in_window)

    def in_window(self, at: float) -> float:
        """Seconds of stalls in the :data:`WINDOW` that ends at ``at``."""
        window = self._window
        while window and window[0][0] <= at - WINDOW:
            self._in_window -= window.popleft()[1]
        if not window:
            self._in_window = 0.0  # no float residue from the subtractions
        return self._in_window

    def waited(self, at: float, total: float) -> None:
        """The loop's thread had waited ``total`` seconds for a CPU by ``at`` (cumulative)."""
        if self._first_wait is None:
            self._first_wait = total
        waits = self._waits
        waits.append((at, total))
        while len(waits) > 1 and waits[1][0] <= at - WINDOW:
            waits.popleft()  # the newest sample at or before the window's start stays

    def own_in_window(self, at: float) -> float:
        """Seconds of stalls in the :data:`WINDOW` that ends at ``at``, less what the loop's
        thread waited for a CPU meanwhile."""
        waits = self._waits
        waited = waits[-1][1] - waits[0][1] if waits else 0.0
        return max(self.in_window(at) - waited, 0.0)

    def judge(self, at: float) -> Change | None:
        """Apply the rule at ``at``: the change it makes, if any."""
        stalled = self.own_in_window(at)
        if not self.bottleneck and stalled > LIMIT:
            self.bottleneck = self.ever = True
            return "bottleneck"
        if self.bottleneck and stalled <= LIMIT / 2:
            self.bottleneck = False
            return "recovered"
        return None

    def take_interval(self) -> IntervalFigures:
        """The figures since the previous take, and start the next interval."""
        figures = IntervalFigures(
            p99_ms=_percentile(self._interval, 0.99),
            max_ms=round(self._interval_max * 1000, 1),
            stalled_ms=round(self._interval_stalled * 1000, 1),
        )
        self._interval = {}
        self._interval_max = self._interval_stalled = 0.0
        return figures

    def figures(self, at: float) -> dict[str, Any]:
        """The whole watch so far, as plain values (the summary's ``loop``)."""
        watched = max(self.last_at, at) - self.started
        return {
            "watched_s": round(watched, 1),
            "probe_period_ms": PERIOD * 1000,
            "lateness_p50_ms": _percentile(self.histogram, 0.50),
            "lateness_p99_ms": _percentile(self.histogram, 0.99),
            "lateness_max_ms": round(self.max_late * 1000, 1),
            "stalls": self.stalls,
            "stalled_s": round(self.stalled, 3),
            "stalled_ratio": round(self.stalled / watched, 4) if watched > 0 else 0.0,
            "worst_window_stalled_s": round(self.worst_window, 3),
            "cpu_wait_s": None
            if self._first_wait is None
            else round(self._waits[-1][1] - self._first_wait, 3),
            "window_s": WINDOW,
            "bottleneck": self.ever,
        }


def loop_line(figures: Mapping[str, Any]) -> str:
    """One line for the PerfX tab."""
    head = (
        f"p99 lateness {figures['lateness_p99_ms']:g} ms, the longest "
        f"{figures['lateness_max_ms']:g} ms; {figures['stalls']} stall(s) over "
        f"{STALL * 1000:.0f} ms, {figures['stalled_s']:g} s of {figures['watched_s']:g} s"
    )
    if figures["bottleneck"]:
        return (
            f"BOTTLENECK: up to {figures['worst_window_stalled_s']:g} s of stalls in "
            f"{WINDOW:.0f} s (limit {LIMIT:g} s); {head}"
        )
    return head


def advice(master: bool) -> str:
    """The likely cause and the fix, for the process that owns the run."""
    if master:
        return (
            "it answers workers and merges their reports late, and each report merges every "
            "request name; likely cause: too many request names for one master, or too "
            "little CPU for it; fix: fewer request names (group them with name=, e.g. "
            'name="/item/[id]"), a faster CPU for the master; --influxdb-max-names does not '
            "lighten Locust's own merge, and each extra worker adds one"
        )
    return (
        "its users' requests wait to be sent and their response times include the wait; "
        "likely cause: too little CPU for the users of one process, or a call in the "
        "locustfile that blocks without yielding to gevent (time.sleep, a C library's I/O); "
        "fix: spread the users over processes (--processes N, or --master with workers) "
        "and keep blocking calls out of tasks"
    )


class LoopWatch:
    """The probe on the owner's loop, from a test's start to the run's end.

    ``names`` gives the number of request names (for the warning); ``master`` says which
    advice applies. ``check`` (once a second, from a supervised greenlet) logs changes.
    """

    def __init__(self, master: bool, names: Callable[[], int] = lambda: 0) -> None:
        self.master = master
        self._names = names
        self.lateness: Lateness | None = None
        self._timer: Any = None
        self._due = 0.0
        self._error: Exception | None = None
        self._stopped_at: float | None = None

    def start(self) -> None:
        """Probe from now on, with fresh statistics (a new test)."""
        self.stop()
        self._error = self._stopped_at = None
        now = time.monotonic()
        self.lateness = Lateness(started=now)
        self._sample_cpu_wait(now)
        self._due = now + PERIOD
        self._timer = gevent.get_hub().loop.timer(PERIOD, PERIOD, ref=False)
        self._timer.again(self._wake, update=True)

    def stop(self) -> None:
        """Probe no more; the statistics stay for the summary."""
        if self._timer is not None:
            self._sample_cpu_wait(time.monotonic())
            self._timer.stop()
            self._timer.close()
            self._timer = None
            self._stopped_at = time.monotonic()

    def _wake(self) -> None:
        # In the hub, between greenlets: nothing here may block or switch.
        try:
            now = time.monotonic()
            assert self.lateness is not None, "start() made it"
            self.lateness.wake(now, now - self._due)
            self._due = time.monotonic() + PERIOD
            self._timer.again(self._wake, update=True)  # due PERIOD from now, not from then
        except Exception as err:  # raised by check(), in a supervised greenlet
            self._error = err
            self.stop()

    def check(self) -> None:
        """Log the rule's change, if any; raise an error the probe met (once: it stopped)."""
        error, self._error = self._error, None
        if error is not None:
            raise error
        lateness = self.lateness
        if lateness is None or self._timer is None:
            return
        now = time.monotonic()
        self._sample_cpu_wait(now)
        change = lateness.judge(now)
        if change == "bottleneck":
            role = "master" if self.master else "process"
            logger.warning(
                "perfx: the load generator is the bottleneck: this %s's event loop stalled "
                "for %.1f s of the last %.0f s in its own work (wake-ups over %.0f ms late, "
                "the longest %.0f ms, %d request name(s)); %s",
                role,
                lateness.own_in_window(now),
                WINDOW,
                STALL * 1000,
                lateness.max_late * 1000,
                self._names(),
                advice(self.master),
            )
        elif change == "recovered":
            logger.info(
                "perfx: the event loop has recovered: %.1f s of stalls over %.0f ms in the "
                "last %.0f s",
                lateness.own_in_window(now),
                STALL * 1000,
                WINDOW,
            )

    def _sample_cpu_wait(self, at: float) -> None:
        waited = cpu_wait()  # ~25 us a read: once a second, not at every wake-up
        if waited is not None and self.lateness is not None:
            self.lateness.waited(at, waited)

    def take_interval(self) -> IntervalFigures:
        """The figures since the previous take (zeros before the first test)."""
        if self.lateness is None:
            return IntervalFigures(0.0, 0.0, 0.0)
        return self.lateness.take_interval()

    def figures(self) -> dict[str, Any] | None:
        """The watch so far (None before the first test)."""
        if self.lateness is None:
            return None
        return self.lateness.figures(self._stopped_at or time.monotonic())
