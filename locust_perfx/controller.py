"""The run controller: one platform run inside one Locust process, from start to verdict.

:class:`RunController` exists only in the process that owns the run (the local runner or
the master). Its whole life is one :class:`Phase`, changed only by :meth:`_move`::

    idle --start--> testing --Locust stops the test--> stopping --+
                       |                                           |
                       +------ quit, signal, lost workers ---------+--> finishing --> done

``done`` goes back to ``idle`` only when the web UI's Run id field names a new run. Each
listener asks which phase it is in.

One entry to the end: quit, the last word after every ``quitting`` listener
(:class:`~locust_perfx.exits.QuittingWatch`), the greenlet that waits for a web UI Stop's
late reports, an unhandled SIGTERM and atexit all call :meth:`RunController.finish` with the
exit code they know; the first moves the run to ``finishing``, decides and sends, and every
later caller waits for ``done``: the order of Locust's events cannot send two verdicts.
Signals and exit codes live in :mod:`locust_perfx.exits`; every greenlet of the run lives in
one group linked to the failure recorder (a greenlet that dies of a bug fails the run).
"""

from __future__ import annotations

import atexit
import enum
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import gevent
import gevent.event
import gevent.pool
from locust import __version__ as locust_version
from locust.env import Environment
from locust.runners import MasterRunner, Runner

from locust_perfx import __version__ as perfx_version
from locust_perfx.baseline import NO_BASELINE, baseline_line, exported_rows, limits_of
from locust_perfx.criteria import Judge
from locust_perfx.exceptions import ConfigError, PerfxError, RunStateConflict
from locust_perfx.exits import SIGTERM_EXIT, QuittingWatch, Signals, locust_exit_code
from locust_perfx.exporter import MetricsExporter
from locust_perfx.lifecycle import (
    DELIVERY_EXIT_CODES,
    EXIT_THRESHOLDS,
    Delivery,
    Outcome,
    PlatformSync,
    Verdict,
    decide,
)
from locust_perfx.loop import LoopWatch
from locust_perfx.options import SECRET_DESTS
from locust_perfx.plan import PLATFORM, RunPlan
from locust_perfx.platform import PlatformClient
from locust_perfx.registry import ARGUMENT_NAMES_KEY, WORKER_HELLO, export_to_environ
from locust_perfx.watch import (
    TICK,
    RunWatch,
    WorkerRoster,
    collect_last_reports,
    spawn_ticker,
    worker_count,
)

logger = logging.getLogger(__name__)

LATE_REPORT_WAIT: Final = 5.0
"""Seconds to wait after a web UI Stop for each worker's last report (workers report every 3 s);
after Locust's runner quit, the wait beyond ``--stop-timeout`` for the reports it missed."""


class Phase(enum.Enum):
    """Where the run is, as this process sees it."""

    IDLE = "idle"
    """The platform run is pending: no start was sent."""
    TESTING = "testing"
    """The platform run is running and Locust is (or is about to be) generating load."""
    STOPPING = "stopping"
    """Locust stopped the test; the workers' last reports are on their way."""
    FINISHING = "finishing"
    """The verdict is being sent."""
    DONE = "done"
    """The platform has the verdict, or it was saved for ``perfx resend``, or refused."""


_MOVES: Final = {
    Phase.IDLE: {Phase.TESTING},
    Phase.TESTING: {Phase.STOPPING, Phase.FINISHING},
    Phase.STOPPING: {Phase.FINISHING},
    Phase.FINISHING: {Phase.DONE},
    Phase.DONE: {Phase.IDLE},
}


