"""The Locust glue: the only module that registers listeners on ``locust.events``.

Loaded on purpose, by ``locust -f perfx_plugin.py,locustfile.py`` or the ``perfx``
command; importing :mod:`locust_perfx` alone registers nothing. Each listener checks
the role and hands over to an object that owns the state. Without ``--run-id`` every
listener returns at once: no network call, no changed behaviour, no log line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from locust_perfx import webui
from locust_perfx.exceptions import ConfigError, PerfxError
from locust_perfx.options import OptionRegistry, expose_arguments_on_worker
from locust_perfx.platform import PlatformClient, RunInfo

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 1


def _fetch(run_id: str, platform_url: str, token: str | None, retry_for: float) -> RunInfo:
    with PlatformClient(platform_url, token or "") as client:
        return client.get_run(run_id, retry_for=retry_for)


registry = OptionRegistry(_fetch)


@events.init_command_line_parser.add_listener
def on_command_line_parser(parser: Any, **_: Any) -> None:
    try:
        registry.register(parser, sys.argv[1:])
    except PerfxError as err:
        _exit(err)


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        environment.events.test_start.add_listener(
            lambda **_: expose_arguments_on_worker(environment)
        )
        return
    if registry.info is None:
        return  # no --run-id: stay inert
    # Imported here, in the master or local process of a run only: with the export stack
    # (influxdb_client: ~20,000 objects) imported, workers made ~4% fewer requests/s on a
    # busy 2-core machine (bench/load.py, distributed); without it, no difference.
    from locust_perfx.session import RunSession, print_dry_run

    try:
        info = registry.info
        session = RunSession.open(environment, info, _clashes(environment, info))
        if session.settings.dry_run:
            print_dry_run(session)
            sys.exit(0)
        session.attach()
    except PerfxError as err:
        _exit(err)
    if environment.web_ui:
        webui.install(environment.web_ui, session)


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
