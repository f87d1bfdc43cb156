"""What goes to InfluxDB: its settings, the line protocol, and the layouts of points.

In the export process (``export_process``) each interval the master's stats become an
``Interval`` (``snapshot.IntervalTracker``), a layout (``perfx`` or ``jmeter``) turns it into
points, and ``sink.InfluxSink`` writes them. Pure, and light to import: every process that
parses the plugin's options loads this module, workers included.

>>> layout = PerfxLayout({"run_id": "run_1"})
>>> layout.event_point("start", "run run_1 started", 1_700_000_000_000)
'locust_events,kind=start,run_id=run_1 text="run run_1 started" 1700000000000'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Protocol

from locust_perfx.exceptions import ConfigError
from locust_perfx.snapshot import (
    DEFAULT_MAX_NAMES,
    PERCENTILES,
    EntryDelta,
    ErrorDelta,
    Interval,
    Sample,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Seconds for one HTTP call to InfluxDB (connect and read)."""

MAX_CACHED_ERRORS = 10_000
"""Distinct errors whose ``locust_errors`` line text is kept for the next intervals."""

DEFAULT_INTERVAL = 5.0
"""Seconds between two interval points and threshold checks; also the first retry delay
after a failed write."""
DEFAULT_BUFFER_POINTS = 150_000
"""Points queued while InfluxDB is unreachable: 10 minutes of a 1,000-name test at the
default interval is 120 intervals x ~1,001 points; the rest is room for errors and events."""

LAYOUTS = ("perfx", "jmeter")
DEFAULT_LAYOUT = "perfx"

JMETER_PERCENTILES = (0.9, 0.95, 0.99)
"""JMeter's default ``percentiles`` ("99;95;90"): the pct fields its dashboards chart; a
subset of the ``PERCENTILES`` each interval computes."""

_RESERVED_TAGS = frozenset(
    {"run_id", "endpoint", "environment", "name", "method", "error_id", "kind", "criterion"}
    | {"metric", "baseline_run_id"}
    | {"application", "transaction", "statut", "responseCode", "responseMessage", "title"}
    | {"tags"}
)


@dataclass(frozen=True)
class InfluxConfig:
    """Where and how to export; validated on creation (``ConfigError`` lists every problem).

    For InfluxDB 1.x (its own ``/write`` API, chosen by ``sink`` from the server's version):
    ``token="user:password"`` (or ``""``), ``org="-"`` (unused), and ``bucket`` as
    ``"database/retention_policy"`` or ``"database"`` (its default policy).
    """

    url: str
    token: str = ""
    org: str = ""
    bucket: str = ""
    interval: float = DEFAULT_INTERVAL
    layout: str = DEFAULT_LAYOUT
    tags: Mapping[str, str] = field(default_factory=dict)
    max_names: int = DEFAULT_MAX_NAMES
    buffer_points: int = DEFAULT_BUFFER_POINTS
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        problems = []
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"--influxdb-url: expected http://host:port, got {self.url!r}")
        if not self.bucket:
            problems.append(
                "--influxdb-url is set but --influxdb-bucket is not: "
                "set --influxdb-bucket or PERFX_INFLUXDB_BUCKET"
            )
        if self.layout not in LAYOUTS:
            problems.append(
                f"--influxdb-layout: expected one of {', '.join(LAYOUTS)}, got {self.layout!r}"
            )
        if self.max_names < 1:
            problems.append(f"--influxdb-max-names: expected 1 or more, got {self.max_names!r}")
        if self.buffer_points < 1:
            problems.append(
                f"--influxdb-buffer: expected 1 or more points, got {self.buffer_points!r}"
            )
        if not self.timeout > 0:
            problems.append(f"InfluxDB timeout: expected seconds > 0, got {self.timeout!r}")
        problems.extend(_tag_problems(self.tags))
        if problems:
            raise ConfigError(problems)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'***' if name == 'token' and value else value!r}"
            for name, value in self.__dict__.items()
        )
        return f"InfluxConfig({shown})"


