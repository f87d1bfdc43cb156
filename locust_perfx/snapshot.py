"""Turn Locust's cumulative stats into exact interval deltas and an end-of-run summary.

Pure: no I/O, no clocks except the one passed in, and no Locust import: the export process
(``export_process``) runs it without Locust loaded, which keeps it ~35 MB smaller.
``IntervalTracker`` diffs the cumulative ``RequestStats`` of a local runner or of a master
(where Locust has already merged the workers' reports), touching only the names whose counts
moved; it reads them by attribute, so a ``handoff.StatsMirror`` serves as well.

The export process runs it on a mirror of the master's stats (``handoff.StatsMirror``),
diffing each chunk of changed names as it arrives (``IntervalTracker.add``) and keeping the
mirror's histograms rather than copies: it holds one histogram per name. The per-bucket work
still runs in C, since it is paid for every changed name every interval: the interval's
running counts are one ``accumulate(map(sub, now, before))`` over the sorted buckets, and
each percentile one ``bisect``. Percentiles come from the interval's own histogram, never
from averaging.

>>> from locust.stats import RequestStats
>>> stats = RequestStats()
>>> tracker = IntervalTracker()
>>> tracker.reset(stats)
>>> stats.log_request("GET", "/", 120, 512)
>>> [(e.name, e.requests, e.percentile(0.5)) for e in tracker.take(stats).entries]
[('/', 1, 120)]
"""

from __future__ import annotations

import hashlib
import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, repeat
from operator import sub
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

if TYPE_CHECKING:
    from locust.stats import RequestStats, StatsEntry, StatsError

logger = logging.getLogger(__name__)

PERCENTILES = (0.5, 0.9, 0.95, 0.99)
"""The response-time percentiles exported each interval and in the summary."""

OTHER_NAME = "__other__"
DEFAULT_MAX_NAMES: Final = 500
"""Distinct request names kept as their own series; later names fold into ``__other__``."""

Timings = tuple[int | None, int | None, tuple[int, ...]]
"""``(min_ms, max_ms, percentiles)``: percentiles follow ``PERCENTILES``, empty if untimed."""

_UNTIMED: Timings = (None, None, ())


def parse_error(error: object) -> str:
    """An error's message as Locust's ``StatsError.parse_error`` gives it: the addresses in
    ``<... object at 0x7f...>`` masked, so one error is one series however often it recurs.

    Here rather than Locust's, for the export process, which runs without Locust; a test
    checks both give the same text.

    >>> parse_error("ConnectionError(<Pool object at 0x7f3a9c>, 'refused')")
    "ConnectionError(<Pool object at 0x....>, 'refused')"
    """
    text = error if isinstance(error, str) else repr(error)
    start = text.find("object at 0x")
    if start < 0:
        return text
    start += len("object at ")
    end = text.find(">", start)
    if end < 0:
        return text
    return text.replace(text[start:end], "0x....")


def error_id(method: str, name: str, message: str) -> str:
    """A short, stable hash of one error: a bounded tag that keeps error series apart."""
    return hashlib.sha256(f"{method}\0{name}\0{message}".encode()).hexdigest()[:8]


class EntryDelta(NamedTuple):
    """What one request name and method did during one interval.

    ``min_ms``, ``max_ms`` and ``percentiles`` come from the interval's own histogram, in
    Locust's buckets (response times rounded to about two significant digits), so they carry
    that rounding; ``avg_ms`` is exact because it comes from the summed response times.
    ``percentiles`` follows ``PERCENTILES`` and is empty when no request was timed. A tuple,
    not a frozen dataclass: a snapshot builds one per changed name.
    """

    name: str
    method: str
    requests: int
    failures: int
    timed_requests: int
    total_response_time: float
    content_length: int
    min_ms: int | None
    max_ms: int | None
    percentiles: tuple[int, ...]

    @property
    def avg_ms(self) -> float | None:
        return self.total_response_time / self.timed_requests if self.timed_requests else None

    def percentile(self, percent: float) -> int | None:
        """One of ``PERCENTILES``; ``None`` when no request of the interval was timed."""
        return dict(zip(PERCENTILES, self.percentiles, strict=False)).get(percent)


