"""Turn Locust's stats into exact interval deltas and an end-of-run summary.

Pure: no I/O, no clocks except the one passed in. Two sources, one result (``Interval``):

- ``IntervalTracker`` (local runner) diffs two snapshots of the cumulative stats;
- ``ReportAccumulator`` (master) sums the workers' reports, which are deltas already: no
  cumulative histogram is copied or diffed, so an interval costs what the workers did in it.

Either way the interval histogram is exact, and percentiles come from it, never from
averaging. Both take a ``pause`` callable, called every ``PAUSE_EVERY`` entries, so a caller
under gevent can yield and no single slice of a 1,000-name interval blocks the loop.

>>> from locust.stats import RequestStats
>>> stats = RequestStats()
>>> tracker = IntervalTracker()
>>> tracker.reset(stats)
>>> stats.log_request("GET", "/", 120, 512)
>>> [(e.name, e.requests, e.percentiles()[0.5]) for e in tracker.take(stats).entries]
[('/', 1, 120)]
"""

from __future__ import annotations

import hashlib
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, NamedTuple

from locust.stats import (
    RequestStats,
    StatsEntry,
    StatsError,
)

logger = logging.getLogger(__name__)

PERCENTILES = (0.5, 0.9, 0.95, 0.99)
"""The response-time percentiles exported each interval and in the summary."""

DEFAULT_MAX_NAMES = 500
"""Distinct request names kept as their own series; later names fold into ``OTHER_NAME``."""

OTHER_NAME = "__other__"

PAUSE_EVERY = 50
"""Entries handled between two calls of a ``take()``'s ``pause`` callable."""

Pause = Callable[[], None]


def error_id(method: str, name: str, message: str) -> str:
    """A short, stable hash of one error: a bounded tag that keeps error series apart."""
    return hashlib.sha256(f"{method}\0{name}\0{message}".encode()).hexdigest()[:8]


class EntryDelta(NamedTuple):
    """What one request name and method did during one interval.

    ``response_times`` is the interval's own histogram, keyed like Locust's (response times
    rounded to about two significant digits), so ``min_ms``/``max_ms``/percentiles carry that
    rounding; ``avg_ms`` is exact because it comes from the summed response times. A tuple,
    not a frozen dataclass: a snapshot builds one per changed name and this is twice as fast.
    """

    name: str
    method: str
    requests: int
    failures: int
    timed_requests: int
    total_response_time: float
    content_length: int
    response_times: dict[int, int]

    @property
    def avg_ms(self) -> float | None:
        return self.total_response_time / self.timed_requests if self.timed_requests else None

    @property
    def min_ms(self) -> int | None:
        return min(self.response_times) if self.response_times else None

    @property
    def max_ms(self) -> int | None:
        return max(self.response_times) if self.response_times else None

    @property
    def avg_bytes(self) -> float:
        return self.content_length / self.requests if self.requests else 0.0

    def percentiles(self, percents: Sequence[float] = PERCENTILES) -> dict[float, int]:
        """Percentiles of this interval's histogram, by Locust's rule; empty if no timings.

        Equal to ``calculate_response_time_percentile`` for each percent (a test checks).
        """
        return self.timings(percents)[2]

    def timings(
        self, percents: Sequence[float] = PERCENTILES
    ) -> tuple[int | None, int | None, dict[float, int]]:
        """``(min_ms, max_ms, percentiles)`` with one sort: it runs for every changed name.

        Locust walks the buckets from the slowest down and returns the first one where
        ``count - processed <= int(count * percent)``; with ``processed`` as a running sum
        (``accumulate``) that is a ``bisect``, so the walk runs in C.
        """
        histogram = self.response_times
        if not histogram:
            return None, None, {}
        keys = sorted(histogram, reverse=True)
        processed = list(accumulate(map(histogram.__getitem__, keys)))
        count = processed[-1]
        if not count:
            return keys[-1], keys[0], {}
        result = {
            percent: keys[bisect_left(processed, count - int(count * percent))]
            for percent in percents
        }
        return keys[-1], keys[0], result

    def merged(self, other: EntryDelta) -> EntryDelta:
        """Both deltas as one (used to fold names past ``max_names``)."""
        histogram = dict(self.response_times)
        for key, count in other.response_times.items():
            histogram[key] = histogram.get(key, 0) + count
        return self._replace(
            requests=self.requests + other.requests,
            failures=self.failures + other.failures,
            timed_requests=self.timed_requests + other.timed_requests,
            total_response_time=self.total_response_time + other.total_response_time,
            content_length=self.content_length + other.content_length,
            response_times=histogram,
        )


