"""What crosses from the master to the export process: the stats that changed, and a mirror.

The master's gevent loop runs the load test's bookkeeping; the export's real work (interval
histograms, percentiles, line protocol, writes) must not take turns with it. So each
interval the master only reads which entries moved and copies them whole (counters and
histogram, a C-level dict copy): ``ChangeReader``. The export process applies those copies to
a ``StatsMirror``, which holds what the master's ``RequestStats`` held at that moment, and
diffs it like the real one (``snapshot.IntervalTracker``). Copies are cumulative, so a
message that arrives late carries everything before it: nothing is summed twice or lost.

The export process imports this module, and every message type, without Locust: the mirror
keeps only what the tracker reads, in slots (a ``StatsEntry`` weighs ~1.2 KB more per name).

>>> from locust.stats import RequestStats
>>> from locust_perfx.snapshot import IntervalTracker, Sample
>>> stats, mirror, reader = RequestStats(), StatsMirror(), ChangeReader()
>>> tracker = IntervalTracker(replaced_histograms=True)
>>> stats.log_request("GET", "/", 120, 512)
>>> for message in reader.read(stats, Sample(at=1.0, users=1, workers=0)):
...     tracker.add(mirror.apply(message))
>>> mirror.stats.entries["/", "GET"].response_times
{120: 1}
>>> [(delta.name, delta.requests) for delta in tracker.take(mirror.stats).entries]
[('/', 1)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from locust_perfx.snapshot import Sample, parse_error

if TYPE_CHECKING:
    from locust.stats import RequestStats, StatsEntry

    from locust_perfx.influx import BaselineRow, InfluxConfig

CHUNK_ENTRIES = 100
"""Entries per ``Entries`` message: each is serialized in one go, so this bounds how long the
master's loop is held by one (~0.2 ms per 100 names of ~90 buckets)."""

PAUSE_EVERY = 10
"""Entries read between two calls of ``read()``'s ``pause``."""

Pause = Callable[[], None]
T = TypeVar("T")

EntryState = tuple[str, str, float, int, int, int, int, int, dict[int, int]]
"""One ``StatsEntry`` copied: name, method, start_time, num_requests, num_none_requests,
num_failures, total_response_time (typed ``int`` as Locust types it; a float in practice),
total_content_length, response_times."""

ErrorState = tuple[str, str, str, str, int]
"""One ``StatsError``: its key, method, name, parsed message and occurrences."""


class Clear(NamedTuple):
    """Forget every entry and error: the master's stats were reset or cleared."""


class Entries(NamedTuple):
    """Entries that changed since the previous read."""

    states: list[EntryState]


class Take(NamedTuple):
    """The end of one read: the total, changed errors, and what to do with the mirror now
    (``reset``: make it the baseline of a new test; otherwise: take an interval)."""

    sample: Sample
    total: EntryState
    errors: list[ErrorState]
    reset: bool


class Setup(NamedTuple):
    """The first message: where to export, and the tags of every point."""

    config: InfluxConfig
    tags: dict[str, str]


class Event(NamedTuple):
    """A ``start``/``complete``/``fail`` annotation, sent with the next write."""

    kind: str
    text: str
    at: float


class Judged(NamedTuple):
    """The thresholds as judged at ``at``: one ``(criterion, observed, limit, passed)`` each."""

    rows: tuple[tuple[str, float | None, float, bool], ...]
    at: float


class Compared(NamedTuple):
    """The run compared with baseline run ``baseline_run_id`` at ``at``, once it ended."""

    baseline_run_id: str
    rows: tuple[BaselineRow, ...]
    at: float


class Close(NamedTuple):
    """The last message: send what is queued within ``deadline`` seconds, then exit."""

    deadline: float


Message = Clear | Entries | Take


def paced(items: Iterable[T], pause: Pause | None) -> Iterator[T]:
    """``items``, with a call of ``pause`` after every ``PAUSE_EVERY`` of them."""
    if pause is None:
        yield from items
        return
    for done, item in enumerate(items, 1):
        if not done % PAUSE_EVERY:
            pause()
        yield item


_COUNTERS = (
    "start_time",
    "num_requests",
    "num_none_requests",
    "num_failures",
    "total_response_time",
    "total_content_length",
)
_counters_of = attrgetter(*_COUNTERS)


def _state(entry: StatsEntry) -> EntryState:
    return (entry.name, entry.method or "", *_counters_of(entry), dict(entry.response_times))


