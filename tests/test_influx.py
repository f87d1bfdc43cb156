"""The InfluxDB sink against a real VictoriaMetrics, run under gevent like inside Locust."""

# Locust monkey-patches the process at import: it must come before anything else.
import locust  # noqa: F401  # isort: skip

import errno
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import psutil
import pytest
from gevent.pywsgi import WSGIServer
from influxdb_client import Point, WritePrecision
from locust.env import Environment
from locust.event import Events
from locust.stats import RequestStats, setup_distributed_stats_event_listeners

from locust_perfx.baseline import Baseline, exported_rows
from locust_perfx.compare import Limit
from locust_perfx.exceptions import ConfigError, ExportError
from locust_perfx.exporter import MetricsExporter
from locust_perfx.handoff import ChangeReader, Close, Setup
from locust_perfx.influx import (
    DEFAULT_BUFFER_POINTS,
    InfluxConfig,
    JMeterLayout,
    PerfxLayout,
    line,
    parse_tags,
)
from locust_perfx.sink import CHECK_MEASUREMENT, InfluxSink
from locust_perfx.snapshot import PERCENTILES, IntervalTracker, Sample
from tests.fixtures.server import free_port
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until
from tests.test_compare import entry as compared
from tests.test_compare import summary as compared_runs

INTERVAL = 0.05  # seconds: short so a test sees many intervals quickly

# Names JMeter's own InfluxDB backend listener writes and JMeter Grafana dashboards query.
# Source: apache/jmeter, src/components/src/main/java/org/apache/jmeter/visualizers/backend/
# influxdb/InfluxdbBackendListenerClient.java (constants TAG_*, METRIC_*, EVENTS_FOR_ANNOTATION;
# percentiles "99;95;90" written as "pct" + Java Float.toString), and the Flux query of the
# yndingo/Docker README (filter r["_field"] == "pct95.0", r["application"], r["statut"] == "ok").
JMETER_MEASUREMENTS = {"jmeter", "events"}
JMETER_TAGS = {"application", "transaction", "statut", "responseCode", "responseMessage", "title"}
JMETER_TAGS |= {"tags"}
JMETER_FIELDS = {"count", "countError", "avg", "min", "max", "hit", "rb", "sb", "text"}
JMETER_FIELDS |= {"pct90.0", "pct95.0", "pct99.0", "minAT", "maxAT", "meanAT"}
JMETER_FIELDS |= {"startedT", "endedT"}
OUR_TAGS = {"run_id", "endpoint", "environment", "method", "team"}


@pytest.fixture
def environment() -> Environment:
    env = Environment(events=Events())
    env.create_local_runner()
    return env


def config(url: str, **overrides: Any) -> InfluxConfig:
    settings: dict[str, Any] = {
        "token": "token",
        "org": "perf",
        "bucket": "locust",
        "interval": INTERVAL,
        "timeout": 1.0,
        **overrides,
    }
    return InfluxConfig(url, **settings)


def run_intervals(exporter: MetricsExporter, count: int, each: Callable[[int], None]) -> None:
    """Call ``each`` then let one exporter interval pass, ``count`` times."""
    for i in range(count):
        each(i)
        gevent.sleep(INTERVAL)  # one exporter interval, so requests spread over intervals


Rows = list[dict[str, Any]]


def series(server: VictoriaMetrics, run_id: str, ready: Callable[[Rows], bool]) -> Rows:
    """The run's series once ``ready`` holds: VictoriaMetrics ingests a write asynchronously.

    ``ready`` checks something from the exporter's last write; one write is ingested as a
    whole, so the earlier ones are visible by then too.
    """
    rows: Rows = wait_until(
        lambda: found if ready(found := server.export(f'{{run_id="{run_id}"}}')) else None,
        10,
        INTERVAL,
        f"the points of {run_id} are searchable",
    )
    return rows


def summed(rows: list[dict[str, Any]], metric: str, **labels: str) -> float:
    return sum(
        sum(row["values"])
        for row in rows
        if row["metric"]["__name__"] == metric
        and all(row["metric"].get(k) == v for k, v in labels.items())
    )


def test_line_protocol_equals_influxdb_clients_point() -> None:
    tags = {"name": "/a b,c=d", "method": "GET", "empty": ""}
    # Point sorts fields by key; line() keeps the given order, so give them sorted.
    fields: dict[str, int | float | str] = {"avg": 1.5, "count": 3, "message": 'say "hi" \\ ok'}
    point = Point("locust requests").time(1_700_000_000_123, WritePrecision.MS)
    for key, value in tags.items():
        point = point.tag(key, value)
    for key, value in fields.items():
        point = point.field(key, value)

    assert line("locust requests", tags, fields, 1_700_000_000_123) == point.to_line_protocol()


