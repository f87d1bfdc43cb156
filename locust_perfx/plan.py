"""The run plan: everything decided about a run before any load, as one frozen value.

A :class:`RunPlan` holds the plugin's settings, the platform's run, the typed arguments
with where each came from, and the target host. It is built the same way from the command
line (:func:`build_plan`) and from the web UI's start form (:meth:`RunPlan.with_form`),
``--dry-run`` prints it, the PerfX tab shows it, and the run controller sends it to the
platform; nothing here touches Locust's ``Environment``.

>>> from locust_perfx.platform import RunInfo
>>> from locust_perfx.schema import RunSchema
>>> schema = RunSchema.from_json({"parameters": [{"name": "batch_size", "type": "int"}]})
>>> info = RunInfo("run_1", "pending", "rerank", "staging", "http://target:8080", schema)
>>> plan = RunPlan(Settings("run_1"), info, {"batch_size": 32}, {}, "http://target:8080")
>>> plan.with_form({"batch_size": "64"}).arguments
{'batch_size': 64}
>>> plan.with_form({"user_count": "10"}).arguments  # a field the form lacks keeps its value
{'batch_size': 32}
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from locust_perfx import __version__
from locust_perfx.baseline import Baseline
from locust_perfx.criteria import Criterion, merge, parse_criteria
from locust_perfx.exceptions import ConfigError, RunStateConflict
from locust_perfx.influx import DEFAULT_INTERVAL, InfluxConfig, parse_tags
from locust_perfx.lifecycle import PROGRESS_INTERVAL
from locust_perfx.platform import DEFAULT_PLATFORM_URL, DEFAULT_RETRY_FOR, RunInfo
from locust_perfx.registry import source_of, typed_values
from locust_perfx.schema import Value, render, resolve_value

FORM: Final = "the web UI form"
PLATFORM: Final = "the platform"


@dataclass(frozen=True)
class Settings:
    """The plugin's options, read once from ``parsed_options``; the tokens never print."""

    run_id: str
    platform_url: str = DEFAULT_PLATFORM_URL
    platform_token: str = field(default="", repr=False)
    platform_timeout: float = DEFAULT_RETRY_FOR
    platform_progress: float = PROGRESS_INTERVAL
    influx: InfluxConfig | None = None
    thresholds: tuple[Criterion, ...] = ()
    """Criteria given to this process; they override the platform's of the same name."""
    interval: float = DEFAULT_INTERVAL
    """Seconds per interval: of the InfluxDB points, and of the thresholds' live checks."""
    dry_run: bool = False
    state_dir: str = ""
    """``--state-dir``; empty: the working directory (``state.py`` falls back from there)."""
    baseline: str = ""
    """``--baseline``: a run id, ``auto``, or empty (the platform's, if any)."""
    baseline_source: str = "the default"

    @classmethod
    def from_options(cls, options: argparse.Namespace, sources: Mapping[str, str]) -> Settings:
        """Type and check every plugin option; raises ConfigError naming each bad one's source."""
        typed, problems = typed_values(options, sources)
        thresholds: list[Criterion] = []
        try:
            thresholds = parse_criteria(
                [c for value in typed["threshold"] or () for c in value.split(";") if c.strip()],
                source_of(sources, "threshold"),
            )
        except ConfigError as err:
            problems.extend(err.problems)
        influx = None
        if typed["influxdb_url"]:
            try:
                influx = _influx_config(typed)
            except ConfigError as err:
                problems.extend(err.problems)
        if problems:
            raise ConfigError(problems)
        return cls(
            run_id=typed["run_id"] or "",
            platform_url=typed["platform_url"],
            platform_token=typed["platform_token"] or "",
            platform_timeout=typed["platform_timeout"],
            platform_progress=typed["platform_progress"],
            influx=influx,
            thresholds=tuple(thresholds),
            interval=typed["influxdb_interval"],
            dry_run=typed["dry_run"],
            state_dir=typed["state_dir"] or "",
            baseline=typed["baseline"] or "",
            baseline_source=source_of(sources, "baseline"),
        )


