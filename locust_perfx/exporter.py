"""The master's handle on the export process: what the master (or local runner) pays.

``MetricsExporter`` lives in the master (or local runner). Each interval it forks a child
that reads which stats entries changed and pipes copies of them to the export process
(``forked``, ``handoff``): the master pays the ``fork()`` and nothing per entry. Where a
child cannot be forked, its greenlet reads them itself, yielding to the gevent loop every
``SLICE_SECONDS``. The rest
(interval deltas, percentiles, points, writes) is the program of ``export_process``, which
the handle starts as ``python -m locust_perfx.export_process``. At 1,000 names that rest
would otherwise cost the master's loop ~20 ms every interval.

The master decides when the export ends: the process runs in a session of its own (Ctrl-C
in a terminal and ``kill -TERM -PGID`` reach only Locust) and ignores SIGINT and SIGTERM
(systemd signals every process of the service), and Locust's quit then closes the export:
the last interval and what is queued are sent within a deadline. If the master dies, the
process sees the pipe close and does the same. The token crosses the pipe, never the command
line. The process reports health and log records back on its stdout as JSON lines; the
master logs those records as its own.

>>> config = InfluxConfig("http://localhost:8086", token="t", org="o", bucket="b")
>>> MetricsExporter(config, run_id="run_1").health()["state"]
'new'
"""

from __future__ import annotations

import enum
import json
import logging
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.subprocess

from locust_perfx.forked import ForkedReader
from locust_perfx.handoff import ChangeReader, Close, Compared, Event, Judged, Setup
from locust_perfx.influx import BaselineRow, InfluxConfig, run_tags
from locust_perfx.sink import InfluxSink
from locust_perfx.snapshot import Sample

if TYPE_CHECKING:
    from locust_perfx.loop import IntervalFigures

logger = logging.getLogger(__name__)

SLICE_SECONDS = 0.002
"""Longest stretch of the master's export work between two yields to the gevent loop: the
export may delay a user's next request by about this much, never by a whole interval's."""

EXIT_GRACE = 0.25
"""Seconds the master waits, past a close's deadline, for the process to report and exit."""

READ_TIMEOUT = 60.0
"""Seconds a forked read may take before its child is killed: far above what one takes
(well under a second at 10,000 names), unless the export process stopped reading its pipe
for longer than its InfluxDB timeout allows, or the child hung."""

EVENT_KINDS = ("start", "breach", "complete", "fail")


