"""Which earlier run a run is compared with, found and checked before any load.

The first that applies: ``--baseline RUN_ID`` (``PERFX_BASELINE``); the run's
``baseline_run_id`` on the platform; its endpoint's ``baseline_run_id``; or ``--baseline
auto``: the platform's most recent completed run of the same endpoint and environment.
A baseline that does not exist, is not completed or belongs to another endpoint is refused
with the fix (a ConfigError: exit 2, no load). ``auto`` with no earlier run is no error: the
comparison is then "not judged" (no baseline yet). Platforms without these optional fields
simply have no baseline unless ``--baseline`` names one.

>>> from locust_perfx.platform import RunInfo
>>> from locust_perfx.schema import RunSchema
>>> info = RunInfo("run_2", "pending", "search", "staging", "", RunSchema(()),
...                endpoint_baseline_run_id="run_1")
>>> choose("", "the default", info)
('run_1', "endpoint 'search' on the platform")
>>> choose("auto", "the command line", info)
('auto', '--baseline (from the command line)')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from locust_perfx.compare import DEFAULT_LIMITS, Limit, compare, request_names
from locust_perfx.criteria import Criterion
from locust_perfx.exceptions import ConfigError, RunNotFound
from locust_perfx.influx import BaselineRow
from locust_perfx.platform import PlatformClient, RunInfo

AUTO: Final = "auto"
NO_BASELINE_YET: Final = "no baseline yet"
NO_BASELINE: Final = (
    "no baseline run: pass --baseline RUN_ID or auto, or set the run's or the endpoint's "
    "baseline_run_id on the platform"
)


@dataclass(frozen=True)
class Baseline:
    """The run compared with: ``run_id`` is ``""`` when ``auto`` found no earlier run."""

    run_id: str
    source: str
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)
    note: str = ""
    """Why there is nothing to compare with (``run_id`` empty)."""

    def describe(self) -> dict[str, Any]:
        return {"run_id": self.run_id or None, "source": self.source, "note": self.note or None}

    def table(
        self, summary: Mapping[str, Any], limits: Iterable[Limit] = DEFAULT_LIMITS
    ) -> dict[str, Any]:
        """``summary.baseline``: the per-name comparison of ``summary`` with this run's, or,
        with no baseline yet, an empty table that says so (``judged`` false)."""
        if not self.run_id:
            return {
                "baseline_run_id": None,
                "source": self.source,
                "judged": False,
                "notes": [self.note],
                "regressions": 0,
                "rows": [],
            }
        comparison = compare(self.summary, summary, limits=limits, baseline_run_id=self.run_id)
        return {**comparison.describe(), "source": self.source, "judged": True}


def choose(option: str, option_source: str, info: RunInfo) -> tuple[str, str] | None:
    """``(run id or "auto", where it came from)``, the first that applies; ``None``: none."""
    if option.strip():
        return option.strip(), f"--baseline (from {option_source})"
    if info.baseline_run_id:
        return info.baseline_run_id, f"run {info.id} on the platform"
    if info.endpoint_baseline_run_id:
        return info.endpoint_baseline_run_id, f"endpoint {info.endpoint!r} on the platform"
    return None


class Settings(Protocol):
    """What :func:`resolve_for` reads of the plan's settings (:class:`locust_perfx.plan.Settings`,
    which holds this module's :class:`Baseline`: the plan imports this module, not back)."""

    @property
    def platform_url(self) -> str: ...
    @property
    def platform_token(self) -> str: ...
    @property
    def platform_timeout(self) -> float: ...
    @property
    def baseline(self) -> str: ...
    @property
    def baseline_source(self) -> str: ...


def resolve_for(settings: Settings, info: RunInfo) -> Baseline | None:
    """The baseline of the run ``info`` under ``settings``; see :func:`resolve`."""
    with PlatformClient(settings.platform_url, settings.platform_token) as client:
        return resolve(
            client, info, settings.baseline, settings.baseline_source, settings.platform_timeout
        )