def _tag_problems(tags: Mapping[str, str]) -> list[str]:
    problems = []
    for key, value in tags.items():
        if key in _RESERVED_TAGS or key.startswith("_") or key == "time":
            problems.append(
                f"--influxdb-tags: {key!r} is reserved by the exporter, pick another name"
            )
        elif not key or not value:
            problems.append(f"--influxdb-tags: {key!r}={value!r}: key and value must be non-empty")
    return problems


def parse_tags(text: str) -> dict[str, str]:
    """``"team=search,build=123"`` -> ``{"team": "search", "build": "123"}``.

    >>> parse_tags("team=search, build=123")
    {'team': 'search', 'build': '123'}
    """
    tags: dict[str, str] = {}
    problems = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            problems.append(f"--influxdb-tags: expected key=value, got {item!r}")
        elif key in tags:
            problems.append(f"--influxdb-tags: {key!r} given twice")
        else:
            tags[key] = value
    problems.extend(_tag_problems(tags))
    if problems:
        raise ConfigError(problems)
    return tags


# Line protocol, written here rather than with influxdb_client.Point: Point took ~55 ms per
# 1,000 points, a cost paid every interval. A test checks both encoders give the same line.
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})

FieldValue = int | float | str
ThresholdRow = tuple[str, float | None, float, bool]
"""A judged criterion: its text, what was observed (``None``: no request), limit, passed."""


class BaselineRow(NamedTuple):
    """One name and metric of the comparison with the baseline run (a ``summary.baseline``
    row, its name split into Locust's method and name); ``None`` where a side has no value."""

    method: str
    name: str
    metric: str
    baseline: float | None
    current: float | None
    delta: float | None
    delta_ratio: float | None
    p: float | None
    verdict: str


def line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ms: int
) -> str:
    """One point in line protocol: sorted tags (empty values dropped), millisecond time."""
    series = _series(measurement, tuple(sorted(tags.items())))
    field_text = ",".join(
        f"{_key(key)}={_field_value(value)}"
        for key, value in fields.items()
        if not (type(value) is float and not math.isfinite(value))
    )
    return f"{series} {field_text} {ms}"


