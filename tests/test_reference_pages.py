"""The reference platform's HTML pages: the pure chart functions, the pages the app draws,
and the token gate, in process and over real HTTP."""

from __future__ import annotations

import base64
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from locust_perfx.reference import create_app
from locust_perfx.reference.charts import (
    CHART_SIZE,
    FAILURES,
    NO_PROGRESS,
    P95,
    RPS,
    USERS,
    Point,
    chart_svg,
    format_seconds,
    format_value,
    segments,
    sparkline_svg,
    thin,
    time_ticks,
    value_ticks,
)
from locust_perfx.reference.pages import (
    baseline_points,
    interval_failure_ratio,
    overlay,
    series,
    summary_view,
)
from tests.fixtures.platform import PlatformFactory

TOKEN = "page-tok-3e9d1b-never-shown"
STARTED = "2026-11-23T10:00:00Z"
DASH = "\N{EN DASH}"
CHALLENGE = 'Basic realm="perfx platform", charset="UTF-8"'
TOTALS = {"requests": 100, "failures": 2, "failure_ratio": 0.02, "rps": 9.5, "p95_ms": 30.0}
SUMMARY = {
    "duration_s": 40.0,
    "users_peak": 4,
    "workers": 0,
    "total": TOTALS,
    "requests": [
        {"method": "GET", "name": "/search", **TOTALS, "avg_ms": 12.5, "min_ms": None},
        {"method": "POST", "name": "<img src=x onerror=alert(1)>", "requests": 3},
    ],
    "errors": [{"method": "GET", "name": "/search", "error": "HTTPError(500)", "occurrences": 2}],
}


def progress(seconds: float, **fields: Any) -> dict[str, Any]:
    """A progress body ``seconds`` after STARTED (whole seconds, under an hour)."""
    minutes, secs = divmod(int(seconds), 60)
    body = {"users": 4, "workers": 0, "rps": 9.5, "fail_ratio": 0.0, "requests": 10}
    return {"at": f"2026-11-23T10:{minutes:02d}:{secs:02d}Z", "failures": 0, **body, **fields}


def drawn_points(svg: str) -> list[tuple[float, float]]:
    """Every point a chart draws: its polylines' vertices and its single dots."""
    root = ET.fromstring(svg)
    points = []
    for shape in root.iter():
        tag = shape.tag.rsplit("}", 1)[-1]
        if tag == "polyline":
            pairs = shape.attrib["points"].split()
            points += [(float(x), float(y)) for x, y in (p.split(",") for p in pairs)]
        elif tag == "circle":
            points.append((float(shape.attrib["cx"]), float(shape.attrib["cy"])))
    return points


def lines_of(svg: str) -> int:
    return svg.count("<polyline")


# -- series and the pure drawing functions --------------------------------------------------


def test_series_follow_each_bodys_own_time_and_keep_what_is_not_a_number_as_a_gap() -> None:
    history = [
        progress(20, rps=3),
        progress(10, rps=1),
        progress(30, rps="fast"),
        progress(40, rps=True),
        progress(50, rps=10**400),
        {"at": "yesterday", "rps": 7},
        {"rps": 8},
    ]

    points = series(history, "rps", origin=1795428000.0)

    assert points == [(10.0, 1.0), (20.0, 3.0), (30.0, None), (40.0, None), (50.0, None)]
    assert series(history, "rps")[0] == (0.0, 1.0)  # no start known: from the first call
    assert series(history, "fail_ratio", scale=100.0)[0] == (0.0, 0.0)
    assert series([], "rps") == []


def test_the_failure_ratio_is_charted_per_interval_from_the_counts() -> None:
    history = [
        progress(10, requests=100, failures=0, fail_ratio=0.0),
        progress(20, requests=200, failures=50, fail_ratio=0.25),  # a burst: half failed
        progress(30, requests=200, failures=50, fail_ratio=0.25),  # no new requests
        progress(40, requests=300, failures=50, fail_ratio=0.1667),
        progress(50, requests=40, failures=4, fail_ratio=0.1),  # the stats were reset
    ]

    assert interval_failure_ratio(history) == [
        (0.0, 0.0),
        (10.0, 50.0),
        (20.0, None),
        (30.0, 0.0),
        (40.0, 10.0),
    ]
    older = [{k: v for k, v in body.items() if k != "failures"} for body in history]
    assert [v for _, v in interval_failure_ratio(older)] == pytest.approx([0, 25, 25, 16.67, 10])


