"""A run's per-interval series and histograms, bounded, for the summary a baseline compares.

:class:`SeriesRecorder` reads the owning process's cumulative stats (a master's are the
workers' merged reports) once per interval and keeps, per request name and for the total,
the interval's requests, failures and p95 (from the interval's own histogram, as the
thresholds and the exporter compute it). :func:`add_series` writes them, with each name's
whole-run response-time histogram in Locust's buckets, into the summary.

Bounded: at most ``MAX_NAMES`` names (the first seen; the others keep their totals) and
``MAX_INTERVALS`` intervals. A longer run keeps every other interval each time the bound is
reached (``stride`` doubles): what remains is a sample of whole intervals of the same
length, which is what the significance test needs (:mod:`locust_perfx.compare`); averaging
neighbours would change the spread it measures. The partial last interval is left out.
Pure: no Locust runner, no I/O, no clock but the one passed in.

>>> from locust.stats import RequestStats
>>> stats = RequestStats()
>>> recorder = SeriesRecorder(interval=5.0)
>>> recorder.start(stats, now=0.0)
>>> stats.log_request("GET", "/", 120, 512)
>>> recorder.tick(stats, now=5.0)
>>> recorder.series(("/", "GET"))
{'interval_s': 5.0, 'stride': 1, 'requests': [1], 'failures': [0], 'p95_ms': [120]}
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from locust.stats import RequestStats, StatsEntry

from locust_perfx.snapshot import interval_delta

MAX_NAMES: Final = 50
"""Request names with a series and a histogram in the summary; the others keep totals."""
MAX_INTERVALS: Final = 120
"""Intervals per series; beyond, every other one is dropped (see the module's docstring)."""

Key = tuple[str, str]
"""``(name, method)``, as Locust keys ``RequestStats.entries``; the total is ``("", "")``."""
_TOTAL: Final[Key] = ("", "")


class _Series:
    """One name's kept intervals, and where its last interval ended in Locust's counts."""

    __slots__ = ("failures", "p95_ms", "requests", "since")

    def __init__(self, padding: int) -> None:
        self.requests = [0] * padding  # a name seen late did nothing before
        self.failures = [0] * padding
        self.p95_ms: list[int | None] = [None] * padding
        self.since: Any = None  # interval_delta's baseline

    def thin(self) -> None:
        del self.requests[1::2], self.failures[1::2], self.p95_ms[1::2]


class SeriesRecorder:
    """The series of one test: ``start``, then ``tick`` as often as you like."""

    def __init__(
        self,
        interval: float,
        *,
        max_names: int = MAX_NAMES,
        max_intervals: int = MAX_INTERVALS,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the interval is seconds > 0, got {interval!r}")
        self.interval = interval
        self.max_names = max_names
        self.max_intervals = max_intervals
        self.stride = 1
        self._index = 0  # intervals ended since start, kept or not
        self._kept = 0
        self._ends_at = interval
        self._series: dict[Key, _Series] = {}
        self._entry_keys: dict[Key, Key] = {}  # each recorded name as Locust keys it (method None)

    def start(self, stats: RequestStats, now: float) -> None:
        """A test starts now: forget the previous one; count from ``stats`` as they are."""
        self.stride, self._index, self._kept = 1, 0, 0
        self._ends_at = now + self.interval
        self._series, self._entry_keys = {}, {}
        self._advance(stats, keep=False)

    def tick(self, stats: RequestStats, now: float) -> None:
        """Record the interval that ended, if one did; Locust's stats at ``now`` count it."""
        if now < self._ends_at:
            return
        # A late tick (a busy process) records one interval: a skipped boundary would
        # otherwise leave an empty one beside a double one.
        while self._ends_at <= now:
            self._ends_at += self.interval
        self._advance(stats, keep=self._index % self.stride == 0)
        self._index += 1
        if self._kept > self.max_intervals:
            self.stride *= 2
            self._kept = (self._kept + 1) // 2
            for series in self._series.values():
                series.thin()

    def series(self, key: Key) -> dict[str, Any] | None:
        """The summary's ``series`` of one name; ``None``: not recorded (past ``max_names``)."""
        series = self._series.get(key)
        if series is None:
            return None
        return {
            "interval_s": self.interval,
            "stride": self.stride,
            "requests": list(series.requests),
            "failures": list(series.failures),
            "p95_ms": list(series.p95_ms),
        }

    def _advance(self, stats: RequestStats, *, keep: bool) -> None:
        if keep:
            self._kept += 1
        self._record(_TOTAL, stats.total, keep)
        entries = stats.entries
        if len(self._series) > self.max_names:  # the total is one of them: not a name
            # Full: no name joins any more. Look the recorded ones up rather than walk every
            # entry: at 10,000 names the walk cost the master's loop 2.5-6 ms an interval.
            for key, entry_key in self._entry_keys.items():
                if (entry := entries.get(entry_key)) is not None:
                    self._record(key, entry, keep)
            return
        for entry_key, entry in entries.items():
            key = (entry_key[0], entry_key[1] or "")
            if key not in self._series and len(self._series) > self.max_names:
                continue
            self._entry_keys[key] = entry_key
            self._record(key, entry, keep)

    def _record(self, key: Key, entry: StatsEntry, keep: bool) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self._kept - 1 if keep else self._kept)
        delta, series.since = interval_delta(entry, series.since)
        if keep:
            series.requests.append(delta.requests)
            series.failures.append(delta.failures)
            series.p95_ms.append(delta.percentile(0.95))


def histogram(entry: StatsEntry) -> list[list[int]]:
    """A name's whole-run response times as ``[[bucket_ms, count], ...]``, fastest first,
    in Locust's buckets (about two significant digits: bounded by Locust's rounding)."""
    counts: dict[int, int] = {}
    for bucket, count in entry.response_times.items():
        counts[int(bucket)] = counts.get(int(bucket), 0) + count  # < 2.43 keyed some by float
    return [[bucket, counts[bucket]] for bucket in sorted(counts)]


def add_series(
    summary: MutableMapping[str, Any], stats: RequestStats, recorder: SeriesRecorder
) -> None:
    """Give the summary's total and each recorded name its ``series`` and ``histogram``."""
    total = summary.get("total")
    if isinstance(total, MutableMapping):
        _attach(total, stats.total, recorder.series(_TOTAL))
    for row in summary.get("requests") or ():
        name, method = row.get("name", ""), row.get("method")  # None from a custom client
        entry, series = stats.entries.get((name, method)), recorder.series((name, method or ""))
        if entry is not None and series is not None:
            _attach(row, entry, series)


def _attach(
    row: MutableMapping[str, Any], entry: StatsEntry, series: Mapping[str, Any] | None
) -> None:
    if series is not None:
        row["series"] = series
    row["histogram"] = histogram(entry)
