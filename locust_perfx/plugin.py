"""The Locust glue: the only module that registers listeners on ``locust.events``.

Loaded on purpose, by ``locust -f perfx_plugin.py,locustfile.py`` or the ``perfx``
command; importing :mod:`locust_perfx` alone registers nothing. Each listener checks
the role and hands over to an object that owns the state. Without ``--run-id`` every
listener returns at once: no network call, no changed behaviour, no log line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from locust_perfx import __version__, baseline, otel, webui
from locust_perfx.exceptions import ConfigError, PerfxError
from locust_perfx.plan import Settings, build_plan, print_dry_run
from locust_perfx.platform import DEFAULT_TIMEOUT, PlatformClient, RunInfo
from locust_perfx.registry import (
    WORKER_HELLO,
    OptionRegistry,
    describe_perfx,
    expose_arguments_on_worker,
    value_sources,
)

if TYPE_CHECKING:
    from locust_perfx.controller import RunController

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 1


def _fetch(run_id: str, url: str, token: str, retry_for: float, timeout: float | None) -> RunInfo:
    with PlatformClient(url, token, timeout=timeout or DEFAULT_TIMEOUT) as client:
        info = client.get_run(run_id, retry_for=retry_for)
    # Fetched at the parse, before Locust's --otel builds its resource from the environment.
    otel.add_resource_attributes(
        {
            "perfx.run_id": info.id,
            "perfx.endpoint": info.endpoint,
            "perfx.environment": info.environment,
        }
    )
    return info


def _offline_problems(options: argparse.Namespace, sources: Mapping[str, str]) -> list[str]:
    """The plugin options' problems that need no platform (thresholds, InfluxDB flags)."""
    try:
        Settings.from_options(options, sources)
    except ConfigError as err:
        return err.problems
    return []


registry = OptionRegistry(_fetch, _offline_problems)
controller: RunController | None = None
"""The run's controller, in the process that owns the run (local runner or master)."""


@events.init_command_line_parser.add_listener
def on_command_line_parser(parser: Any, **_: Any) -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):  # only `perfx` loads the plugin before the help
        describe_perfx(parser)
    registry.register_at_parse(parser, sys.argv[1:], on_error=_exit)


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    global controller
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(WORKER_HELLO, {"version": __version__})  # the master checks for it
        return
    if registry.info is None:
        if isinstance(runner, MasterRunner):  # no run to check workers for: take the hello
            runner.register_message(WORKER_HELLO, lambda **_: None)
        return  # no --run-id: nothing to own
    try:
        options = environment.parsed_options
        assert registry.parser is not None and options is not None, "Locust parsed already"
        info = registry.info
        plan = build_plan(
            options, info, _clashes(environment, info), value_sources(registry.parser, options)
        )
        plan = replace(plan, baseline=baseline.resolve_for(plan.settings, plan.info))
        if plan.settings.dry_run:
            print_dry_run(plan)
            sys.exit(0)
        # Imported here, in the master or local process of a run only (not for a dry run):
        # with the run's machinery imported (influxdb_client then: ~20,000 objects), workers
        # made ~4% fewer requests/s on a busy 2-core machine (bench/load.py, distributed).
        from locust_perfx.controller import RunController

        controller = owner = RunController.open(environment, plan)
        owner.attach()
    except PerfxError as err:
        _exit(err)
    if environment.web_ui:
        webui.install(environment.web_ui, owner)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    """Registered at import, before the locustfile's own listeners: a worker's ``test_start``
    listeners find the run's ``PERFX_*`` variables already set."""
    if isinstance(environment.runner, WorkerRunner):
        expose_arguments_on_worker(environment)


def _clashes(environment: Environment, info: RunInfo) -> dict[str, str]:
    """Schema parameters that cannot become options, or cannot round-trip the web UI form."""
    clashes = dict(registry.clashes)
    if environment.web_ui:
        clashes |= webui.form_clashes(p.dest for p in info.schema.parameters)
    return clashes


def _exit(err: PerfxError) -> None:
    """One line per problem and a non-zero exit, before any user is spawned."""
    problems = err.problems if isinstance(err, ConfigError) else [str(err)]
    for problem in problems:
        sys.stderr.write(f"perfx: {problem}\n")
    sys.exit(EXIT_BAD_INPUT if isinstance(err, ConfigError) else EXIT_REFUSED)