def timings(buckets: Sequence[int], running: Sequence[int]) -> Timings:
    """Min, max and ``PERCENTILES`` of a histogram given as running counts.

    ``buckets`` are response times, slowest first; ``running[i]`` counts the requests in
    ``buckets[:i + 1]``. Buckets where ``running`` does not grow are empty: skipped. Locust
    walks the buckets from the slowest and returns the first where ``count - processed <=
    int(count * percent)``; with ``processed`` as ``running`` that is a ``bisect``, in C.
    """
    count = running[-1] if running else 0
    if not count:
        return _UNTIMED
    return (
        buckets[bisect_left(running, count)],
        buckets[bisect_right(running, 0)],
        tuple([buckets[bisect_left(running, count - int(count * p))] for p in PERCENTILES]),
    )


def histogram_timings(histogram: Mapping[int, int]) -> Timings:
    """``timings`` of a plain ``{response_time: count}`` histogram, as Locust keeps them;
    int buckets, whatever Locust's version keyed them by (see ``_Baseline.advance``)."""
    buckets = sorted(map(int, histogram), reverse=True)
    return timings(buckets, list(accumulate(map(histogram.__getitem__, buckets))))


class Entry(Protocol):
    """What the tracker reads of a ``StatsEntry`` (or of a ``handoff.MirroredEntry``)."""

    @property
    def name(self) -> str: ...
    @property
    def method(self) -> str | None: ...
    @property
    def start_time(self) -> float: ...
    @property
    def num_requests(self) -> int: ...
    @property
    def num_none_requests(self) -> int: ...
    @property
    def num_failures(self) -> int: ...
    @property
    def total_response_time(self) -> float: ...
    @property
    def total_content_length(self) -> int: ...
    @property
    def response_times(self) -> Mapping[int, int]: ...


