"""The summary's per-interval series and histograms: what they hold, and their bound."""

from __future__ import annotations

import json

import pytest
from locust.stats import RequestStats

from locust_perfx.series import MAX_INTERVALS, MAX_NAMES, SeriesRecorder, add_series, histogram
from locust_perfx.snapshot import summarize
from tests.fixtures.openapi import validate_request


def recorded(stats: RequestStats, recorder: SeriesRecorder, intervals: list[list[int]]) -> None:
    """Each interval logs its response times for GET /a, then its boundary passes."""
    recorder.start(stats, now=0.0)
    for i, times in enumerate(intervals, start=1):
        for ms in times:
            stats.log_request("GET", "/a", ms, 10)
        recorder.tick(stats, now=i * recorder.interval)


def test_each_interval_holds_its_own_requests_failures_and_p95() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=2.0)
    recorder.start(stats, now=0.0)
    for ms in range(1, 101):
        stats.log_request("GET", "/a", ms, 10)
    stats.log_error("GET", "/a", "boom")
    recorder.tick(stats, now=1.9)  # not yet the end of the interval
    recorder.tick(stats, now=2.0)
    recorder.tick(stats, now=4.0)  # idle
    stats.log_request("GET", "/a", 300, 10)
    recorder.tick(stats, now=6.5)
    stats.log_request("GET", "/a", 999, 10)  # the partial last interval is left out
    assert recorder.series(("/a", "GET")) == {
        "interval_s": 2.0,
        "stride": 1,
        "requests": [100, 0, 1],
        "failures": [1, 0, 0],
        "p95_ms": [96, None, 300],  # Locust's p95 of 1..100 ms
    }
    assert recorder.series(("", ""))["requests"] == [100, 0, 1]  # type: ignore[index]


def test_a_late_tick_records_one_interval_not_an_empty_and_a_double_one() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0)
    recorder.start(stats, now=0.0)
    stats.log_request("GET", "/a", 10, 1)
    recorder.tick(stats, now=2.5)
    stats.log_request("GET", "/a", 10, 1)
    recorder.tick(stats, now=3.0)
    assert recorder.series(("/a", "GET"))["requests"] == [1, 1]  # type: ignore[index]


def test_a_name_seen_late_did_nothing_before() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0)
    recorded(stats, recorder, [[10], [10]])
    stats.log_request("POST", "/b", 50, 1)
    recorder.tick(stats, now=3.0)
    assert recorder.series(("/b", "POST")) == {
        "interval_s": 1.0,
        "stride": 1,
        "requests": [0, 0, 1],
        "failures": [0, 0, 0],
        "p95_ms": [None, None, 50],
    }


def test_a_long_run_keeps_every_other_interval_within_the_bound() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0, max_intervals=8)
    recorded(stats, recorder, [[i + 1] for i in range(20)])  # interval i: one request of i+1 ms
    series = recorder.series(("/a", "GET"))
    assert series is not None
    assert series["stride"] == 4
    assert series["p95_ms"] == [1, 5, 9, 13, 17]  # intervals 0, 4, 8, ...: whole intervals
    assert len(series["requests"]) == len(series["failures"]) == 5


def test_the_default_bound_holds_for_an_hour_at_one_second() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0)
    recorded(stats, recorder, [[10]] * 3600)
    series = recorder.series(("/a", "GET"))
    assert series is not None
    assert MAX_INTERVALS // 2 <= len(series["requests"]) <= MAX_INTERVALS
    summary = summarize(stats, users_peak=1, workers=0, started_at=0, finished_at=3600)
    add_series(summary, stats, recorder)
    complete = {"finished_at": summary["finished_at"], "summary": summary}
    validate_request("POST", "/api/perf/runs/{run_id}/complete", complete)


def test_names_past_the_bound_keep_their_totals_only() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0, max_names=2)
    recorder.start(stats, now=0.0)
    for name in ("/1", "/2", "/3"):
        stats.log_request("GET", name, 10, 1)
    recorder.tick(stats, now=1.0)
    summary = summarize(stats, users_peak=1, workers=0, started_at=0, finished_at=1)
    add_series(summary, stats, recorder)
    assert ["series" in row for row in summary["requests"]] == [True, True, False]
    assert ["histogram" in row for row in summary["requests"]] == [True, True, False]
    assert "series" in summary["total"]


def test_once_the_bound_is_reached_the_recorded_names_go_on_and_no_other_joins() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0, max_names=2)
    recorder.start(stats, now=0.0)
    for name in ("/1", "/2", "/3"):
        stats.log_request("GET", name, 10, 1)
    recorder.tick(stats, now=1.0)
    for name in ("/1", "/1", "/3", "/4"):
        stats.log_request("GET", name, 10, 1)
    recorder.tick(stats, now=2.0)

    assert [
        recorder.series(("/1", "GET"))["requests"],
        recorder.series(("/2", "GET"))["requests"],
    ] == [  # type: ignore[index]
        [1, 2],
        [1, 0],
    ]
    assert recorder.series(("/3", "GET")) is None and recorder.series(("/4", "GET")) is None
    assert recorder.series(("", ""))["requests"] == [3, 4]  # type: ignore[index]


def test_the_histogram_is_lockusts_buckets() -> None:
    stats = RequestStats()
    for ms in (12, 12, 147, 3456):
        stats.log_request("GET", "/a", ms, 1)
    assert histogram(stats.get("/a", "GET")) == [[12, 2], [150, 1], [3500, 1]]


def test_a_reset_counts_from_zero() -> None:
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0)
    recorded(stats, recorder, [[10, 10]])
    stats.reset_all()
    stats.log_request("GET", "/a", 20, 1)
    recorder.tick(stats, now=2.0)
    assert recorder.series(("/a", "GET"))["requests"] == [2, 1]  # type: ignore[index]


def test_the_summary_stays_small_at_the_bound() -> None:
    """50 names x 120 intervals, each name in every bucket up to 60 s: the summary's size."""
    stats, recorder = RequestStats(), SeriesRecorder(interval=1.0)
    recorder.start(stats, now=0.0)
    every_bucket = [*range(1, 100), *range(100, 1000, 10), *range(1000, 60_000, 100)]
    for i in range(1, MAX_INTERVALS + 1):
        for n in range(MAX_NAMES):
            for ms in every_bucket if i == 1 else (i,):
                stats.log_request("GET", f"/name/{n}", ms, 1)
        recorder.tick(stats, now=float(i))
    summary = summarize(stats, users_peak=1, workers=0, started_at=0, finished_at=120)
    add_series(summary, stats, recorder)
    size = len(json.dumps(summary))
    assert all("series" in row and "histogram" in row for row in summary["requests"])
    assert size < 400_000, size  # 254 kB, measured
    complete = {"finished_at": summary["finished_at"], "summary": summary}
    validate_request("POST", "/api/perf/runs/{run_id}/complete", complete)


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="seconds > 0"):
        SeriesRecorder(interval=0)