def _influx_config(typed: Mapping[str, Any]) -> InfluxConfig:
    """The export settings; one ConfigError names every bad ``--influxdb-*`` flag."""
    problems = []
    if not typed["influxdb_org"]:
        problems.append(
            "--influxdb-url is set but --influxdb-org is not: "
            "set --influxdb-org or PERFX_INFLUXDB_ORG (InfluxDB 1.x: -)"
        )
    try:
        tags = parse_tags(typed["influxdb_tags"] or "")
    except ConfigError as err:
        problems.extend(err.problems)
        tags = {}
    try:
        config = InfluxConfig(
            url=typed["influxdb_url"],
            token=typed["influxdb_token"] or "",
            org=typed["influxdb_org"] or "",
            bucket=typed["influxdb_bucket"] or "",
            interval=typed["influxdb_interval"],
            layout=typed["influxdb_layout"],
            tags=tags,
            max_names=typed["influxdb_max_names"],
            buffer_points=typed["influxdb_buffer"],
        )
    except ConfigError as err:
        problems.extend(err.problems)
    if problems:
        raise ConfigError(problems)
    return config


@dataclass(frozen=True)
class RunPlan:
    """One run as decided: settings, platform run, typed arguments and host; holds a token
    only inside ``settings``, which never prints it."""

    settings: Settings
    info: RunInfo
    arguments: Mapping[str, Value]
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each argument's value came from, by dest (absent: the platform's default)."""
    host: str = ""
    host_source: str = PLATFORM
    criteria: tuple[Criterion, ...] = ()
    """Pass/fail criteria in force: the platform's, overridden by ``--threshold``."""
    baseline: Baseline | None = None
    """The run this one is compared with (:mod:`locust_perfx.baseline`); ``None``: none."""

    @property
    def run_id(self) -> str:
        return self.info.id

    def describe(self) -> dict[str, Any]:
        """The plan as plain data, for ``--dry-run`` and the web UI; holds no secret."""
        influx = self.settings.influx
        return {
            "run_id": self.info.id,
            "perfx_version": __version__,
            "status": self.info.status,
            "platform_url": self.settings.platform_url,
            "endpoint": self.info.endpoint,
            "environment": self.info.environment,
            "host": self.host,
            "arguments": dict(self.arguments),
            "thresholds": [criterion.describe() for criterion in self.criteria],
            "baseline": None if self.baseline is None else self.baseline.describe(),
            "influxdb": None
            if influx is None
            else {
                "url": influx.url,
                "org": influx.org,
                "bucket": influx.bucket,
                "layout": influx.layout,
            },
        }

    def with_form(self, form: Mapping[str, str]) -> RunPlan:
        """The plan a web UI start form asks for, checked like the command line.

        A field the form does not carry keeps its value, as Locust's ``/swarm`` does for any
        custom argument (scripts POST only ``user_count`` and ``spawn_rate``). One
        ConfigError lists every problem.
        """
        arguments = dict(self.arguments)
        sources = dict(self.sources)
        problems: list[str] = []
        for param in self.info.schema.parameters:
            raw = form.get(param.dest)
            if raw is None:  # not in the form: keeps its value
                missing = param.required and arguments.get(param.dest) is None
            else:
                missing = param.required and param.default is None and not raw.strip()
                if not missing:
                    try:
                        arguments[param.dest] = resolve_value(param, raw, FORM)
                        sources[param.dest] = FORM
                    except ConfigError as err:
                        problems.extend(err.problems)
            if missing:
                problems.append(f"{param.name} is required: fill it in the form")
        host = (form.get("host") or "").strip()
        if problems:
            raise ConfigError(problems)
        changed = host and host != self.host
        return replace(
            self,
            arguments=arguments,
            sources=sources,
            host=host or self.host,
            host_source=FORM if changed else self.host_source,
        )

    def for_run(self, info: RunInfo) -> RunPlan:
        """The same plan for another platform run, entered in the web UI's Run id field."""
        if info.status != "pending":
            raise RunStateConflict(
                f"run {info.id} is already {info.status}; create a new run on the platform",
                run_id=info.id,
            )
        if info.schema != self.info.schema:
            raise ConfigError(
                f"run {info.id} belongs to endpoint {info.endpoint!r}, whose arguments differ "
                f"from this form's; restart Locust with --run-id {info.id}"
            )
        problems, criteria = _criteria(info, self.settings)
        if problems:
            raise ConfigError(problems)
        return replace(
            self, info=info, settings=replace(self.settings, run_id=info.id), criteria=criteria
        )