class ChangeReader:
    """The master's side: reads what changed in ``RequestStats`` since its previous read.

    An entry changed when its requests, failures or start time did (a merged worker report
    or a reset moves one of them). If an entry or error it sent is gone (``clear_all``,
    ``reset_all``), it starts over with ``Clear`` and sends everything again.
    """

    def __init__(self) -> None:
        self._sent: dict[tuple[str, str], tuple[int, int, float]] = {}
        self._errors: dict[str, int] = {}
        self._messages: dict[str, str] = {}  # parsed once per error: a regex, and errors repeat

    def read(
        self,
        stats: RequestStats,
        sample: Sample,
        *,
        reset: bool = False,
        pause: Pause | None = None,
    ) -> Iterator[Message]:
        """The messages that bring a mirror to ``stats`` as of now, ending with ``Take``.

        ``pause`` runs every ``PAUSE_EVERY`` entries; requests logged meanwhile land in this
        read or the next, never in both (each entry is copied whole, without a pause).
        """
        sent, errors = self._sent, self._errors
        if reset or not (
            sent.keys() <= stats.entries.keys() and errors.keys() <= stats.errors.keys()
        ):
            sent.clear()
            errors.clear()
            yield Clear()
        chunk: list[EntryState] = []
        for key, entry in paced(list(stats.entries.items()), pause):
            mark = entry.num_requests, entry.num_failures, entry.start_time
            if sent.get(key) != mark:
                sent[key] = mark
                chunk.append(_state(entry))
                if len(chunk) == CHUNK_ENTRIES:
                    yield Entries(chunk)
                    chunk = []
        if chunk:
            yield Entries(chunk)
        yield Take(sample, _state(stats.total), self._changed_errors(stats), reset)

    def _changed_errors(self, stats: RequestStats) -> list[ErrorState]:
        changed = []
        for key, error in list(stats.errors.items()):
            if self._errors.get(key) != error.occurrences:
                self._errors[key] = error.occurrences
                message = self._messages.get(key)
                if message is None:
                    message = self._messages[key] = parse_error(error.error)
                changed.append((key, error.method or "", error.name, message, error.occurrences))
        return changed


class MirroredEntry:
    """One ``StatsEntry`` as the master's last read left it: what ``IntervalTracker`` reads."""

    __slots__ = ("name", "method", *_COUNTERS, "response_times")

    def __init__(self, name: str, method: str) -> None:
        self.name, self.method = name, method
        self.start_time = 0.0
        self.num_requests = self.num_none_requests = self.num_failures = 0
        self.total_response_time = 0.0
        self.total_content_length = 0
        self.response_times: dict[int, int] = {}

    def restore(self, state: EntryState) -> None:
        (
            _,
            _,
            self.start_time,
            self.num_requests,
            self.num_none_requests,
            self.num_failures,
            self.total_response_time,
            self.total_content_length,
            self.response_times,
        ) = state


class MirroredError(NamedTuple):
    """One ``StatsError``; ``error`` is its message as ``parse_error`` gives it."""

    method: str
    name: str
    error: str
    occurrences: int


class MirroredStats:
    """A ``RequestStats`` as ``IntervalTracker`` reads it: entries, total, errors."""

    __slots__ = ("entries", "errors", "total")

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], MirroredEntry] = {}
        self.total = MirroredEntry("Aggregated", "")
        self.errors: dict[str, MirroredError] = {}


class StatsMirror:
    """The export process's side: ``stats`` kept equal to the master's as last read.

    Holds only what ``IntervalTracker`` reads: per entry the counters, start time and
    response-time histogram; the total; each error's parsed message and occurrences.
    """

    def __init__(self) -> None:
        self.stats = MirroredStats()

    def apply(self, message: Message) -> list[tuple[tuple[str, str], MirroredEntry]]:
        """Bring the mirror up to ``message``; the entries it changed, as ``stats.entries``
        items, for ``IntervalTracker.add`` (which may keep their histograms: the mirror
        replaces a histogram, never updates it)."""
        changed = []
        if isinstance(message, Clear):
            self.stats = MirroredStats()
        elif isinstance(message, Entries):
            entries = self.stats.entries
            for state in message.states:
                key = state[0], state[1]
                entry = entries.get(key)
                if entry is None:
                    entry = entries[key] = MirroredEntry(*key)
                entry.restore(state)
                changed.append((key, entry))
        else:
            self.stats.total.restore(message.total)
            errors = self.stats.errors
            for error_key, method, name, text, occurrences in message.errors:
                errors[error_key] = MirroredError(method, name, text, occurrences)
        return changed
