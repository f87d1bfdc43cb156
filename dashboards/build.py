"""Grafana dashboards for the default ``perfx`` layout: InfluxDB 2 (Flux) and 1.x (InfluxQL).

``python dashboards/build.py`` writes both JSON files into ``locust_perfx/dashboards/``, the
package data ``perfx dashboards`` copies out of an installed wheel; ``tests/test_dashboards.py``
fails while the checked-in files differ from what this builds, and runs every InfluxQL query
against a real InfluxDB 1.x. Each panel is written once, with its query in both languages,
so the two dashboards stay panel-for-panel the same (titles, order, units, variables).

Built with grafana-foundation-sdk, Grafana's own typed builders. It has no InfluxDB query
type, so ``InfluxQuery`` is one, through the SDK's ``Dataquery`` variant; and its annotation
model types ``target`` for Grafana's built-in annotations only, so ``InfluxAnnotation`` adds
the InfluxDB query there, as Grafana's InfluxDB annotation editor saves it.

Rates are sums over Grafana's interval divided by its length, not averages of the exported
``rps``: they then add up to Locust's counts at any zoom. Each time series panel's minimum
interval is the ``export_interval`` variable (``--influxdb-interval``), so no Grafana
interval is shorter than the points are apart. Percentiles over an interval that holds more
than one point show the highest (the run's own percentile is never above it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

OUT = Path(__file__).resolve().parent.parent / "locust_perfx" / "dashboards"

Language = Literal["flux", "influxql"]
FILES: dict[Language, str] = {
    "flux": "locust-perfx-influxdb2-flux.json",
    "influxql": "locust-perfx-influxdb1-influxql.json",
}
TITLES: dict[Language, str] = {
    "flux": "Locust perfx run (InfluxDB 2, Flux)",
    "influxql": "Locust perfx run (InfluxDB 1.x, InfluxQL)",
}
UIDS: dict[Language, str] = {"flux": "locust-perfx-flux", "influxql": "locust-perfx-influxql"}

DATASOURCE = dashboard.DataSourceRef(type_val="influxdb", uid="${datasource}")
EXPORT_INTERVALS = ("1s", "5s", "10s", "15s", "30s", "1m")
DEFAULT_EXPORT_INTERVAL = "5s"  # --influxdb-interval's default
PER_REQUEST_NAME = "${__field.labels.method} ${__field.labels.name}"


class InfluxQuery(cogvariants.Dataquery):
    """One query of Grafana's InfluxDB data source, raw text in either language."""

    def __init__(self, ref_id: str, query: str, result_format: str) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }


class InfluxQueryBuilder(cogbuilder.Builder[InfluxQuery]):
    def __init__(self, query: InfluxQuery) -> None:
        self._query = query

    def build(self) -> InfluxQuery:
        return self._query


class InfluxAnnotation(dashboard.AnnotationQuery):
    """An annotation whose events come from an InfluxDB query (``text`` and ``tags``)."""

    def __init__(self, name: str, query: str, icon_color: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=icon_color)
        self.query = query

    def to_json(self) -> dict[str, object]:
        target = {
            **InfluxQuery("Anno", self.query, "table").to_json(),
            "fromAnnotations": True,
            "textEditor": True,
            "textColumn": "text",
            "tagsColumn": "tags",
        }
        return {**super().to_json(), "target": target}


class InfluxAnnotationBuilder(cogbuilder.Builder[dashboard.AnnotationQuery]):
    def __init__(self, annotation: InfluxAnnotation) -> None:
        self._annotation = annotation

    def build(self) -> dashboard.AnnotationQuery:
        return self._annotation


# -- the queries, in both languages ------------------------------------------------------------

RUN = "\"run_id\" = '$run_id' AND $timeFilter"
BY_TIME = " GROUP BY time($__interval) fill(none)"
BY_TIME_AND_REQUEST = ' GROUP BY time($__interval), "name", "method" fill(none)'
PER_SECOND = " * 1000 / $__interval_ms"


def influxql(select: str, measurement: str, group_by: str = "") -> str:
    return f'SELECT {select} FROM "{measurement}" WHERE {RUN}{group_by}'


