"""Registers the option table and the run's schema options on Locust's parser, and reads them back.

Every option is a plain ``parser.add_argument`` (argument groups hide options from the
web UI and reject Locust's extras), settable by flag, ``PERFX_*`` variable or Locust
config file. Schema options are registered as strings (``type=str``): the typing and
checking is :func:`locust_perfx.schema.coerce`'s job, so that every source of a value
is judged by the same rules and all problems are reported together in ``init``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from locust_perfx.exceptions import ConfigError, PerfxError
from locust_perfx.options import OPTIONS, PACKAGE_LOGGER
from locust_perfx.schema import FALSE_WORDS, TRUE_WORDS, Parameter, RunSchema, Value, render

if TYPE_CHECKING:
    from locust.argument_parser import LocustArgumentParser

    from locust_perfx.platform import RunInfo

WORKER_HELLO: Final = "perfx_worker"
"""Message a worker with the plugin sends its master: a worker without it gets no PERFX_*."""
ARGUMENT_NAMES_KEY: Final = "perfx_arguments"
"""``parsed_options`` key listing the schema arguments, sent to workers with the rest."""


USAGE: Final = """
Usage: perfx [options] [UserClass ...]     Locust with the plugin loaded
       perfx init [DIR]                    write perfx_plugin.py for locust -f perfx_plugin.py,...
       perfx dashboards [DIR]              write the Grafana dashboards
       perfx resend FILE                   deliver a final status saved at the end of a run
       perfx compare BASE_RUN RUN          compare two runs on the platform, per request name
       perfx help [COMMAND]                this help, or a command's
"""
"""The ``perfx`` command's usage (:mod:`locust_perfx.cli`), at the top of its ``--help``."""


def describe_perfx(parser: argparse.ArgumentParser) -> None:
    """Make Locust's ``--help`` the ``perfx`` command's: its usage, its commands, and the
    environment variable of every plugin option (Locust's help names none)."""
    rows = [
        *((o.flag, o.env_var) for o in OPTIONS),
        ("--<name> (the run's)", "PERFX_<NAME>, e.g. PERFX_BATCH_SIZE"),
    ]
    names = "\n".join(f"    {flag:<24}{env}" for flag, env in rows)
    parser.description = USAGE
    parser.epilog = (
        "Every perfx option and run argument can be set by environment variable (and in\n"
        "Locust's config files by its dashed name):\n\n"
        f"{names}\n\n"
        "The locustfile reads the run id and arguments as PERFX_RUN_ID and PERFX_<NAME>.\n\n"
        f"{parser.epilog or ''}"
    ).replace("\n    locust ", "\n    perfx ")


class _AnyChoices(list[str]):
    """Choices the web UI shows as a dropdown but argparse does not enforce.

    argparse would reject a bad choice on its own, one problem at a time and in every
    process; the plugin reports it with all other problems in ``init`` instead.
    """

    def __contains__(self, item: object) -> bool:
        return True


def add_plugin_options(parser: LocustArgumentParser) -> list[str]:
    """Register the option table on a fresh parser (Locust builds one per web UI page load).

    Returns the problems: a flag of the table that the locustfile (or another plugin) added
    first cannot be the plugin's.
    """
    problems = []
    for opt in OPTIONS:
        if opt.flag in parser._option_string_actions:
            problems.append(
                f"the option {opt.flag} that the locustfile (or another plugin) adds is also "
                "an option of the perfx plugin; rename it in the locustfile"
            )
            continue
        # Values stay text here and are typed by typed_values(), which names the
        # source of a bad one; argparse's own "invalid float value" names none.
        kind: dict[str, Any] = (
            {"action": "store_true"}
            if opt.flag_only
            else {
                "metavar": opt.metavar,
                "type": str,
                "action": "append" if opt.repeatable else "store",
            }
        )
        parser.add_argument(
            opt.flag,
            default=opt.default,
            help=opt.help,
            env_var=opt.env_var,
            include_in_web_ui=opt.in_web_ui,
            is_secret=opt.secret,
            **kind,
        )
    return problems


def add_schema_options(parser: LocustArgumentParser, schema: RunSchema) -> dict[str, str]:
    """Register one option per schema parameter; returns the clashes instead of raising.

    A parameter named like an existing option (``host``, ``run_time``) cannot be given a
    flag; the clash is reported with every other problem when the run is validated.
    """
    taken_dests = {a.dest for a in parser._actions}
    clashes: dict[str, str] = {}
    for param in schema.parameters:
        if param.option in parser._option_string_actions or param.dest in taken_dests:
            clashes[param.dest] = _clash(parser, param)
            continue
        parser.add_argument(
            param.option,
            metavar=param.type.upper() if param.type != "choice" else "CHOICE",
            type=_bool_or_text if param.type == "bool" else str,
            default=_ui_default(param),
            choices=_ui_choices(param),
            help=schema_help(param),
            env_var=param.env_var,
            is_required=param.required,
        )
        taken_dests.add(param.dest)
    return clashes


