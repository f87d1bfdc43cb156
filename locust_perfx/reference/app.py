"""The reference platform as a Flask app: the JSON API under /api/perf and the HTML pages
(drawn by ``pages.py``).

It implements the contract in ``openapi.yaml`` and nothing more, so that the plugin's
tests and demos talk to a real HTTP server with a real database, and so that teams
without a platform have one. Request bodies are checked against that file itself
(``contract.py``), which leaves an argument schema's content loose (any parameter type,
names that clash): judging it is the plugin's job, and its tests need a platform that
serves an odd schema.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import sqlite3
import threading
from typing import Any, NoReturn

from flask import Flask, Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from locust_perfx.reference import pages
from locust_perfx.reference.contract import RequestBodies, load_spec, parse_timestamp
from locust_perfx.reference.store import JSON, Conflict, Invalid, Store, utc_iso
from locust_perfx.reference.store import NotFound as RunMissing

logger = logging.getLogger(__name__)

#: Seconds without start/progress after which a running run is failed (0 disables).
DEFAULT_PROGRESS_TIMEOUT = 60.0
#: Longest pause between two watchdog sweeps, in seconds.
MAX_SWEEP_INTERVAL = 1.0

AUTH_MESSAGE = "missing or invalid bearer token"


class _BadRequest(Exception):
    """A request body problem, reported as HTTP 400 with every problem found."""


# The operation of each state call, by its operationId in openapi.yaml.
_STATE_OPERATIONS = {
    "start": "startRun",
    "complete": "completeRun",
    "fail": "failRun",
    "progress": "reportProgress",
}
_TIMESTAMPS = ("started_at", "finished_at", "at")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit in a 64-bit float")
    return value


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json_body() -> Any:
    """The body as JSON that can be stored and answered back: finite numbers, valid Unicode."""
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"malformed JSON body ({exc}); send a JSON object") from None
    try:  # json reads "\\ud800" as a lone surrogate, which SQLite cannot store
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        half = exc.object[exc.start : exc.end]
        raise _BadRequest(
            f"the body is not valid Unicode: {half!r} is half a surrogate pair"
        ) from None
    return body


def _normalize_times(body: JSON) -> JSON:
    """Store every timestamp as UTC with ``Z`` (the contract has checked that each is one)."""
    out = dict(body)
    for key in _TIMESTAMPS:
        if isinstance(out.get(key), str):
            out[key] = utc_iso(parse_timestamp(out[key]))
    return out


class _Sweeper:
    """Background watchdog: fails running runs whose load generator went silent."""

    def __init__(self, store: Store, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="perfx-watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = min(MAX_SWEEP_INTERVAL, self._timeout / 4)
        while not self._stopped.wait(interval):
            try:
                self._store.expire_silent_runs(self._timeout)
            except sqlite3.Error as exc:
                logger.warning("watchdog sweep failed, will retry: %s", exc)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5.0)


def create_app(
    db_path: str | os.PathLike[str],
    *,
    token: str | None = None,
    envelope: bool = False,
    progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT,
) -> Flask:
    """Build the platform app on the SQLite file ``db_path`` (created if missing).

    ``token`` makes every /api route require ``Authorization: Bearer <token>``, and every
    page too, which also takes it as the password of HTTP Basic auth (what a browser asks
    a person for);
    ``envelope`` wraps success bodies as ``{"code": 0, "data": ...}`` like many real
    platforms; ``progress_timeout`` seconds of silence fail a running run (0 disables).
    A watchdog thread starts with the app; ``app.extensions["perfx_sweeper"].stop()``
    ends it.

    >>> app = create_app("perfx-platform.sqlite3", progress_timeout=0)
    >>> app.test_client().get("/api/perf/runs").get_json()
    []
    """
    store = Store(db_path)
    bodies = RequestBodies(load_spec())
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if progress_timeout > 0:
        app.extensions["perfx_sweeper"] = _Sweeper(store, progress_timeout)

    def ok(body: Any, status: int = 200) -> tuple[Response, int]:
        return jsonify({"code": 0, "data": body} if envelope else body), status

    def error(status: int, message: str) -> tuple[Response, int]:
        return jsonify({"code": status, "message": message}), status

    def valid_body(operation_id: str) -> JSON:
        body = _json_body()
        problems = bodies.problems(operation_id, body)
        if problems:
            raise _BadRequest(f"invalid {operation_id} body: " + "; ".join(problems))
        return _normalize_times(body)

    def fresh(run_id: str) -> JSON:
        # Reads apply the watchdog first, so nobody sees a silent run as still running.
        store.expire_silent_runs(progress_timeout)
        return store.get_run(run_id)

    @app.before_request
    def require_token() -> ResponseReturnValue | None:
        if not token:
            return None
        sent = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(sent, f"Bearer {token}".encode()):
            return None
        if not request.path.startswith("/api/"):
            # Pages also take the token as a Basic password: what a browser asks a person for.
            basic = request.authorization
            password = basic.password if basic and basic.type == "basic" else None
            if hmac.compare_digest((password or "").encode(), token.encode()):
                return None
            challenge = f'Basic realm="{pages.REALM}", charset="UTF-8"'
            home = url_for("runs_page")
            return pages.sign_in_page(home), 401, {"WWW-Authenticate": challenge}
        response, status = error(401, AUTH_MESSAGE)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, status

    @app.errorhandler(_BadRequest)
    def bad_request(exc: _BadRequest) -> tuple[Response, int]:
        return error(400, str(exc))

    @app.errorhandler(Invalid)
    def invalid(exc: Invalid) -> tuple[Response, int]:
        return error(400, str(exc))

    @app.errorhandler(RunMissing)
    def missing(exc: RunMissing) -> tuple[Response, int]:
        return error(404, str(exc))

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict) -> tuple[Response, int]:
        return error(409, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if not request.path.startswith("/api/"):
            return exc.get_response()
        status = exc.code or 500
        if isinstance(exc, NotFound):
            message = f"no route {request.method} {request.path}; see openapi.yaml for the API"
        elif isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            message = f"{request.method} is not allowed on {request.path}; use {allowed}"
        else:
            message = exc.description or exc.name
        return error(status, message)

    @app.post("/api/perf/endpoints")
    def create_endpoint() -> tuple[Response, int]:
        return ok(store.create_endpoint(valid_body("createEndpoint")), 201)

    @app.post("/api/perf/environments")
    def create_environment() -> tuple[Response, int]:
        body = valid_body("createEnvironment")
        return ok(store.create_environment(body["name"], body["host"]), 201)

    @app.post("/api/perf/runs")
    def create_run() -> tuple[Response, int]:
        body = valid_body("createRun")
        if "endpoint_id" in body:
            endpoint_id = body["endpoint_id"]
        else:
            endpoint_id = store.upsert_endpoint(body["endpoint"])
        if "environment_id" in body:
            environment_id = body["environment_id"]
        else:
            environment_id = store.upsert_environment(
                body["environment"]["name"], body["environment"]["host"]
            )
        run = store.create_run(
            body.get("id"),
            endpoint_id,
            environment_id,
            body.get("thresholds"),
            body.get("baseline_run_id"),
        )
        logger.info("run %s: created", run["id"])
        return ok(run, 201)

    @app.get("/api/perf/runs")
    def list_runs() -> tuple[Response, int]:
        store.expire_silent_runs(progress_timeout)
        limit = request.args.get("limit")
        if limit is not None and not (limit.isascii() and limit.isdigit() and int(limit) > 0):
            raise _BadRequest(f"limit is a whole number > 0, got {limit!r}")
        return ok(
            store.list_runs(
                endpoint=request.args.get("endpoint"),
                environment=request.args.get("environment"),
                status=request.args.get("status"),
                limit=None if limit is None else int(limit),
            )
        )

    @app.put("/api/perf/endpoints/<name>/baseline")
    def set_baseline(name: str) -> tuple[Response, int]:
        body = valid_body("setEndpointBaseline")
        return ok(store.set_endpoint_baseline(name, body["run_id"]))

    @app.get("/api/perf/runs/<run_id>")
    def get_run(run_id: str) -> tuple[Response, int]:
        return ok(fresh(run_id))

    @app.post("/api/perf/runs/<run_id>/<any(start, complete, fail, progress):call>")
    def state_call(run_id: str, call: str) -> tuple[Response, int]:
        store.get_run(run_id)  # an unknown run is a 404 even when the body is bad
        body = valid_body(_STATE_OPERATIONS[call])
        run = store.transition(run_id, call, body, progress_timeout=progress_timeout)
        if call != "progress":
            logger.info("run %s: %s -> %s", run_id, call, run["status"])
        return ok(run)

    @app.get("/api/perf/runs/<run_id>/calls")
    def calls(run_id: str) -> tuple[Response, int]:
        return ok(store.calls(run_id))

    @app.get("/")
    def runs_page() -> str:
        store.expire_silent_runs(progress_timeout)
        return pages.run_list_page(store.list_runs(), store.progress())

    @app.get("/runs/<run_id>")
    def run_page(run_id: str) -> str | tuple[str, int]:
        try:
            run = fresh(run_id)
        except RunMissing as exc:
            return pages.not_found_page(str(exc), url_for("runs_page")), 404
        base_id = pages.baseline_id(run)
        try:
            base = store.get_run(base_id) if base_id else None
        except RunMissing:
            base = None
        history = store.progress(run_id).get(run_id, [])
        return pages.run_page(run, history, pages.overlay(base_id, base))

    return app
