"""What the process that owns a run watches while it tests, once a second.

:class:`RunWatch` keeps the peak users and workers, sends progress to the platform when it is
due, and judges the thresholds every interval (a breach is logged once; an ``abort`` breach
stops the test). :class:`WorkerRoster` notices workers that run without the plugin. Both
belong to the run controller, which decides when a watch starts and stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import gevent
import gevent.lock
import gevent.pool
from locust.exception import RPCError
from locust.runners import STATE_MISSING, MasterRunner, Runner

from locust_perfx.criteria import Judge, Result
from locust_perfx.exporter import MetricsExporter
from locust_perfx.influx import DEFAULT_INTERVAL
from locust_perfx.lifecycle import PlatformSync
from locust_perfx.series import SeriesRecorder, add_series
from locust_perfx.snapshot import interval_delta, summarize

logger = logging.getLogger(__name__)

TICK: Final = 1.0
"""Seconds between two looks at the runner (peak users, progress, thresholds)."""

HELLO_GRACE: Final = 1.0
"""Seconds a new worker has to say it runs the plugin before the master warns that it does not."""


def worker_count(runner: Runner) -> int:
    return runner.worker_count if isinstance(runner, MasterRunner) else 0


class RunWatch:
    """One test of one run, watched; ``tick`` is called once a second by the controller."""

    def __init__(
        self,
        runner: Runner,
        sync: PlatformSync,
        judge: Judge | None,
        stop_test: Callable[[], None],
        exporter: MetricsExporter | None = None,
        interval: float = DEFAULT_INTERVAL,
        greenlets: gevent.pool.Group | None = None,
    ) -> None:
        self.runner = runner
        self.sync = sync
        self.judge = judge
        self.exporter = exporter
        self.recorder = SeriesRecorder(interval)
        """The per-interval series the summary carries for a later baseline comparison."""
        self.aborted = False
        self.stopped_by: tuple[str, ...] = ()
        """The breaches that aborted the test, as they read when it was stopped."""
        self.users_peak = 0
        self.workers_peak = 0
        self._stop_test = stop_test
        self._greenlets = greenlets if greenlets is not None else gevent.pool.Group()
        """Where the greenlet that stops the test runs: the controller's, supervised."""
        self._next_check = 0.0
        self._reported: set[tuple[str, bool]] = set()
        self._since_progress: Any = None
        """``interval_delta``'s baseline: progress carries the p95 since the last report."""
        # A progress report in flight must complete before the final status is sent.
        self._reporting = gevent.lock.Semaphore()
        self._stopped = False

    def start(self) -> None:
        """A test starts: peaks and thresholds count from now."""
        self.users_peak = self.workers_peak = 0
        self._since_progress = None
        self.recorder.start(self.runner.stats, time.time())
        if self.judge is not None:
            self.judge.start(self.runner.stats, time.time())
            self._reported.clear()
            self._next_check = time.monotonic() + self.judge.interval

    def tick(self) -> None:
        self.users_peak = max(self.users_peak, self.runner.user_count)
        self.workers_peak = max(self.workers_peak, worker_count(self.runner))
        with self._reporting:
            if self._stopped:
                return
            self.recorder.tick(self.runner.stats, time.time())
            self.sync.progress(self.progress_body)
            now = time.monotonic()
            if self.judge is not None and now >= self._next_check:
                # After a stall (a slow progress call), the next window is a whole interval
                # from now: catching up would judge windows of a second.
                behind = now - self._next_check > TICK
                self._next_check = (now if behind else self._next_check) + self.judge.interval
                self._check(self.judge)

    def stop(self) -> None:
        """No progress after this; one in flight completes first (it would reach the platform
        after the final status, refused or, worse, taken as news)."""
        with self._reporting:
            self._stopped = True

    def progress_body(self) -> dict[str, Any]:
        runner = self.runner
        total = runner.stats.total
        interval, self._since_progress = interval_delta(total, self._since_progress)
        return {
            "users": runner.user_count,
            "workers": worker_count(runner),
            "rps": round(total.current_rps, 2),
            "fail_ratio": round(total.fail_ratio, 4),
            "requests": total.num_requests,
            "failures": total.num_failures,
            "p95_ms": interval.percentile(0.95),
        }

    def summary(self, finished_at: float) -> dict[str, Any]:
        """The run's summary as of ``finished_at``: totals, per name, and the series so far."""
        runner = self.runner
        summary = summarize(
            runner.stats,
            users_peak=max(self.users_peak, runner.user_count),
            workers=max(self.workers_peak, worker_count(runner)),
            started_at=runner.stats.start_time,
            finished_at=finished_at,
        )
        add_series(summary, runner.stats, self.recorder)
        return summary

    def results(self) -> list[Result]:
        return [] if self.judge is None else self.judge.results()

    def breaches(self) -> tuple[str, ...]:
        """The reasons of the breached criteria; when the final judgement no longer confirms
        the breach that aborted the test (a relative criterion's end judgement differs from
        its provisional one), the reasons that stopped it: the run was still cut short."""
        return tuple(r.reason for r in self.results() if not r.passed) or self.stopped_by

    def final_results(self) -> list[Result]:
        """The thresholds judged on the final stats (the workers' last reports included)."""
        if self.judge is None:
            return []
        return self.report(self.judge.finish(self.runner.stats, time.time()))

    def _check(self, judge: Judge) -> None:
        """Judge the interval that just ended; an ``abort`` breach stops the test now."""
        now = time.time()
        results = judge.check(self.runner.stats, now)
        if judge.judges_baseline_live:  # relative criteria, provisionally, on the run so far
            results = judge.check_baseline(self.summary(now), now)
        self.report(results)
        aborting = judge.aborting(now)
        if aborting and not self.aborted:
            self.aborted = True
            self.stopped_by = tuple(r.reason for r in aborting)
            logger.error("perfx: stopping the test: %s", "; ".join(r.reason for r in aborting))
            self._greenlets.spawn(self._stop_test)

    def report(self, results: list[Result]) -> list[Result]:
        """Log each new breach once; export the results, and each new breach as an event."""
        for result in results:
            # A provisional breach is logged, and the end's judgement of it again.
            seen = (result.criterion.name, result.provisional)
            if not result.passed and seen not in self._reported:
                self._reported.add(seen)
                logger.warning("perfx: threshold breached: %s", result.reason)
                if self.exporter is not None:
                    self.exporter.event("breach", result.reason)
        if self.exporter is not None:
            self.exporter.judged(
                tuple((r.criterion.text, r.observed, r.criterion.limit, r.passed) for r in results)
            )
        return results