def schema_help(param: Parameter) -> str:
    parts = [param.description.rstrip(".") or f"{param.type} argument of the run"]
    if param.choices:
        parts.append(f"One of {', '.join(param.choices)}")
    if param.required:
        parts.append("Required")
    parts.append(f"Defaults to {param.default}" if param.default is not None else "No default")
    return ". ".join(parts) + "."


COMMAND_LINE: Final = "the command line"


def value_sources(parser: LocustArgumentParser, parsed: argparse.Namespace) -> dict[str, str]:
    """Where each option's value in ``parsed`` came from, by dest, from configargparse's record.

    Call it after the parser parsed. An option missing here was given on the command line
    (configargparse records that source as the raw argument list) or not at all.
    configargparse records a default for a flag given abbreviated (``--batch 8``); the
    parsed value tells it from the real default.
    """
    sources: dict[str, str] = {}
    for source, settings in parser.get_source_to_settings_dict().items():
        if source == "command_line":
            continue
        for key, (action, _) in settings.items():
            if action is None:
                continue
            if source == "environment_variables":
                sources[action.dest] = key
            elif source == "defaults":
                if getattr(parsed, action.dest, None) == action.default:
                    sources[action.dest] = "the default"
            else:  # "config_file|<path>"
                sources[action.dest] = f"the config file {source.partition('|')[2]}".rstrip()
    return sources


def source_of(sources: Mapping[str, str], dest: str) -> str:
    return sources.get(dest, COMMAND_LINE)


