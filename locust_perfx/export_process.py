"""Stream interval aggregates of the master's stats to InfluxDB from a process of their own.

``MetricsExporter`` lives in the master (or local runner). Each interval its greenlet reads
which stats entries changed and pipes copies of them to an export process (``handoff``),
yielding to the gevent loop every ``SLICE_SECONDS``; that is all the master pays. The export
process, ``python -m locust_perfx.export_process``, keeps a mirror of the master's stats and
does the rest: interval deltas and percentiles (``snapshot``), points and writes (``influx``).
At 1,000 names that rest would otherwise cost the master's loop ~20 ms every interval.

The process runs in a session of its own, so Ctrl-C in the terminal reaches only Locust,
which then closes the export: the last interval and what is queued are sent within a
deadline. If the master dies, the process sees the pipe close and does the same. The token
crosses the pipe, never the command line. The process reports health and log records back
on its stdout as JSON lines; the master logs those records as its own.

>>> config = InfluxConfig("http://localhost:8086", token="t", org="o", bucket="b")
>>> MetricsExporter(config, run_id="run_1").health()["state"]
'new'
"""

from __future__ import annotations

import enum
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import gevent
import gevent.event
import gevent.lock
import gevent.subprocess

from locust_perfx.handoff import (
    ChangeReader,
    Clear,
    Close,
    Entries,
    Event,
    Setup,
    StatsMirror,
    Take,
)
from locust_perfx.influx import InfluxConfig, Stamper, make_layout, run_tags
from locust_perfx.sink import InfluxSink
from locust_perfx.snapshot import IntervalTracker, Sample

logger = logging.getLogger(__name__)

SLICE_SECONDS = 0.002
"""Longest stretch of the master's export work between two yields to the gevent loop: the
export may delay a user's next request by about this much, never by a whole interval's."""

EXIT_GRACE = 0.25
"""Seconds the master waits, past a close's deadline, for the process to report and exit."""

EVENT_KINDS = ("start", "complete", "fail")


class _State(enum.Enum):
    # close() can run twice (test_stop and quitting both fire); start() again after a close.
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
        self, config: InfluxConfig, *, run_id: str, endpoint: str = "", environment: str = ""
    ) -> None:
        self._config = config
        self._tags = run_tags(config, run_id, endpoint, environment)
        self._reader = ChangeReader()
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
            self._ticker = gevent.spawn(self._tick)
        self._state = _State.RUNNING

    def event(self, kind: str, text: str) -> None:
        """Queue a ``start``/``complete``/``fail`` annotation; sent with the next write."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind: expected one of {EVENT_KINDS}, got {kind!r}")
        self._spawn()
        self._send(Event(kind, text, time.time()))

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
                self._read()
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
        self._state = _State.CLOSED

    def health(self) -> dict[str, object]:
        """Export counters as plain values, for logs, the web UI and the run summary."""
        return {"state": self._state.value, **self._health}

    def _spawn(self) -> None:
        if self._process is not None:
            return
        self._done = gevent.event.Event()
        self._reader = ChangeReader()  # a new process starts with an empty mirror
        self._process = gevent.subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C goes to Locust, which closes the export
        )
        self._listener = gevent.spawn(self._listen, self._process, self._done)
        self._send(Setup(self._config, self._tags))

    def _tick(self) -> None:
        next_tick = time.monotonic() + self._config.interval
        while not self._stopping.wait(max(next_tick - time.monotonic(), 0.0)):
            next_tick = max(next_tick + self._config.interval, time.monotonic())
            self._read()

    def _read(self, *, reset: bool = False) -> None:
        with self._reading:
            self._slice_started = time.perf_counter()
            runner = self._environment.runner
            sample = Sample(
                at=time.time(),
                users=runner.user_count if runner else 0,
                workers=getattr(runner, "worker_count", 0),
            )
            stats = self._environment.stats
            for message in self._reader.read(stats, sample, reset=reset, pause=self._pause):
                self._send(message)

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


class ExportLoop:
    """The export process's work, one message at a time: mirror, intervals, points, writes.

    ``report`` gets the sink's health after each message, and ``done=True`` after the last.
    """

    def __init__(self, setup: Setup, report: Callable[[dict[str, object], bool], None]) -> None:
        self._sink = InfluxSink(setup.config, setup.tags)
        self._layout = make_layout(setup.config, setup.tags)
        self._mirror = StatsMirror()
        self._now = 0.0
        self._tracker = IntervalTracker(max_names=setup.config.max_names, clock=self._clock)
        self._stamp = Stamper()
        self._report = report

    def _clock(self) -> float:
        return self._now  # the master's read time: intervals are the master's, to the ms

    def handle(self, message: object) -> bool:
        """Do what ``message`` asks; False once it was the last (``Close``)."""
        if isinstance(message, Clear | Entries):
            self._mirror.apply(message)
            return True
        if isinstance(message, Take):
            self._take(message)
        elif isinstance(message, Event):
            self._sink.queue(
                [self._layout.event_point(message.kind, message.text, self._stamp(message.at))]
            )
        elif isinstance(message, Close):
            self._sink.drain(message.deadline)
            self._report(self._sink.health(), True)
            return False
        else:
            raise TypeError(f"unexpected message {message!r}")
        self._report(self._sink.health(), False)
        return True

    def _take(self, take: Take) -> None:
        self._mirror.apply(take)
        self._now = take.sample.at
        if take.reset:
            self._tracker.reset(self._mirror.stats)
            return
        interval = self._tracker.take(self._mirror.stats)
        ms = self._stamp(interval.ended_at)
        self._sink.queue(self._layout.interval_points(interval, take.sample, ms))
        if self._sink.due():
            self._report(self._sink.health(), False)  # queued, before a write that may hang
            self._sink.flush()


class _Forward(logging.Handler):
    """Log records to the master, which logs them with its own handlers and format."""

    def __init__(self, send: Callable[[dict[str, object]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send({"log": [record.levelno, record.name, record.getMessage()]})


def _messages(stream: IO[bytes]) -> Iterator[object]:
    """The master's messages; a ``Close`` if it went away without one (it died)."""
    while True:
        try:
            yield pickle.load(stream)
        except EOFError:
            yield Close(10.0)
            return


def main() -> None:
    """The export process: read the master's messages from stdin until ``Close``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides when to stop
    reports = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt reports
    root = logging.getLogger()
    master_gone = False

    def send(report: dict[str, object]) -> None:
        nonlocal master_gone
        data = (json.dumps(report) + "\n").encode()
        try:
            while data and not master_gone:
                data = data[os.write(reports, data) :]
        except OSError:  # the master is gone: finish the export without it, logging to stderr
            master_gone = True
            root.addHandler(logging.StreamHandler())

    root.addHandler(_Forward(send))
    root.setLevel(logging.WARNING)
    logging.getLogger("locust_perfx").setLevel(logging.INFO)
    messages = _messages(sys.stdin.buffer)
    setup = next(messages)
    if not isinstance(setup, Setup):
        raise TypeError(f"expected Setup first, got {setup!r}")
    loop = ExportLoop(setup, lambda health, done: send({"health": health, "done": done}))
    for message in messages:
        if not loop.handle(message):
            break


if __name__ == "__main__":
    main()