def test_parse_tags_reads_key_value_pairs() -> None:
    assert parse_tags(" team=search, build=123 ") == {"team": "search", "build": "123"}
    assert parse_tags("") == {}


def test_parse_tags_names_every_bad_item() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tags("team,=x,run_id=1,a=1,a=2")

    assert caught.value.problems == [
        "--influxdb-tags: expected key=value, got 'team'",
        "--influxdb-tags: expected key=value, got '=x'",
        "--influxdb-tags: 'a' given twice",
        "--influxdb-tags: 'run_id' is reserved by the exporter, pick another name",
    ]


def test_config_lists_every_problem_and_never_shows_the_token() -> None:
    with pytest.raises(ConfigError) as caught:
        InfluxConfig("localhost:8086", layout="csv")
    assert len(caught.value.problems) == 3  # url, bucket, layout (the interval: registry.py)

    shown = repr(InfluxConfig("http://db:8086", token="s3cret", bucket="b"))
    assert "s3cret" not in shown and "token='***'" in shown
    assert InfluxConfig("http://db:8086", bucket="b").buffer_points == DEFAULT_BUFFER_POINTS


def test_interval_points_arrive_with_tags_fields_and_exact_counts(
    victoria_metrics: VictoriaMetrics, environment: Environment
) -> None:
    exporter = MetricsExporter(
        config(victoria_metrics.url, tags={"team": "search"}),
        run_id="run-1",
        endpoint="search-api",
        environment="staging",
    )
    exporter.check()
    exporter.start(environment)
    exporter.event("start", "run-1 started")
    stats = environment.stats

    def requests(i: int) -> None:
        for response_time in range(10, 10 + 10 * (i + 1), 10):
            stats.log_request("GET", "/search", response_time, 100)
        stats.log_request("POST", "/order", 250, 10)
        stats.log_error("POST", "/order", "HTTP 500" if i % 2 else "HTTP 503")

    run_intervals(exporter, 6, requests)
    stats.log_request("GET", "/search", 40, 100)  # after the last tick: only close() sees it
    exporter.event("complete", "run-1 done")
    exporter.close()

    rows = series(
        victoria_metrics,
        "run-1",
        lambda rows: summed(rows, "locust_totals_requests") == stats.total.num_requests,
    )
    search = {"name": "/search", "method": "GET"}
    final = stats.get("/search", "GET").num_requests
    assert summed(rows, "locust_requests_requests", **search) == final
    assert summed(rows, "locust_requests_failures", name="/order") == 6
    assert summed(rows, "locust_totals_requests") == stats.total.num_requests
    assert summed(rows, "locust_errors_occurrences") == 6
    error_ids = {r["metric"].get("error_id") for r in rows} - {None}
    assert len(error_ids) == 2  # two messages of one request stay two series
    names = {row["metric"]["__name__"] for row in rows}
    assert {
        f"locust_requests_{f}"
        for f in ("rps", "failures_per_s", "avg_ms", "min_ms", "max_ms", "p50_ms", "p90_ms")
    } | {"locust_requests_p95_ms", "locust_requests_p99_ms", "locust_requests_avg_bytes"} <= names
    assert {"locust_totals_users", "locust_totals_workers", "locust_totals_failure_ratio"} <= names
    assert {"locust_events_text", f"{CHECK_MEASUREMENT}_ok"} <= names
    labels = next(r["metric"] for r in rows if r["metric"]["__name__"] == "locust_requests_p99_ms")
    assert set(labels) == {
        "__name__",
        "run_id",
        "endpoint",
        "environment",
        "team",
        "name",
        "method",
    }
    assert (labels["run_id"], labels["endpoint"], labels["environment"], labels["team"]) == (
        "run-1",
        "search-api",
        "staging",
        "search",
    )
    events = [r for r in rows if r["metric"]["__name__"] == "locust_events_text"]
    assert sorted(r["metric"]["kind"] for r in events) == ["complete", "start"]
    health = exporter.health()
    assert json.loads(json.dumps(health)) == health
    assert health["points_queued"] == 0 and health["points_dropped"] == 0


def test_no_two_points_of_a_series_share_a_timestamp(
    victoria_metrics: VictoriaMetrics, environment: Environment
) -> None:
    exporter = MetricsExporter(config(victoria_metrics.url), run_id="run-ts")
    exporter.start(environment)
    run_intervals(exporter, 4, lambda i: environment.stats.log_request("GET", "/", 5, 0))
    exporter.event("start", "a")
    exporter.event("start", "b")  # same kind right after: still two annotations
    exporter.close()

    rows = series(
        victoria_metrics, "run-ts", lambda rows: summed_count(rows, "locust_events_text") == 2
    )
    for row in rows:
        assert len(row["timestamps"]) == len(set(row["timestamps"])), row["metric"]


