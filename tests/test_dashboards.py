"""The Grafana dashboards in locust_perfx/dashboards/: what dashboards/build.py makes, the
Flux one panel for panel the InfluxQL one, and every InfluxQL query run, as Grafana would
send it, against a real InfluxDB 1.x that two real Locust runs wrote into; each panel's
numbers agree with Locust's own final report (``--json-file``: counts and histograms) and
the run summary's errors; the comparison panels agree with the table of a third run compared
with a fourth, its baseline.

Flux cannot run here (no InfluxDB 2): its dashboard is held to the InfluxQL one's shape.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from locust.stats import calculate_response_time_percentile

from dashboards import build
from tests.fixtures.influxdb1 import DATABASE, PASSWORD, USER, InfluxDB1, Row
from tests.fixtures.locust import ROOT, LocustProcess, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer
from tests.test_export_e2e import BEHAVIOURS

DASHBOARDS = ROOT / "locust_perfx" / "dashboards"
USERS = 3


def dashboard(language: build.Language) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / build.FILES[language]).read_text())
    return loaded


def test_the_checked_in_dashboards_are_what_build_py_makes() -> None:
    for language, name in build.FILES.items():
        assert (DASHBOARDS / name).read_text() == build.render(language), (
            f"locust_perfx/dashboards/{name} is stale: run python dashboards/build.py"
        )


def shape(board: dict[str, Any]) -> dict[str, Any]:
    """What a reader sees of a dashboard, whatever its query language."""
    return {
        "panels": [
            (
                panel["title"],
                panel["type"],
                panel["fieldConfig"]["defaults"].get("unit"),
                panel["fieldConfig"]["defaults"].get("displayName"),
                panel["gridPos"],
                panel.get("interval"),
                panel["description"],
            )
            for panel in board["panels"]
        ],
        "variables": [
            (
                variable["name"],
                variable["type"],
                variable.get("label"),
                variable.get("sort"),
                variable.get("refresh"),
            )
            for variable in board["templating"]["list"]
        ],
        "annotations": [item["name"] for item in board["annotations"]["list"]],
    }


def test_the_flux_dashboard_is_the_influxql_one_panel_for_panel() -> None:
    flux, influxql = dashboard("flux"), dashboard("influxql")

    assert shape(flux) == shape(influxql)
    for panel in flux["panels"]:
        [target] = panel["targets"]
        assert 'r.run_id == "${run_id}"' in target["query"], panel["title"]
        assert "range(start: v.timeRangeStart, stop: v.timeRangeStop)" in target["query"]
    for panel in influxql["panels"]:
        [target] = panel["targets"]
        assert "\"run_id\" = '$run_id' AND $timeFilter" in target["query"], panel["title"]


# -- the queries against real points -----------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """One Locust run written straight into InfluxDB 1.x, and what Locust counted: its
    ``--json-file`` report (each request name's counts and response-time histogram, taken
    after the last request; its periodic CSV may miss the last second) and the errors of
    the run summary."""

    run_id: str
    entries: dict[str, dict[str, Any]]  # by request name
    errors: list[dict[str, Any]]
    baseline: dict[str, Any] | None  # the summary's comparison with a baseline run

    def count(self, name: str | None = None, field: str = "num_requests") -> int:
        """Requests (or ``num_failures``) of one request name, or of all."""
        return sum(entry[field] for entry in self._of(name))

    def percentile(self, percent: int, name: str | None = None) -> int:
        """Locust's own percentile of one request name's, or all requests' histogram."""
        histogram: Counter[int] = Counter()
        for entry in self._of(name):
            histogram.update({int(ms): n for ms, n in entry["response_times"].items()})
        return calculate_response_time_percentile(histogram, self.count(name), percent / 100)

    def _of(self, name: str | None) -> list[dict[str, Any]]:
        return list(self.entries.values()) if name is None else [self.entries[name]]


@dataclass(frozen=True)
class Recordings:
    """``intervals``: 1 s points, many per run; ``whole``: one point per series (an
    interval longer than the run), so its percentiles are the run's own; ``compared``: a
    run with a baseline run (not exported), with a name new and a name gone."""

    intervals: Recording
    whole: Recording
    compared: Recording
    baseline_run_id: str
    started_ms: int
    ended_ms: int


