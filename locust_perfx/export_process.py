"""The export process's program: the master's stats in, InfluxDB writes out.

Run as ``python -m locust_perfx.export_process`` by the master's handle on it
(``exporter.MetricsExporter``), never imported by the master. It reads the master's
messages (``handoff``) from stdin: a ``Setup``, then the stats entries that changed each
interval, applied to a mirror of the master's stats; from the mirror it takes interval
deltas and percentiles (``snapshot``), makes points (``influx``) and writes them (``sink``).
Health and log records go back to the master on stdout, as JSON lines.

The master decides when to stop: the process ends on the master's ``Close``, after sending
the final interval. Its session of its own keeps a terminal's Ctrl-C and ``kill -TERM -PGID``
away from it; systemd (``KillMode=control-group``) signals every process of the service, so
it ignores SIGINT and SIGTERM too. If the master dies without a ``Close``, stdin ends and the
process sends what it holds within ``MASTER_GONE_DEADLINE``, then exits.

>>> from locust_perfx.influx import InfluxConfig
>>> config = InfluxConfig("http://localhost:8086", bucket="b")
>>> reports = []
>>> loop = ExportLoop(Setup(config, {"run_id": "r"}), lambda health, done: reports.append(done))
>>> loop.handle(Close(deadline=0.0))
False
>>> reports
[True]
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from typing import IO

from locust_perfx.handoff import (
    Clear,
    Close,
    Compared,
    Entries,
    Event,
    Judged,
    Setup,
    StatsMirror,
    Take,
)
from locust_perfx.influx import Stamper, make_layout
from locust_perfx.sink import InfluxSink
from locust_perfx.snapshot import IntervalTracker

MASTER_GONE_DEADLINE = 10.0
"""Seconds to send what is queued when the master went away without a ``Close``."""


class ExportLoop:
    """The export process's work, one message at a time: mirror, intervals, points, writes.

    ``report`` gets the sink's health after each message, and ``done=True`` after the last.
    """

    def __init__(self, setup: Setup, report: Callable[[dict[str, object], bool], None]) -> None:
        self._sink = InfluxSink(setup.config, setup.tags)
        self._layout = make_layout(setup.config, setup.tags)
        self._mirror = StatsMirror()
        self._now = 0.0
        self._tracker = IntervalTracker(
            max_names=setup.config.max_names, clock=self._clock, replaced_histograms=True
        )
        self._stamp = Stamper()
        self._report = report

    def _clock(self) -> float:
        return self._now  # the master's read time: intervals are the master's, to the ms

    def handle(self, message: object) -> bool:
        """Do what ``message`` asks; False once it was the last (``Close``)."""
        if isinstance(message, Clear | Entries):
            self._tracker.add(self._mirror.apply(message))  # diffed as it comes: see add()
            return True
        if isinstance(message, Take):
            self._take(message)
        elif isinstance(message, Event):
            self._sink.queue(
                [self._layout.event_point(message.kind, message.text, self._stamp(message.at))]
            )
        elif isinstance(message, Judged):
            self._sink.queue(self._layout.threshold_points(message.rows, self._stamp(message.at)))
        elif isinstance(message, Compared):
            ms = self._stamp(message.at)
            self._sink.queue(
                self._layout.baseline_points(message.baseline_run_id, message.rows, ms)
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
        del interval  # its deltas (~2 MB at 10,000 names) go before the write's body comes
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
            yield Close(MASTER_GONE_DEADLINE)
            return


def main() -> None:
    """The export process: read the master's messages from stdin until ``Close``."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Sent to the whole cgroup along with Locust, whose quit then closes the export:
        # dying now would lose the final interval.
        signal.signal(signum, signal.SIG_IGN)
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