def resolve(
    client: PlatformClient, info: RunInfo, option: str, option_source: str, retry_for: float
) -> Baseline | None:
    """The run's baseline, fetched and checked; ConfigError naming the fix if unusable."""
    chosen = choose(option, option_source, info)
    if chosen is None:
        return None
    run_id, source = chosen
    if run_id == AUTO:
        return _latest(client, info, source, retry_for)
    try:
        run = client.run_body(run_id, retry_for=retry_for)
    except RunNotFound:
        raise ConfigError(
            f"baseline run {run_id} (from {source}) does not exist on the platform; "
            f"name a completed run of endpoint {info.endpoint!r}, or use --baseline auto"
        ) from None
    return _checked(run, run_id, source, info)


def _latest(client: PlatformClient, info: RunInfo, source: str, retry_for: float) -> Baseline:
    try:
        run = client.latest_completed_run(
            info.endpoint, info.environment, before=info.id, retry_for=retry_for
        )
    except RunNotFound:  # 404: the platform cannot list runs
        return Baseline("", source, note=f"{NO_BASELINE_YET}: the platform cannot list runs")
    if run is None:
        return Baseline(
            "",
            source,
            note=f"{NO_BASELINE_YET}: no completed run of endpoint {info.endpoint!r} in "
            f"environment {info.environment!r} before this one",
        )
    return _checked(run, str(run.get("id")), f"{source}: the latest completed run", info)


def _checked(run: Mapping[str, Any], run_id: str, source: str, info: RunInfo) -> Baseline:
    where = f"baseline run {run_id} (from {source})"
    owner = run.get("endpoint")
    endpoint = owner.get("name") if isinstance(owner, Mapping) else None
    if endpoint != info.endpoint:
        raise ConfigError(
            f"{where} belongs to endpoint {endpoint!r}, not {info.endpoint!r}; "
            f"name a completed run of {info.endpoint!r}, or use --baseline auto"
        )
    status = run.get("status")
    if status != "completed":
        raise ConfigError(
            f"{where} is {status}, not completed; a baseline is a run that completed: "
            "name another, or use --baseline auto"
        )
    summary = run.get("summary")
    if not isinstance(summary, Mapping) or "error" in summary:
        raise ConfigError(f"{where} has no summary to compare with; name another run")
    return Baseline(run_id, source, summary)


def limits_of(criteria: Iterable[Criterion]) -> tuple[Limit, ...]:
    """The table's limits: the first relative criterion's of each metric, else the default."""
    limits = {limit.metric: limit for limit in DEFAULT_LIMITS}
    for criterion in reversed(tuple(criteria)):
        if criterion.relative:
            limits[criterion.metric] = criterion.baseline_limit
    return tuple(limits.values())


def baseline_line(table: Mapping[str, Any]) -> str:
    """One line on a ``summary.baseline`` table, for the log."""
    if not table.get("judged"):
        return f"not compared with a baseline: {'; '.join(table.get('notes') or ())}"
    worst = table.get("worst")
    head = f"compared with baseline run {table.get('baseline_run_id')}: "
    if not worst:
        return head + "no regression"
    return head + f"{table.get('regressions')} regression(s); worst: {worst}"


def exported_rows(
    table: Mapping[str, Any], *summaries: Mapping[str, Any]
) -> tuple[BaselineRow, ...]:
    """A ``summary.baseline`` table's rows for InfluxDB (``locust_baseline``), each name split
    back into the method and name Locust gave it in ``summaries`` (the two runs')."""
    names = request_names(*summaries)
    kept = BaselineRow._fields[2:]  # metric, baseline, ...: the table row's own keys
    rows = []
    for row in table.get("rows") or ():
        method, name = names.get(row["name"], ("", row["name"]))
        rows.append(BaselineRow(method, name, **{key: row[key] for key in kept}))
    return tuple(rows)
