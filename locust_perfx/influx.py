"""The InfluxDB side of the export: line protocol, layouts, and a bounded, retrying sink.

The only module that imports ``influxdb_client``. It runs in the export process
(``export_process``): each interval the master hands over what changed, the process turns it
into an ``Interval`` (``snapshot.IntervalTracker``), a layout (``perfx`` or ``jmeter``) turns
that into points, and ``InfluxSink`` queues them in a bounded buffer and sends the buffer
with one SYNCHRONOUS write per interval.

>>> layout = PerfxLayout({"run_id": "run_1"})
>>> layout.event_point("start", "run run_1 started", 1_700_000_000_000)
'locust_events,kind=start,run_id=run_1 text="run run_1 started" 1700000000000'
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import gevent
import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from locust_perfx.exceptions import ConfigError, ExportError
from locust_perfx.snapshot import (
    DEFAULT_MAX_NAMES,
    PERCENTILES,
    EntryDelta,
    ErrorDelta,
    Interval,
    Sample,
)

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
"""Seconds between two interval points; also the first retry delay after a failed write."""

DEFAULT_TIMEOUT = 5.0
"""Seconds for one HTTP call to InfluxDB (connect and read)."""

DEFAULT_BUFFER_POINTS = 150_000
"""Points queued while InfluxDB is unreachable: 10 minutes of a 1,000-name test at the
default interval is 120 intervals x ~1,001 points; the rest is room for errors and events."""

MAX_BACKOFF = 60.0
"""Longest wait, in seconds, between two write attempts during an outage."""

MAX_CACHED_ERRORS = 10_000
"""Distinct errors whose ``locust_errors`` line text is kept for the next intervals."""

BATCH_POINTS = 5_000
"""Points per HTTP request when the queue is long (after an outage)."""


LAYOUTS = ("perfx", "jmeter")

JMETER_PERCENTILES = (0.9, 0.95, 0.99)
"""JMeter's default ``percentiles`` ("99;95;90"): the pct fields its dashboards chart; a
subset of the ``PERCENTILES`` each interval computes."""

CHECK_MEASUREMENT = "perfx_check"
"""``check()`` writes one point here: the only proof that the token may write to the bucket."""

_RESERVED_TAGS = frozenset(
    {"run_id", "endpoint", "environment", "name", "method", "error_id", "kind"}
    | {"application", "transaction", "statut", "responseCode", "responseMessage", "title"}
    | {"tags"}
)
_EVENT_KINDS = ("start", "complete", "fail")
_REJECTED_STATUSES = frozenset({400, 413, 422})  # the points are bad: retrying cannot help


@dataclass(frozen=True)
class InfluxConfig:
    """Where and how to export; validated on creation (``ConfigError`` lists every problem).

    For InfluxDB 1.8+ through its v2-compatible API: ``token="user:password"`` (or ``""``),
    ``org="-"``, ``bucket="database/retention_policy"``.
    """

    url: str
    token: str = ""
    org: str = ""
    bucket: str = ""
    interval: float = DEFAULT_INTERVAL
    layout: str = "perfx"
    tags: Mapping[str, str] = field(default_factory=dict)
    max_names: int = DEFAULT_MAX_NAMES
    buffer_points: int = DEFAULT_BUFFER_POINTS
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        problems = []
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"InfluxDB URL: expected http://host:port, got {self.url!r}")
        if not self.bucket:
            problems.append("InfluxDB bucket: required with an InfluxDB URL")
        if not self.interval > 0:
            problems.append(f"InfluxDB interval: expected seconds > 0, got {self.interval!r}")
        if self.layout not in LAYOUTS:
            problems.append(f"InfluxDB layout: expected one of {LAYOUTS}, got {self.layout!r}")
        if self.max_names < 1:
            problems.append(f"InfluxDB max names: expected >= 1, got {self.max_names!r}")
        if self.buffer_points < 1:
            problems.append(f"InfluxDB buffer: expected >= 1 point, got {self.buffer_points!r}")
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
            problems.append(f"InfluxDB tag {key!r}: reserved by the exporter, pick another name")
        elif not key or not value:
            problems.append(f"InfluxDB tag {key!r}={value!r}: key and value must be non-empty")
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
            problems.append(f"InfluxDB tags: expected key=value, got {item!r}")
        elif key in tags:
            problems.append(f"InfluxDB tags: {key!r} given twice")
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


# The same series and field names come back every interval: escape each once. Bounded by
# max_names x methods x measurements, like the series themselves.
@lru_cache(maxsize=65_536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    tag_text = "".join(
        f",{key.translate(_ESCAPE_KEY)}={value.translate(_ESCAPE_KEY)}"
        for key, value in tags
        if value
    )
    return f"{measurement.translate(_ESCAPE_MEASUREMENT)}{tag_text}"


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
    - ``locust_totals``: users, workers, requests, failures, rps, failure_ratio and timings;
    - ``locust_errors`` (+ ``name``, ``method``, ``error_id``): occurrences, message;
    - ``locust_events`` (+ ``kind``): text, for Grafana annotations.
    """

    def __init__(self, tags: Mapping[str, str]) -> None:
        self._tags = dict(tags)
        # Escaped measurement and tags of each request name's series, made once: bounded by
        # max_names x methods, since names past max_names arrive folded.
        self._request_series: dict[tuple[str, str], str] = {}
        self._error_lines: dict[tuple[str, str, str], tuple[str, str]] = {}

    def _series_of(self, name: str, method: str) -> str:
        key = (name, method)
        found = self._request_series.get(key)
        if found is None:
            tags = {**self._tags, "name": name, "method": method}
            found = _series("locust_requests", tuple(sorted(tags.items())))
            self._request_series[key] = found
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
            series = _series("locust_errors", tuple(sorted(tags.items())))
            message = _field_value(error.message)
            found = self._error_lines[key] = (f"{series} occurrences=", f"i,message={message} ")
        return found

    def event_point(self, kind: str, text: str, ms: int) -> str:
        return line("locust_events", {**self._tags, "kind": kind}, {"text": text}, ms)


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