class Error(Protocol):
    """What the tracker reads of a ``StatsError`` (or of a ``handoff.MirroredError``)."""

    @property
    def method(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def error(self) -> object: ...
    @property
    def occurrences(self) -> int: ...


class Stats(Protocol):
    """What the tracker reads of a ``RequestStats`` (or of a ``handoff.StatsMirror``'s)."""

    @property
    def entries(self) -> Mapping[tuple[str, str], Entry]: ...
    @property
    def total(self) -> Entry: ...
    @property
    def errors(self) -> Mapping[str, Error]: ...


class Sample(NamedTuple):
    """When the stats were read, and the runner's facts at that moment: its users and
    workers, and how late its event loop woke since the previous sample (``loop.Lateness``)."""

    at: float
    users: int
    workers: int
    loop_p99_ms: float = 0.0
    loop_max_ms: float = 0.0
    loop_stalled_ms: float = 0.0


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


class _Baseline:
    """One ``StatsEntry`` as the previous snapshot saw it: its counters and its histogram.

    The histogram is a copy, or, for stats that replace each histogram rather than update it
    (``handoff.StatsMirror``), the histogram itself: the export process then holds one
    histogram per name, not two. Mutable on purpose: updated in place for every changed name
    each interval.
    """

    __slots__ = (
        "content_length",
        "failures",
        "histogram",
        "none_requests",
        "requests",
        "start_time",
        "total_response_time",
    )

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Back to an entry never seen, whose infinite start time never looks reset."""
        self.start_time = float("inf")
        self.requests = self.none_requests = self.failures = self.content_length = 0
        self.total_response_time = 0.0
        self.histogram: Mapping[int, int] = {}

    def was_reset_by(self, entry: Entry) -> bool:
        """True if Locust reset ``entry`` since the previous snapshot.

        ``StatsEntry.reset()`` moves ``start_time`` forward, while merging worker reports only
        ever moves it back (``extend`` keeps the minimum); falling counts catch the rest.
        """
        return (
            entry.start_time > self.start_time
            or entry.num_requests < self.requests
            or entry.num_failures < self.failures
        )

    def advance(
        self, entry: Entry, *, copy: bool = True
    ) -> tuple[EntryDelta, list[int], list[int]] | None:
        """The delta since the previous call, its ``buckets`` (slowest first) and its running
        counts over them; moves the baseline to now, keeping a copy of the histogram unless
        ``copy`` is False. ``None`` if nothing changed."""
        requests, failures = entry.num_requests, entry.num_failures
        if (
            requests == self.requests
            and failures == self.failures
            and entry.start_time <= self.start_time
        ):
            return None
        if self.was_reset_by(entry):
            self.clear()  # count what came after the reset
        histogram, before = entry.response_times, self.histogram
        # int: Locust < 2.43 keys response times from 100 ms up by float (220.0), and
        # InfluxDB refuses a field whose type changes ("field type conflict"); 220 finds 220.0.
        buckets = sorted(map(int, histogram), reverse=True)
        running = list(
            accumulate(
                map(sub, map(histogram.__getitem__, buckets), map(before.get, buckets, repeat(0)))
            )
        )
        self.histogram = dict(histogram) if copy else histogram
        none_requests = entry.num_none_requests
        total_response_time = entry.total_response_time
        content_length = entry.total_content_length
        delta = EntryDelta(
            entry.name,
            entry.method or "",
            requests - self.requests,
            failures - self.failures,
            (requests - none_requests) - (self.requests - self.none_requests),
            total_response_time - self.total_response_time,
            content_length - self.content_length,
            *timings(buckets, running),
        )
        self.start_time = entry.start_time
        self.requests, self.none_requests, self.failures = requests, none_requests, failures
        self.total_response_time, self.content_length = total_response_time, content_length
        return delta, buckets, running


def interval_delta(entry: Entry, baseline: _Baseline | None) -> tuple[EntryDelta, _Baseline]:
    """What ``entry`` did since ``baseline`` (``None``: since it was created or reset), and
    the baseline to pass next time; for the few entries a criterion watches."""
    baseline = baseline or _Baseline()
    advanced = baseline.advance(entry)
    if advanced is None:
        return EntryDelta(entry.name, entry.method or "", 0, 0, 0, 0.0, 0, *_UNTIMED), baseline
    return advanced[0], baseline


def fresh_delta(entry: Entry) -> EntryDelta:
    """Everything ``entry`` counted so far, as one delta: the whole run's numbers."""
    return interval_delta(entry, None)[0]


class _Folded:
    """The names of one method past ``max_names``, summed into one ``OTHER_NAME`` entry."""

    def __init__(self, method: str) -> None:
        self.delta = EntryDelta(OTHER_NAME, method, 0, 0, 0, 0.0, 0, *_UNTIMED)
        self.histogram: dict[int, int] = {}

    def add(self, delta: EntryDelta, buckets: Sequence[int], running: Sequence[int]) -> None:
        """Add ``delta``, whose histogram is ``running`` over ``buckets`` (``advance()``)."""
        self.delta = self.delta._replace(
            requests=self.delta.requests + delta.requests,
            failures=self.delta.failures + delta.failures,
            timed_requests=self.delta.timed_requests + delta.timed_requests,
            total_response_time=self.delta.total_response_time + delta.total_response_time,
            content_length=self.delta.content_length + delta.content_length,
        )
        before = 0
        for bucket, count in zip(buckets, running, strict=True):
            if count != before:
                self.histogram[bucket] = self.histogram.get(bucket, 0) + count - before
                before = count

    def result(self) -> EntryDelta:
        low, high, percentiles = histogram_timings(self.histogram)
        return self.delta._replace(min_ms=low, max_ms=high, percentiles=percentiles)


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


_NOTHING = EntryDelta("Aggregated", "", 0, 0, 0, 0.0, 0, *_UNTIMED)


class IntervalTracker:
    """Cumulative ``RequestStats`` in, one ``Interval`` of deltas out per ``take()``.

    Works the same on a local runner and on a master, whose stats are the merged worker
    reports: each report lands in exactly one interval. Only entries whose counts moved are
    touched, so 1,000 idle names cost a few attribute reads each. Interval counts of a name
    add up exactly to Locust's final total for it, across stats resets (``reset_all``/
    ``clear_all``: detected, the data after the reset is counted from zero) and across
    folding of names past ``max_names`` into ``OTHER_NAME``.
    """

    def __init__(
        self,
        *,
        max_names: int = DEFAULT_MAX_NAMES,
        clock: Callable[[], float] = time.time,
        replaced_histograms: bool = False,
    ) -> None:
        """``replaced_histograms``: the stats replace a histogram whenever it changes, never
        update it (``handoff.StatsMirror``), so the tracker keeps it rather than a copy."""
        self._clock = clock
        self._fold = _NameFolder(max_names)
        self._copy = not replaced_histograms
        self._last = clock()
        self._entries: dict[tuple[str, str], _Baseline] = {}
        self._total = _Baseline()
        # Each Locust error's occurrences at the previous snapshot, and its exported identity.
        self._errors: dict[str, tuple[int, tuple[str, str, str] | None]] = {}
        # What add() diffed for the interval that take() ends.
        self._diffed: list[EntryDelta] = []
        self._folded: dict[str, _Folded] = {}

    def reset(self, stats: Stats) -> None:
        """Make the current state of ``stats`` the baseline: the next interval starts now."""
        self._entries, self._total, self._errors = {}, _Baseline(), {}
        self._diffed, self._folded = [], {}
        self.take(stats)

    def add(self, entries: Iterable[tuple[tuple[str, str], Entry]]) -> None:
        """Diff ``entries`` (``stats.entries`` items) now, for the interval the next
        ``take()`` ends.

        The export process calls it for each chunk of changed names as it arrives, so a
        name's previous histogram is let go as its new one comes; ``take()`` diffs the rest.
        """
        baselines, fold, kept, copy = self._entries, self._fold, self._fold.kept, self._copy
        for key, entry in entries:
            base = baselines.get(key)
            if base is None:
                base = baselines[key] = _Baseline()
            advanced = base.advance(entry, copy=copy)
            if advanced is None:
                continue
            delta, buckets, running = advanced
            if not (delta.requests or delta.failures):
                continue  # reset, and nothing since
            if delta.name in kept or fold(delta.name) == delta.name:
                self._diffed.append(delta)
                continue
            if delta.method not in self._folded:
                self._folded[delta.method] = _Folded(delta.method)
            self._folded[delta.method].add(delta, buckets, running)

    def take(self, stats: Stats) -> Interval:
        """The deltas since the previous ``take()`` or ``reset()``; moves the baseline."""
        started, now = self._last, self._clock()
        self._last = now
        if self._total.was_reset_by(stats.total):
            # The whole RequestStats was reset or cleared: its total and errors start over.
            # Each entry finds its own reset (``_Baseline.was_reset_by``): those add() took
            # already keep their baselines.
            self._total, self._errors = _Baseline(), {}
        advanced = self._total.advance(stats.total)
        total = advanced[0] if advanced else _NOTHING
        self.add(stats.entries.items())
        entries, self._diffed = self._diffed, []
        entries.extend(other.result() for other in self._folded.values())
        self._folded = {}
        return Interval(
            started_at=started,
            ended_at=now,
            total=total,
            entries=tuple(entries),
            errors=self._error_deltas(stats.errors),
        )

    def _error_deltas(self, errors: Mapping[str, Error]) -> tuple[ErrorDelta, ...]:
        deltas: dict[tuple[str, str, str], int] = {}
        for key, error in list(errors.items()):
            before, folded = self._errors.get(key, (0, None))
            if error.occurrences == before:
                continue
            # Fewer occurrences than before means Locust reset the error: count from zero.
            count = error.occurrences - before if error.occurrences > before else error.occurrences
            if folded is None:  # parsed once per error: a regex, and errors repeat
                folded = (
                    error.method or "",
                    self._fold(error.name),
                    parse_error(error.error),
                )
            self._errors[key] = error.occurrences, folded
            deltas[folded] = deltas.get(folded, 0) + count
        return tuple(ErrorDelta(m, n, msg, count) for (m, n, msg), count in deltas.items())


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
        # Locust keeps min/max exact (5.371666999963054): whole ms, like every timing field
        # but the average. Histogram buckets: int in every Locust version (_Baseline.advance).
        "min_ms": round(entry.min_response_time or 0),
        "max_ms": round(entry.max_response_time),
        "median_ms": int(entry.median_response_time),
        "p90_ms": int(entry.get_response_time_percentile(0.9)),
        "p95_ms": int(entry.get_response_time_percentile(0.95)),
        "p99_ms": int(entry.get_response_time_percentile(0.99)),
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
    Response times are whole milliseconds (the average keeps two decimals); min/max are
    rounded, median and percentiles carry Locust's histogram rounding (about two significant
    digits).

    >>> from locust.stats import RequestStats
    >>> stats = RequestStats()
    >>> stats.log_request("GET", "/", 100, 10)
    >>> summarize(stats, users_peak=1, workers=0, started_at=0, finished_at=2)["total"]["rps"]
    0.5
    """
    duration = max(finished_at - started_at, 0.0)
    requests = sorted(
        (entry for entry in stats.entries.values() if entry.num_requests or entry.num_failures),
        # A custom client may fire events.request with request_type None beside a string.
        key=lambda entry: (entry.name, entry.method or ""),
    )
    errors: Iterable[StatsError] = sorted(
        stats.errors.values(), key=lambda e: (-e.occurrences, e.method or "", e.name)
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
                "error": parse_error(e.error),
                "occurrences": e.occurrences,
            }
            for e in list(errors)[:top_errors]
        ],
    }
