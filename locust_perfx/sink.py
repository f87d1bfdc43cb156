"""The sink: a bounded queue of points and its writes to InfluxDB, with retry and backoff.

Which write API a server takes is asked once per connection: ``GET /ping`` and its
``X-Influxdb-Version`` header. InfluxDB 1.x (1.6 and 1.7 have no other) is written through
its own ``/write``; everything else (2.x, 3.x, VictoriaMetrics, which answers without that
header) through ``/api/v2/write``. Both speak the same line protocol and share the buffer,
the retries, the 413 splitting and the health counters.

Plain ``http.client``, one keep-alive connection: influxdb_client's SYNCHRONOUS write was
one POST of line protocol too, and it cost the master's process ~16 MB for good (the start-up
check) and the export process more (urllib3 alone is 3 MB). No gevent either: in the export
process each call blocks, bounded by its timeout; under Locust's monkey-patching the same
calls are cooperative.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import math
import re
import select
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol
from urllib.parse import urlencode, urlsplit

from locust_perfx.exceptions import ExportError
from locust_perfx.influx import InfluxConfig, line

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
"""Longest wait, in seconds, between two write attempts during an outage."""

BATCH_POINTS = 5_000
"""Points per HTTP request when the queue is long (after an outage)."""

BODY_PART_POINTS = 500
"""Points per encoded part of a request's body (``_Connection.post``)."""

CHECK_MEASUREMENT = "perfx_check"
"""``check()`` writes one point here: the only proof that the token may write to the bucket."""

V1_VERSION = re.compile(r"v?1\.")
"""An ``X-Influxdb-Version`` that takes the 1.x ``/write`` API ("1.6.7~rc0", "v1.7.0",
"1.8.10"). 1.8 also has a 2.x-compatible API, but ``/write`` is every 1.x's own."""

# The points are bad: retrying them cannot help (413: once a single point gets it).
_REJECTED_STATUSES = frozenset({400, 413, 422})


class _Refused(Exception):
    """InfluxDB answered a write with an error status; one shape for both write APIs."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        # "HTTP 500: Internal Server Error: retention policy not found: x": status, reason,
        # and the server's own words from the body, when it has any.
        super().__init__(": ".join(filter(None, (f"HTTP {status}", reason, message))))
        self.status = status


class _Unavailable(Exception):
    """``/ping`` answered 5xx or 429: the server (or a proxy before it) is up but not
    serving; retried like an outage, and the version asked again."""


class _Writer(Protocol):
    """One write API of one server: sends a body of points, explains a refused check."""

    described: str

    def write(self, points: Sequence[str], timeout: float) -> None:
        """Send ``points`` in one request, each connect, send and read within ``timeout``
        seconds; ``_Refused`` on an error status."""
        ...

    def refusal(self, error: _Refused) -> str:
        """The one-line reason, naming the fix, for a refused start-up check."""
        ...


class _Response(NamedTuple):
    status: int
    reason: str
    headers: http.client.HTTPMessage
    data: bytes


class _Connection:
    """One keep-alive HTTP(S) connection to the server. No retries of its own (the sink
    retries); each connect, send and read bounded by the request's timeout."""

    def __init__(self, config: InfluxConfig) -> None:
        url = urlsplit(config.url)
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "", url.port
        self._prefix = url.path.rstrip("/")
        self._open: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        timeout: float,
        body: Sequence[bytes] = (),
        headers: Mapping[str, str] | None = None,
    ) -> _Response:
        connection, self._open = self._open, None  # kept again only once a response is read
        if connection is None or _dropped(connection):
            if connection is not None:
                connection.close()
            factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = factory(self._host, self._port, timeout=timeout)
        elif connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request(
                method, self._prefix + path, body=body or None, headers=dict(headers or {})
            )
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._open = connection
        return _Response(response.status, response.reason, response.headers, data)

    def post(
        self, path: str, points: Sequence[str], timeout: float, headers: Mapping[str, str]
    ) -> None:
        """POST ``points``, one a line; ``_Refused`` on an error status.

        The body goes in encoded parts of ``BODY_PART_POINTS``: a whole body encoded from a
        whole joined text held two copies of it (2.4 MB at 10,000 names)."""
        body = [
            (("\n" if start else "") + "\n".join(points[start : start + BODY_PART_POINTS])).encode()
            for start in range(0, len(points), BODY_PART_POINTS)
        ]
        headers = {**headers, "Content-Length": str(sum(map(len, body)))}
        response = self.request("POST", path, timeout, body, headers)
        if response.status >= 300:
            raise _Refused(response.status, response.reason, _message(response.data))

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """The server closed the idle connection (readable means EOF here): a request on it
    would fail for nothing, as urllib3's pool checks too."""
    return connection.sock is not None and bool(select.select([connection.sock], [], [], 0)[0])