def flux(measurement: str, fields: Sequence[str], *steps: str, name: str = "") -> str:
    """The run's ``fields`` of ``measurement`` in the time range, then ``steps``; assigned
    to ``name`` when given."""
    matches = " or ".join(f'r._field == "{field}"' for field in fields)
    lines = [
        (f"{name} = " if name else "") + "from(bucket: v.defaultBucket)",
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
        f'  |> filter(fn: (r) => r._measurement == "{measurement}" and r.run_id == "${{run_id}}")',
        f"  |> filter(fn: (r) => {matches})",
        *(f"  |> {step}" for step in steps),
    ]
    return "\n".join(lines)


def window(fn: str) -> str:
    return (
        f'aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false, timeSrc: "_start")'
    )


FLUX_PER_SECOND = (
    "map(fn: (r) => ({r with _value: "
    "float(v: r._value) / (float(v: int(v: v.windowPeriod)) / 1000000000.0)}))"
)


def flux_ratio(time: str) -> tuple[str, str]:
    """Failures over requests, from tables of both summed; ``time``: the column they keep
    (``_time`` after a window, ``_start`` after a sum over the range)."""
    return (
        f'pivot(rowKey: ["{time}"], columnKey: ["_field"], valueColumn: "_value")',
        f"map(fn: (r) => ({{_time: r.{time}, failure_ratio: "
        "if r.requests > 0 then float(v: r.failures) / float(v: r.requests) else 0.0}))",
    )


@dataclass(frozen=True)
class Panel:
    """One panel of both dashboards: what it shows, and its query in each language."""

    title: str
    kind: Literal["stat", "timeseries", "table"]
    unit: str
    description: str
    influxql: str
    flux: str
    width: int
    height: int = 8
    display_name: str = ""
    columns: tuple[str, ...] = ()
    """A table's columns, in order; the others (time, hashes) are hidden."""

    def query(self, language: Language) -> str:
        return self.influxql if language == "influxql" else self.flux


def _totals_stat(title: str, aggregate: str, field: str, description: str) -> Panel:
    """A stat of one ``locust_totals`` field over the time range: its ``sum`` or ``max``."""
    return Panel(
        title,
        "stat",
        "short",
        description,
        influxql(f'{aggregate}("{field}") AS "{field}"', "locust_totals"),
        flux("locust_totals", [field], f"{aggregate}()"),
        width=6,
        height=4,
    )


def _percentile_panel(percent: int) -> Panel:
    field = f"p{percent}_ms"
    return Panel(
        f"p{percent} by request",
        "timeseries",
        "ms",
        f"The {percent}th percentile response time of each request name and method, per "
        "interval (the highest when Grafana's interval holds several).",
        influxql(f'max("{field}") AS "p{percent}"', "locust_requests", BY_TIME_AND_REQUEST),
        flux("locust_requests", [field], window("max")),
        width=12,
        display_name=PER_REQUEST_NAME,
    )


BASELINE_COLUMNS = ("name", "method", "metric", "baseline", "current", "delta_pct", "p", "verdict")
"""The comparison with the baseline as ``summary.baseline`` and ``perfx compare`` show it."""
HEADERS = {"delta_pct": "change %"}
"""Table headers that are not the column's name."""