def _guard(method: Callable[..., None]) -> Callable[..., None]:
    """A bug in one of our listeners must still end the run truthfully, not vanish in a log.

    Locust swallows listener exceptions; this records the first one so the verdict names it.
    """

    @functools.wraps(method)
    def guarded(self: RunController, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as err:
            logger.exception("perfx: %s failed", method.__name__)
            if not self.plugin_error:
                self.plugin_error = f"{type(err).__name__}: {err} (in {method.__name__})"

    return guarded


class Supervised(gevent.pool.Group):  # type: ignore[misc]  # gevent is untyped
    """A group whose every greenlet, however spawned into it, reports its death by an
    exception to ``on_failure`` (as Locust links its runner's greenlets)."""

    def __init__(self, on_failure: Callable[[gevent.Greenlet], None]) -> None:
        super().__init__()
        self._on_failure = on_failure

    def add(self, greenlet: gevent.Greenlet) -> None:
        greenlet.link_exception(self._on_failure)
        super().add(greenlet)


class RunController:
    """Drives one run plan through Locust's events to exactly one final status."""

    def __init__(self, environment: Environment, plan: RunPlan) -> None:
        if environment.parsed_options is None or environment.runner is None:
            raise PerfxError("the perfx plugin runs inside the locust command: locust -f ...")
        self.environment = environment
        self.options = environment.parsed_options
        self.runner: Runner = environment.runner
        self.plan = plan
        self.client = PlatformClient(plan.settings.platform_url, plan.settings.platform_token)
        # Every greenlet of the run, supervised: one that dies of a bug fails the run with its
        # error (instead of vanishing), and all are killed when the run is done.
        self.greenlets = Supervised(self._greenlet_failed)
        self.plugin_error = ""
        self.sync = self._sync(plan)
        master = isinstance(self.runner, MasterRunner)
        self.loop = LoopWatch(master, names=lambda: len(self.runner.stats.entries))
        """How late this process's event loop wakes while it tests (the summary's ``loop``)."""
        self.exporter = self._exporter(plan)
        self.watch = self._watch(plan, self.sync, self.exporter)
        self.roster = WorkerRoster(self.runner)
        if isinstance(self.runner, MasterRunner):  # before anything yields: hellos may be queued
            self.runner.register_message(WORKER_HELLO, self.roster.on_hello)
        self.phase = Phase.IDLE
        self.verdict: Verdict | None = None
        self.baseline_table: dict[str, Any] | None = None
        """The last run's comparison with its baseline (``summary.baseline``), for the tab."""
        self.delivery: Delivery | None = None
        # Facts for the verdict that Locust does not count as failure.
        self.signals = Signals(environment, self._on_sigterm_unhandled)
        self.workers_lost = False
        self.exit_codes: QuittingWatch | None = None
        self._ticker: gevent.Greenlet | None = None
        self._reported_since_stop: set[str] = set()
        self._late_reports = gevent.event.Event()
        self._done = gevent.event.Event()

    @classmethod
    def open(cls, environment: Environment, plan: RunPlan) -> RunController:
        """The controller of ``plan``, its export checked and its values made visible to the
        locustfile; raises PerfxError before any load."""
        controller = cls(environment, plan)
        if controller.exporter is not None:
            controller.exporter.check()
        if plan.host_source != PLATFORM and plan.info.host and plan.host != plan.info.host:
            logger.info(
                "perfx: using --host %s from %s, not the platform's %s",
                plan.host,
                plan.host_source,
                plan.info.host,
            )
        relative = [c.text for c in plan.criteria if c.relative]
        if relative and plan.baseline is None:
            logger.warning("perfx: %s will not be judged: %s", "; ".join(relative), NO_BASELINE)
        controller.apply()
        return controller

    def _sync(self, plan: RunPlan) -> PlatformSync:
        settings = plan.settings
        return PlatformSync(
            self.client,
            plan.run_id,
            retry_for=settings.platform_timeout,
            progress_every=settings.platform_progress,
            state_dir=settings.state_dir,
        )

    def _exporter(self, plan: RunPlan) -> MetricsExporter | None:
        """The run's metrics export, when InfluxDB is configured; it connects nowhere yet."""
        config, info = plan.settings.influx, plan.info
        if config is None:
            return None
        return MetricsExporter(
            config,
            run_id=info.id,
            endpoint=info.endpoint,
            environment=info.environment,
            greenlets=self.greenlets,
            loop=self.loop.take_interval,
        )

    def _spawn(self, function: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        greenlet: gevent.Greenlet = self.greenlets.spawn(function, *args)
        return greenlet

    def _greenlet_failed(self, greenlet: gevent.Greenlet) -> None:
        """The failure recorder: a greenlet of the plugin that raised fails the run."""
        err = greenlet.exception
        logger.error("perfx: a greenlet of the plugin failed: %s: %s", type(err).__name__, err)
        if not self.plugin_error:
            self.plugin_error = f"{type(err).__name__}: {err} (in a greenlet)"

    def _release(self) -> None:
        """The run is done: kill its greenlets (not the caller's own), forget the ticker."""
        self.loop.stop()
        current = gevent.getcurrent()
        for greenlet in list(self.greenlets):
            if greenlet is not current:
                greenlet.kill(block=False)
        self._ticker = None

    def _watch(
        self, plan: RunPlan, sync: PlatformSync, exporter: MetricsExporter | None
    ) -> RunWatch:
        found = plan.baseline
        baseline = found.summary if found is not None and found.run_id else None
        judge = (
            Judge(plan.criteria, interval=plan.settings.interval, baseline=baseline)
            if plan.criteria
            else None
        )
        stop = self.runner.quit if self.options.headless else self.runner.stop
        return RunWatch(
            self.runner,
            sync,
            judge,
            stop_test=stop,
            exporter=exporter,
            interval=plan.settings.interval,
            greenlets=self.greenlets,
        )

    @property
    def interrupted_by(self) -> str:
        """The signal that interrupted the run (``SIGTERM``, ``SIGINT (Ctrl-C)``), or empty."""
        return self.signals.interrupted_by

    def _move(self, to: Phase) -> None:
        if to not in _MOVES[self.phase]:
            raise RuntimeError(f"run {self.plan.run_id}: no move from {self.phase} to {to}")
        logger.debug("perfx: run %s: %s -> %s", self.plan.run_id, self.phase.value, to.value)
        self.phase = to
        if to is Phase.DONE:
            self._done.set()

    # -- what the locustfile sees -------------------------------------------------------------

    def apply(self) -> None:
        """Make the host and typed arguments visible to the locustfile, here and on workers."""
        plan, options = self.plan, self.options
        self.environment.host = plan.host
        options.host = plan.host
        for name, value in plan.arguments.items():
            setattr(options, name, value)
        setattr(options, ARGUMENT_NAMES_KEY, list(plan.arguments))
        export_to_environ(plan.run_id, plan.arguments, plan.arguments)
        # Locust sends parsed_options to every worker: the tokens, already held by our
        # clients, need not travel.
        for secret in SECRET_DESTS:
            setattr(options, secret, None)

    # -- starting -----------------------------------------------------------------------------

    def attach(self) -> None:
        """Listen to the environment's events and signals; headless or autostart: start now."""
        events = self.environment.events
        events.test_start.add_listener(self.on_test_start)
        events.test_stopping.add_listener(self.on_test_stopping)
        events.test_stop.add_listener(self.on_test_stop)
        events.quit.add_listener(self.on_quit)
        # After every quitting listener, whatever the order they were registered in (exits.py).
        self.exit_codes = QuittingWatch(self.environment, self.on_quitting)
        events.worker_report.add_listener(self.on_worker_report)
        self.signals.install()
        atexit.register(self._at_exit)
        if self.options.headless or self.options.autostart:
            self._start(self.plan, self.options.num_users or 1, self.options.spawn_rate or 1)

    def start_from_form(self, form: Mapping[str, str]) -> None:
        """Check a web UI start form and start its platform run, or raise PerfxError.

        The web UI has already checked Locust's own fields (users, ramp up, run time). The
        same form also changes the user count of a running test ("Edit"): that is the same
        run, already started, so it passes through. Nothing changes unless the platform
        accepts the start.
        """
        current = self.plan.run_id
        run_id = form.get("run_id", current).strip()
        if self.phase is Phase.TESTING:
            if run_id in ("", current):
                return
            raise RunStateConflict(
                f"run {current} is running; stop it before starting run {run_id}", run_id=current
            )
        if self.phase in (Phase.STOPPING, Phase.FINISHING):
            raise RunStateConflict(
                f"run {current} is still being completed; press Start again in a moment",
                run_id=current,
            )
        if not run_id:
            raise ConfigError("enter the platform run id in the Run id field")
        plan = self.plan
        if run_id != current:
            plan = plan.for_run(self.client.get_run(run_id))
        elif self.phase is Phase.DONE:
            raise RunStateConflict(
                f"run {current} was already run by this Locust process; create a new run on "
                "the platform and enter its id in the Run id field",
                run_id=current,
            )
        self._start(plan.with_form(form), int(form["user_count"]), float(form["spawn_rate"]))

    def _start(self, plan: RunPlan, users: int, spawn_rate: float) -> None:
        """Start ``plan``'s platform run and make it this controller's; PlatformError if refused."""
        runner = self.runner
        master = isinstance(runner, MasterRunner)
        locust_info = {
            "version": locust_version,
            "mode": "master" if master else "local",
            "users": users,
            "spawn_rate": spawn_rate,
            "run_time": self.options.run_time,
            "locustfile": self.options.locustfile,
            "workers": self.options.expect_workers if master else 0,
            "headless": bool(self.options.headless),
        }
        new_run = plan.run_id != self.plan.run_id
        sync = self._sync(plan) if new_run else self.sync
        sync.start(plan.arguments, plan.host, locust_info)
        if self.phase is Phase.DONE:
            self._move(Phase.IDLE)
            self._reset_for_new_run()
        self.plan, self.sync = plan, sync
        # Before Locust fires test_start: the locustfile's own listener, registered before
        # ours, must see this run's PERFX_* (on_test_start applies again what /swarm rewrote).
        self.apply()
        if new_run:
            self.exporter = self._exporter(plan)
        self.watch = self._watch(plan, sync, self.exporter)
        self._move(Phase.TESTING)
        if self.exporter is not None:
            self.exporter.event("start", f"run {plan.run_id} started: {users} users")

    def _reset_for_new_run(self) -> None:
        self.verdict = self.delivery = None
        self.baseline_table = None
        self.signals.interrupted_by = self.plugin_error = ""
        self.workers_lost = False
        self._done.clear()

    # -- Locust's events ----------------------------------------------------------------------

    @_guard
    def on_test_start(self, **_: Any) -> None:
        self.signals.tests_started += 1
        if self.phase is not Phase.TESTING:
            return  # a test the platform run does not own (a finished run's process)
        self.apply()  # the web UI form wrote raw strings into parsed_options
        self._reported_since_stop.clear()
        self._late_reports.clear()
        self.loop.start()  # before the export's first read: its intervals are the loop's
        if self.exporter is not None:
            self.exporter.start(self.environment)
        self.watch.start()
        if self._ticker is None:
            self._ticker = spawn_ticker(TICK, self.tick, self.greenlets)

    @_guard
    def tick(self) -> None:
        """Once a second: workers without the plugin; while testing, the run's watch and
        this process's event loop."""
        self.roster.check()
        if self.phase is Phase.TESTING:
            self.watch.tick()
            self.loop.check()

    @_guard
    def on_test_stopping(self, **_: Any) -> None:
        """Locust stops a master's test when its last worker goes missing, then idles to -t."""
        runner = self.runner
        lost = isinstance(runner, MasterRunner) and runner.worker_count == 0
        if lost and self.phase is Phase.TESTING and not self.interrupted_by:
            self.workers_lost = True
            logger.error("perfx: every worker is gone (heartbeat timeout); ending the run")
            if self.options.headless:
                self._spawn(runner.quit)

    @_guard
    def on_test_stop(self, **_: Any) -> None:
        """A web UI Stop ends the run: once the workers' last reports are in, send the verdict.

        Headless runs end at ``quitting``/``quit``, when the exit code is known.
        """
        if self.phase is Phase.TESTING and not self.options.headless:
            self._move(Phase.STOPPING)
            self._spawn(self._finish_after_late_reports)

    @_guard
    def on_worker_report(self, client_id: str = "", **_: Any) -> None:
        if self.phase is Phase.STOPPING:
            self._reported_since_stop.add(client_id)
            if len(self._reported_since_stop) >= worker_count(self.runner):
                self._late_reports.set()

    def _finish_after_late_reports(self) -> None:
        if isinstance(self.runner, MasterRunner):
            self._late_reports.wait(LATE_REPORT_WAIT)
        self.finish(self._exit_code_now())

    @_guard
    def on_quitting(self, **_: Any) -> None:
        """Runs after every ``quitting`` listener (:class:`QuittingWatch`): the exit code the
        others left is final but for the plugin's own, which it sets only where Locust would
        exit 0.

        Makes the exit code tell the truth about causes Locust does not count. When Locust's
        runner has already quit (``-t`` reached, a shape ended, all workers lost), every
        report is in: the verdict is sent now, so that a final status the platform did not
        take can still change the exit code. Interrupted runs send it at ``quit``, after
        Locust has stopped the users.
        """
        assert self.exit_codes is not None, "attach() installed it"
        untold = self.workers_lost or self.interrupted_by or self.plugin_error
        if untold and self.environment.process_exit_code is None and self._owns_load():
            self.exit_codes.set_own(1)
        if self._owns_load() and len(self.runner.greenlet) == 0:
            self.finish(self._exit_code_now())
        if self.environment.process_exit_code is None and self._exit_code_now() == 0:
            code = self._plugin_exit_code()
            if code:
                self.exit_codes.set_own(code)

    def _plugin_exit_code(self) -> int:
        """The code for a test Locust would pass (exit 0) but the plugin does not: 0 if none."""
        verdict = self.verdict
        if verdict is not None and verdict.failed:
            return EXIT_THRESHOLDS if self.watch.breaches() else 1
        return DELIVERY_EXIT_CODES.get(self.delivery, 0) if self.delivery else 0

    def _owns_load(self) -> bool:
        return self.phase in (Phase.TESTING, Phase.STOPPING)

    @_guard
    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        """The process ends: the verdict (if nobody sent it yet), then nothing left running."""
        self.finish(exit_code)
        self._release()
        self.client.close()

    # -- the verdict --------------------------------------------------------------------------

    def finish(self, exit_code: int, plugin_error: str = "") -> None:
        """Send the verdict once; a second caller waits until the first's is sent."""
        if self.phase in (Phase.FINISHING, Phase.DONE):
            self._done.wait()
            return
        if not self._owns_load():
            return  # never started: the run stays pending
        self._move(Phase.FINISHING)
        try:
            self._finish(exit_code, plugin_error)
        finally:
            self._move(Phase.DONE)
            self._release()

    def _finish(self, exit_code: int, plugin_error: str) -> None:
        """The final status goes out first; neither the summary nor the export can stop it."""
        self.loop.stop()  # the test is over: what follows is the verdict's work
        try:
            # A master's runner that quit stopped listening 0.5 s after telling the workers to
            # quit; their last reports (after up to --stop-timeout) may still be on the way.
            wait = (self.environment.stop_timeout or 0.0) + LATE_REPORT_WAIT
            collect_last_reports(self.runner, wait)
        except Exception:  # the verdict goes out regardless; the summary may then undercount
            logger.exception("perfx: the workers' last reports could not be collected")
        try:
            self.watch.final_results()
        except Exception as err:  # judged wrongly is a plugin failure, not a lost verdict
            logger.exception("perfx: the thresholds could not be judged")
            plugin_error = plugin_error or f"{type(err).__name__}: {err} (judging thresholds)"
        try:  # before the verdict: relative thresholds judge the summary against the baseline's
            summary = self._summary()
        except Exception as err:  # a bug here must not keep the verdict from the platform
            logger.exception("perfx: the run summary could not be built")
            summary = {"error": f"the summary could not be built: {type(err).__name__}: {err}"}
        verdict = decide(self._outcome(exit_code, plugin_error))
        self.verdict = verdict
        self.watch.stop()
        try:
            self.delivery = self.sync.finish(
                verdict, summary, exit_code or self._plugin_exit_code()
            )
        finally:
            self._close_export(verdict, summary)

    def _close_export(self, verdict: Verdict, summary: Mapping[str, Any]) -> None:
        """Send the comparison with the baseline, the verdict's annotation and the last
        interval; a failure here is logged, and the run keeps the verdict the platform
        already has."""
        if self.exporter is None:
            return
        try:
            found, table = self.plan.baseline, self.baseline_table
            if found is not None and table is not None and table["rows"]:
                rows = exported_rows(table, found.summary, summary)
                self.exporter.compared(found.run_id, rows)
            self.exporter.event(verdict.call, verdict.reason or "completed")
            self.exporter.close()
        except Exception:
            logger.exception("perfx: the InfluxDB export could not be closed")

    def _outcome(self, exit_code: int, plugin_error: str) -> Outcome:
        runner = self.runner
        stats = runner.stats
        return Outcome(
            exit_code=exit_code,
            requests=stats.total.num_requests,
            failures=stats.total.num_failures,
            exceptions=tuple(str(e["msg"]) for e in runner.exceptions.values()),
            exit_code_set_by=self.exit_codes.setter
            if self.exit_codes is not None and self.exit_codes.set_by_other
            else "",
            signal=self.interrupted_by,
            workers_lost=self.workers_lost,
            plugin_error=plugin_error or self.plugin_error,
            breaches=self.watch.breaches(),
            aborted=self.watch.aborted,
        )

    def _summary(self) -> dict[str, Any]:
        summary = self.watch.summary(time.time())
        summary["perfx_version"] = perfx_version
        loop = self.loop.figures()
        if loop is not None:
            summary["loop"] = loop
        if self.exporter is not None:
            summary["export"] = self.exporter.health(ending=True)
        found, criteria = self.plan.baseline, self.plan.criteria
        if found is not None:
            summary["baseline"] = self.baseline_table = table = found.table(
                summary, limits_of(criteria)
            )
            logger.info("perfx: %s", baseline_line(table))
        judge = self.watch.judge
        if judge is not None:
            if any(c.relative for c in criteria):
                compared = found.summary if found is not None and found.run_id else None
                why_not = NO_BASELINE if found is None else found.note
                self.watch.report(judge.judge_baseline(compared, summary, why_not))
            summary["thresholds"] = [r.describe() for r in self.watch.results()]
        return summary

    def _exit_code_now(self) -> int:
        return locust_exit_code(self.environment)

    # -- exits ------------------------------------------------------------------------------

    def _on_sigterm_unhandled(self) -> None:
        """SIGTERM where Locust has no handler yet (:class:`Signals`): end the run, then exit."""
        logger.info("perfx: SIGTERM: stopping the test and ending run %s", self.plan.run_id)
        assert self.exit_codes is not None, "attach() installed it"
        self.exit_codes.set_own(SIGTERM_EXIT)
        shape = self.runner.shape_greenlet
        if shape is not None:
            # main() waits for the shape: once it ends, Locust quits the runner and shuts
            # down as usual (quitting, quit: the verdict), exiting with the code set above.
            shape.kill(block=False)
            return
        # A master waiting for --expect-workers: main() sleeps in a loop that only workers end.
        self.runner.quit()
        self.finish(SIGTERM_EXIT)
        raise SystemExit(SIGTERM_EXIT)

    def _at_exit(self) -> None:
        """Last resort: a process that dies without Locust's quit event still ends the run."""
        self.finish(1, "" if self.interrupted_by else "the Locust process exited without a verdict")
