"""Reading the master's stats in a forked child: what it sends, and how it fails.

Each test forks real children of the test process (``integration``): the pipe between the
child and the "export process" is a real pipe, read here by a greenlet while the parent waits
for the child without blocking the loop.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle

import gevent
import gevent.os
import pytest
from locust.stats import RequestStats

from locust_perfx.forked import ForkedReader
from locust_perfx.handoff import Entries, StatsMirror, Take
from locust_perfx.snapshot import Sample

pytestmark = pytest.mark.integration  # each read forks a process

SAMPLE = Sample(at=0.0, users=1, workers=0)


class Pipe:
    """A pipe whose read end a greenlet drains, as the export process would."""

    def __init__(self) -> None:
        self._in, self.out = os.pipe()
        os.set_blocking(self._in, False)
        self._data = bytearray()
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while chunk := gevent.os.nb_read(self._in, 1 << 16):
            self._data += chunk

    @property
    def messages(self) -> list[object]:
        """The whole messages read so far."""
        stream, messages = io.BytesIO(self._data), []
        while stream.tell() < len(self._data):
            messages.append(pickle.load(stream))
        return messages

    def close(self) -> list[object]:
        """Every message written, once no child writes any more."""
        self._reader.kill()  # gevent's wait on a pipe does not wake when its writers close
        os.close(self.out)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._in, 1 << 16):
                self._data += chunk
        os.close(self._in)
        return self.messages


def many_names(stats: RequestStats, names: int) -> None:
    for i in range(names):
        for response_time in range(1, 60):  # ~60 histogram buckets each: far beyond a pipe's 64 KB
            stats.log_request("GET", f"/item/{i}", response_time, 10)


def test_children_send_what_changed_since_the_previous_child_and_the_mirror_equals_the_stats() -> (
    None
):
    stats, reader, pipe = RequestStats(), ForkedReader(), Pipe()
    many_names(stats, 500)

    assert reader.read(stats, SAMPLE, pipe.out, timeout=60)  # while the greenlet drains the pipe
    first = len(pipe.messages)
    stats.log_request("GET", "/item/7", 500, 10)
    assert reader.read(stats, SAMPLE, pipe.out, timeout=60)
    messages = pipe.close()
    reader.close()

    mirror = StatsMirror()
    for message in messages:
        mirror.apply(message)  # type: ignore[arg-type]
    assert reader.problem == ""
    changed = [m for m in messages[first:] if isinstance(m, Entries)]
    assert [state[0] for m in changed for state in m.states] == ["/item/7"]
    assert isinstance(messages[-1], Take)
    assert mirror.stats.total.num_requests == stats.total.num_requests
    for key, entry in stats.entries.items():
        assert mirror.stats.entries[key].response_times == entry.response_times


def test_a_child_stuck_on_a_full_pipe_is_killed_at_the_timeout_and_no_child_is_forked_again() -> (
    None
):
    stats, reader = RequestStats(), ForkedReader()
    many_names(stats, 500)
    read, write = os.pipe()  # nobody reads: the child blocks once 64 KB are written
    try:
        assert not reader.read(stats, SAMPLE, write, timeout=0.5)
        assert reader.problem == "the stats reader process was killed after 0.5 s"
        assert not reader.read(stats, SAMPLE, write, timeout=0.5)  # at once: no new child
    finally:
        os.close(read)
        os.close(write)
        reader.close()


def test_a_child_that_fails_says_so_with_its_exit_code(capfd: pytest.CaptureFixture[str]) -> None:
    stats, reader, pipe = RequestStats(), ForkedReader(), Pipe()
    stats.log_request("GET", "/", 10, 0)
    stats.entries["/", "GET"].response_times[lambda: 0] = 1  # type: ignore[index]  # unpicklable

    assert not reader.read(stats, SAMPLE, pipe.out, timeout=60)

    assert pipe.close() == []  # nothing half-written
    assert reader.problem == "the stats reader process exited with code 1"
    assert "perfx: the stats reader process failed: AttributeError(\"Can't pickle" in (
        capfd.readouterr().err
    )
