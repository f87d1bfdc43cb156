"""``perfx``: Locust with the plugin loaded, plus two small helpers.

``perfx -f locustfile.py --run-id X [any locust or perfx option]`` imports the plugin and
hands the command line to Locust unchanged, so ``perfx --help`` lists the plugin's options
(plain ``locust --help`` prints before any ``-f`` file is loaded).

``perfx init [DIR]`` writes ``perfx_plugin.py`` for the plain ``locust -f
perfx_plugin.py,locustfile.py`` form; ``perfx resend FILE`` delivers a final status that
could not reach the platform at the end of a run; ``perfx --version`` names the plugin's,
Locust's and Python's versions, the three a bug report needs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

from locust_perfx import __version__

# Nothing here may import requests or gevent at module level: Locust must monkey-patch
# the process first, or ssl recurses forever.

VERSION_FLAGS = ("--version", "-V")
"""Locust's own version flags: ``perfx`` answers them with the plugin's version as well."""
PLUGIN_FILE = "perfx_plugin.py"
PLUGIN_SOURCE = (
    "# Load the locust-perfx plugin: locust -f perfx_plugin.py,locustfile.py --run-id RUN_ID\n"
    "import locust_perfx.plugin  # noqa: F401\n"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["init"]:
        return init(args[1:])
    if args[:1] == ["resend"]:
        return resend_command(args[1:])
    if any(arg in VERSION_FLAGS for arg in args):
        print(version_line())
        return 0
    import locust.main

    import locust_perfx.plugin  # noqa: F401  (registers the listeners before Locust parses)

    sys.argv = [sys.argv[0], *args]
    locust.main.main()
    return 0


def version_line() -> str:
    """``locust-perfx X.Y.Z (Locust A.B.C, Python 3.11.x)``.

    Locust's version is read from its installed metadata: importing Locust would
    monkey-patch the process just to print a line.
    """
    locust = version("locust")
    return f"locust-perfx {__version__} (Locust {locust}, Python {platform.python_version()})"


def init(args: list[str]) -> int:
    """Write the one-line plugin file Locust's ``-f`` needs into a folder (default: here)."""
    parser = argparse.ArgumentParser(prog="perfx init", description=init.__doc__)
    parser.add_argument("folder", nargs="?", default=".", type=Path)
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    options = parser.parse_args(args)
    path = options.folder / PLUGIN_FILE
    if path.exists() and not options.force and path.read_text() != PLUGIN_SOURCE:
        print(f"perfx: {path} exists and differs; pass --force to overwrite it", file=sys.stderr)
        return 1
    path.write_text(PLUGIN_SOURCE)
    print(f"wrote {path}; run: locust -f {path},locustfile.py --run-id RUN_ID")
    return 0


def resend_command(args: list[str]) -> int:
    """Send a saved final status (``perfx-RUN.final.json``) to the platform."""
    import locust  # noqa: F401  (monkey-patches before requests is imported)

    from locust_perfx.exceptions import PerfxError
    from locust_perfx.lifecycle import resend
    from locust_perfx.options import DEFAULT_PLATFORM_URL, DEFAULT_RETRY_FOR
    from locust_perfx.platform import PlatformClient

    parser = argparse.ArgumentParser(prog="perfx resend", description=resend_command.__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "--platform-url", default=os.environ.get("PERFX_PLATFORM_URL", DEFAULT_PLATFORM_URL)
    )
    parser.add_argument(
        "--platform-token",
        default=os.environ.get("PERFX_PLATFORM_TOKEN", ""),
        help="defaults to PERFX_PLATFORM_TOKEN",
    )
    parser.add_argument("--platform-timeout", type=float, default=DEFAULT_RETRY_FOR)
    options = parser.parse_args(args)
    try:
        with PlatformClient(options.platform_url, options.platform_token) as client:
            run_id = resend(client, options.file, retry_for=options.platform_timeout)
    except PerfxError as err:
        print(f"perfx: {err}", file=sys.stderr)
        return 1
    print(f"delivered the final status of run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
