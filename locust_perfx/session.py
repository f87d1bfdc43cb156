"""One platform run inside one Locust process: arguments, host, status sync and metrics export.

:class:`RunSession` exists only in the process that owns the run (the local runner or
the master). It is built and validated in Locust's ``init``, before any user spawns,
and registers its own bound methods on ``environment.events``.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Final

import gevent
import gevent.event
import gevent.lock
from locust import __version__ as locust_version
from locust import log as locust_log
from locust.env import Environment
from locust.runners import MasterRunner, Runner

from locust_perfx.exceptions import ConfigError, PerfxError, RunStateConflict
from locust_perfx.export_process import MetricsExporter
from locust_perfx.lifecycle import (
    TICK,
    Outcome,
    RunLifecycle,
    RunState,
    decide,
    spawn_ticker,
)
from locust_perfx.options import (
    ARGUMENT_NAMES_KEY,
    SECRET_DESTS,
    Settings,
    export_to_environ,
    value_sources,
)
from locust_perfx.platform import PlatformClient, RunInfo
from locust_perfx.schema import Value, render, resolve_value
from locust_perfx.snapshot import summarize

logger = logging.getLogger(__name__)

LATE_REPORT_WAIT: Final = 5.0
"""Seconds to wait after a web UI Stop for each worker's last report (workers report every 3 s)."""


