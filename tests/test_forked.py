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
import signal

import gevent
import gevent.os
import psutil
import pytest
from locust.stats import RequestStats

from locust_perfx.forked import ForkedReader
from locust_perfx.handoff import Entries, StatsMirror, Take
from locust_perfx.snapshot import Sample
from tests.fixtures.waiting import wait_until

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


def test_a_ctrl_c_or_sigterm_to_the_group_does_not_cut_a_childs_write() -> None:
    stats, reader = RequestStats(), ForkedReader()
    many_names(stats, 500)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    data = bytearray()

    def interrupt_then_drain() -> None:
        """Signal the child while it waits for room in the pipe, then read what it wrote."""
        me = psutil.Process()
        child = wait_until(lambda: next(iter(me.children()), None), 10, 0.01, "the child")
        # What a terminal's Ctrl-C, or systemd stopping the service, sends every process.
        child.send_signal(signal.SIGINT)
        child.send_signal(signal.SIGTERM)
        while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
            with contextlib.suppress(BlockingIOError):
                data.extend(os.read(read_end, 1 << 16))
            gevent.sleep(0.001)  # the child writes as we read: poll the pipe and the child
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(read_end, 1 << 16):
                data.extend(chunk)

    drainer = gevent.spawn(interrupt_then_drain)
    try:
        assert reader.read(stats, SAMPLE, write_end, timeout=60), reader.problem
        drainer.join(timeout=10)
    finally:
        os.close(read_end)
        os.close(write_end)
        reader.close()

    stream, messages = io.BytesIO(data), []
    while stream.tell() < len(data):
        messages.append(pickle.load(stream))
    assert isinstance(messages[-1], Take)
    assert sum(len(m.states) for m in messages if isinstance(m, Entries)) == 500