class ErrorDelta(NamedTuple):
    """How often one error of one request occurred during one interval."""

    method: str
    name: str
    message: str
    occurrences: int

    @property
    def error_id(self) -> str:
        return error_id(self.method, self.name, self.message)


@dataclass(frozen=True)
class Interval:
    """Everything that changed between two snapshots; ``entries`` skips idle names."""

    started_at: float
    ended_at: float
    total: EntryDelta
    entries: tuple[EntryDelta, ...]
    errors: tuple[ErrorDelta, ...]

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at


class _Cumulative(NamedTuple):
    """A copy of the counters of one ``StatsEntry`` at the last snapshot."""

    start_time: float
    requests: int
    none_requests: int
    failures: int
    total_response_time: float
    content_length: int
    response_times: dict[int, int]

    @classmethod
    def of(cls, entry: StatsEntry) -> _Cumulative:
        return cls(
            entry.start_time,
            entry.num_requests,
            entry.num_none_requests,
            entry.num_failures,
            entry.total_response_time,
            entry.total_content_length,
            dict(entry.response_times),
        )

    def was_reset_in(self, entry: StatsEntry) -> bool:
        """True if Locust reset ``entry`` since this copy was taken.

        ``StatsEntry.reset()`` moves ``start_time`` forward, while merging worker reports only
        ever moves it back (``extend`` keeps the minimum); falling counts catch the rest.
        """
        return (
            entry.start_time > self.start_time
            or entry.num_requests < self.requests
            or entry.num_failures < self.failures
        )


# The baseline of an entry never seen: an infinite start time so it never looks reset.
_ZERO = _Cumulative(float("inf"), 0, 0, 0, 0.0, 0, {})


def _delta(entry: StatsEntry, base: _Cumulative, now: _Cumulative) -> EntryDelta:
    return EntryDelta(
        entry.name,
        entry.method or "",
        now.requests - base.requests,
        now.failures - base.failures,
        (now.requests - now.none_requests) - (base.requests - base.none_requests),
        now.total_response_time - base.total_response_time,
        now.content_length - base.content_length,
        _diff_histogram(now.response_times, base.response_times),
    )


def _diff_histogram(latest: dict[int, int], old: dict[int, int]) -> dict[int, int]:
    """``locust.stats.diff_response_time_dicts``, about a third faster (a test checks both agree).

    It runs over every bucket of every changed name each interval: the largest cost of a
    snapshot at 1,000 names.
    """
    get = old.get
    return {
        key: count - before for key, count in latest.items() if (before := get(key, 0)) != count
    }


class _NameFolder:
    """Keeps the first ``max_names`` request names; later ones become ``OTHER_NAME``."""

    def __init__(self, max_names: int) -> None:
        self._max_names = max_names
        self.kept: set[str] = set()
        self._logged = False

    def __call__(self, name: str) -> str:
        if name in self.kept:
            return name
        if len(self.kept) < self._max_names:
            self.kept.add(name)
            return name
        if not self._logged:
            self._logged = True
            logger.warning(
                "More than %d distinct request names: exporting the rest as %r. "
                "Group dynamic URLs with the name= argument of your requests.",
                self._max_names,
                OTHER_NAME,
            )
        return OTHER_NAME


