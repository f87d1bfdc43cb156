"""The same load with locust-influxdb-listener (a per-request InfluxDB 1.x exporter).

Set up as its README says: one ``InfluxDBListener`` per process, created in ``init``.
"""

import os

from locust import events
from locust_influxdb_listener import InfluxDBListener, InfluxDBSettings
from locustfile import Fast  # noqa: F401  # the same user class


@events.init.add_listener
def on_locust_init(environment, **_kwargs):  # type: ignore[no-untyped-def]
    settings = InfluxDBSettings(
        influx_host="127.0.0.1",
        influx_port=int(os.environ["BENCH_INFLUXDB_PORT"]),
        user="admin",
        pwd="pass",
        database="bench",
    )
    InfluxDBListener(env=environment, influxDbSettings=settings)