def test_lines_break_at_a_missing_value_and_at_a_long_silence() -> None:
    steady: list[Point] = [(t, 1.0) for t in range(0, 50, 10)]
    with_hole: list[Point] = [(0, 1.0), (10, 2.0), (20, None), (30, 4.0), (40, 5.0)]
    silent: list[Point] = [(0, 1.0), (10, 1.0), (20, 1.0), (120, 1.0), (130, 1.0)]

    assert segments(steady) == [steady]
    assert segments(with_hole) == [[(0, 1.0), (10, 2.0)], [(30, 4.0), (40, 5.0)]]
    assert segments(silent) == [silent[:3], silent[3:]]
    assert segments([(0, 1.0), (500, 2.0)]) == [[(0, 1.0), (500, 2.0)]]  # too few to judge
    assert segments([(5, None)]) == []


def test_thinning_keeps_each_buckets_peak_and_its_gaps() -> None:
    points: list[Point] = [(t, 1.0) for t in range(1000)]
    points[501] = (501, 900.0)
    points[100:110] = [(t, None) for t in range(100, 110)]

    kept = thin(points, 100)

    assert len(kept) == 100
    assert (501, 900.0) in kept
    assert (100, None) in kept
    assert thin(points[:5], 100) == points[:5]


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (0, 0, [0, 0.25, 0.5, 0.75, 1.0]),
        (0, 7, [0, 2, 4, 6, 8]),
        (3, 3, [0, 1, 2, 3]),
        (0, 0.013, [0, 0.005, 0.01, 0.015]),
        (0, 123456, [0, 50000, 100000, 150000]),
    ],
)
def test_value_axes_start_at_zero_and_end_on_a_round_number(
    low: float, high: float, ticks: list[float]
) -> None:
    assert value_ticks(low, high) == pytest.approx(ticks)


def test_value_axes_hold_the_largest_floats() -> None:
    ticks = value_ticks(0, 1.7e308)

    assert all(math.isfinite(t) for t in ticks)
    assert ticks[0] == 0 and ticks[-1] >= 1.7e308


def test_time_axes_mark_clock_round_moments() -> None:
    assert time_ticks(0, 35) == [0, 10, 20, 30]
    assert time_ticks(0, 3600) == [0, 600, 1200, 1800, 2400, 3000, 3600]
    assert len(time_ticks(0, 30 * 86400)) <= 7
    assert time_ticks(-5, 20) == [-5, 0, 5, 10, 15, 20]


def test_readings_are_short() -> None:
    assert [format_value(v) for v in (0, 0.25, 9.5, 250, 999.9, 1500, 2e6, 3.2e12, 7e20)] == [
        "0",
        "0.25",
        "9.5",
        "250",
        "1000",
        "1.5k",
        "2M",
        "3.2T",
        "7e+20",
    ]
    assert [format_seconds(s) for s in (0, 45, 90, 120, 3900, -5)] == [
        "0s",
        "45s",
        "1m30s",
        "2m",
        "1h05m",
        "-5s",
    ]


def test_a_chart_draws_every_point_inside_its_axes_with_units() -> None:
    points: list[Point] = [(t, t / 10) for t in range(10, 70, 10)]

    svg = chart_svg(points, RPS, end=80)

    drawn = drawn_points(svg)
    width, height = CHART_SIZE
    assert len(drawn) == 6 and lines_of(svg) == 1
    assert all(0 < x <= width and 0 < y < height for x, y in drawn)
    assert drawn == sorted(drawn)  # left to right, rising
    assert ">req/s</text>" in svg
    assert ">0s</text>" in svg and ">1m</text>" in svg  # the time axis reaches the end (80 s)
    assert 'data-metric="rps"' in svg


def test_a_chart_without_values_says_why_and_draws_nothing() -> None:
    nothing = chart_svg([], USERS)
    not_reported = chart_svg([(10, None), (20, None)], P95, empty="no p95_ms here")

    assert NO_PROGRESS in nothing and drawn_points(nothing) == []
    assert "no p95_ms here" in not_reported and drawn_points(not_reported) == []


