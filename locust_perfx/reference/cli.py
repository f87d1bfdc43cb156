"""``perfx-platform``: serve the reference platform, or create and inspect its runs.

Errors are one line on stderr, never a traceback: exit 2 for bad input (usage, schema
file, URL), exit 1 when the server cannot be reached or refuses the call. ``show`` keeps
stdout pure JSON for scripts (``show RUN > run.json``) and words a run's pass/fail criteria
and their results for people on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import make_server

from locust_perfx.reference.app import DEFAULT_PROGRESS_TIMEOUT, create_app
from locust_perfx.reference.pages import criteria_of, results_of

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger(__name__)

PROG = "perfx-platform"
DESCRIPTION = "Serve the reference performance-test platform, or create and inspect its runs."
DEFAULT_DB = "perfx-platform.sqlite3"
DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_URL = "http://localhost:8000"
#: Seconds each client command waits for the server.
TIMEOUT = 5.0
#: Seconds between the server loop's checks for a shutdown request (SIGTERM/SIGINT).
SHUTDOWN_POLL = 0.1
LISTENING = "perfx-platform listening on {url}"


class CliError(Exception):
    """A one-line failure for stderr, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def _stop_watchdog(app: Flask) -> None:
    sweeper = app.extensions.get("perfx_sweeper")
    if sweeper is not None:
        sweeper.stop()


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Werkzeug's per-request lines add nothing here; errors still get through.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        app = create_app(
            args.db,
            token=args.token or None,
            envelope=args.envelope,
            progress_timeout=args.progress_timeout,
        )
    except sqlite3.Error as exc:
        raise CliError(f"cannot open database {args.db}: {exc}", 2) from None
    # Bind here rather than in make_server(), which prints and calls sys.exit() on failure.
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    try:
        listener = socket.create_server((args.bind, args.port), family=family)
    except OSError as exc:
        _stop_watchdog(app)
        raise CliError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}", 1) from None
    with listener:  # make_server() works on a duplicate of this socket
        server = make_server(args.bind, args.port, app, threaded=True, fd=listener.fileno())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, name="perfx-platform-stop").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    print(LISTENING.format(url=f"http://{host}:{server.port}"), flush=True)
    try:
        server.serve_forever(poll_interval=SHUTDOWN_POLL)
    finally:
        server.server_close()
        _stop_watchdog(app)
    logger.info("stopped")
    return 0


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One call to the platform; returns the body with any ``{"code": 0, "data"}`` removed."""
    # Imported here: tests import this module's constants next to Locust, which must
    # monkey-patch ssl before requests (urllib3) is imported.
    import requests

    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        response = requests.request(
            method, base + path, json=body, headers=headers, timeout=TIMEOUT
        )
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
    ):
        raise CliError(f"--url {args.url!r} is not a valid http(s) URL", 2) from None
    except requests.Timeout:
        raise CliError(f"{base} did not answer within {TIMEOUT:g} s", 1) from None
    except requests.ConnectionError:
        raise CliError(f"cannot reach {base}: is the server running?", 1) from None
    try:
        payload = response.json()
    except ValueError:
        raise CliError(
            f"{base} answered HTTP {response.status_code} without JSON: is --url the platform?", 1
        ) from None
    code = payload.get("code") if isinstance(payload, dict) else None
    if response.status_code >= 400 or code not in (None, 0):
        fields = payload if isinstance(payload, dict) else {}
        message = fields.get("message") or fields.get("msg") or "no message"
        raise CliError(f"HTTP {response.status_code}: {message}", 1)
    if code == 0 and "data" in payload:
        return payload["data"]
    return payload


def _load_schema(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
    except OSError as exc:
        raise CliError(f"--schema {path}: cannot read it ({exc.strerror})", 2) from None
    except ValueError as exc:
        raise CliError(f"--schema {path}: not valid JSON ({exc})", 2) from None
    if not isinstance(schema, dict) or not isinstance(schema.get("parameters"), list):
        raise CliError(f'--schema {path}: expected an object like {{"parameters": [...]}}', 2)
    return schema


def _new_run(args: argparse.Namespace) -> int:
    endpoint: dict[str, Any] = {"name": args.endpoint, "argument_schema": _load_schema(args.schema)}
    body: dict[str, Any] = {
        "endpoint": endpoint,
        "environment": {"name": args.environment, "host": args.host},
    }
    # Left out when not given: the platform then keeps the endpoint's criteria.
    if args.endpoint_thresholds:
        endpoint["thresholds"] = args.endpoint_thresholds
    if args.thresholds:
        body["thresholds"] = args.thresholds
    if args.id:
        body["id"] = args.id
    if args.baseline:
        body["baseline_run_id"] = args.baseline
    run = _request(args, "POST", "/api/perf/runs", body)
    print(run["id"])
    return 0


def _set_baseline(args: argparse.Namespace) -> int:
    run_id = None if args.run_id == "none" else args.run_id
    _request(args, "PUT", f"/api/perf/endpoints/{args.endpoint}/baseline", {"run_id": run_id})
    what = f"run {run_id}" if run_id else "no run"
    print(f"endpoint {args.endpoint}: baseline is {what}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    run = _request(args, "GET", f"/api/perf/runs/{args.run_id}")
    print(json.dumps(run, indent=2), flush=True)  # before the stderr lines, on a terminal
    for whose, criterion in criteria_of(run):
        print(f"threshold of {whose}: {criterion}", file=sys.stderr)
    for result in results_of(run):
        print(result, file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    for run in _request(args, "GET", "/api/perf/runs"):
        print(f"{run['id']}  {run['status']:<9}  {run['endpoint']['name']}  {run['created_at']}")
    return 0


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("PERFX_PLATFORM_URL", DEFAULT_URL),
        metavar="URL",
        help=f"Platform base URL (env PERFX_PLATFORM_URL). Defaults to {DEFAULT_URL}.",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("PERFX_PLATFORM_TOKEN"),
        metavar="TOKEN",
        help="Bearer token (env PERFX_PLATFORM_TOKEN). Defaults to none.",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="Run the platform server.")
    serve.add_argument(
        "--db", default=DEFAULT_DB, metavar="FILE", help=f"SQLite file. Defaults to {DEFAULT_DB}."
    )
    serve.add_argument(
        "--bind", default=DEFAULT_BIND, metavar="ADDR", help=f"Defaults to {DEFAULT_BIND}."
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"0 picks a free port (read it from the listening line). Defaults to {DEFAULT_PORT}.",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("PERFX_PLATFORM_TOKEN"),
        metavar="TOKEN",
        help="Require 'Authorization: Bearer TOKEN' on /api, and the token on the pages too "
        "(that header, or as the HTTP Basic password) (env PERFX_PLATFORM_TOKEN). "
        "Defaults to no auth.",
    )
    serve.add_argument(
        "--envelope",
        action="store_true",
        help='Wrap success bodies as {"code": 0, "data": ...}. Defaults to bare bodies.',
    )
    serve.add_argument(
        "--progress-timeout",
        type=float,
        default=DEFAULT_PROGRESS_TIMEOUT,
        metavar="SECONDS",
        help="Fail a running run after this long without start/progress; 0 disables. "
        f"Defaults to {DEFAULT_PROGRESS_TIMEOUT:g}.",
    )
    serve.set_defaults(func=_serve)

    new_run = commands.add_parser("new-run", help="Create a pending run; prints its id.")
    _client_options(new_run)
    new_run.add_argument(
        "--schema", required=True, metavar="FILE", help='JSON file: {"parameters": [...]}.'
    )
    new_run.add_argument(
        "--host", required=True, metavar="URL", help="Target host of the environment."
    )
    new_run.add_argument("--endpoint", default="demo", metavar="NAME", help="Defaults to demo.")
    new_run.add_argument(
        "--environment", default="local", metavar="NAME", help="Defaults to local."
    )
    new_run.add_argument("--id", metavar="RUN_ID", help="Run id. Defaults to a generated one.")
    new_run.add_argument(
        "--threshold",
        action="append",
        dest="thresholds",
        metavar="TEXT",
        help="A pass/fail criterion of this run, like 'p95_ms < 500 for GET /search'; "
        "repeatable. Each overrides the endpoint's of the same metric and scope. "
        "Defaults to none.",
    )
    new_run.add_argument(
        "--endpoint-threshold",
        action="append",
        dest="endpoint_thresholds",
        metavar="TEXT",
        help="A pass/fail criterion of every run of the endpoint; repeatable, and together "
        "they replace the endpoint's. Defaults to keeping the endpoint's.",
    )
    new_run.add_argument(
        "--baseline",
        metavar="RUN_ID",
        help="The run this one is compared with; over the endpoint's. Defaults to the endpoint's.",
    )
    new_run.set_defaults(func=_new_run)

    set_baseline = commands.add_parser(
        "set-baseline",
        help="Make a completed run the baseline of its endpoint's runs (none clears it).",
    )
    set_baseline.add_argument("endpoint", metavar="ENDPOINT")
    set_baseline.add_argument("run_id", metavar="RUN_ID")
    _client_options(set_baseline)
    set_baseline.set_defaults(func=_set_baseline)

    show = commands.add_parser(
        "show",
        help="Print one run as JSON; its pass/fail criteria and results as lines on stderr.",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    _client_options(show)
    show.set_defaults(func=_show)

    list_ = commands.add_parser("list", help="One line per run, newest first.")
    _client_options(list_)
    list_.set_defaults(func=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``perfx-platform``; returns the exit code.

    >>> main(["serve", "--port", "0", "--db", "/tmp/platform.sqlite3"])  # doctest: +SKIP
    perfx-platform listening on http://127.0.0.1:54321
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