def typed_values(
    options: argparse.Namespace, sources: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Every plugin option by dest, typed, and the problems, each naming its flag and source.

    A value that cannot be typed keeps its default, so that the rest can still be checked.
    """
    problems: list[str] = []
    typed: dict[str, Any] = {}
    for opt in OPTIONS:
        dest = opt.dest
        raw = getattr(options, dest)
        if opt.flag_only or not isinstance(raw, str) or opt.type is str:
            typed[dest] = raw
            continue
        try:
            typed[dest] = opt.type(raw.strip())
        except ValueError:
            expected = "a whole number" if opt.type is int else "a number of seconds"
            where = source_of(sources, dest)
            problems.append(f'{opt.flag} (from {where}): expected {expected}, got "{raw}"')
            typed[dest] = opt.default
    for dest in ("platform_timeout", "platform_progress"):
        if typed[dest] < 0:
            problems.append(f"--{dest.replace('_', '-')}: expected 0 or more seconds")
    if not typed["influxdb_interval"] > 0:  # the only check: thresholds use it too
        problems.append(
            f"--influxdb-interval: expected seconds > 0, got {typed['influxdb_interval']!r}"
        )
    return typed, problems


def export_to_environ(run_id: str, values: Mapping[str, Value], names: Iterable[str]) -> None:
    """Expose the run id and arguments as ``PERFX_<NAME>`` to the locustfile."""
    os.environ["PERFX_RUN_ID"] = run_id
    for name in names:
        os.environ["PERFX_" + name.upper()] = render(values.get(name))


def expose_arguments_on_worker(environment: Any) -> None:
    """On a worker, the master's arguments arrive with each spawn: expose them as env vars."""
    options = environment.parsed_options
    run_id = getattr(options, "run_id", None)
    names = getattr(options, ARGUMENT_NAMES_KEY, None) or []
    if run_id:
        values = {name: getattr(options, name, None) for name in names}
        export_to_environ(run_id, values, names)


def _ui_default(param: Parameter) -> str | bool | None:
    """A bool default must be a real bool for the web UI to draw a checkbox.

    A bool without a default stays ``None`` (a text box), so that a required one is still
    reported as missing when it is not given.
    """
    if param.type == "bool" and param.default is not None:
        return _bool_or_text(param.default)
    return param.default


def _ui_choices(param: Parameter) -> _AnyChoices | None:
    """The dropdown's choices. Without a default, an empty first choice: Locust's form selects
    the first one, which would pick a value nobody chose (and, for a required argument, hide
    that it is missing); Start with the empty one is refused ("is required: fill it in")."""
    if not param.choices:
        return None
    return _AnyChoices(param.choices if param.default is not None else ["", *param.choices])


def _bool_or_text(text: str) -> bool | str:
    """A bool option's value as a real bool; other text is left for coerce() to refuse.

    The web UI re-parses the command line and environment on every page load and draws a
    checkbox only for a bool value, so ``--warm_up yes`` must parse to ``True`` already.
    """
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return text


def _clash(parser: LocustArgumentParser, param: Parameter) -> str:
    """Name the option a parameter cannot become, and whose it is: Locust's, or one the
    locustfile added (both use the name, so either may be renamed)."""
    action = next(
        a for a in parser._actions if param.option in a.option_strings or a.dest == param.dest
    )
    from locust.argument_parser import default_args_dict  # Locust has patched the process

    flag = "/".join(action.option_strings) or action.dest
    if action.dest in default_args_dict():
        return (
            f"schema parameter {param.name!r} clashes with the option {flag}; "
            "rename the parameter on the platform"
        )
    return (
        f"schema parameter {param.name!r} clashes with the option {flag} that the locustfile "
        "(or another plugin) adds; rename the parameter on the platform or the locustfile's option"
    )


HELP_FETCH_TIMEOUT: Final = 2.0
"""Seconds ``--help`` waits for the run's schema: help must come at once, listing the run's
arguments when the platform answers, and the plugin's own options with a note when not."""

Fetch = Callable[[str, str, str, float, "float | None"], "RunInfo"]
"""``fetch(run_id, platform_url, token, retry_for, timeout)``; ``None``: the client's own."""
Check = Callable[[argparse.Namespace, Mapping[str, str]], list[str]]
"""``check(options, sources)``: the problems of the plugin's options that need no platform."""


class OptionRegistry:
    """Adds the plugin's and the run's options to every parser Locust builds.

    Locust rebuilds its parser on every web UI page load, so this runs many times: the run
    is fetched on the first call only, and every later parser gets the same options.
    Workers never fetch (they receive the arguments from the master).
    """

    def __init__(self, fetch: Fetch, check: Check) -> None:
        self._fetch = fetch
        self._check = check
        self._looked = False
        self.info: RunInfo | None = None
        self.clashes: dict[str, str] = {}
        self.parser: LocustArgumentParser | None = None
        """The last parser given options; after Locust's parse, it knows every value's source."""

    def register_at_parse(
        self,
        parser: LocustArgumentParser,
        argv: Sequence[str],
        on_error: Callable[[PerfxError], None],
    ) -> None:
        """Add every option when ``parser`` first parses, instead of now.

        Locust fires ``init_command_line_parser`` in import order, so the plugin's listener
        runs before the locustfile's. Registered now, a locustfile option named like one of
        ours would make argparse raise inside the locustfile's listener (a traceback, then
        confusing errors); at the parse, every listener has run and a shared name is
        reported like any other problem.
        """

        def register_then_parse(*args: Any, **kwargs: Any) -> Any:
            del parser.parse_known_args  # once: the look-up parses too
            try:
                self.register(parser, argv)
            except PerfxError as err:
                on_error(err)
            return parser.parse_known_args(*args, **kwargs)

        parser.parse_known_args = register_then_parse

    def register(self, parser: LocustArgumentParser, argv: Sequence[str]) -> None:
        """Add every option to ``parser``; raises PerfxError if the run cannot be fetched.

        A fetch that fails is reported together with every bad plugin option (ConfigError).
        """
        problems = add_plugin_options(parser)
        if problems:
            raise ConfigError(problems)
        self.parser = parser
        if not self._looked:
            self._looked = True
            self.info = self._look_up(parser, argv)
        if self.info is not None:
            self.clashes = add_schema_options(parser, self.info.schema)

    def _look_up(self, parser: LocustArgumentParser, argv: Sequence[str]) -> RunInfo | None:
        helping = any(a in ("-h", "--help") for a in argv)
        # Only flags known so far can be read here: Locust's positional user classes
        # would swallow the values of schema options not registered yet.
        known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
        if not known.run_id or known.worker:
            return None
        if known.verbose:
            logging.getLogger(PACKAGE_LOGGER).setLevel(logging.DEBUG)
        sources = value_sources(parser, known)
        typed, _ = typed_values(known, sources)
        # Checked before the fetch, and reported with its failure: fixing a typo'd port should
        # not reveal the next problem. With problems, the run cannot start: one try will do.
        problems = [] if helping else self._check(known, sources)
        retry, timeout = (0.0, HELP_FETCH_TIMEOUT) if helping else (typed["platform_timeout"], None)
        if problems:
            retry = 0.0
        if known.dry_run:
            parser.set_defaults(headless=True)  # a dry run checks what a test would, never serves
        try:
            with _shown_before_locust_logs(known.verbose):
                return self._fetch(
                    known.run_id, known.platform_url, known.platform_token or "", retry, timeout
                )
        except PerfxError as err:
            if helping:
                sys.stderr.write(
                    f"perfx: {err}; the options of run {known.run_id} are not listed below\n"
                )
                return None
            if problems:
                raise ConfigError([str(err), *problems]) from None
            raise


@contextmanager
def _shown_before_locust_logs(verbose: bool) -> Iterator[None]:
    """Print the plugin's log lines on stderr for the block: the run is fetched while Locust
    parses its options, before it sets up logging, and ``--verbose`` should show that call
    too, stamped like Locust's own lines."""
    if not verbose:
        yield
        return
    from locust.log import HOSTNAME  # Locust is loaded: it fires the parse

    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(f"[%(asctime)s] {HOSTNAME}/%(levelname)s/%(name)s: %(message)s")
    )
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