_LINE_PROTOCOL = {"Content-Type": "text/plain; charset=utf-8"}


class _V2Writer:
    """``/api/v2/write``: InfluxDB 2.x and 3.x, VictoriaMetrics; the token as ``Token``."""

    def __init__(self, connection: _Connection, config: InfluxConfig) -> None:
        self._connection = connection
        self._config = config
        query = urlencode({"org": config.org, "bucket": config.bucket, "precision": "ms"})
        self._path = f"/api/v2/write?{query}"
        self._headers = dict(_LINE_PROTOCOL)
        if config.token:
            self._headers["Authorization"] = f"Token {config.token}"
        self.described = (
            f"InfluxDB at {config.url}: 2.x write API, org {config.org!r}, bucket {config.bucket!r}"
        )

    def write(self, points: Sequence[str], timeout: float) -> None:
        self._connection.post(self._path, points, timeout, self._headers)

    def refusal(self, error: _Refused) -> str:
        url, org, bucket = self._config.url, self._config.org, self._config.bucket
        if error.status == 401:
            return f"InfluxDB at {url} rejected the token (HTTP 401); check --influxdb-token"
        if error.status == 403:
            return (
                f"InfluxDB at {url}: the token may not write to bucket {bucket!r} of org "
                f"{org!r} (HTTP 403); give the token write access to that bucket"
            )
        if error.status == 404:
            return (
                f"InfluxDB at {url}: org {org!r} or bucket {bucket!r} not found (HTTP 404); "
                "check --influxdb-org and --influxdb-bucket"
            )
        return (
            f"InfluxDB at {url} refused a test write to bucket {bucket!r} of org {org!r} "
            f"({error}); check --influxdb-url"
        )


class _V1Writer:
    """``/write`` of InfluxDB 1.x. ``--influxdb-bucket`` is ``database/retention_policy`` or
    ``database`` (its default policy); a ``user:password`` token is sent as basic auth, any
    other token not at all (a 1.x server without authentication ignores it)."""

    def __init__(self, connection: _Connection, config: InfluxConfig, version: str) -> None:
        self._connection = connection
        self._config = config
        self._version = version
        self._database, _, self._policy = config.bucket.partition("/")
        query = {"db": self._database, "precision": "ms"}
        if self._policy:
            query["rp"] = self._policy
        self._path = f"/write?{urlencode(query)}"
        user, colon, _ = config.token.partition(":")
        self._user = user if colon else ""
        self._headers = dict(_LINE_PROTOCOL)
        if self._user:
            self._headers["Authorization"] = "Basic " + base64.b64encode(
                config.token.encode()
            ).decode("ascii")
        self.described = f"InfluxDB {version} at {config.url}: 1.x write API, {self._target()}"

    def write(self, points: Sequence[str], timeout: float) -> None:
        self._connection.post(self._path, points, timeout, self._headers)

    def refusal(self, error: _Refused) -> str:
        server = f"InfluxDB {self._version} at {self._config.url}"
        if error.status == 401 and self._user:
            return (
                f"{server} rejected the user and password (HTTP 401); "
                "pass --influxdb-token USER:PASSWORD"
            )
        if error.status == 401:
            return f"{server} requires a user (HTTP 401); pass --influxdb-token USER:PASSWORD"
        if error.status == 403:
            return (
                f"{server}: user {self._user!r} may not write to {self._target()} (HTTP 403); "
                f'grant it: GRANT WRITE ON "{self._database}" TO "{self._user}"'
            )
        if error.status == 404:
            return (
                f"{server}: database {self._database!r} not found (HTTP 404); create it "
                f'(CREATE DATABASE "{self._database}") or check --influxdb-bucket'
            )
        return (
            f"{server} refused a test write to {self._target()} ({error}); "
            "check --influxdb-bucket (database/retention_policy)"
        )

    def _target(self) -> str:
        policy = f"retention policy {self._policy!r}" if self._policy else "its default policy"
        return f"database {self._database!r}, {policy}"


def _message(body: bytes | str | None) -> str:
    """The server's message in an error body: 2.x ``{"message": ...}``, 1.x ``{"error": ...}``."""
    try:
        found = json.loads(body or "null")
    except ValueError:  # a proxy's HTML page, say
        return ""
    if isinstance(found, dict):
        return str(found.get("message") or found.get("error") or "")
    return ""


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