def _guard(method: Callable[..., None]) -> Callable[..., None]:
    """A bug in one of our listeners must still end the run truthfully, not vanish in a log.

    Locust swallows listener exceptions; this records the first one so the verdict names it.
    """

    @functools.wraps(method)
    def guarded(self: RunSession, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as err:
            logger.exception("perfx: %s failed", method.__name__)
            if not self.plugin_error:
                self.plugin_error = f"{type(err).__name__}: {err} (in {method.__name__})"

    return guarded


class RunSession:
    """Ties a validated platform run to a Locust environment."""

    def __init__(
        self,
        environment: Environment,
        settings: Settings,
        info: RunInfo,
        arguments: dict[str, Value],
        host: str,
        exporter: MetricsExporter | None,
    ) -> None:
        self.environment = environment
        self.options, self.runner = _owned(environment)
        self.settings = settings
        self.info = info
        self.arguments = arguments
        self.host = host
        self.exporter = exporter
        self.client = PlatformClient(settings.platform_url, settings.platform_token)
        self.lifecycle = self._new_lifecycle(info)
        self.signal = ""
        self.plugin_error = ""
        self.workers_lost = False
        self._set_exit_code = False
        self.users_peak = 0
        self.workers_peak = 0
        self._test_running = False
        self._waiting_for_first_test = True
        self._ticker: gevent.Greenlet | None = None
        self._reports_after_stop: set[str] = set()
        self._late_reports = gevent.event.Event()
        # Locust may shut down twice at once (SIGTERM: once in the signal's greenlet, once in
        # the main one); the second must wait for the first's final status, not exit under it.
        self._finishing = gevent.lock.Semaphore()

    def _new_lifecycle(self, info: RunInfo) -> RunLifecycle:
        return RunLifecycle(
            self.client,
            info,
            retry_for=self.settings.platform_timeout,
            progress_every=self.settings.platform_progress,
        )

    @classmethod
    def open(
        cls, environment: Environment, info: RunInfo, clashes: Mapping[str, str]
    ) -> RunSession:
        """Validate everything about the run at once; raises ConfigError or PlatformError.

        ``clashes`` maps parameters that could not get an option to the problem.
        """
        options, _ = _owned(environment)
        problems = list(clashes.values())
        settings: Settings | None = None
        try:
            settings = Settings.from_options(options)
        except ConfigError as err:
            problems.extend(err.problems)
        params = [p for p in info.schema.parameters if p.dest not in clashes]
        sources = value_sources(info.schema, sys.argv[1:], os.environ)
        arguments: dict[str, Value] = {}
        # From the web UI, required values may still come with the start form.
        from_form = not (options.headless or options.autostart)
        for param in params:
            raw = getattr(options, param.dest, None)
            if from_form and param.required and raw in (None, ""):
                arguments[param.dest] = None
                continue
            try:
                arguments[param.dest] = resolve_value(param, raw, sources[param.dest])
            except ConfigError as err:
                problems.extend(err.problems)
        if problems or settings is None:
            raise ConfigError(problems)
        if info.status != "pending":
            raise RunStateConflict(
                f"run {info.id} is already {info.status}; create a new run on the platform",
                run_id=info.id,
            )
        host = options.host or info.host
        if host != info.host and info.host:
            logger.info(
                "perfx: using --host %s given on the command line, not the platform's %s",
                host,
                info.host,
            )
        if not host:
            raise ConfigError(
                f"run {info.id} has no host: its environment {info.environment!r} on the "
                "platform has none; set one there or pass --host"
            )
        exporter = _exporter(settings, info)
        if exporter is not None:
            exporter.check()
        session = cls(environment, settings, info, arguments, host, exporter)
        session.apply()
        return session

    def apply(self) -> None:
        """Make the host and typed arguments visible to the locustfile, here and on workers."""
        options = self.options
        self.environment.host = self.host
        options.host = self.host
        for name, value in self.arguments.items():
            setattr(options, name, value)
        setattr(options, ARGUMENT_NAMES_KEY, list(self.arguments))
        export_to_environ(self.info.id, self.arguments, self.arguments)
        # Locust sends parsed_options to every worker: the tokens, already held by our
        # clients, need not travel.
        for secret in SECRET_DESTS:
            setattr(options, secret, None)

    def describe(self) -> dict[str, Any]:
        """The resolved run, for ``--dry-run`` and the web UI; holds no secret."""
        return {
            "run_id": self.info.id,
            "status": self.info.status,
            "platform_url": self.settings.platform_url,
            "endpoint": self.info.endpoint,
            "environment": self.info.environment,
            "host": self.host,
            "arguments": self.arguments,
            "influxdb": None
            if self.settings.influx is None
            else {
                "url": self.settings.influx.url,
                "org": self.settings.influx.org,
                "bucket": self.settings.influx.bucket,
                "layout": self.settings.influx.layout,
            },
        }

    def status(self) -> dict[str, Any]:
        """The live state of the run for the web UI's PerfX tab; holds no secret."""
        verdict = self.lifecycle.verdict
        return {
            **self.describe(),
            "state": self.lifecycle.state.value,
            "outcome": None if verdict is None else ("failed" if verdict.failed else "completed"),
            "reason": None if verdict is None else verdict.reason,
            "last_platform_error": self.lifecycle.last_error,
            "run_url": f"{self.client.base_url}/runs/{self.info.id}",
            "export": None if self.exporter is None else self.exporter.health(),
        }

    def attach(self) -> None:
        """Listen to the environment's events; in headless or autostart mode, start the run now."""
        events = self.environment.events
        events.test_start.add_listener(self.on_test_start)
        events.test_stopping.add_listener(self.on_test_stopping)
        events.test_stop.add_listener(self.on_test_stop)
        events.quitting.add_listener(self.on_quitting)
        events.quit.add_listener(self.on_quit)
        events.worker_report.add_listener(self.on_worker_report)
        # A headless master waiting for --expect-workers has no SIGTERM handler of Locust's
        # yet; gevent runs every handler of a signal, so ours sees it before and after.
        gevent.signal_handler(signal.SIGTERM, self._on_sigterm)
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):
            signal.signal(signal.SIGINT, self._sigint_handler(previous))
        atexit.register(self._at_exit)
        options = self.options
        if options.headless or options.autostart:
            self.start(options.num_users or 1, options.spawn_rate or 1)

    def start(self, users: int, spawn_rate: float) -> None:
        """Start the platform run; PlatformError when the platform (or this process) refuses."""
        self._start(self.arguments, self.host, users, spawn_rate)

    def _start(self, arguments: dict[str, Value], host: str, users: int, spawn_rate: float) -> None:
        options = self.options
        runner = self.runner
        locust_info = {
            "version": locust_version,
            "mode": "master" if isinstance(runner, MasterRunner) else "local",
            "users": users,
            "spawn_rate": spawn_rate,
            "run_time": options.run_time,
            "locustfile": options.locustfile,
            "workers": options.expect_workers if isinstance(runner, MasterRunner) else 0,
            "headless": bool(options.headless),
        }
        self.lifecycle.start(arguments, host, locust_info)
        self.arguments, self.host = arguments, host
        if self.exporter is not None:
            self.exporter.event("start", f"run {self.info.id} started: {users} users")

    def start_from_form(self, form: Mapping[str, str]) -> None:
        """Validate a web UI start form and start the platform run, or raise PerfxError.

        The web UI has already checked Locust's own fields (users, ramp up, run time). The
        same form also changes the user count of a running test ("Edit"): that is the same
        run, already started, so it passes through untouched. Nothing changes here unless
        the platform accepts the start.
        """
        run_id = (form.get("run_id") or "").strip()
        if self._test_running:
            if run_id in ("", self.info.id):
                return
            raise RunStateConflict(
                f"run {self.info.id} is running; stop it before starting run {run_id}",
                run_id=self.info.id,
            )
        if not run_id:
            raise ConfigError("enter the platform run id in the Run id field")
        if run_id != self.info.id:
            self._switch_run(run_id)
        params = self.info.schema.parameters
        missing = [p for p in params if p.required and not (form.get(p.dest) or "").strip()]
        if missing:
            raise ConfigError(f"{p.name} is required: fill it in the form" for p in missing)
        arguments = self.info.schema.resolve(
            {p.dest: form.get(p.dest) for p in params}, {p.dest: "the web UI form" for p in params}
        )
        host = (form.get("host") or "").strip() or self.host
        self._start(arguments, host, int(form["user_count"]), float(form["spawn_rate"]))

    def _switch_run(self, run_id: str) -> None:
        """A fresh run id entered in the form: the next test belongs to that run."""
        if self._running:
            raise RunStateConflict(
                f"run {self.info.id} is still being completed; press Start again in a moment",
                run_id=self.info.id,
            )
        info = self.client.get_run(run_id)
        if info.status != "pending":
            raise RunStateConflict(
                f"run {run_id} is already {info.status}; create a new run on the platform",
                run_id=run_id,
            )
        if info.schema != self.info.schema:
            raise ConfigError(
                f"run {run_id} belongs to endpoint {info.endpoint!r}, whose arguments differ "
                f"from this form's; restart Locust with --run-id {run_id}"
            )
        self.info = info
        self.lifecycle = self._new_lifecycle(info)
        self.exporter = _exporter(self.settings, info)

    @_guard
    def on_test_start(self, **_: Any) -> None:
        self.apply()  # the web UI form wrote raw strings into parsed_options
        self._test_running = True
        self._waiting_for_first_test = False
        self.users_peak = self.workers_peak = 0
        self._reports_after_stop.clear()
        self._late_reports.clear()
        if self.exporter is not None:
            self.exporter.start(self.environment)
        if self._ticker is None:
            self._ticker = spawn_ticker(TICK, self.tick)

    @_guard
    def tick(self) -> None:
        """Once a second: peak users, and progress to the platform when it is due."""
        runner = self.runner
        self.users_peak = max(self.users_peak, runner.user_count)
        self.workers_peak = max(self.workers_peak, self._workers())
        self.lifecycle.progress(self.progress_body)

    def _workers(self) -> int:
        runner = self.runner
        return runner.worker_count if isinstance(runner, MasterRunner) else 0

    def progress_body(self) -> dict[str, Any]:
        runner = self.runner
        total = runner.stats.total
        return {
            "users": runner.user_count,
            "workers": self._workers(),
            "rps": round(total.current_rps, 2),
            "fail_ratio": round(total.fail_ratio, 4),
            "requests": total.num_requests,
            "failures": total.num_failures,
        }

    @_guard
    def on_test_stopping(self, **_: Any) -> None:
        """Locust stops a master's test when its last worker goes missing, then idles to -t."""
        runner = self.runner
        if isinstance(runner, MasterRunner) and runner.worker_count == 0 and self._running:
            self.workers_lost = True
            logger.error("perfx: every worker is gone (heartbeat timeout); ending the run")
            if self.options.headless:
                gevent.spawn(runner.quit)

    @_guard
    def on_test_stop(self, **_: Any) -> None:
        """A web UI Stop ends the run: once the workers' last reports are in, send the verdict."""
        self._test_running = False
        options = self.options
        if options.headless or self.lifecycle.state is not RunState.RUNNING:
            return  # headless runs end at quit, when the exit code is known
        gevent.spawn(self._finish_after_late_reports)

    @_guard
    def on_worker_report(self, client_id: str = "", **_: Any) -> None:
        if not self._test_running:
            self._reports_after_stop.add(client_id)
            runner = self.runner
            if len(self._reports_after_stop) >= getattr(runner, "worker_count", 0):
                self._late_reports.set()

    def _finish_after_late_reports(self) -> None:
        if isinstance(self.runner, MasterRunner):
            self._late_reports.wait(LATE_REPORT_WAIT)
        self.finish(self._expected_exit_code())

    @_guard
    def on_quitting(self, **_: Any) -> None:
        """Make the process exit code tell the truth about causes Locust does not count."""
        untold = self.workers_lost or self.signal or self.plugin_error
        if untold and self.environment.process_exit_code is None and self._running:
            self.environment.process_exit_code = 1
            self._set_exit_code = True

    @property
    def _running(self) -> bool:
        return self.lifecycle.state is RunState.RUNNING

    @_guard
    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        self.finish(exit_code)

    def finish(self, exit_code: int, plugin_error: str = "") -> None:
        """Close the export (its last interval holds the late reports) and send the verdict."""
        with self._finishing:
            if self._running:
                self._finish(exit_code, plugin_error)

    def _finish(self, exit_code: int, plugin_error: str) -> None:
        runner = self.runner
        stats = runner.stats
        outcome = Outcome(
            exit_code=exit_code,
            requests=stats.total.num_requests,
            failures=stats.total.num_failures,
            exceptions=tuple(str(e["msg"]) for e in runner.exceptions.values()),
            exit_code_set_by_user=self.environment.process_exit_code is not None
            and not self._set_exit_code,
            signal=self.signal,
            workers_lost=self.workers_lost,
            plugin_error=plugin_error or self.plugin_error,
        )
        verdict = decide(outcome)
        summary = summarize(
            stats,
            users_peak=max(self.users_peak, runner.user_count),
            workers=max(self.workers_peak, self._workers()),
            started_at=stats.start_time,
            finished_at=time.time(),
        )
        if self.exporter is not None:
            self.exporter.event(verdict.call, verdict.reason or "completed")
            self.exporter.close()
            summary["export"] = self.exporter.health()
        if self._ticker is not None:
            self._ticker.kill(block=False)
            self._ticker = None
        self.lifecycle.finish(verdict, summary, exit_code)

    def _expected_exit_code(self) -> int:
        """The code Locust would exit with now (``main.py`` shutdown), for web UI runs."""
        runner = self.runner
        if self.environment.process_exit_code is not None:
            return int(self.environment.process_exit_code)
        if runner.errors or runner.exceptions:
            return int(self.options.exit_code_on_error)
        return 2 if locust_log.unhandled_greenlet_exception else 0

    def _on_sigterm(self) -> None:
        self.signal = "SIGTERM"
        if self._waiting_for_first_test and self.lifecycle.state is RunState.RUNNING:
            # A headless master still waiting for workers: Locust exits without any event.
            self.finish(143)
            raise SystemExit(143)

    def _sigint_handler(self, previous: Any) -> Any:
        """Record Ctrl-C, then interrupt the main greenlet as Python would.

        Python runs a signal handler in whichever greenlet is current, and some of Locust's
        greenlets (``stats_history``) swallow KeyboardInterrupt: Ctrl-C could then be lost,
        leaving a master waiting for workers forever. So Python's default handler is
        replaced by one that raises KeyboardInterrupt in the main greenlet; any other
        handler (the locustfile's own) is chained.
        """
        main = gevent.getcurrent()

        def handler(signum: int, frame: FrameType | None) -> Any:
            self.signal = "SIGINT (Ctrl-C)"
            if previous is not signal.default_int_handler:
                return previous(signum, frame)
            gevent.get_hub().loop.run_callback(main.throw, KeyboardInterrupt)
            return None

        return handler

    def _at_exit(self) -> None:
        """Last resort: a process that dies without Locust's quit event still ends the run."""
        self.finish(1, "" if self.signal else "the Locust process exited without a verdict")


def _exporter(settings: Settings, info: RunInfo) -> MetricsExporter | None:
    """The run's metrics export, when InfluxDB is configured; it connects nowhere yet."""
    if settings.influx is None:
        return None
    return MetricsExporter(
        settings.influx, run_id=info.id, endpoint=info.endpoint, environment=info.environment
    )


def _owned(environment: Environment) -> tuple[argparse.Namespace, Runner]:
    """The parsed options and runner Locust always sets up before ``init``."""
    if environment.parsed_options is None or environment.runner is None:
        raise PerfxError("the perfx plugin runs inside the locust command: locust -f ...")
    return environment.parsed_options, environment.runner


def print_dry_run(session: RunSession) -> None:
    print(json.dumps(session.describe(), indent=2, default=render))
