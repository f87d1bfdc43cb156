"""The sink: a bounded queue of points and its writes to InfluxDB, with retry and backoff.

The only module that imports ``influxdb_client``: only the export process and the master's
start-up check load it, never a worker (see ``plugin.on_init``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import gevent
import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from locust_perfx.exceptions import ExportError
from locust_perfx.influx import InfluxConfig, line

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
"""Longest wait, in seconds, between two write attempts during an outage."""

BATCH_POINTS = 5_000
"""Points per HTTP request when the queue is long (after an outage)."""

CHECK_MEASUREMENT = "perfx_check"
"""``check()`` writes one point here: the only proof that the token may write to the bucket."""

# The points are bad: retrying them cannot help (413: once a single point gets it).
_REJECTED_STATUSES = frozenset({400, 413, 422})


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
                written = self._deliver(seq - len(batch) + 1, batch)
            except ApiException as error:
                self._failed(f"HTTP {error.status}: {error.reason}")
                return False
            except _TRANSIENT as error:
                self._failed(_reason(error))
                return False
            if not written:
                continue  # all rejected: no write succeeded, so no recovery to count
            self._writes_retried += retrying
            if retrying:
                logger.info("InfluxDB export recovered; %d points queued", len(self._buffer))
            self._backoff = 0.0
        return True

    def _deliver(self, first: int, points: list[str]) -> int:
        """Write ``points`` (numbered from ``first`` in the buffer); how many were written.

        Each part leaves the buffer as soon as InfluxDB settles it (written or rejected), so
        a transient failure, which propagates, leaves exactly the unsettled rest queued, in
        order. HTTP 413 is a body limit (a proxy's, typically) that the points as a whole
        exceed: the halves are written in turn, down to single points.
        """
        try:
            self._write(points)
        except ApiException as error:
            if error.status == 413 and len(points) > 1:
                half = len(points) // 2
                written = self._deliver(first, points[:half])
                return written + self._deliver(first + half, points[half:])
            if error.status not in _REJECTED_STATUSES:
                raise
            self._reject(points, error)
            written = 0
        else:
            self._points_written += len(points)
            self._last_success = time.time()
            written = len(points)
        self._buffer.discard_through(first + len(points) - 1)
        return written

    def _reject(self, points: list[str], error: ApiException) -> None:
        self._points_rejected += len(points)
        self._last_error = f"HTTP {error.status}: {error.reason}"
        if error.status == 413:
            self._last_error += (
                f": a single point of {len(points[0].encode())} bytes is over the request body "
                f"limit of InfluxDB at {self._config.url} or of a proxy in front of it; raise "
                "that limit (nginx: client_max_body_size)"
            )
        logger.error("InfluxDB rejected %d points: %s", len(points), self._last_error)

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