class _IntervalSource:
    """What both interval sources share: the clock, name folding and window boundaries."""

    def __init__(self, *, max_names: int, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._fold = _NameFolder(max_names)
        self._last = clock()

    def _window(self) -> tuple[float, float]:
        """``(started, ended)`` of the interval ending now; the next one starts here."""
        now = self._clock()
        started, self._last = self._last, now
        return started, now


class IntervalTracker(_IntervalSource):
    """Cumulative ``RequestStats`` in, one ``Interval`` of deltas out per ``take()``.

    Keeps a copy of each entry's counters from the previous snapshot and only touches entries
    whose counts moved, so a snapshot of 1,000 idle names costs a few attribute reads each.
    Interval counts of a name add up exactly to Locust's final total for it, across stats
    resets (``reset_all``/``clear_all``: detected, the data after the reset is counted from
    zero) and across folding of names past ``max_names`` into ``OTHER_NAME``.
    """

    def __init__(
        self, *, max_names: int = DEFAULT_MAX_NAMES, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(max_names=max_names, clock=clock)
        self._entries: dict[tuple[str, str], _Cumulative] = {}
        self._total = _ZERO
        self._errors: dict[str, int] = {}

    def reset(self, stats: RequestStats) -> None:
        """Make the current state of ``stats`` the baseline: the next interval starts now."""
        self._entries = {key: _Cumulative.of(entry) for key, entry in stats.entries.items()}
        self._total = _Cumulative.of(stats.total)
        self._errors = {key: error.occurrences for key, error in stats.errors.items()}
        self._last = self._clock()

    def take(self, stats: RequestStats, pause: Pause | None = None) -> Interval:
        """The deltas since the previous ``take()`` or ``reset()``; moves the baseline.

        ``pause`` runs every ``PAUSE_EVERY`` entries; requests logged meanwhile land in this
        interval or the next, never in both (each entry is copied whole, without a pause).
        """
        started, now = self._window()
        if self._total.was_reset_in(stats.total):
            # The whole RequestStats was reset or cleared: everything in it is new.
            self._entries, self._errors = {}, {}
            self._total = _ZERO
        total_now = _Cumulative.of(stats.total)
        total = _delta(stats.total, self._total, total_now)
        self._total = total_now

        entries: dict[tuple[str, str], EntryDelta] = {}
        # A copy: a pause lets users add new names to the dict while we walk it.
        for seen, (key, entry) in enumerate(list(stats.entries.items()), 1):
            if pause is not None and not seen % PAUSE_EVERY:
                pause()
            base = self._entries.get(key, _ZERO)
            was_reset = base.was_reset_in(entry)
            unchanged = entry.num_requests == base.requests and entry.num_failures == base.failures
            if unchanged and not was_reset:
                continue
            if was_reset:
                base = _ZERO
            current = _Cumulative.of(entry)
            self._entries[key] = current
            delta = _delta(entry, base, current)
            if not (delta.requests or delta.failures):
                continue
            name = self._fold(entry.name)
            if name != entry.name:
                delta = delta._replace(name=name)
            folded_key = (name, delta.method)
            entries[folded_key] = (
                entries[folded_key].merged(delta) if folded_key in entries else delta
            )

        return Interval(
            started_at=started,
            ended_at=now,
            total=total,
            entries=tuple(entries.values()),
            errors=self._error_deltas(stats.errors),
        )

    def _error_deltas(self, errors: Mapping[str, StatsError]) -> tuple[ErrorDelta, ...]:
        deltas: dict[tuple[str, str, str], int] = {}
        for key, error in list(errors.items()):
            before = self._errors.get(key, 0)
            if error.occurrences == before:
                continue
            # Fewer occurrences than before means Locust reset the error: count from zero.
            count = error.occurrences - before if error.occurrences > before else error.occurrences
            self._errors[key] = error.occurrences
            folded = (
                error.method or "",
                self._fold(error.name),
                StatsError.parse_error(error.error),
            )
            deltas[folded] = deltas.get(folded, 0) + count
        return tuple(ErrorDelta(m, n, msg, count) for (m, n, msg), count in deltas.items())


# One name's running sums in an interval: requests, none_requests, failures,
# total_response_time, content_length, and the histograms of its reports, merged only once
# per interval. A list: summed in place, fast.
_Sums = list[Any]


class ReportAccumulator(_IntervalSource):
    """Workers' reports in, one ``Interval`` of their summed deltas out per ``take()``.

    For the master. A worker resets its stats after each report, so a report
    (``worker_report``'s ``data``) is already that worker's delta, serialized by Locust's
    own ``StatsEntry.get_stripped_report``. ``add()`` only queues the report, so the
    listener costs nothing however many names it holds; ``take()`` sums the queue, with a
    ``pause`` every ``PAUSE_EVERY`` entries. Each report lands in exactly one interval, and
    the master's ``environment.stats`` is the sum of the same reports, so interval counts
    add up exactly to Locust's final totals, and a histogram summed from the reports is
    the interval's exact histogram. The cost is what the workers did in the interval (its
    requests' buckets), not the size of the run's cumulative histograms.

    >>> from locust.event import Events
    >>> from locust.stats import RequestStats, setup_distributed_stats_event_listeners
    >>> worker, events = RequestStats(), Events()
    >>> setup_distributed_stats_event_listeners(events, worker)
    >>> worker.log_request("GET", "/", 120, 512)
    >>> data = {}
    >>> events.report_to_master.fire(client_id="w1", data=data)
    >>> accumulator = ReportAccumulator()
    >>> accumulator.add(data)
    >>> [(e.name, e.requests, e.percentiles()[0.5]) for e in accumulator.take().entries]
    [('/', 1, 120)]
    """

    def __init__(
        self, *, max_names: int = DEFAULT_MAX_NAMES, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(max_names=max_names, clock=clock)
        self._pending: list[Mapping[str, Any]] = []

    def __len__(self) -> int:
        """Reports queued for the next ``take()``."""
        return len(self._pending)

    def add(self, data: Mapping[str, Any]) -> None:
        """Queue one worker report. Locust neither keeps nor changes ``data`` after its own
        ``worker_report`` listener merged it, and neither do we: holding it costs no copy."""
        self._pending.append(data)

    def reset(self) -> None:
        """Forget the queued reports: the next interval starts now."""
        self._pending = []
        self._last = self._clock()

    def take(self, pause: Pause | None = None) -> Interval:
        """The sum of the reports queued since the previous ``take()`` or ``reset()``."""
        started, now = self._window()
        # Swapped first: reports arriving during a pause go to the next interval.
        pending, self._pending = self._pending, []
        sums: dict[tuple[str, str], _Sums] = {}
        get = sums.get
        total: _Sums = [0, 0, 0, 0.0, 0, []]
        errors: dict[tuple[str, str, str], int] = {}
        fold, kept = self._fold, self._fold.kept
        seen = 0
        for data in pending:
            for report in data.get("stats", ()):
                seen += 1
                if pause is not None and not seen % PAUSE_EVERY:
                    pause()
                name = report["name"]
                key = (name if name in kept else fold(name), report["method"] or "")
                found = get(key)
                if found is None:
                    sums[key] = [
                        report["num_requests"],
                        report["num_none_requests"],
                        report["num_failures"],
                        report["total_response_time"],
                        report["total_content_length"],
                        [report["response_times"]],
                    ]
                else:  # _add(), inlined: this line runs for every name of every report
                    found[0] += report["num_requests"]
                    found[1] += report["num_none_requests"]
                    found[2] += report["num_failures"]
                    found[3] += report["total_response_time"]
                    found[4] += report["total_content_length"]
                    found[5].append(report["response_times"])
            if "stats_total" in data:
                _add(total, data["stats_total"])
            for error in data.get("errors", {}).values():
                folded = (error["method"] or "", fold(error["name"]), error["error"])
                errors[folded] = errors.get(folded, 0) + error["occurrences"]
        entries = []
        for done, ((name, method), found) in enumerate(sums.items(), 1):
            if pause is not None and not done % PAUSE_EVERY:
                pause()
            if found[0] or found[2]:
                entries.append(_entry_delta(name, method, found))
        return Interval(
            started_at=started,
            ended_at=now,
            total=_entry_delta("Aggregated", "", total),
            entries=tuple(entries),
            errors=tuple(ErrorDelta(m, n, msg, count) for (m, n, msg), count in errors.items()),
        )


def _add(sums: _Sums, report: Mapping[str, Any]) -> None:
    sums[0] += report["num_requests"]
    sums[1] += report["num_none_requests"]
    sums[2] += report["num_failures"]
    sums[3] += report["total_response_time"]
    sums[4] += report["total_content_length"]
    sums[5].append(report["response_times"])


def _entry_delta(name: str, method: str, sums: _Sums) -> EntryDelta:
    requests, none_requests, failures, total_time, length, histograms = sums
    return EntryDelta(
        name,
        method,
        requests,
        failures,
        requests - none_requests,
        total_time,
        length,
        _merge_histograms(histograms),
    )


def _merge_histograms(histograms: list[dict[int, int]]) -> dict[int, int]:
    """One histogram from several; the only per-bucket work of the master's export."""
    if not histograms:
        return {}
    merged = dict(histograms[0])  # a copy: the reports stay as Locust gave them
    get = merged.get
    for histogram in histograms[1:]:
        for key, count in histogram.items():
            merged[key] = get(key, 0) + count
    return merged


def _iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _entry_summary(entry: StatsEntry, duration: float) -> dict[str, Any]:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "failure_ratio": round(entry.fail_ratio, 4),
        "rps": round(entry.num_requests / duration, 2) if duration > 0 else 0.0,
        "avg_ms": round(entry.avg_response_time, 2),
        "min_ms": entry.min_response_time or 0,
        "max_ms": entry.max_response_time,
        "median_ms": entry.median_response_time,
        "p90_ms": entry.get_response_time_percentile(0.9),
        "p95_ms": entry.get_response_time_percentile(0.95),
        "p99_ms": entry.get_response_time_percentile(0.99),
        "bytes": entry.total_content_length,
    }


def summarize(
    stats: RequestStats,
    *,
    users_peak: int,
    workers: int,
    started_at: float,
    finished_at: float,
    top_errors: int = 10,
) -> dict[str, Any]:
    """The end-of-run report for the platform, in plain JSON types.

    ``started_at``/``finished_at`` are epoch seconds and come back as ISO-8601 UTC strings.
    Response times are milliseconds; min/max are exact, median and percentiles carry Locust's
    histogram rounding (about two significant digits).

    >>> from locust.stats import RequestStats
    >>> stats = RequestStats()
    >>> stats.log_request("GET", "/", 100, 10)
    >>> summarize(stats, users_peak=1, workers=0, started_at=0, finished_at=2)["total"]["rps"]
    0.5
    """
    duration = max(finished_at - started_at, 0.0)
    requests = sorted(
        (entry for entry in stats.entries.values() if entry.num_requests or entry.num_failures),
        key=lambda entry: (entry.name, entry.method),
    )
    errors: Iterable[StatsError] = sorted(
        stats.errors.values(), key=lambda e: (-e.occurrences, e.method, e.name)
    )
    return {
        "duration_s": round(duration, 3),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "users_peak": users_peak,
        "workers": workers,
        "total": _entry_summary(stats.total, duration),
        "requests": [
            {"method": e.method, "name": e.name, **_entry_summary(e, duration)} for e in requests
        ],
        "errors": [
            {
                "method": e.method,
                "name": e.name,
                "error": StatsError.parse_error(e.error),
                "occurrences": e.occurrences,
            }
            for e in list(errors)[:top_errors]
        ],
    }