class WorkerRoster:
    """The workers that said they run the plugin; the others are named once.

    A worker without the plugin runs the test, but its locustfile sees no ``PERFX_*``.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._hello: set[str] = set()
        self._first_seen: dict[str, float] = {}

    def on_hello(self, msg: Any, **_: Any) -> None:
        self._hello.add(msg.node_id)

    def check(self) -> None:
        now = time.monotonic()
        for worker_id in list(getattr(self.runner, "clients", ())):
            first_seen = self._first_seen.setdefault(worker_id, now)
            if worker_id in self._hello or now - first_seen < HELLO_GRACE:
                continue
            self._hello.add(worker_id)  # named: once is enough
            logger.warning(
                "perfx: worker %s runs without the perfx plugin: its locustfile gets the run's "
                "arguments in parsed_options but no PERFX_* variables; load it there too: "
                "locust -f perfx_plugin.py,locustfile.py --worker ...",
                worker_id,
            )


def collect_last_reports(runner: Runner, timeout: float) -> list[str]:
    """On a master whose runner has quit, take the workers' last reports that came too late.

    ``MasterRunner.quit()`` tells each worker to quit, waits 0.5 s and kills the greenlet that
    receives their messages. A worker sends its last stats once its users stopped (up to
    ``--stop-timeout``, for a request in flight or a busy CPU), then says ``quit``: what comes
    after those 0.5 s is lost to Locust's totals. This receives in its place, for at most
    ``timeout`` seconds, until every worker still listed has said ``quit`` (its last stats come
    before it on the same connection): stats are merged as Locust's listener would. Returns
    the workers that did not say ``quit`` in time.
    """
    if not isinstance(runner, MasterRunner) or len(runner.greenlet):
        return []  # Locust is still receiving (or this is no master)
    pending = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
    if not pending:
        return []
    logger.info(
        "perfx: waiting up to %.0f s for the last reports of %d worker(s)", timeout, len(pending)
    )
    events: Any = runner.environment.events  # Locust's EventHook.fire is untyped
    try:
        with gevent.Timeout(timeout):
            while pending:
                try:
                    _, msg = runner.server.recv_from_client()  # type: ignore[no-untyped-call]
                except RPCError as err:
                    logger.warning("perfx: a worker's late message was unreadable: %s", err)
                    continue
                match msg.type:
                    case "stats":
                        events.worker_report.fire(client_id=msg.node_id, data=msg.data)
                    case "exception":
                        runner.log_exception(msg.node_id, msg.data["msg"], msg.data["traceback"])
                    case "quit":
                        pending.discard(msg.node_id)
                        if msg.node_id in runner.clients:  # as Locust does: not told to quit again
                            del runner.clients[msg.node_id]
    except gevent.Timeout:
        logger.warning(
            "perfx: no last report within %.0f s from worker(s) %s; the summary lacks their "
            "requests since their previous report",
            timeout,
            ", ".join(sorted(pending)),
        )
    return sorted(pending)


def spawn_ticker(
    interval: float, tick: Callable[[], None], greenlets: gevent.pool.Group
) -> gevent.Greenlet:
    """Run ``tick`` every ``interval`` seconds in a greenlet of ``greenlets``, logging (not
    dying on) errors."""

    def loop() -> None:
        while True:
            gevent.sleep(interval)
            try:
                tick()
            except Exception:
                logger.exception("perfx: periodic check failed")

    return greenlets.spawn(loop)