def test_a_chart_of_one_point_zeros_gaps_and_huge_values_stays_drawable() -> None:
    one = chart_svg([(10, 5.0)], USERS)
    zeros = chart_svg([(t, 0.0) for t in range(0, 40, 10)], FAILURES)
    gappy = chart_svg([(0, 1.0), (10, 2.0), (20, None), (30, 3.0), (200, 4.0)], RPS)
    huge = chart_svg([(0, 1.0), (10, 1.7e308), (20, 10.0**300)], P95)

    assert len(drawn_points(one)) == 1 and "<circle" in one
    assert {y for _, y in drawn_points(zeros)} == {186.0 - 12.0}  # on the zero line
    assert len(drawn_points(gappy)) == 4 and lines_of(gappy) == 1 and gappy.count("<circle") == 2
    assert len(drawn_points(huge)) == 3
    for svg in (one, zeros, gappy, huge):
        assert "nan" not in svg and "inf" not in svg
        ET.fromstring(svg)  # well-formed


def test_a_sparkline_has_no_axes_and_an_empty_state() -> None:
    spark = sparkline_svg([(t, float(t)) for t in range(0, 100, 10)])

    assert len(drawn_points(spark)) == 10 and "<text" not in spark
    assert "no progress" in sparkline_svg([])


def test_a_summary_is_shown_as_far_as_it_goes() -> None:
    full = summary_view(SUMMARY)
    failed = summary_view({"error": "KeyError: 'total'"})
    odd = summary_view({"requests": "not a list", "errors": [5, {"error": "x"}], "total": {}})

    assert full.error is None and full.total[:4] == [(k, str(v)) for k, v in TOTALS.items()][:4]
    assert full.total[4] == ("p95_ms", "30")
    assert ("peak users", "4") in full.facts
    assert full.requests[0][:5] == ["GET", "/search", "100", "2", "0.02"]
    assert full.requests[1][2:4] == ["3", DASH]  # a missing field shows as a dash
    assert full.errors == [["GET", "/search", "HTTPError(500)", "2"]]
    assert failed.error == "KeyError: 'total'" and failed.requests == [] and failed.total == []
    assert odd.requests == [] and odd.errors == [[DASH, DASH, "x", DASH]] and odd.total == []
    assert summary_view(None).facts == []
    series = {"interval_s": 5.0, "stride": 1, "requests": [1], "failures": [0], "p95_ms": [9]}
    total = {"requests": 1, "histogram": [[9, 1]], "series": series}
    assert summary_view({"total": total}).total == [("requests", "1")]


# -- the pages, drawn by the app ------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield create_app(tmp_path / "platform.sqlite3", progress_timeout=0)


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[Flask]:
    yield create_app(tmp_path / "gated.sqlite3", token=TOKEN, progress_timeout=0)


def new_run(client: FlaskClient, headers: dict[str, str] | None = None, **endpoint: Any) -> str:
    body = {
        "endpoint": {"name": "search", "argument_schema": {"parameters": []}, **endpoint},
        "environment": {"name": "staging", "host": "http://search.staging:8080"},
    }
    response = client.post("/api/perf/runs", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.get_json()["id"])


def state(client: FlaskClient, run_id: str, call: str, body: Any, **kwargs: Any) -> None:
    response = client.post(f"/api/perf/runs/{run_id}/{call}", json=body, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)


def started(client: FlaskClient, headers: dict[str, str] | None = None) -> str:
    run_id = new_run(client, headers)
    start = {
        "arguments": {"model": "<b>gpt</b>", "batch_size": 32, "warm": True},
        "host": "http://search.staging:8080",
        "started_at": STARTED,
        "locust": {"version": "2.47.0", "mode": "local", "users": 4, "spawn_rate": 2},
    }
    state(client, run_id, "start", start, headers=headers)
    return run_id


def chart(page: str, metric: str) -> str:
    found = re.search(rf'<svg class="chart" data-metric="{metric}".*?</svg>', page, re.DOTALL)
    assert found, f"no {metric} chart"
    return found.group(0)


