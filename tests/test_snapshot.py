"""Snapshots of real Locust stats: exact interval deltas, resets, folding and the summary."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from locust.env import Environment
from locust.event import Events
from locust.stats import (
    RequestStats,
    StatsEntry,
    StatsError,
    calculate_response_time_percentile,
    setup_distributed_stats_event_listeners,
)

from locust_perfx.handoff import ChangeReader, StatsMirror
from locust_perfx.influx import PerfxLayout
from locust_perfx.snapshot import (
    OTHER_NAME,
    PERCENTILES,
    EntryDelta,
    Interval,
    IntervalTracker,
    Sample,
    histogram_timings,
    parse_error,
    summarize,
)


def bucket_response_time(response_time: float) -> int:
    """Locust's own rounding of a response time into its histogram, in every version."""
    entry = StatsEntry(RequestStats(), "rounding", "GET")
    entry.log(response_time, 0)
    (bucket,) = entry.response_times
    return int(bucket)


class FakeClock:
    """A settable clock so interval durations (and so rps) are exact."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stats() -> RequestStats:
    return Environment(events=Events()).stats


def by_name(interval: Interval) -> dict[tuple[str, str], EntryDelta]:
    return {(e.name, e.method): e for e in interval.entries}


def percentiles(delta: EntryDelta) -> dict[float, int]:
    return dict(zip(PERCENTILES, delta.percentiles, strict=True))


def oracle_percentile(response_times: list[int], percent: float) -> int:
    """Locust's percentile rule, computed independently from the raw requests."""
    ordered = sorted(bucket_response_time(t) for t in response_times)
    return ordered[min(int(len(ordered) * percent), len(ordered) - 1)]


def test_an_interval_holds_only_what_happened_since_the_last_snapshot(
    stats: RequestStats,
) -> None:
    clock = FakeClock()
    tracker = IntervalTracker(clock=clock)
    stats.log_request("GET", "/a", 10, 100)
    tracker.reset(stats)

    for response_time in (20, 30, 40, 1234):
        stats.log_request("GET", "/a", response_time, 200)
    stats.log_error("GET", "/a", "boom")
    stats.log_request("POST", "/b", 5, 0)
    clock.now += 2.0
    interval = tracker.take(stats)

    a = by_name(interval)[("/a", "GET")]
    assert (a.requests, a.failures, a.timed_requests) == (4, 1, 4)
    assert a.avg_ms == pytest.approx((20 + 30 + 40 + 1234) / 4)
    assert (a.min_ms, a.max_ms) == (20, 1200)  # Locust buckets 1234 ms as 1200
    assert percentiles(a) == {0.5: 40, 0.9: 1200, 0.95: 1200, 0.99: 1200}
    assert a.content_length == 4 * 200
    assert interval.duration == 2.0
    assert interval.total.requests == 5
    assert [(e.name, e.message, e.occurrences) for e in interval.errors] == [("/a", "boom", 1)]


def test_idle_names_are_left_out_of_the_next_interval(stats: RequestStats) -> None:
    tracker = IntervalTracker()
    stats.log_request("GET", "/a", 10, 0)
    stats.log_request("GET", "/b", 10, 0)
    tracker.take(stats)
    stats.log_request("GET", "/b", 10, 0)

    assert list(by_name(tracker.take(stats))) == [("/b", "GET")]
    assert tracker.take(stats).entries == ()


def test_percentiles_match_locusts_function(stats: RequestStats) -> None:
    for response_time in range(1, 500, 7):
        stats.log_request("GET", "/a", response_time, 0)
    delta = by_name(IntervalTracker().take(stats))[("/a", "GET")]

    histogram = stats.entries[("/a", "GET")].response_times
    expected = {
        p: calculate_response_time_percentile(histogram, delta.requests, p) for p in PERCENTILES
    }
    assert percentiles(delta) == expected


def test_requests_without_a_response_time_count_but_do_not_time(stats: RequestStats) -> None:
    stats.log_request("GET", "/a", None, 0)  # type: ignore[arg-type]  # Locust allows None

    delta = by_name(IntervalTracker().take(stats))[("/a", "GET")]

    assert (delta.requests, delta.timed_requests, delta.avg_ms) == (1, 0, None)
    assert (delta.min_ms, delta.max_ms, delta.percentiles) == (None, None, ())


