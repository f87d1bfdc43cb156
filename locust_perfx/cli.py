"""``perfx``: Locust with the plugin loaded, plus small helpers.

``perfx -f locustfile.py --run-id X [any locust or perfx option]`` imports the plugin and
hands the command line to Locust unchanged, so ``perfx --help`` lists the plugin's options
(plain ``locust --help`` prints before any ``-f`` file is loaded).

``perfx init [DIR]`` writes ``perfx_plugin.py`` for the plain ``locust -f
perfx_plugin.py,locustfile.py`` form; ``perfx dashboards [DIR]`` writes the Grafana
dashboards the package carries; ``perfx resend FILE`` delivers a final status that
could not reach the platform at the end of a run; ``perfx compare BASE_RUN RUN`` prints
two runs' per-name comparison (:mod:`locust_perfx.compare`) without generating load;
``perfx --version`` names the plugin's,
Locust's and Python's versions, the three a bug report needs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from locust_perfx import __version__

# Nothing here may import requests or gevent at module level: Locust must monkey-patch
# the process first, or ssl recurses forever.

VERSION_FLAGS = ("--version", "-V")
"""Locust's own version flags: ``perfx`` answers them with the plugin's version as well."""
PLUGIN_FILE = "perfx_plugin.py"
PLUGIN_SOURCE = '''"""Loads the locust-perfx plugin into Locust; it is not run on its own. Use:

    locust -f perfx_plugin.py,locustfile.py --run-id RUN_ID
    perfx -f locustfile.py --run-id RUN_ID     (the same, without this file)
"""

if __name__ == "__main__":
    raise SystemExit(__doc__)

import locust_perfx.plugin  # noqa: E402,F401
'''


COMMANDS = (["init"], ["dashboards"], ["resend"], ["compare"])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["help"]:  # else Locust's "Unknown User(s): help"
        command = args[1:2]
        args = [*command, "--help"] if command in COMMANDS else ["--help", *args[1:]]
    if args[:1] == ["init"]:
        return init(args[1:])
    if args[:1] == ["dashboards"]:
        return dashboards(args[1:])
    if args[:1] == ["resend"]:
        return resend_command(args[1:])
    if args[:1] == ["compare"]:
        return compare_command(args[1:])
    if any(arg in VERSION_FLAGS for arg in args):
        print(version_line())
        return 0
    import locust.main

    import locust_perfx.plugin  # noqa: F401  (registers the listeners before Locust parses)

    sys.argv = [sys.argv[0], *args]
    locust.main.main()
    return 0


def reference_platform() -> int:
    """``perfx-platform``: the reference platform's command, or one line saying how to install
    it (its modules come with the ``reference`` extra)."""
    from locust_perfx.exceptions import MissingExtra

    try:
        from locust_perfx.reference.cli import main as platform_main
    except MissingExtra as err:
        print(f"perfx-platform: {err}", file=sys.stderr)
        return 1
    return platform_main()


def version_line() -> str:
    """``locust-perfx X.Y.Z (Locust A.B.C, Python 3.11.x)``.

    Locust's version is read from its installed metadata: importing Locust would
    monkey-patch the process just to print a line.
    """
    locust = version("locust")
    return f"locust-perfx {__version__} (Locust {locust}, Python {platform.python_version()})"


def init(args: list[str]) -> int:
    """Write the one-line plugin file Locust's ``-f`` needs into a folder (default: here)."""
    options = _folder_parser("perfx init", init.__doc__).parse_args(args)
    path = options.folder / PLUGIN_FILE
    if not _write_all({path: PLUGIN_SOURCE}, force=options.force):
        return 1
    print(f"wrote {path}; run: locust -f {path},locustfile.py --run-id RUN_ID")
    return 0


def dashboards(args: list[str]) -> int:
    """Write the Grafana dashboards (InfluxDB 2 Flux, InfluxDB 1.x InfluxQL) into a folder."""
    options = _folder_parser("perfx dashboards", dashboards.__doc__).parse_args(args)
    folder = files("locust_perfx").joinpath("dashboards")
    shipped = sorted((i for i in folder.iterdir() if i.name.endswith(".json")), key=str)
    texts = {options.folder / item.name: item.read_text() for item in shipped}
    if not _write_all(texts, force=options.force):
        return 1
    for path in texts:
        print(f"wrote {path}")
    return 0


def _folder_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("folder", nargs="?", default=".", type=Path)
    parser.add_argument("--force", action="store_true", help="overwrite changed files")
    return parser