class _PointBuffer:
    """A bounded FIFO of points that drops the oldest when full.

    Points are numbered in order (the head's number is ``next - len``), so a write in flight
    (the greenlet yields during I/O) can be acknowledged even if overflow dropped some of its
    points meanwhile. No per-point tuple: a full default buffer is 150,000 plain strings.
    """

    def __init__(self, capacity: int) -> None:
        self._points: deque[str] = deque()
        self._capacity = capacity
        self._next_seq = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._points)

    def extend(self, points: Sequence[str]) -> int:
        """Queue ``points``; returns how many old points were dropped to make room."""
        self._points.extend(points)
        self._next_seq += len(points)
        overflow = max(len(self._points) - self._capacity, 0)
        for _ in range(overflow):
            self._points.popleft()
        self.dropped += overflow
        return overflow

    def head(self, limit: int) -> tuple[int, list[str]]:
        """The oldest ``limit`` points and the sequence number of the last one."""
        batch = list(itertools.islice(self._points, limit))
        return self._next_seq - len(self._points) + len(batch) - 1, batch

    def discard_through(self, seq: int) -> None:
        for _ in range(min(seq - (self._next_seq - len(self._points)) + 1, len(self._points))):
            self._points.popleft()


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


# Not gevent.Timeout: drain() bounds its flush with one, and catching it would defeat that.
_TRANSIENT = (urllib3.exceptions.HTTPError, OSError)