class _State(enum.Enum):
    # health()'s "state". A second close() does nothing; start() while running is a new test.
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class MetricsExporter:
    """Exports the master's (or local runner's) stats to InfluxDB every interval.

    Create it on the master or local runner only; it starts nothing until ``check()``,
    ``start()`` or ``event()``. Interval counts of each request name add up exactly to
    Locust's totals, provided ``close()`` runs after the last worker reports arrived.
    """

    def __init__(
        self,
        config: InfluxConfig,
        *,
        run_id: str,
        endpoint: str = "",
        environment: str = "",
        greenlets: gevent.pool.Group | None = None,
        loop: Callable[[], IntervalFigures] | None = None,
    ) -> None:
        self._config = config
        self._loop = loop
        """The owner's event-loop lateness since the previous read (``LoopWatch.take_interval``)."""
        self._greenlets = greenlets if greenlets is not None else gevent.pool.Group()
        """Where its ticker and listener run: the run controller's group, supervised."""
        self._tags = run_tags(config, run_id, endpoint, environment)
        self._reader = ChangeReader()
        self._forked = ForkedReader()
        self._process: gevent.subprocess.Popen | None = None
        self._listener: gevent.Greenlet | None = None
        self._done = gevent.event.Event()  # the process said its last word, or exited
        self._ticker: gevent.Greenlet | None = None
        self._stopping = gevent.event.Event()
        # One read of the stats at a time (start() may read while the ticker is paused in
        # one), and one message on the pipe at a time.
        self._reading = gevent.lock.Semaphore()
        self._writing = gevent.lock.Semaphore()
        self._slice_started = 0.0
        self._environment: Any = None
        self._state = _State.NEW
        # The counters of a sink that has done nothing yet, until the process reports its own.
        self._health = InfluxSink(config, self._tags).health()

    def check(self) -> None:
        """Write one point to prove URL, token, org and bucket; ``ExportError`` if refused."""
        sink = InfluxSink(self._config, self._tags)
        try:
            sink.check()
        finally:
            sink.close()

    def start(self, environment: Any) -> None:
        """Baseline ``environment.stats`` and export from now on (again after a new test)."""
        if self._state is _State.RUNNING:
            # A new test in the same process: count what the last one still reported.
            self._read()
        self._environment = environment
        self._spawn()
        self._read(reset=True)
        if self._ticker is None or self._ticker.dead:
            self._stopping.clear()
            self._ticker = self._greenlets.spawn(self._tick)
        self._state = _State.RUNNING

    def event(self, kind: str, text: str) -> None:
        """Queue a ``start``, ``breach``, ``complete`` or ``fail`` annotation (next write)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind: expected one of {EVENT_KINDS}, got {kind!r}")
        self._spawn()
        self._send(Event(kind, text, time.time()))

    def judged(self, rows: tuple[tuple[str, float | None, float, bool], ...]) -> None:
        """Queue the thresholds as judged now, ``(criterion, observed, limit, passed)`` each."""
        self._spawn()
        self._send(Judged(rows, time.time()))

    def compared(self, baseline_run_id: str, rows: tuple[BaselineRow, ...]) -> None:
        """Queue the run's comparison with baseline run ``baseline_run_id``, one row per name
        and metric (``locust_baseline``)."""
        self._spawn()
        self._send(Compared(baseline_run_id, rows, time.time()))

    def close(self, deadline: float = 10.0) -> None:
        """Take the final interval, send what is queued within ``deadline`` seconds, stop.

        Call it after the last worker reports arrived (``quitting``), so the final interval
        holds them. Returns within about ``deadline`` even if InfluxDB hangs; unsent points
        are logged and counted in ``health()["points_queued"]``.
        """
        if self._state is _State.CLOSED:
            return
        ends = time.monotonic() + deadline
        if self._ticker is not None:
            # A read in progress finishes first: the process must get whole reads.
            self._stopping.set()
            self._ticker.join(timeout=deadline)
            self._ticker.kill()
            self._ticker = None
        process = self._process
        if process is not None:
            if self._state is _State.RUNNING:
                self._read(timeout=max(ends - time.monotonic(), 0.0))
            self._send(Close(max(ends - time.monotonic(), 0.0)))
            if not self._done.wait(max(ends - time.monotonic(), 0.0) + EXIT_GRACE):
                # Stuck in a write to a hung InfluxDB: it never read the Close.
                logger.warning(
                    "InfluxDB export: %s points not sent before the %.0f s deadline (%s)",
                    self._health["points_queued"],
                    deadline,
                    self._health["last_error"] or "a write was still waiting for InfluxDB",
                )
            self._process = None  # before it ends: its exit was asked for
            _end(process, ends + EXIT_GRACE)
            if self._listener is not None:
                self._listener.join(timeout=EXIT_GRACE)  # its pipe is closed: it ends now
                self._listener = None
        self._forked.close()
        self._state = _State.CLOSED

    def health(self, *, ending: bool = False) -> dict[str, object]:
        """Export counters as plain values, for logs, the web UI and the run summary.

        ``ending``: for the summary of a finished test, which leaves before ``close()``
        writes the last interval: a running export is ``closing`` then, not ``running``.
        """
        state = "closing" if ending and self._state is _State.RUNNING else self._state.value
        return {"state": state, **self._health}

    def _spawn(self) -> None:
        if self._process is not None:
            return
        self._done = gevent.event.Event()
        # A new process starts with an empty mirror: both readers start over.
        self._reader = ChangeReader()
        self._forked.close()
        self._process = gevent.subprocess.Popen(
            [sys.executable, "-m", "locust_perfx.export_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C goes to Locust, which closes the export
        )
        self._listener = self._greenlets.spawn(self._listen, self._process, self._done)
        self._send(Setup(self._config, self._tags))

    def _tick(self) -> None:
        next_tick = time.monotonic() + self._config.interval
        while not self._stopping.wait(max(next_tick - time.monotonic(), 0.0)):
            next_tick = max(next_tick + self._config.interval, time.monotonic())
            self._read()

    def _read(self, *, reset: bool = False, timeout: float = READ_TIMEOUT) -> None:
        with self._reading:
            self._slice_started = time.perf_counter()
            runner = self._environment.runner
            loop = self._loop() if self._loop is not None else (0.0, 0.0, 0.0)
            sample = Sample(
                time.time(),
                runner.user_count if runner else 0,
                getattr(runner, "worker_count", 0),
                *loop,
            )
            stats = self._environment.stats
            if self._read_forked(stats, sample, reset, timeout):
                return
            for message in self._reader.read(stats, sample, reset=reset, pause=self._pause):
                self._send(message)

    def _read_forked(self, stats: Any, sample: Sample, reset: bool, timeout: float) -> bool:
        """Send this read from a forked child; False if the master must read it itself."""
        process = self._process
        if process is None or self._done.is_set() or self._forked.problem:
            return process is None or self._done.is_set()  # nowhere to send it: done
        with self._writing:
            if self._forked.read(
                stats, sample, process.stdin.fileno(), reset=reset, timeout=timeout
            ):
                return True
        logger.warning(
            "InfluxDB export: %s; the master reads its stats in its own loop from now on",
            self._forked.problem,
        )
        # What the child sent is unknown: the master's reader starts over and sends every
        # entry (copies are cumulative, so nothing counts twice).
        self._reader = ChangeReader()
        return False

    def _pause(self) -> None:
        """Yield to the gevent loop once this slice of work has lasted ``SLICE_SECONDS``."""
        if time.perf_counter() - self._slice_started >= SLICE_SECONDS:
            gevent.sleep(0)
            self._slice_started = time.perf_counter()

    def _send(self, message: object) -> None:
        process = self._process
        if process is None or self._done.is_set():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._writing:
            try:
                process.stdin.write(data)
                process.stdin.flush()
            except (OSError, ValueError):
                pass  # it exited: _listen reports that

    def _listen(self, process: gevent.subprocess.Popen, done: gevent.event.Event) -> None:
        """Take the process's reports until it exits; say so if it exits unasked."""
        for raw in process.stdout:
            report = json.loads(raw)
            if "log" in report:
                level, name, text = report["log"]
                logging.getLogger(name).log(level, "%s", text)
            else:
                self._health = report["health"]
                if report.get("done"):
                    done.set()
        process.stdout.close()
        asked = done.is_set() or self._process is not process  # close() ended it
        if not asked:
            code = process.wait()
            self._health["last_error"] = f"the export process exited with code {code}"
            logger.error(
                "InfluxDB export stopped: its process exited with code %s (see above); "
                "the test goes on without live metrics",
                code,
            )
        done.set()


def _end(process: gevent.subprocess.Popen, until: float) -> None:
    """Let the process exit on its own by ``until`` (``time.monotonic()``), or kill it."""
    try:
        process.stdin.close()
        process.wait(timeout=max(until - time.monotonic(), 0.0))
    except (OSError, gevent.subprocess.TimeoutExpired):
        process.kill()
        process.wait()
