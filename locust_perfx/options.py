"""The option table: every option of the plugin, its flag, help, default, type and variable.

The table is data; each default is the constant of the module that uses it.
:mod:`locust_perfx.registry` puts the table on Locust's parser and types the values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from locust_perfx.influx import DEFAULT_BUFFER_POINTS, DEFAULT_INTERVAL, DEFAULT_LAYOUT
from locust_perfx.lifecycle import PROGRESS_INTERVAL
from locust_perfx.platform import DEFAULT_PLATFORM_URL, DEFAULT_RETRY_FOR
from locust_perfx.snapshot import DEFAULT_MAX_NAMES


@dataclass(frozen=True)
class Option:
    """One row of the option table."""

    flag: str
    help: str
    metavar: str | None = None
    default: Any = None
    type: Callable[[str], Any] = str
    secret: bool = False
    in_web_ui: bool = False
    flag_only: bool = False
    repeatable: bool = False
    env: str = ""
    """The environment variable, when it is not the flag's name (``PERFX_<FLAG>``)."""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env_var(self) -> str:
        return self.env or "PERFX_" + self.dest.upper()


RUN_ID_HELP: Final = (
    "Id of the platform run this test belongs to; without it the plugin does nothing. "
    "Defaults to none."
)

OPTIONS: Final[tuple[Option, ...]] = (
    Option("--run-id", RUN_ID_HELP, "RUN_ID", in_web_ui=True),
    Option(
        "--platform-url",
        f"Base URL of the performance-test platform. Defaults to {DEFAULT_PLATFORM_URL}.",
        "URL",
        DEFAULT_PLATFORM_URL,
    ),
    Option(
        "--platform-token", "Bearer token for the platform. Defaults to none.", "TOKEN", secret=True
    ),
    Option(
        "--platform-timeout",
        "Seconds to keep retrying the platform through an outage at the start and end of "
        f"a run. Defaults to {DEFAULT_RETRY_FOR:g}.",
        "SECONDS",
        DEFAULT_RETRY_FOR,
        float,
    ),
    Option(
        "--platform-progress",
        "Seconds between two progress reports (users, RPS, failure ratio) to the platform; "
        f"0 sends none. Defaults to {PROGRESS_INTERVAL:g}.",
        "SECONDS",
        PROGRESS_INTERVAL,
        float,
    ),
    Option(
        "--state-dir",
        "Folder for a final status the platform did not take (perfx-RUN.final.json, for "
        "perfx resend); if it cannot be written, the user's state directory "
        "($XDG_STATE_HOME/locust-perfx) or the temporary directory is used, and when none "
        "can, the status is logged as one line. Defaults to the working directory.",
        "DIR",
    ),
    Option(
        "--influxdb-url",
        "InfluxDB 2 URL; live metrics are written only when it is set. Defaults to none.",
        "URL",
    ),
    Option("--influxdb-token", "InfluxDB API token. Defaults to none.", "TOKEN", secret=True),
    Option("--influxdb-org", "InfluxDB organization. Defaults to none.", "ORG"),
    Option("--influxdb-bucket", "InfluxDB bucket. Defaults to none.", "BUCKET"),
    Option(
        "--influxdb-interval",
        "Seconds between two metric points, threshold checks per interval and the intervals "
        f"of the summary's series. Defaults to {DEFAULT_INTERVAL:g}.",
        "SECONDS",
        DEFAULT_INTERVAL,
        float,
    ),
    Option(
        "--influxdb-tags",
        "Extra tags on every point, as name=value,name=value. Defaults to none.",
        "TAGS",
    ),
    Option(
        "--influxdb-layout",
        "Point layout: perfx, or jmeter for JMeter Grafana dashboards. "
        f"Defaults to {DEFAULT_LAYOUT}.",
        "LAYOUT",
        DEFAULT_LAYOUT,
    ),
    Option(
        "--influxdb-max-names",
        "Request names written as their own series; the rest are folded into __other__. "
        f"Defaults to {DEFAULT_MAX_NAMES}.",
        "N",
        DEFAULT_MAX_NAMES,
        int,
    ),
    Option(
        "--influxdb-buffer",
        "Points kept while InfluxDB is unreachable; the oldest are dropped past it. "
        f"Defaults to {DEFAULT_BUFFER_POINTS}.",
        "POINTS",
        DEFAULT_BUFFER_POINTS,
        int,
    ),
    Option(
        "--threshold",
        "A pass/fail criterion, e.g. 'p95_ms < 500 for GET /search, abort after 10s'; "
        "repeat it, or separate several with ';'. It overrides the platform's criterion of the "
        "same metric and scope. Defaults to the platform's criteria.",
        "CRITERION",
        repeatable=True,
        env="PERFX_THRESHOLDS",
    ),
    Option(
        "--baseline",
        "The run to compare this one with, per request name (a run id of the same endpoint, "
        "or auto: the latest completed run of the endpoint in this environment); relative "
        "thresholds judge against it. Defaults to the run's, then the endpoint's "
        "baseline_run_id on the platform, if any.",
        "RUN_ID",
    ),
    Option(
        "--verbose",
        "Log every call to the platform (method, URL, status, time) and each change of the "
        "run's phase, at DEBUG level of the locust_perfx logger only. Defaults to off.",
        flag_only=True,
        default=False,
    ),
    Option(
        "--dry-run",
        "Fetch the run, validate its arguments, print what would run and exit without load. "
        "Defaults to off.",
        flag_only=True,
        default=False,
    ),
)
"""The plugin's own options. Tokens stay out of the web UI: Locust puts a UI option's value
into the page in plain text, masked field or not."""

SECRET_DESTS: Final = frozenset(o.dest for o in OPTIONS if o.secret)
PACKAGE_LOGGER: Final = "locust_perfx"
"""The logger every module's logs under; ``--verbose`` turns it to DEBUG."""
