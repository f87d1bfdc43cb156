"""InfluxDB 1.x (Debian's 1.6.7, which has no /api/v2/write), detected from its /ping and
written through its own /write, against a real influxd: by a real Locust run and by the sink."""

from __future__ import annotations

from collections import Counter

import pytest

from locust_perfx.exceptions import ExportError
from locust_perfx.exporter import MetricsExporter
from locust_perfx.influx import InfluxConfig, line
from locust_perfx.sink import InfluxSink
from tests.fixtures.influxdb1 import (
    DATABASE,
    PASSWORD,
    READER,
    READER_PASSWORD,
    USER,
    InfluxDB1,
)
from tests.fixtures.locust import LocustRunner, Target
from tests.fixtures.platform import PlatformServer
from tests.fixtures.waiting import wait_until
from tests.test_export_e2e import passed_shop_run
from tests.test_influx import BODY_LIMIT, BodyLimitProxy

CREDENTIALS = f"{USER}:{PASSWORD}"


def influx1_args(server: InfluxDB1) -> tuple[str, ...]:
    """The options docs/influxdb.rst gives for InfluxDB 1.x."""
    return (
        "--influxdb-url",
        server.url,
        "--influxdb-token",
        CREDENTIALS,
        "--influxdb-org",
        "-",
        "--influxdb-bucket",
        f"{DATABASE}/autogen",
        "--influxdb-interval",
        "1",
        "--influxdb-tags",
        "team=search",
    )


def influx1_config(server: InfluxDB1 | BodyLimitProxy, **overrides: str) -> InfluxConfig:
    settings = {"token": CREDENTIALS, "org": "-", "bucket": DATABASE, **overrides}
    return InfluxConfig(server.url, interval=0.05, timeout=2.0, **settings)


def summed(server: InfluxDB1, field: str, measurement: str, run_id: str, by: str) -> Counter[str]:
    """``sum(field)`` of a run's points, per value of the tag ``by``."""
    rows = server.query(
        f'SELECT sum("{field}") FROM "{measurement}" WHERE "run_id" = \'{run_id}\' GROUP BY "{by}"'
    )
    return Counter({row["tags"][by]: row["values"][0][1] for row in rows})


def test_a_local_run_writes_through_the_1x_api_and_its_counts_add_up(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    influxdb1: InfluxDB1,
) -> None:
    run_id, output = passed_shop_run(
        locust_runner, platform_server, target, influx1_args(influxdb1)
    )
    assert (
        f"writing live metrics to InfluxDB {influxdb1.version} at {influxdb1.url}: "
        f"1.x write API, database '{DATABASE}', retention policy 'autogen'" in output
    )
    # influxd answers a write once it is queryable: no waiting.
    assert summed(influxdb1, "requests", "locust_requests", run_id, "name") == target.counts
    assert summed(influxdb1, "requests", "locust_totals", run_id, "team") == {
        "search": target.total
    }
    assert summed(influxdb1, "ok", "perfx_check", run_id, "endpoint") == {"shop": 1}
    events = influxdb1.query(
        f'SELECT "text" FROM "locust_events" WHERE "run_id" = \'{run_id}\' GROUP BY "kind"'
    )
    assert sorted(row["tags"]["kind"] for row in events) == ["complete", "start"]
    # The summary leaves before the export's last writes (the verdict goes first).
    export = platform_server.get_run(run_id)["summary"]["export"]
    assert export["points_written"] > 0
    assert (export["points_dropped"], export["points_rejected"]) == (0, 0)


@pytest.mark.parametrize(
    ("bucket", "token", "refusal"),
    [
        (
            "nope",
            CREDENTIALS,
            ": database 'nope' not found (HTTP 404); "
            'create it (CREATE DATABASE "nope") or check --influxdb-bucket',
        ),
        (
            f"{DATABASE}/nope",
            CREDENTIALS,
            f" refused a test write to database '{DATABASE}', retention policy 'nope' "
            "(HTTP 500: Internal Server Error: retention policy not found: nope); "
            "check --influxdb-bucket (database/retention_policy)",
        ),
        (
            DATABASE,
            f"{USER}:wrong",
            " rejected the user and password (HTTP 401); pass --influxdb-token USER:PASSWORD",
        ),
        (
            DATABASE,
            "an-influxdb-2-token",
            " requires a user (HTTP 401); pass --influxdb-token USER:PASSWORD",
        ),
        (
            DATABASE,
            f"{READER}:{READER_PASSWORD}",
            f": user '{READER}' may not write to database '{DATABASE}', its default policy "
            f'(HTTP 403); grant it: GRANT WRITE ON "{DATABASE}" TO "{READER}"',
        ),
    ],
    ids=["no database", "no retention policy", "wrong password", "no user", "read only"],
)
def test_the_start_up_check_names_the_version_what_was_refused_and_the_fix(
    influxdb1: InfluxDB1, bucket: str, token: str, refusal: str
) -> None:
    exporter = MetricsExporter(influx1_config(influxdb1, bucket=bucket, token=token), run_id="r")

    with pytest.raises(ExportError) as caught:
        exporter.check()

    assert str(caught.value) == f"InfluxDB {influxdb1.version} at {influxdb1.url}{refusal}"
    assert token not in str(caught.value)


def numbered(run_id: str, count: int, first: int = 0) -> list[str]:
    """``count`` points of one series, valued ``first`` ..., a millisecond apart."""
    return [
        line("numbered", {"run_id": run_id}, {"n": n}, 1_700_000_000_000 + n)
        for n in range(first, first + count)
    ]


def stored(server: InfluxDB1, run_id: str) -> tuple[int, int]:
    """How many numbered points of the run are stored, and their sum."""
    rows = server.query(
        f'SELECT count("n"), sum("n") FROM "numbered" WHERE "run_id" = \'{run_id}\''
    )
    return (rows[0]["values"][0][1], rows[0]["values"][0][2]) if rows else (0, 0)


def test_outages_before_and_after_the_first_write_are_retried_and_lose_nothing(
    influxdb1: InfluxDB1,
) -> None:
    sink = InfluxSink(influx1_config(influxdb1), {"run_id": "run-outage"})
    try:
        for first in (0, 100):  # down before the version is known, then after
            influxdb1.stop()
            sink.queue(numbered("run-outage", 100, first))
            assert not sink.flush()
            influxdb1.start()
            wait_until(sink.due, 5, 0.05, "the backoff ends")
            assert sink.flush()
    finally:
        sink.close()

    assert stored(influxdb1, "run-outage") == (200, sum(range(200)))
    health = sink.health()
    assert (health["writes_failed"], health["writes_retried"], health["points_dropped"]) == (
        2,
        2,
        0,
    )


def test_a_proxys_413_splits_1x_writes_until_every_point_arrives(influxdb1: InfluxDB1) -> None:
    proxy = BodyLimitProxy(influxdb1.url)
    sink = InfluxSink(influx1_config(proxy), {"run_id": "run-413"})
    points = numbered("run-413", 1_000)
    oversized = line("numbered", {"run_id": "run-413"}, {"blob": "x" * BODY_LIMIT}, 1)
    sink.queue([*points[:400], oversized, *points[400:]])
    try:
        assert sink.flush()
    finally:
        sink.close()
        proxy.stop()

    assert set(proxy.paths) == {"/write"}
    assert proxy.forwarded_points() == points  # each once, in the queue's order
    health = sink.health()
    assert (health["points_written"], health["points_rejected"]) == (1_000, 1)
    assert stored(influxdb1, "run-413") == (1_000, sum(range(1_000)))