def points(rows: Rows) -> int:
    return sum(
        len(row["values"])
        for row in rows
        if row["metric"]["__name__"] in ("locust_requests_requests", "locust_totals_requests")
    )


def summed_count(rows: list[dict[str, Any]], metric: str) -> int:
    return sum(len(row["values"]) for row in rows if row["metric"]["__name__"] == metric)


def test_jmeter_layout_uses_the_names_jmeter_dashboards_query(
    victoria_metrics: VictoriaMetrics, environment: Environment
) -> None:
    exporter = MetricsExporter(
        config(victoria_metrics.url, layout="jmeter", tags={"team": "search"}), run_id="run-j"
    )
    exporter.start(environment)
    exporter.event("start", "started")

    def requests(i: int) -> None:
        environment.stats.log_request("GET", "/home", 20 + i, 512)
        environment.stats.log_request("GET", "/home", 30 + i, 512)
        environment.stats.log_error("GET", "/home", "HTTP 500")

    run_intervals(exporter, 3, requests)
    exporter.close()

    rows = series(
        victoria_metrics,
        "run-j",
        lambda rows: summed(rows, "jmeter_countError", transaction="all") == 3,
    )
    for row in rows:
        measurement, _, field = row["metric"]["__name__"].partition("_")
        assert measurement in JMETER_MEASUREMENTS
        assert field in JMETER_FIELDS
        assert set(row["metric"]) - {"__name__"} <= JMETER_TAGS | OUR_TAGS
    home = {"transaction": "/home", "application": "run-j"}
    assert summed(rows, "jmeter_count", statut="all", **home) == 6
    assert summed(rows, "jmeter_count", statut="ko", **home) == 3
    assert summed(rows, "jmeter_countError", transaction="all", statut="all") == 3
    names = {row["metric"]["__name__"] for row in rows}
    assert {"jmeter_pct90.0", "jmeter_pct95.0", "jmeter_pct99.0", "jmeter_hit"} <= names
    assert {"jmeter_avg", "jmeter_min", "jmeter_max", "jmeter_meanAT", "events_text"} <= names


def test_jmeter_error_rows_keep_the_message() -> None:
    tracker = IntervalTracker()
    stats = Environment(events=Events()).stats
    stats.log_request("GET", "/home", 20, 0)
    stats.log_error("GET", "/home", "HTTP 500: Server Error")
    points = JMeterLayout({"run_id": "r"}, "r").interval_points(
        tracker.take(stats), Sample(at=0.0, users=3, workers=0), 1
    )

    assert any("responseMessage=HTTP\\ 500:\\ Server\\ Error" in p for p in points)


def test_an_outage_mid_run_loses_nothing(
    victoria_metrics: VictoriaMetrics, environment: Environment
) -> None:
    exporter = MetricsExporter(config(victoria_metrics.url), run_id="run-outage")
    exporter.start(environment)
    log = lambda i: environment.stats.log_request("GET", "/a", 10 + i, 0)  # noqa: E731

    run_intervals(exporter, 3, log)
    victoria_metrics.stop()
    run_intervals(exporter, 5, log)
    wait_until(lambda: exporter.health()["writes_failed"], 5, INTERVAL, "a write fails")
    victoria_metrics.start()
    run_intervals(exporter, 3, log)
    exporter.close()

    series(
        victoria_metrics,
        "run-outage",
        lambda rows: summed(rows, "locust_requests_requests", name="/a") == 11,
    )
    health = exporter.health()
    assert health["writes_failed"] and health["points_dropped"] == 0
    assert health["last_error"] and health["last_success"]


def test_a_full_buffer_drops_the_oldest_points_counts_them_and_warns_once(
    victoria_metrics: VictoriaMetrics, environment: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    victoria_metrics.stop()
    # 2 points per interval (one name + totals): room for the last 2 intervals only.
    exporter = MetricsExporter(config(victoria_metrics.url, buffer_points=4), run_id="run-full")
    exporter.start(environment)

    def produced() -> int:
        health = exporter.health()
        return int(health["points_queued"]) + int(health["points_dropped"])  # type: ignore[call-overload]

    with caplog.at_level(logging.WARNING, logger="locust_perfx.influx"):
        for i in range(6):
            before = produced()
            environment.stats.log_request("GET", f"/i{i}", 10, 0)  # no switch since produced()
            wait_until(
                lambda before=before: produced() >= before + 2,  # type: ignore[misc]
                5,
                INTERVAL,
                "an interval is collected",
            )
    full = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(full) == 1
    dropped = exporter.health()["points_dropped"]
    assert isinstance(dropped, int) and dropped > 0
    assert exporter.health()["points_queued"] == 4

    victoria_metrics.start()
    exporter.close()
    # Every point has one "requests" field: the buffer's 4 newest points arrive, and the
    # intervals taken after them (a retry may send the 4 before close() takes the last one).
    written = exporter.health()["points_written"]
    assert isinstance(written, int) and written >= 4
    rows = series(victoria_metrics, "run-full", lambda rows: points(rows) == written)
    assert "/i0" not in {row["metric"].get("name") for row in rows}


def test_check_names_the_url_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ExportError, match=f"InfluxDB at {url} is unreachable .*--influxdb-url"):
        MetricsExporter(config(url), run_id="r").check()