def build_plan(
    options: argparse.Namespace,
    info: RunInfo,
    clashes: Mapping[str, str],
    sources: Mapping[str, str],
) -> RunPlan:
    """Check everything about a run at once, from Locust's parsed options.

    Raises one ConfigError listing every problem (schema defects, options the schema cannot
    have, bad plugin options, bad or missing arguments, no host), or RunStateConflict when
    the run's only problem is that it is not pending. Outside a dry run, a web UI may leave
    required arguments for its start form.
    """
    problems = [*info.schema_problems, *clashes.values()]
    settings: Settings | None = None
    try:
        settings = Settings.from_options(options, sources)
    except ConfigError as err:
        problems.extend(err.problems)
    from_form = not (options.headless or options.autostart or options.dry_run)
    arguments: dict[str, Value] = {}
    given: dict[str, str] = {}
    for param in info.schema.parameters:
        if param.dest in clashes:
            continue
        raw = getattr(options, param.dest, None)
        source = source_of(sources, param.dest)
        if source == "the default":
            raw = None  # the platform's default, typed by resolve_value as such
        elif raw not in (None, ""):
            given[param.dest] = source
        if from_form and param.required and raw in (None, ""):
            arguments[param.dest] = None
            continue
        try:
            arguments[param.dest] = resolve_value(param, raw, source)
        except ConfigError as err:
            problems.extend(err.problems)
    host = options.host or info.host
    if not host:
        problems.append(
            f"run {info.id} has no host: its environment {info.environment!r} on the "
            "platform has none; set one there or pass --host"
        )
    criteria: tuple[Criterion, ...] = ()
    if settings is not None:
        criteria_problems, criteria = _criteria(info, settings)
        problems.extend(criteria_problems)
    not_pending = (
        f"run {info.id} is already {info.status}; create a new run on the platform"
        if info.status != "pending"
        else ""
    )
    if problems or settings is None:
        raise ConfigError([not_pending, *problems] if not_pending else problems)
    if not_pending:
        raise RunStateConflict(not_pending, run_id=info.id)
    return RunPlan(
        settings=settings,
        info=info,
        arguments=arguments,
        sources=given,
        host=host,
        host_source=source_of(sources, "host") if options.host else PLATFORM,
        criteria=criteria,
    )


def _criteria(info: RunInfo, settings: Settings) -> tuple[list[str], tuple[Criterion, ...]]:
    """The criteria in force, and the problems of the platform's (each named)."""
    problems: list[str] = []
    groups = []
    for items, source in (
        (info.endpoint_thresholds, f"endpoint {info.endpoint!r} on the platform"),
        (info.run_thresholds, f"run {info.id} on the platform"),
    ):
        try:
            groups.append(parse_criteria(items, source))
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        return problems, ()
    endpoint, run = groups
    return [], merge(merge(endpoint, run), settings.thresholds)


def print_dry_run(plan: RunPlan) -> None:
    """``--dry-run``: the plan as JSON, no secret in it; nothing of the run's machinery (the
    controller, the export stack) is imported for it."""
    print(json.dumps(plan.describe(), indent=2, default=render))