def test_the_run_page_charts_each_progress_call_and_shows_the_summary(app: Flask) -> None:
    client = app.test_client()
    run_id = started(client)
    for second in (10, 20, 30):
        body = progress(second, p95_ms=120.0 + second, requests=10 * second)
        state(client, run_id, "progress", body)
    state(client, run_id, "fail", {"finished_at": "2026-11-23T10:00:40Z", "reason": "<i>gone</i>"})

    page = client.get(f"/runs/{run_id}").get_data(as_text=True)

    for metric in ("users", "rps", "fail_ratio", "p95_ms"):
        assert len(drawn_points(chart(page, metric))) == 3, metric
    assert "From the 3 progress calls" in page
    assert "&lt;i&gt;gone&lt;/i&gt;" in page and "<i>gone" not in page
    assert "<th>model</th><td>&lt;b&gt;gpt&lt;/b&gt;</td>" in page
    assert "<th>warm</th><td>true</td>" in page
    assert "version 2.47.0, mode local, users 4, spawn_rate 2" in page
    assert '<meta http-equiv="refresh"' not in page  # finished: nothing left to watch


def test_a_run_without_progress_says_so_in_every_chart(app: Flask) -> None:
    client = app.test_client()
    run_id = started(client)

    page = client.get(f"/runs/{run_id}").get_data(as_text=True)

    assert f"<p>{NO_PROGRESS.capitalize()}.</p>" in page and "<svg" not in page
    assert "No summary yet" in page
    assert '<meta http-equiv="refresh" content="10">' in page  # running: reload to follow


def test_progress_without_p95_leaves_that_chart_empty_and_says_why(app: Flask) -> None:
    client = app.test_client()
    run_id = started(client)
    state(client, run_id, "progress", progress(10))

    page = client.get(f"/runs/{run_id}").get_data(as_text=True)

    assert "the progress calls carry no p95_ms" in chart(page, "p95_ms")
    assert len(drawn_points(chart(page, "rps"))) == 1


def test_the_summary_table_has_a_row_per_request_name_and_escapes_names(app: Flask) -> None:
    client = app.test_client()
    run_id = started(client)
    state(client, run_id, "complete", {"finished_at": "2026-11-23T10:00:40Z", "summary": SUMMARY})

    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    table = re.search(r'<table class="requests">.*?</table>', page, re.DOTALL)

    assert table is not None
    assert table.group(0).count("<tr>") == 3  # the heading and two names
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img" not in page
    assert "HTTPError(500)" in page


def test_the_run_page_shows_response_times_in_whole_ms_and_an_exit_code_only_when_known(
    app: Flask,
) -> None:
    client = app.test_client()
    exact = {"min_ms": 5.371666999963054, "max_ms": 812.0000001, "avg_ms": 97.123456}
    summary = {"total": exact, "requests": [{"method": "GET", "name": "/a", **exact}]}
    completed, failed = started(client), started(client)
    state(client, completed, "complete", {"finished_at": STARTED, "summary": summary})
    state(client, failed, "fail", {"finished_at": STARTED, "reason": "boom", "exit_code": 1})

    page = client.get(f"/runs/{completed}").get_data(as_text=True)

    assert "<th>min_ms</th><td>5</td>" in page and "<th>max_ms</th><td>812</td>" in page
    assert '<td class="num">5</td>' in page and '<td class="num">97.12</td>' in page
    assert "5.37" not in page and "812.0" not in page
    assert "exit code" not in page  # complete carries none: no empty row
    assert "<th>exit code</th><td>1</td>" in client.get(f"/runs/{failed}").get_data(as_text=True)


def test_the_run_list_shows_status_reason_and_an_rps_sparkline(app: Flask) -> None:
    client = app.test_client()
    quiet = new_run(client)
    busy = started(client)
    for second in (10, 20, 30, 40):
        state(client, busy, "progress", progress(second, rps=second / 2))
    state(client, busy, "fail", {"finished_at": "2026-11-23T10:00:50Z", "reason": "p95 > 500"})

    page = client.get("/").get_data(as_text=True)

    assert re.findall(r'href="runs/([^"]+)"', page) == [busy, quiet]  # newest first
    spark = re.search(r'<svg class="spark".*?</svg>', page, re.DOTALL)
    assert spark is not None and len(drawn_points(spark.group(0))) == 4
    assert "p95 &gt; 500" in page
    assert "no progress" in page  # the run that never started


def test_an_unknown_run_is_a_404_page(app: Flask) -> None:
    response = app.test_client().get("/runs/run_nope")

    assert response.status_code == 404
    assert "run run_nope not found" in response.get_data(as_text=True)


# -- the baseline drawn over the run's charts -----------------------------------------------


