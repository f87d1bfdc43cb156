"""Reading the master's stats in a forked child, so the master's loop pays only the ``fork()``.

At 10,000 request names, reading and pickling every changed stats entry (``handoff``) costs
the master's gevent loop ~50 ms of CPU per interval, in the loop Locust's own merge of worker
reports needs. A child forked at the read sees the master's stats as they are at that instant
(copy-on-write: nothing is copied up front), reads and pickles them on another core, writes
the messages to the export process's stdin and exits. The master pays the ``fork()`` (a few
ms, growing with its RSS) and then waits for the child cooperatively, its loop free.

Each child is a fresh copy of the master, so what the previous child sent (its
``ChangeReader``) lives in an unlinked temporary file the master never reads: the next child
loads it, sends only what changed since, and saves it again. The child runs no greenlet and
touches nothing it shares with the master (ZeroMQ, sockets, the hub): it blocks all signals
(SIGINT reaches Locust only, which then closes the export), disables the garbage collector
(a collection would copy every page it marks) and leaves with ``os._exit``.

>>> reader = ForkedReader()
>>> reader.problem
''
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import tempfile
import warnings
from typing import IO, TYPE_CHECKING, NoReturn

import gevent
import gevent.monkey
import gevent.os

from locust_perfx.handoff import ChangeReader

if TYPE_CHECKING:
    from locust.stats import RequestStats

    from locust_perfx.snapshot import Sample

# The real ones, not gevent's: the child runs no hub (gevent's fork would re-init it). Windows
# has neither: there the master reads in its own loop.
_fork = gevent.monkey.get_original("os", "fork") if hasattr(os, "fork") else None
_poll = gevent.monkey.get_original("select", "poll") if hasattr(select, "poll") else None


class ForkedReader:
    """Sends ``ChangeReader``'s messages for the master's stats from a forked child.

    ``read()`` returns False when it could not (no ``fork`` here, ``fork()`` refused, the
    child failed); ``problem`` then says why, and the caller reads in its own loop from then
    on: a child's partial state is never trusted again.
    """

    def __init__(self) -> None:
        self.problem = "" if _fork is not None and _poll is not None else "no fork() here"
        self._state: IO[bytes] | None = None  # the last child's ChangeReader, pickled

    def read(
        self,
        stats: RequestStats,
        sample: Sample,
        out: int,
        *,
        reset: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Write the messages that bring the export's mirror to ``stats`` to the file
        descriptor ``out``, from a child; True once the child did.

        The caller holds ``out`` for the child: nothing else may write to it meanwhile.
        A child still running after ``timeout`` seconds is killed (what it wrote may be cut).
        """
        if self.problem:
            return False
        if self._state is None:
            # Open until close(): every child of this reader reads and rewrites it.
            self._state = tempfile.TemporaryFile(prefix="perfx-reader-")  # noqa: SIM115
        state = self._state.fileno()
        # Blocked in the child for its whole life; the master's pending signals arrive when
        # it unblocks them, right after the fork.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns that a child of a multi-threaded process (ZeroMQ's
                # threads) may deadlock: the child takes no lock those threads hold.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = gevent.os.fork_and_watch(fork=_fork)
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            self.problem = f"fork() failed: {err}"
            return False
        if pid == 0:
            _child(stats, sample, reset, out, state)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        code = _wait(pid, timeout)
        if code:
            self.problem = (
                f"the stats reader process exited with code {code}"
                if code > 0
                else f"the stats reader process was killed after {timeout} s"
            )
        return not code

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None


def _wait(pid: int, timeout: float | None) -> int:
    """The child's exit code, waited for without blocking the gevent loop; negative if it
    was killed (by us at ``timeout``, or by a signal)."""
    try:
        with gevent.Timeout(timeout):
            _, status = gevent.os.waitpid(pid, 0)
    except gevent.Timeout:
        os.kill(pid, signal.SIGKILL)
        _, status = gevent.os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _child(stats: RequestStats, sample: Sample, reset: bool, out: int, state: int) -> NoReturn:
    """The child's whole life: read, write, save what it sent, exit; 0 only if all went."""
    code = 1
    try:
        gc.disable()
        saved = os.pread(state, os.fstat(state).st_size, 0)
        reader = pickle.loads(saved) if saved else ChangeReader()
        data = b"".join(
            pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            for message in reader.read(stats, sample, reset=reset)
        )
        _write_all(out, data)
        saved = pickle.dumps(reader, protocol=pickle.HIGHEST_PROTOCOL)
        os.pwrite(state, saved, 0)
        os.ftruncate(state, len(saved))
        code = 0
    except BaseException as err:  # the master logs the exit code
        os.write(2, f"perfx: the stats reader process failed: {err!r}\n".encode())
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``, which may be non-blocking (gevent's pipe to the export
    process): wait for room with the real ``poll``, no hub in this process."""
    assert _poll is not None, "read() forks only where there is poll()"
    view = memoryview(data)
    poller = _poll()
    poller.register(fd, select.POLLOUT)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            poller.poll()