@pytest.mark.parametrize("reset", ["reset_all", "clear_all"])
def test_counts_restart_from_zero_after_locust_resets_the_stats(
    stats: RequestStats, reset: str
) -> None:
    tracker = IntervalTracker()
    for _ in range(5):
        stats.log_request("GET", "/a", 10, 0)
    stats.log_error("GET", "/a", "boom")
    tracker.take(stats)

    getattr(stats, reset)()  # what Locust does on a new test from the web UI / --reset-stats
    for _ in range(7):  # more than before the reset, so only the reset itself can tell
        stats.log_request("GET", "/a", 10, 0)
    stats.log_error("GET", "/a", "boom")
    interval = tracker.take(stats)

    assert by_name(interval)[("/a", "GET")].requests == 7
    assert interval.total.requests == 7
    assert [e.occurrences for e in interval.errors] == [1]


def test_reset_makes_the_current_stats_the_baseline(stats: RequestStats) -> None:
    tracker = IntervalTracker()
    stats.log_request("GET", "/a", 10, 0)
    tracker.reset(stats)

    assert tracker.take(stats).total.requests == 0


def test_names_past_max_names_fold_into_other_once_logged(
    stats: RequestStats, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = IntervalTracker(max_names=2)
    for name, response_time in [("/a", 10), ("/b", 20), ("/c", 30), ("/d", 4000)]:
        stats.log_request("GET", name, response_time, 0)
        stats.log_error("GET", name, "same message")
    with caplog.at_level(logging.WARNING, logger="locust_perfx.snapshot"):
        interval = tracker.take(stats)
        stats.log_request("GET", "/e", 10, 0)
        tracker.take(stats)

    other = by_name(interval)[(OTHER_NAME, "GET")]
    assert sorted(by_name(interval)) == [("/a", "GET"), ("/b", "GET"), (OTHER_NAME, "GET")]
    assert (other.requests, other.min_ms, other.max_ms) == (2, 30, 4000)
    assert {(e.name, e.occurrences) for e in interval.errors} == {
        ("/a", 1),
        ("/b", 1),
        (OTHER_NAME, 2),
    }
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert OTHER_NAME in caplog.records[0].getMessage()


def keyed_as_locust_240(stats: RequestStats) -> None:
    """Re-key every histogram as Locust < 2.43 keeps it: ``round(t, -1)`` of a float response
    time is a float, so buckets from 100 ms up are ``150.0``, below 100 ms ``95``."""
    for entry in [stats.total, *stats.entries.values()]:
        entry.response_times = defaultdict(
            int,
            {
                (float(bucket) if bucket >= 100 else bucket): count
                for bucket, count in entry.response_times.items()
            },
        )


def test_float_keyed_histograms_of_older_locusts_still_give_int_timings(
    stats: RequestStats,
) -> None:
    """InfluxDB refuses a field whose type changes ("field type conflict"), and ``150.0i`` is
    no line protocol: timings are ints whatever Locust keyed its buckets by."""
    tracker = IntervalTracker(max_names=1)
    tracker.reset(stats)
    for name, response_time in [("/a", 95.4), ("/a", 147.2), ("/b", 2210.7), ("/c", 151.0)]:
        stats.log_request("GET", name, response_time, 10)
    keyed_as_locust_240(stats)
    assert 150.0 in stats.entries[("/a", "GET")].response_times  # the shape 2.40 gives
    interval = tracker.take(stats)
    stats.log_request("GET", "/a", 480.9, 10)  # a new bucket after the baseline was taken
    keyed_as_locust_240(stats)
    later = tracker.take(stats)

    deltas = [interval.total, *interval.entries, later.total, *later.entries]
    assert {d.name for d in deltas} == {"Aggregated", "/a", OTHER_NAME}  # /b, /c folded
    for delta in deltas:
        timings = [delta.min_ms, delta.max_ms, *delta.percentiles]
        assert {type(t) for t in timings} == {int}, delta
    assert by_name(interval)[(OTHER_NAME, "GET")][-3:] == (150, 2200, (2200, 2200, 2200, 2200))
    assert (later.total.min_ms, later.total.max_ms) == (480, 480)
    points = PerfxLayout({"run_id": "r"}).interval_points(interval, Sample(0.0, 1, 0), 7)
    assert "max_ms=2200i," in points[-1] and ".0i" not in "".join(points)
    assert "p99_ms=2200i" in points[1]  # __other__

    summary = summarize(stats, users_peak=1, workers=0, started_at=0.0, finished_at=1.0)
    for entry in [summary["total"], *summary["requests"]]:
        timings = [entry[f"{key}_ms"] for key in ("median", "p90", "p95", "p99")]
        assert {type(t) for t in timings} == {int}, entry
    assert summary["total"]["p99_ms"] == 2200


def test_late_worker_reports_land_in_the_next_interval_on_a_master() -> None:
    master_events, worker_events = Events(), Events()
    master, worker = RequestStats(), RequestStats()
    setup_distributed_stats_event_listeners(master_events, master)
    setup_distributed_stats_event_listeners(worker_events, worker)

    def report() -> None:
        data: dict[str, Any] = {}
        worker_events.report_to_master.fire(client_id="w1", data=data)
        master_events.worker_report.fire(client_id="w1", data=data)

    tracker = IntervalTracker()
    counted = 0
    for batch in (3, 4, 5):  # the last report arrives after test_stop, before close()
        for _ in range(batch):
            worker.log_request("GET", "/a", 15, 10)
        report()
        counted += sum(e.requests for e in tracker.take(master).entries)

    assert counted == master.entries[("/a", "GET")].num_requests == 12


requests_strategy = st.lists(
    st.tuples(
        st.sampled_from(["/a", "/b", "/c"]),
        st.sampled_from(["GET", "POST"]),
        st.integers(min_value=0, max_value=70_000),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(intervals=st.lists(requests_strategy, min_size=1, max_size=6))
def test_any_split_into_intervals_sums_to_the_totals_with_exact_percentiles(
    intervals: list[list[tuple[str, str, int, bool]]],
) -> None:
    stats = RequestStats()
    tracker = IntervalTracker()
    summed: dict[tuple[str, str], int] = {}
    for requests in intervals:
        for name, method, response_time, failed in requests:
            stats.log_request(method, name, response_time, 1)
            if failed:
                stats.log_error(method, name, "failed")
        deltas = by_name(tracker.take(stats))
        for key, delta in deltas.items():
            summed[key] = summed.get(key, 0) + delta.requests
            times = [t for n, m, t, _ in requests if (n, m) == key]
            assert delta.requests == len(times)
            assert delta.failures == sum(f for n, m, _, f in requests if (n, m) == key)
            assert percentiles(delta) == {p: oracle_percentile(times, p) for p in PERCENTILES}
            assert delta.min_ms == bucket_response_time(min(times))
            assert delta.max_ms == bucket_response_time(max(times))

    assert summed == {key: e.num_requests for key, e in stats.entries.items() if e.num_requests}


histograms = st.dictionaries(st.integers(0, 400), st.integers(1, 50), max_size=30)


@given(histogram=histograms.filter(bool))
def test_histogram_timings_give_min_max_and_locusts_percentiles(
    histogram: dict[int, int],
) -> None:
    count = sum(histogram.values())

    assert histogram_timings(histogram) == (
        min(histogram),
        max(histogram),
        tuple(calculate_response_time_percentile(histogram, count, p) for p in PERCENTILES),
    )


class Cluster:
    """A master's ``RequestStats`` and workers' ones, wired by Locust's own report listeners.

    ``report(w)`` is what a worker's heartbeat does every 3 s: serialize and reset the
    worker's stats (``report_to_master``) and merge them on the master (``worker_report``).
    """

    def __init__(self, workers: int) -> None:
        self.master_events, self.master = Events(), RequestStats()
        setup_distributed_stats_event_listeners(self.master_events, self.master)
        self.workers = []
        for _ in range(workers):
            events, stats = Events(), RequestStats()
            setup_distributed_stats_event_listeners(events, stats)
            self.workers.append((events, stats))

    def report(self, worker: int) -> None:
        events, _ = self.workers[worker]
        data: dict[str, Any] = {}
        events.report_to_master.fire(client_id=f"w{worker}", data=data)
        self.master_events.worker_report.fire(client_id=f"w{worker}", data=data)


class Handed:
    """A master's export as it runs: its stats read by a ``ChangeReader`` in the master,
    mirrored in the export process, diffed there chunk by chunk. Counts the reader's pauses."""

    def __init__(self, max_names: int = 500) -> None:
        self.reader, self.mirror = ChangeReader(), StatsMirror()
        self.tracker = IntervalTracker(max_names=max_names, replaced_histograms=True)
        self.pauses = 0

    def take(self, stats: RequestStats) -> Interval:
        for message in self.reader.read(stats, Sample(0.0, 0, 0), pause=self._pause):
            self.tracker.add(self.mirror.apply(message))
        return self.tracker.take(self.mirror.stats)

    def _pause(self) -> None:
        self.pauses += 1


report_requests = st.lists(
    st.tuples(
        st.integers(0, 2),  # worker
        st.sampled_from(["/a", "/b", "/c"]),
        st.sampled_from(["GET", "POST"]),
        st.integers(min_value=0, max_value=70_000),
        st.booleans(),
        st.booleans(),  # the worker reports right after this request
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(intervals=st.lists(report_requests, min_size=1, max_size=5))
def test_a_masters_intervals_add_up_to_its_totals_with_exact_percentiles(
    intervals: list[list[tuple[int, str, str, int, bool, bool]]],
) -> None:
    tracker = Handed()
    cluster = Cluster(3)
    summed: dict[tuple[str, str], int] = {}
    failures = errors = total = 0
    unreported: dict[int, list[tuple[str, str, int, bool]]] = {0: [], 1: [], 2: []}
    for requests in intervals:
        reported: list[tuple[str, str, int, bool]] = []
        for worker, name, method, response_time, failed, report in requests:
            stats = cluster.workers[worker][1]
            stats.log_request(method, name, response_time, 1)
            if failed:
                stats.log_error(method, name, "failed")
            unreported[worker].append((name, method, response_time, failed))
            if report:
                cluster.report(worker)
                reported += unreported[worker]
                unreported[worker] = []
        interval = tracker.take(cluster.master)
        # Requests not reported yet belong to a later interval, as on a real master.
        for key, delta in by_name(interval).items():
            summed[key] = summed.get(key, 0) + delta.requests
            times = [t for n, m, t, _ in reported if (n, m) == key]
            assert delta.requests == len(times)
            assert delta.failures == sum(f for n, m, _, f in reported if (n, m) == key)
            assert percentiles(delta) == {p: oracle_percentile(times, p) for p in PERCENTILES}
            assert (delta.min_ms, delta.max_ms) == (
                bucket_response_time(min(times)),
                bucket_response_time(max(times)),
            )
        total += interval.total.requests
        failures += interval.total.failures
        errors += sum(e.occurrences for e in interval.errors)
    for worker in range(3):  # the last reports, after test_stop: the final interval
        cluster.report(worker)
    final = tracker.take(cluster.master)
    for key, delta in by_name(final).items():
        summed[key] = summed.get(key, 0) + delta.requests
    total += final.total.requests
    failures += final.total.failures
    errors += sum(e.occurrences for e in final.errors)

    master = cluster.master
    assert summed == {key: e.num_requests for key, e in master.entries.items() if e.num_requests}
    assert (total, failures) == (master.total.num_requests, master.total.num_failures)
    assert errors == sum(e.occurrences for e in master.errors.values())


def test_a_master_folds_names_past_max_names_and_pauses_between_slices() -> None:
    tracker = Handed(max_names=2)
    cluster = Cluster(1)
    stats = cluster.workers[0][1]
    for i in range(120):
        stats.log_request("GET", f"/n{i}", 10 + i, 0)
    stats.log_error("GET", "/n99", "boom")
    cluster.report(0)

    interval = tracker.take(cluster.master)

    other = by_name(interval)[(OTHER_NAME, "GET")]
    assert sorted(by_name(interval)) == [("/n0", "GET"), ("/n1", "GET"), (OTHER_NAME, "GET")]
    assert (other.requests, other.min_ms, other.max_ms) == (118, 12, 130)
    assert percentiles(other) == {
        p: oracle_percentile(list(range(12, 130)), p) for p in PERCENTILES
    }
    assert [(e.name, e.occurrences) for e in interval.errors] == [(OTHER_NAME, 1)]
    assert tracker.pauses  # 120 entries: at least one pause
    assert tracker.take(cluster.master).entries == ()  # each report lands in one interval


@pytest.fixture
def finished_stats(stats: RequestStats) -> Iterator[RequestStats]:
    for response_time in (100, 200, 300, 400):
        stats.log_request("GET", "/a", response_time, 1000)
    stats.log_request("POST", "/b", 50, 10)
    for _ in range(3):
        stats.log_error("GET", "/a", "HTTP 500")
    stats.log_error("POST", "/b", "HTTP 404")
    yield stats


def test_summary_response_times_are_whole_ms_even_where_locust_keeps_them_exact() -> None:
    stats = RequestStats()
    for exact in (5.371666999963054, 812.5000001, 97.1):
        stats.log_request("GET", "/a", exact, 10)

    total = summarize(stats, users_peak=1, workers=0, started_at=0, finished_at=1)["total"]

    timings = {k: v for k, v in total.items() if k.endswith("_ms") and k != "avg_ms"}
    assert (timings["min_ms"], timings["max_ms"]) == (5, 813)
    assert all(type(value) is int for value in timings.values()), timings


def test_summary_is_plain_json_with_totals_requests_and_errors(
    finished_stats: RequestStats,
) -> None:
    summary = summarize(
        finished_stats,
        users_peak=10,
        workers=2,
        started_at=1_700_000_000.0,
        finished_at=1_700_000_010.0,
        top_errors=1,
    )

    assert json.loads(json.dumps(summary)) == summary
    assert summary["duration_s"] == 10.0
    assert summary["started_at"] == "2023-11-14T22:13:20Z"
    assert summary["total"] == {
        "requests": 5,
        "failures": 4,
        "failure_ratio": 0.8,
        "rps": 0.5,
        "avg_ms": 210.0,
        "min_ms": 50,
        "max_ms": 400,
        "median_ms": 200,
        "p90_ms": 400,
        "p95_ms": 400,
        "p99_ms": 400,
        "bytes": 4010,
    }
    assert [(r["method"], r["name"], r["requests"]) for r in summary["requests"]] == [
        ("GET", "/a", 4),
        ("POST", "/b", 1),
    ]
    assert summary["errors"] == [
        {"method": "GET", "name": "/a", "error": "HTTP 500", "occurrences": 3}
    ]


def test_the_summary_takes_a_name_reported_with_and_without_a_request_type(
    stats: RequestStats,
) -> None:
    """A custom client fires ``events.request`` itself and may leave ``request_type`` None."""
    stats.log_request(None, "/a", 10, 1)  # type: ignore[arg-type]  # as such a client does
    stats.log_request("GET", "/a", 20, 1)
    stats.log_error(None, "/a", "boom")  # type: ignore[arg-type]
    stats.log_error("GET", "/a", "boom")

    summary = summarize(stats, users_peak=1, workers=0, started_at=0.0, finished_at=1.0)

    assert [(r["method"], r["name"]) for r in summary["requests"]] == [(None, "/a"), ("GET", "/a")]
    assert [e["method"] for e in summary["errors"]] == [None, "GET"]


class Unprintable:
    """Its ``repr`` has an address, like most objects Locust reports errors with."""


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab <>0x.:object at 0x7f")),
    address=st.integers(0, 2**48),
    around=st.tuples(st.text(max_size=5), st.text(max_size=5)),
)
def test_error_messages_are_parsed_as_locust_parses_them(
    text: str, address: int, around: tuple[str, str]
) -> None:
    """The export process parses without Locust; one error must stay one series."""
    before, after = around
    for error in (
        text,
        f"{before}<Pool object at {address:#x}>{after}",
        f"{before}object at {address:#x}{after}",  # no closing bracket
        ConnectionError(Unprintable(), text),
    ):
        assert parse_error(error) == StatsError.parse_error(error)  # type: ignore[arg-type]