PANELS = (
    _totals_stat(
        "Requests",
        "sum",
        "requests",
        "Requests Locust counted in the time range (successes and failures).",
    ),
    _totals_stat("Failures", "sum", "failures", "Failed requests in the time range."),
    Panel(
        "Failure ratio",
        "stat",
        "percentunit",
        "Failures divided by requests, over the time range.",
        influxql('sum("failures") / sum("requests") AS "failure_ratio"', "locust_totals"),
        flux("locust_totals", ["requests", "failures"], "sum()", *flux_ratio("_start")),
        width=6,
        height=4,
    ),
    _totals_stat("Peak users", "max", "users", "The most users running at once."),
    Panel(
        "Users and workers",
        "timeseries",
        "short",
        "Users running, and workers connected (a local run counts as one), at each interval's end.",
        influxql('max("users") AS "users", max("workers") AS "workers"', "locust_totals", BY_TIME),
        flux("locust_totals", ["users", "workers"], window("max")),
        width=8,
    ),
    Panel(
        "Requests per second",
        "timeseries",
        "reqps",
        "Requests per second of the whole test: the interval's requests over its length.",
        influxql(f'sum("requests"){PER_SECOND} AS "requests/s"', "locust_totals", BY_TIME),
        flux("locust_totals", ["requests"], window("sum"), FLUX_PER_SECOND),
        width=8,
    ),
    Panel(
        "Failures per second",
        "timeseries",
        "reqps",
        "Failed requests per second of the whole test.",
        influxql(f'sum("failures"){PER_SECOND} AS "failures/s"', "locust_totals", BY_TIME),
        flux("locust_totals", ["failures"], window("sum"), FLUX_PER_SECOND),
        width=8,
    ),
    Panel(
        "Requests per second by request",
        "timeseries",
        "reqps",
        "Requests per second of each request name and method.",
        influxql(
            f'sum("requests"){PER_SECOND} AS "requests/s"', "locust_requests", BY_TIME_AND_REQUEST
        ),
        flux("locust_requests", ["requests"], window("sum"), FLUX_PER_SECOND),
        width=12,
        display_name=PER_REQUEST_NAME,
    ),
    Panel(
        "Failure ratio over time",
        "timeseries",
        "percentunit",
        "Failures divided by requests, per interval.",
        influxql('sum("failures") / sum("requests") AS "failure_ratio"', "locust_totals", BY_TIME),
        flux("locust_totals", ["requests", "failures"], window("sum"), *flux_ratio("_time")),
        width=12,
    ),
    Panel(
        "Response times (all requests)",
        "timeseries",
        "ms",
        "p50, p95 and p99 of all requests together, per interval (the highest when Grafana's "
        "interval holds several).",
        influxql(
            'max("p50_ms") AS "p50", max("p95_ms") AS "p95", max("p99_ms") AS "p99"',
            "locust_totals",
            BY_TIME,
        ),
        flux("locust_totals", ["p50_ms", "p95_ms", "p99_ms"], window("max")),
        width=12,
    ),
    _percentile_panel(50),
    _percentile_panel(95),
    _percentile_panel(99),
    Panel(
        "Errors",
        "table",
        "short",
        "Each distinct error of each request name and method, and how often it occurred in "
        "the time range.",
        influxql(
            'sum("occurrences") AS "occurrences", last("message") AS "message"',
            "locust_errors",
            ' GROUP BY "name", "method", "error_id"',
        ),
        "\n".join(
            (
                flux("locust_errors", ["occurrences", "message"], name="errors"),
                'occurrences = errors |> filter(fn: (r) => r._field == "occurrences")',
                '  |> group(columns: ["name", "method", "error_id"]) |> sum()',
                'messages = errors |> filter(fn: (r) => r._field == "message")',
                '  |> group(columns: ["name", "method", "error_id"]) |> last()',
                'join(tables: {o: occurrences, m: messages}, on: ["name", "method", "error_id"])',
                "  |> map(fn: (r) => ({name: r.name, method: r.method, "
                "occurrences: r._value_o, message: r._value_m}))",
                "  |> group()",
            )
        ),
        width=24,
        columns=("name", "method", "message", "occurrences"),
    ),
    Panel(
        "Regressions against the baseline",
        "stat",
        "short",
        "Request names and metrics the comparison with the baseline run judged regressions "
        "(past the limit and significant), counted when the run ended. No data: the run had "
        "no baseline run.",
        influxql('sum("regression") AS "regressions"', "locust_baseline"),
        flux("locust_baseline", ["regression"], "group()", "sum()"),
        width=6,
    ),
    Panel(
        "Against the baseline",
        "table",
        "short",
        "The run compared with its baseline run when it ended, per request name and metric "
        "(the run summary's baseline table): both runs' whole-run values, the change in "
        "percent of the baseline, the significance p (none: untested) and the verdict "
        "(regression, improvement, unchanged, untested, new, gone).",
        influxql(
            ", ".join(f'last("{field}") AS "{field}"' for field in BASELINE_COLUMNS[3:]),
            "locust_baseline",
            ' GROUP BY "name", "method", "metric"',
        ),
        flux(
            "locust_baseline",
            BASELINE_COLUMNS[3:],
            "last()",
            'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            "group()",
            f"keep(columns: {json.dumps(BASELINE_COLUMNS)})",
        ),
        width=18,
        columns=BASELINE_COLUMNS,
    ),
)

EVENTS: dict[Language, str] = {
    "influxql": influxql('"text", "kind" AS "tags"', "locust_events"),
    "flux": flux(
        "locust_events",
        ["text"],
        'keep(columns: ["_time", "_value", "kind"])',
        'rename(columns: {_value: "text", kind: "tags"})',
    ),
}
"""Start, complete and fail of the run, for annotations: ``text`` and ``tags`` (the kind)."""