@pytest.fixture(scope="module")
def recordings(
    influxdb1: InfluxDB1, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recordings]:
    """Two runs at once, failing a quarter of their requests, into the module's influxd; and
    a passing baseline run alongside, then a run like the two compared with it."""
    folder = tmp_path_factory.mktemp("dashboards")
    platform, target, runner = (
        PlatformServer(folder / "platform.sqlite3"),
        Target(),
        LocustRunner(folder),
    )
    try:
        platform.start()
        started_ms = int(time.time() * 1000)
        export = (
            *("--influxdb-url", influxdb1.url, "--influxdb-token", f"{USER}:{PASSWORD}"),
            *("--influxdb-org", "-", "--influxdb-bucket", DATABASE),
        )

        def start(kind: str, options: str, *extra: str, behaviour: str = "fail") -> str:
            run_id = platform.create_run(None, target.url, endpoint="shop", environment="ci")
            process = runner.start(
                *headless(run_id, platform.url, options),
                *extra,
                *("--json-file", str(folder / kind)),
                locustfile=BEHAVIOURS,
                env={"BEHAVIOUR": behaviour},
            )
            runs[kind] = (run_id, process)
            return run_id

        runs: dict[str, tuple[str, LocustProcess]] = {}
        # At least 5 whole intervals each (the test's minimum), into the comparison.
        baseline_run_id = start("baseline", "-u 2 -r 2 -t 7s --influxdb-interval 1", behaviour="ok")
        for kind, interval, users in (("intervals", "1", USERS), ("whole", "60", 2)):
            start(kind, f"-u {users} -r {users} -t 4s", *export, "--influxdb-interval", interval)
        for kind, (_, process) in runs.items():
            failing = kind != "baseline"  # exit 1: Locust's verdict on request failures
            assert process.wait(60) == int(failing), process.output
        start(
            "compared",
            "-u 2 -r 2 -t 7s --influxdb-interval 1",
            *export,
            *("--baseline", baseline_run_id),
        )
        assert runs["compared"][1].wait(60) == 1, runs["compared"][1].output
        del runs["baseline"]
        summaries = {
            kind: platform.get_run(run_id)["summary"] for kind, (run_id, _) in runs.items()
        }
        recorded = {
            kind: Recording(
                run_id,
                {e["name"]: e for e in json.loads((folder / f"{kind}.json").read_text())},
                summaries[kind]["errors"],
                summaries[kind].get("baseline"),
            )
            for kind, (run_id, _) in runs.items()
        }
        yield Recordings(
            **recorded,
            baseline_run_id=baseline_run_id,
            started_ms=started_ms,
            ended_ms=int(time.time() * 1000),
        )
    finally:
        runner.stop_all()
        target.close()
        platform.stop()


def grafana(query: str, recordings: Recordings, run_id: str, interval_s: int = 1) -> str:
    """The query as Grafana sends it to InfluxDB: variables and macros replaced."""
    start, end = recordings.started_ms - 60_000, recordings.ended_ms + 60_000
    sent = (
        query.replace("$__interval_ms", str(interval_s * 1000))
        .replace("$__interval", f"{interval_s}s")
        .replace("$timeFilter", f"time >= {start}ms and time <= {end}ms")
        .replace("$run_id", run_id)
    )
    assert "$" not in sent, sent
    return sent


PANELS = {panel["title"]: panel for panel in dashboard("influxql")["panels"]}


def panel_series(
    influxdb1: InfluxDB1, recordings: Recordings, title: str, run: Recording, interval_s: int = 1
) -> list[Row]:
    [target] = PANELS[title]["targets"]
    series = influxdb1.query(grafana(target["query"], recordings, run.run_id, interval_s))
    assert series, f"{title}: no series for {run.run_id}"
    return series


def column(series: Row, name: str) -> list[Any]:
    index = series["columns"].index(name)
    return [row[index] for row in series["values"]]


def single(series: list[Row], name: str) -> Any:
    """The one value of a stat panel's query."""
    [only] = series
    [value] = column(only, name)
    return value