_TRANSIENT = (http.client.HTTPException, OSError, _Unavailable)


class InfluxSink:
    """The bounded queue of points and its writes to InfluxDB, with retry and backoff.

    Synchronous: the export process calls ``flush()`` between two messages from the master,
    and each write returns within the configured timeout (no batching in the background,
    whose close can wait minutes when the database is down). An outage degrades the export
    (backoff, the oldest points dropped when full, counted in ``health()``); it never raises.

    >>> sink = InfluxSink(InfluxConfig("http://localhost:8086", bucket="b"), {"run_id": "r"})
    >>> sink.queue(["m,run_id=r f=1i 1"])
    >>> sink.health()["points_queued"]
    1
    """

    def __init__(self, config: InfluxConfig, tags: Mapping[str, str]) -> None:
        self._config = config
        self._tags = dict(tags)
        self._buffer = _PointBuffer(config.buffer_points)
        # Connected on the first write, by _connected(); closed by close().
        self._connection: _Connection | None = None
        self._writer: _Writer | None = None
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
        timeout = self._config.timeout
        try:
            writer = self._connected(timeout)
            writer.write([point], timeout)
        except _Refused as error:
            raise ExportError(writer.refusal(error)) from None
        except _TRANSIENT as error:
            raise ExportError(
                f"InfluxDB at {self._config.url} is unreachable ({_reason(error)}); "
                "check --influxdb-url and that the server is running"
            ) from None
        logger.info("perfx: writing live metrics to %s", writer.described)

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

    def flush(self, until: float = math.inf) -> bool:
        """Send the queue in batches; False (and a backoff) on the first transient failure.

        ``until`` (``time.monotonic()``) bounds every request: False, with the rest queued,
        once it has passed.
        """
        while len(self._buffer):
            timeout = min(self._config.timeout, until - time.monotonic())
            if timeout <= 0:
                return False
            seq, batch = self._buffer.head(BATCH_POINTS)
            retrying = self._backoff > 0
            try:
                written = self._deliver(seq - len(batch) + 1, batch, timeout)
            except _Refused as error:
                self._failed(str(error))
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

    def _deliver(self, first: int, points: list[str], timeout: float) -> int:
        """Write ``points`` (numbered from ``first`` in the buffer); how many were written.

        Each part leaves the buffer as soon as InfluxDB settles it (written or rejected), so
        a transient failure, which propagates, leaves exactly the unsettled rest queued, in
        order. HTTP 413 is a body limit (a proxy's, typically) that the points as a whole
        exceed: the halves are written in turn, down to single points.
        """
        try:
            self._connected(timeout).write(points, timeout)
        except _Refused as error:
            if error.status == 413 and len(points) > 1:
                half = len(points) // 2
                written = self._deliver(first, points[:half], timeout)
                return written + self._deliver(first + half, points[half:], timeout)
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

    def _reject(self, points: list[str], error: _Refused) -> None:
        self._points_rejected += len(points)
        self._last_error = str(error)
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
        until = time.monotonic() + deadline
        while not self.flush(until) and (left := until - time.monotonic()) > 0:
            time.sleep(min(self._config.interval, 0.5, left))
        if len(self._buffer):
            logger.warning(
                "InfluxDB export: %d points not sent before the %.0f s deadline (%s)",
                len(self._buffer),
                deadline,
                self._last_error,
            )
        self.close()

    def close(self) -> None:
        """Close the connection; a later write opens a new one (and asks the version again)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = self._writer = None

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

    def _connected(self, timeout: float) -> _Writer:
        if self._writer is None:
            self._writer = self._connect(timeout)
        return self._writer

    def _connect(self, timeout: float) -> _Writer:
        """The writer for the API the server's ``/ping`` says it has (see the module)."""
        connection = _Connection(self._config)
        try:
            ping = connection.request("GET", "/ping", timeout)
        except BaseException:
            connection.close()
            raise
        if ping.status >= 500 or ping.status == 429:
            connection.close()
            raise _Unavailable(f"HTTP {ping.status} {ping.reason} on /ping")
        self._connection = connection
        # A refused /ping (a proxy's auth, say) is not 1.x, whose /ping is open to all.
        version = ping.headers.get("X-Influxdb-Version", "") if ping.status < 300 else ""
        if V1_VERSION.match(version):
            return _V1Writer(connection, self._config, version)
        return _V2Writer(connection, self._config)


def _reason(error: BaseException) -> str:
    """The error's own words ("[Errno 111] Connection refused", "timed out"), or its kind."""
    return str(error) or type(error).__name__