def dashed_points(svg: str) -> list[tuple[float, float]]:
    """Every vertex of a chart's dashed (baseline) lines."""
    root = ET.fromstring(svg)
    points = []
    for shape in root.iter():
        if shape.tag.rsplit("}", 1)[-1] == "polyline" and "stroke-dasharray" in shape.attrib:
            pairs = shape.attrib["points"].split()
            points += [(float(x), float(y)) for x, y in (p.split(",") for p in pairs)]
    return points


def solid_points(svg: str) -> list[tuple[float, float]]:
    return [p for p in drawn_points(svg) if p not in set(dashed_points(svg))]


def test_the_baselines_series_are_points_at_the_end_of_each_kept_interval() -> None:
    series = {"interval_s": 2, "stride": 4, "requests": [20, 30, 0], "p95_ms": [90, 95, None]}
    summary = {"total": {"series": series}}

    assert baseline_points(summary, RPS) == [(2.0, 10.0), (10.0, 15.0), (18.0, 0.0)]
    assert baseline_points(summary, P95) == [(2.0, 90.0), (10.0, 95.0), (18.0, None)]
    for odd in (None, {}, {"total": {}}, {"total": {"series": {**series, "interval_s": 0}}}):
        assert baseline_points(odd, RPS) == []
    assert baseline_points({"total": {"series": {**series, "requests": "x"}}}, RPS) == []


def test_a_baseline_is_drawn_dashed_under_the_run_with_a_legend_and_fits_the_axis() -> None:
    run = [(10.0, 5.0), (20.0, 8.0), (30.0, 6.0)]
    baseline = [(10.0, 4.0), (20.0, 24.0), (30.0, 7.0), (300.0, 99.0)]  # 300 s: past the run

    svg = str(chart_svg(run, RPS, baseline=baseline, baseline_label="baseline run_1"))
    plain = str(chart_svg(run, RPS))

    dashed = dashed_points(svg)
    assert len(dashed) == 3  # the point past the run's span is left out
    # The run's own line keeps its times; its values are rescaled to the taller axis.
    assert [x for x, _ in solid_points(svg)] == [x for x, _ in drawn_points(plain)]
    assert svg.index("stroke-dasharray") < svg.index('<polyline class="line"')  # drawn under
    assert "baseline run_1" in svg and "this run" in svg and "(dashed)" in svg
    ticks = [float(t) for t in re.findall(r'class="tick"[^>]*text-anchor="end">([\d.]+)<', svg)]
    assert max(ticks) >= 24  # the baseline's peak is on the axis, not clipped
    assert min(y for _, y in dashed) >= 22  # inside the plot, below its top margin
    assert "stroke-dasharray" not in plain and "this run" not in plain


def test_the_overlay_note_says_what_is_drawn_or_why_nothing_is() -> None:
    series = {"interval_s": 1, "stride": 1, "requests": [5, 6], "p95_ms": [10, 11]}

    assert overlay("", None).note.startswith("No baseline run")
    assert "is not on this platform" in overlay("run_gone", None).note
    old = overlay("run_old", {"summary": {"total": {"requests": 11}}})
    assert old.lines == {} and "has no per-interval series" in old.note
    drawn = overlay("run_1", {"summary": {"total": {"series": series}}})
    assert set(drawn.lines) == {"rps", "p95_ms"} and drawn.note.startswith("Dashed: baseline")


def completed_baseline(client: FlaskClient, series: dict[str, Any] | None) -> str:
    run_id = started(client)
    total = {**TOTALS, **({"series": series} if series else {})}
    summary = {**SUMMARY, "total": total}
    state(client, run_id, "complete", {"finished_at": "2026-11-23T10:00:40Z", "summary": summary})
    return run_id


def run_against(client: FlaskClient, base_id: str) -> str:
    """A run whose baseline is ``base_id``, with three progress calls."""
    response = client.post(
        "/api/perf/runs",
        json={
            "endpoint": {"name": "search", "argument_schema": {"parameters": []}},
            "environment": {"name": "staging", "host": "http://search.staging:8080"},
            "baseline_run_id": base_id,
        },
    )
    run_id = str(response.get_json()["id"])
    state(client, run_id, "start", {"arguments": {}, "host": "http://h", "started_at": STARTED})
    for second in (10, 20, 30):
        state(client, run_id, "progress", progress(second, p95_ms=100.0 + second))
    return run_id


