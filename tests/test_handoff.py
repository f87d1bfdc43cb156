"""The master-to-export-process handoff: a mirror diffed gives the intervals the real stats give."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st
from locust.stats import RequestStats

from locust_perfx.handoff import CHUNK_ENTRIES, ChangeReader, Clear, Entries, StatsMirror, Take
from locust_perfx.snapshot import Interval, IntervalTracker, Sample

SAMPLE = Sample(at=0.0, users=1, workers=0)


def comparable(interval: Interval) -> tuple[object, ...]:
    return (
        interval.total,
        sorted(interval.entries),
        sorted(interval.errors),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("request"),
            st.sampled_from(["/a", "/b", "/c", "/d"]),
            st.sampled_from(["GET", "POST"]),
            st.one_of(st.none(), st.integers(0, 70_000)),
        ),
        st.tuples(st.just("error"), st.sampled_from(["/a", "/b"]), st.sampled_from(["x", "y"])),
        st.just(("take",)),
        st.just(("reset_all",)),
        st.just(("clear_all",)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations=operations)
def test_a_mirror_gives_the_intervals_the_real_stats_give(operations: list[tuple]) -> None:
    """Resets and clears included; every message crosses pickle, as over the pipe, and each
    chunk is diffed as it arrives, the mirror's histograms kept, as the export process does."""
    stats, clock = RequestStats(), Clock()
    direct = IntervalTracker(clock=clock, max_names=3)
    mirrored = IntervalTracker(clock=clock, max_names=3, replaced_histograms=True)
    reader, mirror = ChangeReader(), StatsMirror()

    def take() -> None:
        clock.now += 1
        for message in reader.read(stats, SAMPLE):
            mirrored.add(mirror.apply(pickle.loads(pickle.dumps(message))))
        assert comparable(mirrored.take(mirror.stats)) == comparable(direct.take(stats))

    for operation in operations:
        if operation[0] == "request":
            _, name, method, response_time = operation
            stats.log_request(method, name, response_time, 10)
        elif operation[0] == "error":
            _, name, message = operation
            stats.log_error("GET", name, RuntimeError(message))
        elif operation[0] == "take":
            take()
        else:
            getattr(stats, operation[0])()
    take()


def test_only_changed_entries_cross_in_bounded_chunks() -> None:
    stats, reader = RequestStats(), ChangeReader()
    for i in range(CHUNK_ENTRIES * 2 + 5):
        stats.log_request("GET", f"/n{i}", 10, 0)

    first = list(reader.read(stats, SAMPLE))
    stats.log_request("GET", "/n7", 10, 0)
    second = list(reader.read(stats, SAMPLE))

    assert [type(m) for m in first] == [Entries, Entries, Entries, Take]
    assert [len(m.states) for m in first if isinstance(m, Entries)] == [100, 100, 5]
    assert [type(m) for m in second] == [Entries, Take]
    [entries, _] = second
    assert isinstance(entries, Entries) and [s[0] for s in entries.states] == ["/n7"]


def test_a_cleared_stats_starts_the_mirror_over() -> None:
    stats, reader, mirror = RequestStats(), ChangeReader(), StatsMirror()
    stats.log_request("GET", "/old", 10, 0)
    for message in reader.read(stats, SAMPLE):
        mirror.apply(message)

    stats.clear_all()
    stats.log_request("GET", "/new", 10, 0)
    messages = list(reader.read(stats, SAMPLE))
    for message in messages:
        mirror.apply(message)

    assert isinstance(messages[0], Clear)
    assert list(mirror.stats.entries) == [("/new", "GET")]