RUN_IDS: dict[Language, str] = {
    # SHOW TAG VALUES would ignore the time range on InfluxDB 1.x: the last point of each
    # run in the range, with its run_id as the column Grafana takes (the second), does not.
    "influxql": (
        'SELECT "run_id", "users" FROM (SELECT last("users") AS "users" FROM "locust_totals" '
        'WHERE $timeFilter GROUP BY "run_id")'
    ),
    "flux": "\n".join(
        (
            "from(bucket: v.defaultBucket)",
            "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
            '  |> filter(fn: (r) => r._measurement == "locust_totals" and r._field == "users")',
            '  |> group(columns: ["run_id"])',
            "  |> last()",
            "  |> group()",
            '  |> keep(columns: ["run_id"])',
            '  |> rename(columns: {run_id: "_value"})',
        )
    ),
}


# -- the dashboards ----------------------------------------------------------------------------


def _positions(panels: Sequence[Panel]) -> Iterator[dashboard.GridPos]:
    """Panels left to right in rows of Grafana's 24 columns."""
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        yield dashboard.GridPos(h=panel.height, w=panel.width, x=x, y=y)
        x, row_height = x + panel.width, max(row_height, panel.height)


def _panel(
    panel: Panel, language: Language, grid_pos: dashboard.GridPos, ref: int
) -> cogbuilder.Builder[dashboard.Panel]:
    built = _kind(panel)
    built.id(ref).title(panel.title).description(panel.description).unit(panel.unit)
    built.datasource(DATASOURCE).grid_pos(grid_pos)
    result_format = "table" if panel.kind == "table" else "time_series"
    built.with_target(InfluxQueryBuilder(InfluxQuery("A", panel.query(language), result_format)))
    if panel.display_name:
        built.display_name(panel.display_name)
    return built


def _kind(panel: Panel) -> stat.Panel | timeseries.Panel | table.Panel:
    """An empty panel of ``panel``'s kind, with that kind's options."""
    if panel.kind == "stat":
        return (
            stat.Panel()
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(common.BigValueGraphMode.NONE)
        )
    if panel.kind == "timeseries":
        return (
            timeseries.Panel()
            .interval("$export_interval")
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        )
    # InfluxQL tables carry the time and the error's hash: a reader wants neither.
    options: dict[str, object] = {
        "excludeByName": {"Time": True, "error_id": True},
        "indexByName": {column: index for index, column in enumerate(panel.columns)},
    }
    renamed = {column: HEADERS[column] for column in panel.columns if column in HEADERS}
    if renamed:
        options["renameByName"] = renamed
    return (
        table.Panel()
        .show_header(True)
        .with_transformation(dashboard.DataTransformerConfig(id_val="organize", options=options))
    )


def build(language: Language) -> dashboard.Dashboard:
    """The dashboard in ``language``."""
    result = (
        builders.Dashboard(TITLES[language])
        .uid(UIDS[language])
        .tags(["locust", "perfx", "influxdb"])
        .editable()
        .time("now-1h", "now")
        .refresh("10s")
        .with_variable(
            builders.DatasourceVariable("datasource")
            .label("InfluxDB")
            .type("influxdb")
            .description(f"An InfluxDB data source that queries with {language}.")
        )
        .with_variable(
            builders.QueryVariable("run_id")
            .label("Run")
            .description(
                "Runs with points in the time range, ids in reverse order (dated ids, such as "
                "the reference platform's, come newest first)."
            )
            .datasource(DATASOURCE)
            .query(RUN_IDS[language])
            .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard.VariableSort.ALPHABETICAL_DESC)
        )
        .with_variable(
            builders.CustomVariable("export_interval")
            .label("Export interval")
            .description("--influxdb-interval of the run: no Grafana interval is shorter.")
            .values(",".join(EXPORT_INTERVALS))
            .current(
                dashboard.VariableOption(
                    text=DEFAULT_EXPORT_INTERVAL, value=DEFAULT_EXPORT_INTERVAL
                )
            )
        )
        .annotation(
            InfluxAnnotationBuilder(InfluxAnnotation("Run events", EVENTS[language], "blue"))
        )
    )
    for ref, (panel, grid_pos) in enumerate(zip(PANELS, _positions(PANELS), strict=True), 1):
        result.with_panel(_panel(panel, language, grid_pos, ref))
    return result.build()


def render(language: Language) -> str:
    """The file's text: the dashboard as Grafana imports it."""
    return json.dumps(build(language), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for language, name in FILES.items():
        (OUT / name).write_text(render(language))
        print(f"wrote {OUT / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