class InfluxSink:
    """The bounded queue of points and its writes to InfluxDB, with retry and backoff.

    Synchronous, one SYNCHRONOUS write per ``flush()``: the export process calls it between
    two messages from the master. The batching ``WriteApi`` is never used: its close waits up
    to minutes when the database is down. An outage degrades the export (backoff, the oldest
    points dropped when full, counted in ``health()``); it never raises.

    >>> sink = InfluxSink(InfluxConfig("http://localhost:8086", bucket="b"), {"run_id": "r"})
    >>> sink.queue(["m,run_id=r f=1i 1"])
    >>> sink.health()["points_queued"]
    1
    """

    def __init__(self, config: InfluxConfig, tags: Mapping[str, str]) -> None:
        self._config = config
        self._tags = dict(tags)
        self._buffer = _PointBuffer(config.buffer_points)
        # influxdb_client is only partly typed: its client and write API stay Any here.
        self._client: Any = None
        self._write_api: Any = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._warned_full = False
        self._points_written = 0
        self._points_rejected = 0
        self._writes_failed = 0
        self._writes_retried = 0
        self._last_error = ""
        self._last_success: float | None = None

    def check(self) -> None:
        """Write one point to prove URL, token, org and bucket; ``ExportError`` if refused."""
        point = line(CHECK_MEASUREMENT, self._tags, {"ok": 1}, int(time.time() * 1000))
        try:
            self._write([point])
        except ApiException as error:
            raise ExportError(self._refusal(error.status, error.reason)) from None
        except _TRANSIENT as error:
            raise ExportError(
                f"InfluxDB at {self._config.url} is unreachable ({_reason(error)}); "
                "check --influxdb-url and that the server is running"
            ) from None

    def queue(self, points: Sequence[str]) -> None:
        """Add ``points``; when full, drop the oldest (warned once, counted)."""
        if self._buffer.extend(points) and not self._warned_full:
            self._warned_full = True
            logger.warning(
                "InfluxDB export buffer full (%d points): dropping the oldest points "
                "until InfluxDB at %s accepts writes again",
                self._config.buffer_points,
                self._config.url,
            )

    def due(self) -> bool:
        """False while backing off after a failed write."""
        return time.monotonic() >= self._retry_at

    def flush(self) -> bool:
        """Send the queue in batches; False (and a backoff) on the first transient failure."""
        while len(self._buffer):
            seq, batch = self._buffer.head(BATCH_POINTS)
            retrying = self._backoff > 0
            try:
                self._write(batch)
            except ApiException as error:
                if error.status in _REJECTED_STATUSES:
                    self._buffer.discard_through(seq)
                    self._points_rejected += len(batch)
                    self._last_error = f"HTTP {error.status}: {error.reason}"
                    logger.error("InfluxDB rejected %d points: %s", len(batch), self._last_error)
                    continue
                self._failed(f"HTTP {error.status}: {error.reason}")
                return False
            except _TRANSIENT as error:
                self._failed(_reason(error))
                return False
            self._buffer.discard_through(seq)
            self._points_written += len(batch)
            self._writes_retried += retrying
            self._last_success = time.time()
            if retrying:
                logger.info("InfluxDB export recovered; %d points queued", len(self._buffer))
            self._backoff = 0.0
        return True

    def drain(self, deadline: float) -> None:
        """Send what is queued within ``deadline`` seconds, even if InfluxDB hangs; then
        close the connection. Points left unsent are logged and stay in ``health()``."""
        with gevent.Timeout(deadline, False):
            while len(self._buffer) and not self.flush():
                gevent.sleep(min(self._config.interval, 0.5))
        if len(self._buffer):
            logger.warning(
                "InfluxDB export: %d points not sent before the %.0f s deadline (%s)",
                len(self._buffer),
                deadline,
                self._last_error,
            )
        self.close()

    def close(self) -> None:
        """Close the connection; a later write opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = self._write_api = None

    def health(self) -> dict[str, object]:
        """Export counters as plain values, for logs, the web UI and the run summary."""
        return {
            "points_written": self._points_written,
            "points_queued": len(self._buffer),
            "points_dropped": self._buffer.dropped,
            "points_rejected": self._points_rejected,
            "writes_failed": self._writes_failed,
            "writes_retried": self._writes_retried,
            "last_error": self._last_error,
            "last_success": self._last_success,
        }

    def _failed(self, reason: str) -> None:
        if not self._backoff:
            logger.warning("InfluxDB write failed (%s); retrying with backoff", reason)
        self._writes_failed += 1
        self._last_error = reason
        self._backoff = min(max(self._backoff * 2, self._config.interval), MAX_BACKOFF)
        self._retry_at = time.monotonic() + self._backoff

    def _write(self, points: list[str]) -> None:
        if self._client is None:
            self._client = InfluxDBClient(
                url=self._config.url,
                token=self._config.token,
                org=self._config.org,
                timeout=int(self._config.timeout * 1000),
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._write_api.write(
            bucket=self._config.bucket,
            org=self._config.org,
            record="\n".join(points),
            write_precision=WritePrecision.MS,
        )

    def _refusal(self, status: int | None, reason: str | None) -> str:
        url, org, bucket = self._config.url, self._config.org, self._config.bucket
        if status == 401:
            return f"InfluxDB at {url} rejected the token (HTTP 401); check --influxdb-token"
        if status == 403:
            return (
                f"InfluxDB at {url}: the token may not write to bucket {bucket!r} of org "
                f"{org!r} (HTTP 403); give the token write access to that bucket"
            )
        if status == 404:
            return (
                f"InfluxDB at {url}: org {org!r} or bucket {bucket!r} not found (HTTP 404); "
                "check --influxdb-org and --influxdb-bucket"
            )
        return (
            f"InfluxDB at {url} refused a test write to bucket {bucket!r} of org {org!r} "
            f"(HTTP {status} {reason}); check --influxdb-url"
        )


def _reason(error: BaseException) -> str:
    """urllib3's message without its connection-pool prefix, e.g. "Read timed out."."""
    return str(error).split(": ", 1)[-1]