def test_check_reports_a_rejected_token(victoria_metrics_with_auth: VictoriaMetrics) -> None:
    exporter = MetricsExporter(config(victoria_metrics_with_auth.url), run_id="r")

    with pytest.raises(ExportError, match=r"rejected the token \(HTTP 401\).*--influxdb-token"):
        exporter.check()


class ScriptedInflux:
    """A fake InfluxDB for what no server here sends on demand: statuses VictoriaMetrics never
    sends (403, 404, 503), and the ``/ping`` of an InfluxDB 2.x or 1.8.

    ``/ping`` answers the next of ``ping_script`` (then 204) with ``X-Influxdb-Version:
    version`` unless it is None, as VictoriaMetrics answers; each write gets the next status
    of ``script``, then 204. ``writes`` records the path of every write.
    """

    def __init__(self) -> None:
        self.script: list[int] = []
        self.ping_script: list[int] = []
        self.version: str | None = None
        self.writes: list[str] = []
        self._server = WSGIServer(("127.0.0.1", 0), self._app, log=None)
        self._server.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read()
        headers = [("Content-Type", "application/json")]
        if environ["PATH_INFO"] == "/ping":
            status = self.ping_script.pop(0) if self.ping_script else 204
            if self.version is not None:
                headers.append(("X-Influxdb-Version", self.version))
        else:
            self.writes.append(environ["PATH_INFO"])
            status = self.script.pop(0) if self.script else 204
        body = json.dumps({"code": "fault", "message": f"scripted {status}"}).encode()
        start_response(f"{status} Scripted", headers)
        return [] if status == 204 else [body]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def influx_fault() -> Iterator[ScriptedInflux]:
    server = ScriptedInflux()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, r"may not write to bucket 'locust' of org 'perf' \(HTTP 403\)"),
        (404, r"org 'perf' or bucket 'locust' not found \(HTTP 404\).*--influxdb-bucket"),
        (400, r"refused a test write to bucket 'locust' of org 'perf' \(HTTP 400"),
    ],
)
def test_check_explains_what_the_server_refused(
    influx_fault: ScriptedInflux, status: int, message: str
) -> None:
    influx_fault.script.append(status)

    with pytest.raises(ExportError, match=message):
        MetricsExporter(config(influx_fault.url), run_id="r").check()


@pytest.mark.parametrize(
    ("version", "path"),
    [
        ("1.8.10", "/write"),
        ("v1.7.0", "/write"),
        ("v2.7.4", "/api/v2/write"),
        ("3.0.0", "/api/v2/write"),
        (None, "/api/v2/write"),  # VictoriaMetrics: no version header
    ],
)
def test_writes_take_the_api_of_the_version_ping_reports(
    influx_fault: ScriptedInflux, version: str | None, path: str
) -> None:
    influx_fault.version = version

    MetricsExporter(config(influx_fault.url), run_id="r").check()

    assert influx_fault.writes == [path]


def test_a_ping_refused_by_a_proxys_auth_means_the_2x_api(influx_fault: ScriptedInflux) -> None:
    """InfluxDB 1.x answers /ping to anyone: a 401 there is not 1.x."""
    influx_fault.ping_script.append(401)
    influx_fault.version = "1.8.10"  # what a broken proxy might pass on: ignored with a 401

    MetricsExporter(config(influx_fault.url), run_id="r").check()

    assert influx_fault.writes == ["/api/v2/write"]


def test_a_ping_that_is_not_served_yet_is_retried_like_an_outage(
    influx_fault: ScriptedInflux,
) -> None:
    influx_fault.ping_script.append(503)
    influx_fault.version = "1.8.10"
    sink = InfluxSink(config(influx_fault.url), {"run_id": "r"})
    sink.queue(numbered_points(3))

    assert not sink.flush()
    assert sink.health()["last_error"] == "HTTP 503 Scripted on /ping"
    wait_until(sink.due, 5, INTERVAL, "the backoff ends")
    assert sink.flush()
    assert influx_fault.writes == ["/write"]
    sink.close()


def test_a_ping_that_is_not_served_stops_the_run_before_any_load(
    influx_fault: ScriptedInflux,
) -> None:
    influx_fault.ping_script.append(503)

    with pytest.raises(ExportError, match=r"is unreachable \(HTTP 503 Scripted on /ping\)"):
        MetricsExporter(config(influx_fault.url), run_id="r").check()