def per_request(series: list[Row], name: str) -> dict[str, list[Any]]:
    return {row["tags"]["name"]: column(row, name) for row in series}


Check = Callable[[InfluxDB1, Recordings], None]
CHECKS: dict[str, Check] = {}


def checks(*titles: str) -> Callable[[Check], Check]:
    """Register ``check`` as what the panels ``titles`` must show."""

    def register(check: Check) -> Check:
        CHECKS.update(dict.fromkeys(titles, check))
        return check

    return register


@checks("Requests", "Failures", "Failure ratio")
def counts_are_locusts(influxdb1: InfluxDB1, recordings: Recordings) -> None:
    for run in (recordings.intervals, recordings.whole):
        requests = single(panel_series(influxdb1, recordings, "Requests", run), "requests")
        failures = single(panel_series(influxdb1, recordings, "Failures", run), "failures")
        ratio = single(panel_series(influxdb1, recordings, "Failure ratio", run), "failure_ratio")
        assert (requests, failures) == (run.count(), run.count(field="num_failures"))
        assert ratio == pytest.approx(failures / requests)


@checks("Peak users", "Users and workers")
def users_are_the_ones_started(influxdb1: InfluxDB1, recordings: Recordings) -> None:
    run = recordings.intervals
    assert single(panel_series(influxdb1, recordings, "Peak users", run), "users") == USERS
    [series] = panel_series(influxdb1, recordings, "Users and workers", run)
    assert max(column(series, "users")) == USERS
    assert set(column(series, "workers")) == {1}  # Locust counts a local runner as one


@checks("Requests per second", "Failures per second")
def rates_add_up_to_locusts_counts_at_any_interval(
    influxdb1: InfluxDB1, recordings: Recordings
) -> None:
    run = recordings.intervals
    for title, name, counted in (
        ("Requests per second", "requests/s", run.count()),
        ("Failures per second", "failures/s", run.count(field="num_failures")),
    ):
        for interval_s in (1, 60):
            [series] = panel_series(influxdb1, recordings, title, run, interval_s)
            assert len(series["values"]) > 1 or interval_s == 60
            assert sum(column(series, name)) * interval_s == pytest.approx(counted)


@checks("Requests per second by request")
def rates_per_request_add_up_to_locusts_counts(
    influxdb1: InfluxDB1, recordings: Recordings
) -> None:
    run = recordings.intervals
    series = panel_series(influxdb1, recordings, "Requests per second by request", run)
    summed = {name: sum(rates) for name, rates in per_request(series, "requests/s").items()}
    assert summed == pytest.approx({name: run.count(name) for name in ("/ok", "/fail")})


@checks("Failure ratio over time")
def ratios_weighted_by_requests_add_up_to_the_failures(
    influxdb1: InfluxDB1, recordings: Recordings
) -> None:
    run = recordings.intervals
    [ratios] = panel_series(influxdb1, recordings, "Failure ratio over time", run)
    [rates] = panel_series(influxdb1, recordings, "Requests per second", run)
    requests = dict(zip(column(rates, "time"), column(rates, "requests/s"), strict=True))
    weighted = sum(
        ratio * requests[at]
        for at, ratio in zip(column(ratios, "time"), column(ratios, "failure_ratio"), strict=True)
    )
    assert weighted == pytest.approx(run.count(field="num_failures"))
    assert 0 < max(column(ratios, "failure_ratio")) < 1


PERCENTILES = (50, 95, 99)


@checks("Response times (all requests)")
def percentiles_of_all_requests_are_locusts(influxdb1: InfluxDB1, recordings: Recordings) -> None:
    title = "Response times (all requests)"
    [whole] = panel_series(influxdb1, recordings, title, recordings.whole)
    [intervals] = panel_series(influxdb1, recordings, title, recordings.intervals)
    for percent in PERCENTILES:
        # One interval held the whole run: Locust's own percentile, to the millisecond.
        assert column(whole, f"p{percent}") == [recordings.whole.percentile(percent)]
        # Never above the worst interval's.
        worst = max(column(intervals, f"p{percent}"))
        assert recordings.intervals.percentile(percent) <= worst