def _write_all(texts: dict[Path, str], *, force: bool) -> bool:
    """Write every file, or none: a file of the user's that differs is kept unless ``force``."""
    changed = [p for p in texts if p.exists() and p.read_text() != texts[p]]
    if changed and not force:
        for path in changed:
            print(
                f"perfx: {path} exists and differs; pass --force to overwrite it", file=sys.stderr
            )
        return False
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return True


def _platform_options(
    parser: argparse.ArgumentParser,
    default_url: str | None,
    url_help: str = "defaults to PERFX_PLATFORM_URL, else %(default)s",
) -> None:
    """``--platform-url`` (``None`` as ``default_url``: the command decides) and the token."""
    parser.add_argument(
        "--platform-url",
        default=None if default_url is None else os.environ.get("PERFX_PLATFORM_URL", default_url),
        help=url_help,
    )
    parser.add_argument(
        "--platform-token",
        default=os.environ.get("PERFX_PLATFORM_TOKEN", ""),
        help="defaults to PERFX_PLATFORM_TOKEN",
    )


def compare_command(args: list[str]) -> int:
    """Compare RUN with BASE_RUN, per request name, from their summaries on the platform;
    no load is generated. Exit 0 (the table is information: a run's relative thresholds are
    its gate), 1 when the platform fails, 2 when a run cannot be compared."""
    import locust  # noqa: F401  (monkey-patches before requests is imported)

    from locust_perfx.compare import DEFAULT_CONFIDENCE, compare, render
    from locust_perfx.exceptions import PerfxError
    from locust_perfx.platform import DEFAULT_PLATFORM_URL, PlatformClient

    parser = argparse.ArgumentParser(prog="perfx compare", description=compare_command.__doc__)
    parser.add_argument("base_run", metavar="BASE_RUN")
    parser.add_argument("run", metavar="RUN")
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    parser.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help="of the significance test; defaults to %(default)s",
    )
    _platform_options(parser, DEFAULT_PLATFORM_URL)
    options = parser.parse_args(args)
    if not 0 < options.confidence < 1:
        parser.error(f"--confidence: between 0 and 1 (0.95 for 95%%), got {options.confidence}")
    try:
        with PlatformClient(options.platform_url, options.platform_token) as client:
            runs = [client.run_body(run_id) for run_id in (options.base_run, options.run)]
    except PerfxError as err:
        print(f"perfx: {err}", file=sys.stderr)
        return 1
    summaries = []
    for run in runs:
        summary = run.get("summary")
        if not isinstance(summary, dict) or "error" in summary:
            print(
                f"perfx: run {run.get('id')} ({run.get('status')}) has no summary to compare; "
                "compare finished runs",
                file=sys.stderr,
            )
            return 2
        summaries.append(summary)
    endpoints = [(run.get("endpoint") or {}).get("name") for run in runs]
    if endpoints[0] != endpoints[1]:
        print(f"perfx: note: the runs are of different endpoints: {endpoints}", file=sys.stderr)
    table = compare(*summaries, confidence=options.confidence, baseline_run_id=options.base_run)
    print(render(table, options.format), end="")
    return 0


def resend_command(args: list[str]) -> int:
    """Send a saved final status (``perfx-RUN.final.json``, or a log holding its
    ``perfx-final-status:`` line; ``-`` reads standard input) to the platform; once delivered,
    the file is renamed ``perfx-RUN.final.json.delivered``."""
    import locust  # noqa: F401  (monkey-patches before requests is imported)

    from locust_perfx.exceptions import PerfxError
    from locust_perfx.lifecycle import SavedStatus, resend
    from locust_perfx.platform import DEFAULT_PLATFORM_URL, DEFAULT_RETRY_FOR, PlatformClient

    parser = argparse.ArgumentParser(prog="perfx resend", description=resend_command.__doc__)
    parser.add_argument("file", type=Path)
    _platform_options(
        parser,
        None,  # the file's own platform comes before PERFX_PLATFORM_URL
        "defaults to the platform the file was saved for, then PERFX_PLATFORM_URL, then "
        f"{DEFAULT_PLATFORM_URL}",
    )
    parser.add_argument("--platform-timeout", type=float, default=DEFAULT_RETRY_FOR)
    options = parser.parse_args(args)
    try:
        saved = SavedStatus.load(options.file)
        url = (
            options.platform_url
            or saved.platform_url
            or os.environ.get("PERFX_PLATFORM_URL", DEFAULT_PLATFORM_URL)
        )
        with PlatformClient(url, options.platform_token) as client:
            delivered = resend(client, saved, retry_for=options.platform_timeout)
    except PerfxError as err:
        print(f"perfx: {err}", file=sys.stderr)
        return 1
    marked = f"; the file is now {delivered}" if delivered else ""
    print(f"delivered the final status of run {saved.run_id} to {url}{marked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