def _series_text(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    tag_text = "".join(
        f",{key.translate(_ESCAPE_KEY)}={value.translate(_ESCAPE_KEY)}"
        for key, value in tags
        if value
    )
    return f"{measurement.translate(_ESCAPE_MEASUREMENT)}{tag_text}"


# The same series and field names come back every interval: escape each once. Bounded by
# max_names x methods x measurements, like the series themselves. PerfxLayout keeps its
# per-name series itself, by a smaller key (~480 B a name less: 4.8 MB at 10,000 names).
_series = lru_cache(maxsize=65_536)(_series_text)


@lru_cache(maxsize=1024)
def _key(key: str) -> str:
    return key.translate(_ESCAPE_KEY)


def _field_value(value: FieldValue) -> str:
    kind = type(value)
    if kind is int:
        return f"{value}i"
    if kind is float:
        return repr(value)
    if kind is str:
        return f'"{value.translate(_ESCAPE_STRING)}"'  # type: ignore[union-attr]
    raise TypeError(f"unsupported field value {value!r}")


class Layout(Protocol):
    """Turns intervals and events into line-protocol points for one schema."""

    def interval_points(self, interval: Interval, sample: Sample, ms: int) -> list[str]:
        """Points of one interval."""
        ...

    def event_point(self, kind: str, text: str, ms: int) -> str: ...

    def threshold_points(self, rows: Sequence[ThresholdRow], ms: int) -> list[str]:
        """Points of the thresholds as judged at ``ms``."""
        ...

    def baseline_points(
        self, baseline_run_id: str, rows: Sequence[BaselineRow], ms: int
    ) -> list[str]:
        """Points of the run's comparison with the baseline run, made at ``ms``."""
        ...


def _timing_fields(delta: EntryDelta, suffix: str = "_ms") -> dict[str, FieldValue]:
    """avg/min/max/percentiles in ms, only when the interval has timed requests."""
    if not delta.percentiles:
        return {}
    fields: dict[str, FieldValue] = {
        f"avg{suffix}": round(delta.avg_ms or 0.0, 3),
        f"min{suffix}": delta.min_ms or 0,
        f"max{suffix}": delta.max_ms or 0,
    }
    for percent, value in zip(PERCENTILES, delta.percentiles, strict=True):
        fields[f"p{round(percent * 100):d}{suffix}"] = value
    return fields


def _request_fields(delta: EntryDelta, seconds: float) -> str:
    """The fields of one ``locust_requests`` point, formatted directly.

    The same text as ``line()`` makes from the field dict (a test checks), without the dict
    and the per-value type dispatch: this runs for every name every interval.
    """
    requests, failures = delta.requests, delta.failures
    avg_bytes = round(delta.content_length / requests, 3) if requests else 0.0
    counts = (
        f"requests={requests}i,failures={failures}i,rps={round(requests / seconds, 3)!r},"
        f"failures_per_s={round(failures / seconds, 3)!r}"
    )
    if not delta.percentiles:
        return f"{counts},avg_bytes={float(avg_bytes)!r}"
    avg = float(round(delta.total_response_time / delta.timed_requests, 3))
    return (
        f"{counts},avg_ms={avg!r},min_ms={delta.min_ms}i,max_ms={delta.max_ms}i,"
        f"{_PERCENTILE_FIELDS.format(*delta.percentiles)},avg_bytes={float(avg_bytes)!r}"
    )


_PERCENTILE_FIELDS = ",".join(f"p{round(percent * 100):d}_ms={{}}i" for percent in PERCENTILES)


class PerfxLayout:
    """The documented default schema; every point carries ``run_id`` and the common tags.

    - ``locust_requests`` (+ ``name``, ``method``): requests, failures, rps, failures_per_s,
      avg_ms, min_ms, max_ms, p50_ms, p90_ms, p95_ms, p99_ms, avg_bytes;
    - ``locust_totals``: users, workers, requests, failures, rps, failure_ratio, timings, and
      how late the owner's event loop woke in the interval (``loop_*``, :mod:`~locust_perfx.loop`);
    - ``locust_errors`` (+ ``name``, ``method``, ``error_id``): occurrences, message;
    - ``locust_events`` (+ ``kind``): text, for Grafana annotations;
    - ``locust_thresholds`` (+ ``criterion``): limit, passed, observed;
    - ``locust_baseline`` (+ ``name``, ``method``, ``metric``, ``baseline_run_id``): baseline,
      current, delta, delta_pct, p, verdict, regression.
    """

    def __init__(self, tags: Mapping[str, str]) -> None:
        self._tags = dict(tags)
        # Escaped measurement and tags of each request name's series by method and name, made
        # once: bounded by max_names x methods, since names past max_names arrive folded. No
        # (name, method) tuple per name: 0.5 MB at 10,000 names.
        self._request_series: dict[str, dict[str, str]] = {}
        self._error_lines: dict[tuple[str, str, str], tuple[str, str]] = {}

    def _series_of(self, name: str, method: str) -> str:
        of_method = self._request_series.get(method)
        if of_method is None:
            of_method = self._request_series[method] = {}
        found = of_method.get(name)
        if found is None:
            tags = {**self._tags, "name": name, "method": method}
            found = of_method[name] = _series_text("locust_requests", tuple(sorted(tags.items())))
        return found

    def interval_points(self, interval: Interval, sample: Sample, ms: int) -> list[str]:
        seconds = interval.duration or math.inf
        points = []
        series_of = self._series_of
        for delta in interval.entries:
            series = series_of(delta.name, delta.method)
            points.append(f"{series} {_request_fields(delta, seconds)} {ms}")
        total = interval.total
        totals: dict[str, FieldValue] = {
            "users": sample.users,
            "workers": sample.workers,
            "requests": total.requests,
            "failures": total.failures,
            "rps": round(total.requests / seconds, 3),
            "failure_ratio": round(total.failures / total.requests, 4) if total.requests else 0.0,
            **_timing_fields(total),
            "loop_lateness_p99_ms": float(sample.loop_p99_ms),
            "loop_lateness_max_ms": float(sample.loop_max_ms),
            "loop_stalled_ms": float(sample.loop_stalled_ms),
        }
        points.append(line("locust_totals", self._tags, totals, ms))
        for error in interval.errors:
            head, tail = self._error_line_of(error)
            points.append(f"{head}{error.occurrences}{tail}{ms}")
        return points

    def _error_line_of(self, error: ErrorDelta) -> tuple[str, str]:
        """A ``locust_errors`` line around its count and time, made once per error: the
        same text as ``line()`` makes (a test checks)."""
        key = (error.method, error.name, error.message)
        found = self._error_lines.get(key)
        if found is None:
            if len(self._error_lines) >= MAX_CACHED_ERRORS:
                self._error_lines.clear()
            tags = {
                **self._tags,
                "name": error.name,
                "method": error.method,
                "error_id": error.error_id,
            }
            series = _series_text("locust_errors", tuple(sorted(tags.items())))
            message = _field_value(error.message)
            found = self._error_lines[key] = (f"{series} occurrences=", f"i,message={message} ")
        return found

    def event_point(self, kind: str, text: str, ms: int) -> str:
        return line("locust_events", {**self._tags, "kind": kind}, {"text": text}, ms)

    def threshold_points(self, rows: Sequence[ThresholdRow], ms: int) -> list[str]:
        """``locust_thresholds``, one point per criterion: ``passed`` is 1 or 0, ``observed``
        is absent while its scope has no request."""
        points = []
        for criterion, observed, limit, passed in rows:
            fields: dict[str, FieldValue] = {"limit": float(limit), "passed": int(passed)}
            if observed is not None:
                fields["observed"] = float(observed)
            points.append(
                line("locust_thresholds", {**self._tags, "criterion": criterion}, fields, ms)
            )
        return points

    def baseline_points(
        self, baseline_run_id: str, rows: Sequence[BaselineRow], ms: int
    ) -> list[str]:
        """``locust_baseline``, one point per name and metric, once the run ended: a value is
        absent where the table has none (a ``new`` name's baseline, a ``gone`` one's current,
        an untested ``p``, ``delta_pct`` from a baseline of 0); ``regression`` is 1 or 0."""
        tags = {**self._tags, "baseline_run_id": baseline_run_id}
        points = []
        for row in rows:
            numbers = {
                "baseline": row.baseline,
                "current": row.current,
                "delta": row.delta,
                "delta_pct": None if row.delta_ratio is None else row.delta_ratio * 100,
                "p": row.p,
            }
            fields: dict[str, FieldValue] = {
                key: float(value) for key, value in numbers.items() if value is not None
            }
            fields.update(verdict=row.verdict, regression=int(row.verdict == "regression"))
            series = {**tags, "name": row.name, "method": row.method, "metric": row.metric}
            points.append(line("locust_baseline", series, fields, ms))
        return points


class JMeterLayout:
    """JMeter's own InfluxDB backend listener schema, so JMeter Grafana dashboards work.

    Source: apache/jmeter ``src/components/src/main/java/org/apache/jmeter/visualizers/
    backend/influxdb/InfluxdbBackendListenerClient.java`` (measurement ``jmeter``, tags
    ``application``/``transaction``/``statut``, fields ``count``, ``countError``, ``avg``,
    ``min``, ``max``, ``hit``, ``rb``, ``pct<percentile as Java float>`` such as ``pct95.0``;
    ``transaction=internal`` rows with ``minAT``/``maxAT``/``meanAT``; ``events`` with a
    ``text`` field for annotations). ``application`` is the run id. Locust keeps one histogram
    for ok and failed requests, so only ``statut=all`` rows carry timings; ``ok``/``ko`` rows
    carry ``count`` and ``hit``. Error rows use the message hash as ``responseCode``.
    """

    def __init__(self, tags: Mapping[str, str], run_id: str) -> None:
        self._tags = {**tags, "application": run_id}

    def interval_points(self, interval: Interval, sample: Sample, ms: int) -> list[str]:
        points = []
        for delta in interval.entries:
            transaction = {**self._tags, "transaction": delta.name, "method": delta.method}
            hit = delta.requests
            rows = (
                ("all", {"count": delta.requests, **self._timings(delta)}),
                ("ok", {"count": delta.requests - delta.failures}),
                ("ko", {"count": delta.failures}),
            )
            for statut, fields in rows:
                if fields["count"]:
                    fields.update(hit=hit, rb=delta.content_length)
                    points.append(line("jmeter", {**transaction, "statut": statut}, fields, ms))
        total = interval.total
        cumulated: dict[str, FieldValue] = {
            "count": total.requests,
            "countError": total.failures,
            **self._timings(total),
            "hit": total.requests,
            "rb": total.content_length,
        }
        tags = {**self._tags, "transaction": "all", "statut": "all"}
        points.append(line("jmeter", tags, cumulated, ms))
        users = {"minAT": sample.users, "maxAT": sample.users, "meanAT": sample.users}
        points.append(line("jmeter", {**self._tags, "transaction": "internal"}, users, ms))
        for error in interval.errors:
            tags = {
                **self._tags,
                "transaction": error.name,
                "method": error.method,
                "responseCode": error.error_id,
                "responseMessage": error.message[:100],
            }
            points.append(line("jmeter", tags, {"count": error.occurrences}, ms))
        return points

    @staticmethod
    def _timings(delta: EntryDelta) -> dict[str, FieldValue]:
        if not delta.percentiles:
            return {}
        fields: dict[str, FieldValue] = {
            "avg": round(delta.avg_ms or 0.0, 3),
            "min": float(delta.min_ms or 0),
            "max": float(delta.max_ms or 0),
        }
        percentiles = dict(zip(PERCENTILES, delta.percentiles, strict=True))
        for percent in JMETER_PERCENTILES:
            fields[f"pct{percent * 100:.1f}"] = float(percentiles[percent])
        return fields

    def event_point(self, kind: str, text: str, ms: int) -> str:
        tags = {**self._tags, "title": "Locust", "tags": kind}
        return line("events", tags, {"text": text}, ms)

    def threshold_points(self, rows: Sequence[ThresholdRow], ms: int) -> list[str]:
        """JMeter's schema has no place for criteria: breaches reach it as events only."""
        return []

    def baseline_points(
        self, baseline_run_id: str, rows: Sequence[BaselineRow], ms: int
    ) -> list[str]:
        """Nor for a comparison with a baseline: it stays in the run summary."""
        return []


class Stamper:
    """Strictly increasing millisecond timestamps: no two points of a series share one."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self, seconds: float) -> int:
        self._last = max(int(seconds * 1000), self._last + 1)
        return self._last


def run_tags(config: InfluxConfig, run_id: str, endpoint: str, environment: str) -> dict[str, str]:
    """The tags on every point of a run: the user's, then the run's own."""
    return {**config.tags, "run_id": run_id, "endpoint": endpoint, "environment": environment}


def make_layout(config: InfluxConfig, tags: Mapping[str, str]) -> Layout:
    """The layout ``config`` names, with ``tags`` (``run_tags``) on every point."""
    if config.layout == "jmeter":
        return JMeterLayout(tags, tags["run_id"])
    return PerfxLayout(tags)