@checks("p50 by request", "p95 by request", "p99 by request")
def percentiles_per_request_are_locusts(influxdb1: InfluxDB1, recordings: Recordings) -> None:
    for percent in PERCENTILES:
        title, field = f"p{percent} by request", f"p{percent}"
        whole = per_request(panel_series(influxdb1, recordings, title, recordings.whole), field)
        assert whole == {
            name: [recordings.whole.percentile(percent, name)] for name in ("/ok", "/fail")
        }
        intervals = per_request(
            panel_series(influxdb1, recordings, title, recordings.intervals), field
        )
        for name, values in intervals.items():
            assert recordings.intervals.percentile(percent, name) <= max(values)


@checks("Errors")
def errors_are_locusts_with_their_counts(influxdb1: InfluxDB1, recordings: Recordings) -> None:
    for run in (recordings.intervals, recordings.whole):
        table = panel_series(influxdb1, recordings, "Errors", run)
        shown = {
            (row["tags"]["method"], row["tags"]["name"], single([row], "message")): single(
                [row], "occurrences"
            )
            for row in table
        }
        assert shown == {
            (error["method"], error["name"], error["error"]): error["occurrences"]
            for error in run.errors
        }


@checks("Regressions against the baseline", "Against the baseline")
def the_comparison_is_the_run_summarys_table(influxdb1: InfluxDB1, recordings: Recordings) -> None:
    run = recordings.compared
    table = run.baseline
    assert table is not None and table["baseline_run_id"] == recordings.baseline_run_id
    # /fail is new (the baseline passed), /other gone; their rows lack one side.
    assert {"new", "gone"} <= {row["verdict"] for row in table["rows"]}
    regressions = panel_series(influxdb1, recordings, "Regressions against the baseline", run)
    assert single(regressions, "regressions") == table["regressions"]
    shown = {
        (f"{row['tags']['method']} {row['tags']['name']}".strip(), row["tags"]["metric"]): [
            single([row], column) for column in build.BASELINE_COLUMNS[3:]
        ]
        for row in panel_series(influxdb1, recordings, "Against the baseline", run)
    }
    ratio = "delta_ratio"
    assert shown == {
        (row["name"], row["metric"]): [
            row["baseline"],
            row["current"],
            None if row[ratio] is None else pytest.approx(row[ratio] * 100),
            row["p"],
            row["verdict"],
        ]
        for row in table["rows"]
    }
    [target] = PANELS["Against the baseline"]["targets"]
    alone = recordings.intervals  # no baseline: no comparison, no points
    assert alone.baseline is None
    assert influxdb1.query(grafana(target["query"], recordings, alone.run_id)) == []


@pytest.mark.parametrize("title", list(PANELS))
def test_the_panel_shows_what_locust_counted(
    title: str, influxdb1: InfluxDB1, recordings: Recordings
) -> None:
    assert title in CHECKS, f"panel {title!r} has no check here: add one"
    CHECKS[title](influxdb1, recordings)


def test_the_run_variable_lists_the_runs_in_the_time_range(
    influxdb1: InfluxDB1, recordings: Recordings
) -> None:
    [variable] = [v for v in dashboard("influxql")["templating"]["list"] if v["name"] == "run_id"]
    sent = grafana(variable["query"], recordings, run_id="")

    [series] = influxdb1.query(sent)
    listed = {row[1] for row in series["values"]}  # Grafana takes the second column
    exported = (recordings.intervals, recordings.whole, recordings.compared)
    assert listed == {run.run_id for run in exported}  # the baseline run was not exported
    long_before = sent.replace(f"{recordings.ended_ms + 60_000}ms", "1000ms")
    assert influxdb1.query(long_before) == []


def test_the_annotations_are_the_runs_start_and_fail(
    influxdb1: InfluxDB1, recordings: Recordings
) -> None:
    [annotation] = dashboard("influxql")["annotations"]["list"]
    target = annotation["target"]
    for run in (recordings.intervals, recordings.whole):
        [series] = influxdb1.query(grafana(target["query"], recordings, run.run_id))

        assert column(series, target["tagsColumn"]) == ["start", "fail"]
        texts = column(series, target["textColumn"])
        assert texts[0].startswith(f"run {run.run_id} started")
        assert "request failures" in texts[1]