def test_the_run_page_draws_the_baselines_rps_and_p95_dashed_over_its_own(app: Flask) -> None:
    client = app.test_client()
    series = {"interval_s": 10, "stride": 1, "requests": [80, 95, 90], "failures": [0, 0, 0]}
    base_id = completed_baseline(client, {**series, "p95_ms": [140, 150, 145]})
    run_id = run_against(client, base_id)

    page = client.get(f"/runs/{run_id}").get_data(as_text=True)

    assert len(dashed_points(chart(page, "rps"))) == 3
    assert len(dashed_points(chart(page, "p95_ms"))) == 3
    assert not dashed_points(chart(page, "users")) and not dashed_points(chart(page, "fail_ratio"))
    assert len(solid_points(chart(page, "p95_ms"))) == 3  # the run's own line is still there
    assert f"Dashed: baseline run {base_id}" in page and f"baseline {base_id}" in page


def test_without_a_usable_baseline_the_charts_are_the_runs_alone_with_a_note(app: Flask) -> None:
    client = app.test_client()
    old = run_against(client, completed_baseline(client, None))
    gone = run_against(client, "run_never_was")
    alone = started(client)
    state(client, alone, "progress", progress(10))

    pages = {run: client.get(f"/runs/{run}").get_data(as_text=True) for run in (old, gone, alone)}

    for page in pages.values():
        assert "stroke-dasharray" not in page and "this run" not in page
    assert "has no per-interval series in its summary" in pages[old]
    assert "Baseline run run_never_was is not on this platform" in pages[gone]
    assert "No baseline run: nothing is drawn over the charts." in pages[alone]


# -- the token gate -------------------------------------------------------------------------


def basic(password: str, user: str = "") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", ["/", "/runs/{run_id}", "/runs/run_nope", "/favicon.ico"])
def test_with_a_token_every_page_asks_for_it_and_shows_nothing_else(
    gated: Flask, path: str
) -> None:
    client = gated.test_client()
    run_id = started(client, BEARER)

    for headers in ({}, basic("not-it"), {"Authorization": "Bearer not-it"}, basic("")):
        response = client.get(path.format(run_id=run_id), headers=headers)
        text = response.get_data(as_text=True)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert run_id not in text and "gpt" not in text and "search" not in text
        assert "any user name" in text
        assert TOKEN not in text


def test_with_a_token_the_pages_take_it_as_basic_password_or_bearer(gated: Flask) -> None:
    client = gated.test_client()
    run_id = started(client, BEARER)

    for headers in (basic(TOKEN), basic(TOKEN, user="anyone"), BEARER):
        listed = client.get("/", headers=headers)
        page = client.get(f"/runs/{run_id}", headers=headers)
        assert listed.status_code == page.status_code == 200
        assert run_id in listed.get_data(as_text=True)
        assert "&lt;b&gt;gpt&lt;/b&gt;" in page.get_data(as_text=True)
        assert TOKEN not in page.get_data(as_text=True)


def test_the_api_still_takes_only_the_bearer_token(gated: Flask) -> None:
    client = gated.test_client()

    assert client.get("/api/perf/runs", headers=basic(TOKEN)).status_code == 401
    assert client.get("/api/perf/runs", headers=BEARER).status_code == 200


def test_without_a_token_the_pages_are_open(app: Flask) -> None:
    client = app.test_client()
    run_id = started(client)

    assert client.get("/").status_code == 200
    assert client.get(f"/runs/{run_id}", headers=basic("whatever")).status_code == 200


def test_over_http_the_gate_holds_and_the_token_stays_out_of_pages_and_logs(
    platform_factory: PlatformFactory,
) -> None:
    import requests

    platform = platform_factory(token=TOKEN)
    run_id = platform.create_run()
    page = f"{platform.url}/runs/{run_id}"

    anonymous = requests.get(page, timeout=5)
    wrong = requests.get(page, auth=("", "not-it"), timeout=5)
    signed_in = requests.get(page, auth=("", TOKEN), timeout=5)
    listed = requests.get(platform.url + "/", auth=("me", TOKEN), timeout=5)

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert run_id not in anonymous.text
    assert signed_in.status_code == listed.status_code == 200
    assert run_id in signed_in.text and run_id in listed.text
    for response in (anonymous, wrong, signed_in, listed):
        assert TOKEN not in response.text
    assert platform.stop() == 0
    assert TOKEN not in platform.output