@pytest.mark.integration  # exporter.start() starts the export process
def test_server_errors_are_retried_until_written(
    influx_fault: ScriptedInflux, environment: Environment
) -> None:
    influx_fault.script.extend([503, 429])
    exporter = MetricsExporter(config(influx_fault.url), run_id="r")
    exporter.start(environment)
    run_intervals(exporter, 2, lambda i: environment.stats.log_request("GET", "/", 5, 0))
    wait_until(lambda: exporter.health()["writes_retried"], 10, INTERVAL, "a retry succeeds")
    exporter.close()

    health = exporter.health()
    assert health["writes_failed"] == 2 and health["points_queued"] == 0


BODY_LIMIT = 4_096
"""Bytes the proxy below lets through: about 80 of the test's points, not a 1,000-point batch."""


class BodyLimitProxy:
    """A reverse proxy with a body limit, in front of a real server (VictoriaMetrics, or
    InfluxDB 1.x).

    A fake only for the faults, which the server (VictoriaMetrics: 32 MB limit) does not
    produce on demand: HTTP 413 for a body over ``BODY_LIMIT`` bytes, as nginx's
    ``client_max_body_size`` answers, and the next status of ``script`` (``None``: forward)
    for a write that fits. Everything else goes on to the server, the ``/ping`` too (with
    its answer's ``X-Influxdb-Version``); each forwarded write's body and path are recorded.
    """

    def __init__(self, upstream: str) -> None:
        self.script: list[int | None] = []
        self.forwarded: list[bytes] = []
        self.paths: list[str] = []
        self.refused: list[bytes] = []
        self._upstream = upstream
        self._server = WSGIServer(("127.0.0.1", 0), self._app, log=None)
        self._server.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read()
        path = environ["PATH_INFO"]
        if len(body) > BODY_LIMIT:
            self.refused.append(body)
            start_response("413 Request Entity Too Large", [("Content-Type", "text/html")])
            return [b"<html><body>413 Request Entity Too Large</body></html>"]
        if path != "/ping":
            status = self.script.pop(0) if self.script else None
            if status is not None:
                start_response(f"{status} Scripted", [("Content-Type", "text/plain")])
                return [b"scripted"]
            self.forwarded.append(body)
            self.paths.append(path)
        headers = {"Content-Type": environ.get("CONTENT_TYPE") or "text/plain"}
        if "HTTP_AUTHORIZATION" in environ:
            headers["Authorization"] = environ["HTTP_AUTHORIZATION"]
        request = urllib.request.Request(
            f"{self._upstream}{path}?{environ['QUERY_STRING']}",
            data=body or None,
            headers=headers,
            method=environ["REQUEST_METHOD"],
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            version = answer.headers.get("X-Influxdb-Version")
            start_response(
                f"{answer.status} {answer.reason}",
                [("X-Influxdb-Version", version)] if version else [],
            )
            return [answer.read()]

    def forwarded_points(self) -> list[str]:
        return [point for body in self.forwarded for point in body.decode().split("\n")]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def body_limit_proxy(victoria_metrics: VictoriaMetrics) -> Iterator[BodyLimitProxy]:
    proxy = BodyLimitProxy(victoria_metrics.url)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxied_sink(body_limit_proxy: BodyLimitProxy) -> Iterator[InfluxSink]:
    """The export process's sink, writing through the proxy."""
    sink = InfluxSink(config(body_limit_proxy.url), {"run_id": "run-413"})
    try:
        yield sink
    finally:
        sink.close()


def numbered_points(count: int) -> list[str]:
    """``count`` points of one series, valued 0 .. count - 1, a millisecond apart."""
    return [
        line("split", {"run_id": "run-413"}, {"n": i}, 1_700_000_000_000 + i) for i in range(count)
    ]


def test_a_proxys_413_splits_the_batch_until_every_point_arrives_in_order(
    proxied_sink: InfluxSink, body_limit_proxy: BodyLimitProxy, victoria_metrics: VictoriaMetrics
) -> None:
    points = numbered_points(1_000)
    oversized = line("split_big", {"run_id": "run-413"}, {"blob": "x" * BODY_LIMIT}, 1)
    sink = proxied_sink
    sink.queue([*points[:400], oversized, *points[400:]])

    assert sink.flush()

    health = sink.health()
    assert health["points_written"] == 1_000 and health["points_rejected"] == 1
    assert health["points_queued"] == 0 and health["writes_failed"] == 0
    assert body_limit_proxy.forwarded_points() == points  # each once, in the queue's order
    assert set(body_limit_proxy.paths) == {"/api/v2/write"}  # VictoriaMetrics: the 2.x API
    assert body_limit_proxy.refused.count(oversized.encode()) == 1  # alone once, then rejected
    assert str(health["last_error"]).startswith("HTTP 413: Request Entity Too Large: a single ")
    assert str(health["last_error"]).endswith("raise that limit (nginx: client_max_body_size)")
    rows = series(victoria_metrics, "run-413", lambda rows: summed_count(rows, "split_n") == 1_000)
    assert summed(rows, "split_n") == sum(range(1_000))


def test_a_server_error_between_two_halves_keeps_the_unsent_rest_queued_in_order(
    proxied_sink: InfluxSink, body_limit_proxy: BodyLimitProxy, victoria_metrics: VictoriaMetrics
) -> None:
    points = numbered_points(1_000)
    sink = proxied_sink
    sink.queue(points)
    body_limit_proxy.script.extend([None, 503])  # the first half that fits arrives, not the next

    assert not sink.flush()
    health = sink.health()
    sent = len(body_limit_proxy.forwarded_points())
    assert 0 < sent < 1_000 and health["writes_failed"] == 1
    assert (health["points_written"], health["points_queued"]) == (sent, 1_000 - sent)

    wait_until(sink.due, 5, INTERVAL, "the backoff ends")
    assert sink.flush()
    assert sink.health()["writes_retried"] == 1
    assert body_limit_proxy.forwarded_points() == points
    series(victoria_metrics, "run-413", lambda rows: summed_count(rows, "split_n") == 1_000)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers: the worst outage for a client."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("down", ["black hole", "stopped"])
def test_close_returns_within_its_deadline_when_the_database_is_down(
    down: str,
    black_hole: str,
    victoria_metrics: VictoriaMetrics,
    environment: Environment,
) -> None:
    if down == "stopped":
        victoria_metrics.stop()
    url = black_hole if down == "black hole" else victoria_metrics.url
    exporter = MetricsExporter(config(url, timeout=5.0), run_id="r")
    exporter.start(environment)
    environment.stats.log_request("GET", "/", 5, 0)
    wait_until(lambda: exporter.health()["points_queued"], 5, INTERVAL, "points wait to be sent")

    started = time.monotonic()
    exporter.close(deadline=0.5)
    took = time.monotonic() - started

    assert took < 1.0
    assert exporter.health()["points_queued"] != 0
    exporter.close()  # idempotent


def test_start_again_after_close_exports_the_new_test_only(
    victoria_metrics: VictoriaMetrics, environment: Environment
) -> None:
    exporter = MetricsExporter(config(victoria_metrics.url), run_id="run-2x")
    exporter.start(environment)
    environment.stats.log_request("GET", "/", 5, 0)
    exporter.close()
    environment.stats.clear_all()  # what Locust does when a new test starts from the UI
    exporter.start(environment)
    for _ in range(3):
        environment.stats.log_request("GET", "/", 5, 0)
    exporter.close()

    series(
        victoria_metrics,
        "run-2x",
        lambda rows: summed(rows, "locust_requests_requests") == 4,
    )


def test_when_no_reader_can_be_forked_the_master_reads_in_its_loop_and_counts_stay_exact(
    victoria_metrics: VictoriaMetrics,
    environment: Environment,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = MetricsExporter(config(victoria_metrics.url), run_id="run-nofork")
    exporter.start(environment)
    stats = environment.stats
    run_intervals(exporter, 3, lambda i: stats.log_request("GET", f"/a{i}", 10, 0))

    # A fake fault: fork() refused (ENOMEM under a strict overcommit policy, a container's
    # pids limit), which a real master cannot be made to hit on demand.
    def refused() -> int:
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.setattr("locust_perfx.forked._fork", refused)
    with caplog.at_level(logging.WARNING, logger="locust_perfx.exporter"):
        run_intervals(exporter, 3, lambda i: stats.log_request("GET", f"/b{i}", 10, 0))
    stats.log_request("GET", "/a0", 10, 0)
    exporter.close()

    series(
        victoria_metrics,
        "run-nofork",
        lambda rows: summed(rows, "locust_totals_requests") == stats.total.num_requests == 7,
    )
    [warning] = [r.getMessage() for r in caplog.records if "fork" in r.getMessage()]
    assert warning == (
        "InfluxDB export: fork() failed: [Errno 12] Cannot allocate memory; the master "
        "reads its stats in its own loop from now on"
    )


def test_request_and_error_points_are_the_lines_line_makes_from_the_documented_fields() -> None:
    stats = Environment(events=Events()).stats
    for response_time in (3, 17, 250, 1234):
        stats.log_request("GET", "/a b", response_time, 100)
    stats.log_error("GET", "/a b", "boom")
    stats.log_request("POST", "/untimed", None, 0)  # type: ignore[arg-type]
    clock = iter([100.0, 102.0])
    interval = IntervalTracker(clock=lambda: next(clock)).take(stats)
    tags = {"run_id": "r", "team": "t"}

    points = PerfxLayout(tags).interval_points(interval, Sample(at=0.0, users=1, workers=0), 7)

    for delta, point in zip(interval.entries, points, strict=False):
        fields: dict[str, int | float | str] = {
            "requests": delta.requests,
            "failures": delta.failures,
            "rps": round(delta.requests / 2.0, 3),
            "failures_per_s": round(delta.failures / 2.0, 3),
        }
        if delta.timed_requests:
            fields.update(
                avg_ms=round(delta.avg_ms or 0.0, 3), min_ms=delta.min_ms, max_ms=delta.max_ms
            )
            for percent, value in zip(PERCENTILES, delta.percentiles, strict=True):
                fields[f"p{round(percent * 100)}_ms"] = value
        fields["avg_bytes"] = round(delta.content_length / delta.requests, 3)
        expected = {**tags, "name": delta.name, "method": delta.method}
        assert point == line("locust_requests", expected, fields, 7)
    [error] = interval.errors
    error_tags = {**tags, "name": "/a b", "method": "GET", "error_id": error.error_id}
    error_fields = {"occurrences": 1, "message": "boom"}
    assert points[-1] == line("locust_errors", error_tags, error_fields, 7)


def test_baseline_points_are_the_table_per_name_and_metric_with_the_method_split_off() -> None:
    """A slower name (a space in it), a new one, a gone one: each a point per metric, the
    values a side lacks left out, the total's without a method."""
    base = compared_runs(
        compared("/a b", [100, 98, 99, 101, 100, 102]), compared("/gone", [50] * 6)
    )
    now = compared_runs(
        compared("/a b", [131, 128, 133, 130, 129, 135]), compared("/new", [20] * 6)
    )
    base["total"] = now["total"] = compared("", [100] * 6, method="")
    table = Baseline("run_1", "test", base).table(now, [Limit("p95_ms", 0.10)])

    points = PerfxLayout({"run_id": "run_2"}).baseline_points(
        "run_1", exported_rows(table, base, now), 7
    )

    head = "locust_baseline,baseline_run_id=run_1"
    [slower] = [r for r in table["rows"] if r["name"] == "GET /a b"]
    assert slower["verdict"] == "regression" and slower["p"] < 0.05
    assert points == [
        f"{head},metric=p95_ms,name=Aggregated,run_id=run_2 baseline=100.0,current=100.0,"
        f'delta=0.0,delta_pct=0.0,p=1.0,verdict="unchanged",regression=0i 7',
        f"{head},method=GET,metric=p95_ms,name=/a\\ b,run_id=run_2 baseline=100.0,"
        f'current=131.0,delta=31.0,delta_pct=31.0,p={slower["p"]!r},verdict="regression",'
        "regression=1i 7",
        f'{head},method=GET,metric=p95_ms,name=/new,run_id=run_2 current=20.0,verdict="new",'
        "regression=0i 7",
        f"{head},method=GET,metric=p95_ms,name=/gone,run_id=run_2 baseline=50.0,"
        'verdict="gone",regression=0i 7',
    ]
    assert JMeterLayout({}, "run_2").baseline_points("run_1", exported_rows(table), 7) == []


@pytest.fixture
def master_environment() -> Iterator[Environment]:
    """A real MasterRunner on 127.0.0.1 (no workers connect: reports are fired at it)."""
    env = Environment(events=Events())
    runner = env.create_master_runner("127.0.0.1", free_port())
    yield env
    runner.quit()


def test_a_master_exports_the_sum_of_worker_reports_including_late_ones(
    victoria_metrics: VictoriaMetrics, master_environment: Environment
) -> None:
    exporter = MetricsExporter(config(victoria_metrics.url), run_id="run-master")
    exporter.start(master_environment)
    workers = []
    for _ in range(3):
        events, stats = Events(), RequestStats()
        setup_distributed_stats_event_listeners(events, stats)
        workers.append((events, stats))

    def report(worker: int) -> None:
        events, _ = workers[worker]
        data: dict[str, Any] = {"user_classes_count": {}}
        events.report_to_master.fire(client_id=f"w{worker}", data=data)
        master_environment.events.worker_report.fire(client_id=f"w{worker}", data=data)

    def requests(i: int) -> None:
        for worker, (_, stats) in enumerate(workers):
            stats.log_request("GET", f"/w{worker}", 10 + i, 5)
            stats.log_request("GET", "/shared", 100 + i, 5)
            stats.log_error("GET", "/shared", "HTTP 503")
            if (i + worker) % 2:
                report(worker)

    run_intervals(exporter, 6, requests)
    for worker in range(3):  # the last reports: after test_stop, before close()
        report(worker)
    exporter.close()
    master = master_environment.stats

    rows = series(
        victoria_metrics,
        "run-master",
        lambda rows: summed(rows, "locust_totals_requests") == master.total.num_requests,
    )
    for (name, method), entry in master.entries.items():
        assert summed(rows, "locust_requests_requests", name=name, method=method) == (
            entry.num_requests
        )
    assert summed(rows, "locust_requests_failures", name="/shared") == 18
    assert summed(rows, "locust_errors_occurrences") == 18
    for row in rows:
        assert len(row["timestamps"]) == len(set(row["timestamps"])), row["metric"]


def test_an_export_process_that_dies_is_reported_and_the_test_goes_on(
    victoria_metrics: VictoriaMetrics, environment: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = MetricsExporter(config(victoria_metrics.url), run_id="run-crash")
    exporter.start(environment)
    wait_until(lambda: exporter.health()["points_written"], 10, INTERVAL, "a first write")
    assert exporter._process is not None  # reached into: the one way to find its pid

    with caplog.at_level(logging.ERROR, logger="locust_perfx.exporter"):
        os.kill(exporter._process.pid, signal.SIGKILL)
        wait_until(
            lambda: "exited with code -9" in str(exporter.health()["last_error"]),
            10,
            INTERVAL,
            "the exit is reported",
        )
        environment.stats.log_request("GET", "/", 5, 0)
        run_intervals(exporter, 2, lambda i: None)  # reading and sending go on harmlessly
        started = time.monotonic()
        exporter.close()

    assert time.monotonic() - started < 2
    assert [r.getMessage() for r in caplog.records] == [
        "InfluxDB export stopped: its process exited with code -9 (see above); "
        "the test goes on without live metrics"
    ]


def exited(pid: int) -> bool:
    """The process is gone, or a zombie: exited, its parent gone too or yet to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


ORPHANED = """
import locust, os, sys, gevent
from locust.env import Environment
from locust.event import Events
from locust_perfx.exporter import MetricsExporter
from locust_perfx.influx import InfluxConfig

environment = Environment(events=Events())
environment.create_local_runner()
config = InfluxConfig(sys.argv[1], token="t", org="perf", bucket="locust", interval=0.05)
exporter = MetricsExporter(config, run_id="run-orphan")
exporter.start(environment)
environment.stats.log_request("GET", "/", 5, 0)
while not exporter.health()["writes_failed"]:
    gevent.sleep(0.05)
print(exporter._process.pid, flush=True)
os._exit(3)  # dies without closing anything, as after kill -9
"""


def test_an_orphaned_export_process_delivers_its_queue_and_exits(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    victoria_metrics.stop()  # the points of the dying master wait in the export process
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:  # a file: the export process inherits it and lives on
        master = subprocess.run(
            [sys.executable, "-c", ORPHANED, victoria_metrics.url],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
            check=False,
        )
    assert master.returncode == 3, errors.read_text()
    export_pid = int(master.stdout)
    victoria_metrics.start()
    wait_until(lambda: exited(export_pid), 15, INTERVAL, "the orphaned export process exits")
    series(
        victoria_metrics,
        "run-orphan",
        lambda rows: summed(rows, "locust_requests_requests", name="/") == 1,
    )


EXPORT_ALONE = """
import json, sys
from locust_perfx.export_process import main
main()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_the_export_process_writes_without_locust_gevent_or_an_influxdb_client(
    victoria_metrics: VictoriaMetrics,
) -> None:
    """What keeps it small (bench/master.py: its RSS): the master's messages, mirrored,
    diffed and written, with none of them imported."""
    stats, reader = RequestStats(), ChangeReader()
    messages: list[object] = [Setup(config(victoria_metrics.url), {"run_id": "run-alone"})]
    messages += reader.read(stats, Sample(at=time.time(), users=1, workers=0), reset=True)
    stats.log_request("GET", "/a", 5, 10)
    stats.log_error("GET", "/a", ConnectionError("refused"))
    messages += reader.read(stats, Sample(at=time.time() + 1, users=1, workers=0))
    messages.append(Close(deadline=5.0))

    export = subprocess.run(
        [sys.executable, "-c", EXPORT_ALONE],
        input=b"".join(pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL) for m in messages),
        capture_output=True,
        timeout=60,
        check=True,
    )

    last_report = json.loads(export.stdout.splitlines()[-1])
    assert last_report["done"] and last_report["health"]["points_written"] > 0
    modules = json.loads(export.stderr.splitlines()[-1])
    assert not {m.partition(".")[0] for m in modules} & {"locust", "gevent", "influxdb_client"}
    rows = series(
        victoria_metrics,
        "run-alone",
        lambda rows: summed(rows, "locust_errors_occurrences") == 1,
    )
    assert summed(rows, "locust_requests_requests", name="/a") == 1
