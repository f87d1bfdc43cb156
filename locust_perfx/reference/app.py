"""The reference platform as a Flask app: the JSON API under /api/perf and two HTML pages.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from flask import Flask, Response, jsonify, render_template_string, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

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


@dataclass(frozen=True)
class ResultLine:
    """One criterion's result, worded for people: the run page and ``perfx-platform show``."""

    verdict: str
    """``passed`` or ``BREACHED``."""
    criterion: str
    observed: str
    limit: str
    source: str
    """Where the criterion came from, or ``""`` when the summary does not say."""
    first_breach: str
    """When it was first breached (UTC), or ``""``."""

    def __str__(self) -> str:
        parts = [
            f"{self.verdict:<8}  {self.criterion}: observed {self.observed}",
            f"limit {self.limit}",
        ]
        if self.source:
            parts.append(f"from {self.source}")
        if self.first_breach:
            parts.append(f"first breached at {self.first_breach}")
        return ", ".join(parts)


def criteria_of(run: JSON) -> list[tuple[str, str]]:
    """The criteria the platform holds for a run, as (whose, criterion): the endpoint's, then
    the run's own. Objects are shown as stored: judging them is the plugin's job."""
    return [
        (whose, item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
        for whose, items in (
            (f"endpoint {run['endpoint']['name']}", run["endpoint"].get("thresholds")),
            (f"run {run['id']}", run.get("thresholds")),
        )
        for item in items or ()
    ]


def results_of(run: JSON) -> list[ResultLine]:
    """How each criterion stood at the end, from the summary the plugin sent (none before)."""
    summary = run["summary"] if isinstance(run["summary"], dict) else {}
    return [
        ResultLine(
            verdict="passed" if result["passed"] else "BREACHED",
            criterion=result["criterion"],
            observed="no requests" if result["observed"] is None else _number(result["observed"]),
            limit=_number(result["limit"]),
            source=result.get("source", ""),
            first_breach=_moment(result.get("first_breach_at")),
        )
        for result in summary.get("thresholds", ())
    ]


def _number(value: float) -> str:
    # Counts stay whole (12345678, not 1.23457e+07) up to where a float still holds every
    # integer; ratios, rates and anything larger keep 6 significant digits.
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.6g}"


def _moment(epoch: float | None) -> str:
    return "" if epoch is None else utc_iso(datetime.fromtimestamp(epoch, UTC))


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


_LIST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>perfx platform: runs</title></head><body>
<h1>Runs</h1>
{% if runs %}<table border="1" cellpadding="4">
<tr><th>id</th><th>status</th><th>endpoint</th><th>environment</th><th>created</th></tr>
{% for run in runs %}<tr><td><a href="runs/{{ run.id | urlencode }}">{{ run.id }}</a></td>
<td>{{ run.status }}</td><td>{{ run.endpoint.name }}</td><td>{{ run.environment.name }}</td>
<td>{{ run.created_at }}</td></tr>
{% endfor %}</table>{% else %}<p>No runs yet: create one with <code>perfx-platform new-run</code>.
</p>{% endif %}
</body></html>
"""

_RUN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>perfx platform: {{ run.id }}</title></head><body>
<p><a href="../">all runs</a></p>
<h1>{{ run.id }}</h1>
<table border="1" cellpadding="4">
<tr><th>status</th><td>{{ run.status }}</td></tr>
{% if run.reason %}<tr><th>reason</th><td>{{ run.reason }}</td></tr>{% endif %}
<tr><th>endpoint</th><td>{{ run.endpoint.name }}</td></tr>
<tr><th>environment</th><td>{{ run.environment.name }} ({{ run.environment.host }})</td></tr>
<tr><th>host</th><td>{{ run.host or "" }}</td></tr>
<tr><th>created</th><td>{{ run.created_at }}</td></tr>
<tr><th>started</th><td>{{ run.started_at or "" }}</td></tr>
<tr><th>finished</th><td>{{ run.finished_at or "" }}</td></tr>
<tr><th>exit code</th><td>{{ run.exit_code if run.exit_code is not none else "" }}</td></tr>
</table>
<h2>Arguments</h2>
{% if run.arguments is none %}<p>Not started yet.</p>
{% elif not run.arguments %}<p>No arguments.</p>
{% else %}<table border="1" cellpadding="4">
{% for name, value in run.arguments.items() %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>{% endif %}
{% if criteria or results %}<h2>Pass/fail criteria</h2>
{% if criteria %}<table border="1" cellpadding="4">
<tr><th>of</th><th>criterion</th></tr>
{% for whose, criterion in criteria %}<tr><td>{{ whose }}</td><td>{{ criterion }}</td></tr>
{% endfor %}</table>{% endif %}
{% if results %}<h3>Results</h3>
<table border="1" cellpadding="4">
<tr><th>result</th><th>criterion</th><th>observed</th><th>limit</th><th>from</th>
<th>first breach</th></tr>
{% for r in results %}<tr><td>{{ r.verdict }}</td><td>{{ r.criterion }}</td>
<td>{{ r.observed }}</td><td>{{ r.limit }}</td><td>{{ r.source }}</td><td>{{ r.first_breach }}</td>
</tr>
{% endfor %}</table>{% endif %}{% endif %}
<h2>Summary</h2>
{% if error %}<p>The load generator could not build the summary: {{ error }}</p>{% endif %}
{% if total %}<table border="1" cellpadding="4">
{% for name, value in total.items() %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>{% else %}<p>No summary.</p>{% endif %}
</body></html>
"""


def create_app(
    db_path: str | os.PathLike[str],
    *,
    token: str | None = None,
    envelope: bool = False,
    progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT,
) -> Flask:
    """Build the platform app on the SQLite file ``db_path`` (created if missing).

    ``token`` makes every /api route require ``Authorization: Bearer <token>``;
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
    expected = f"Bearer {token}".encode() if token else None
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
    def require_token() -> tuple[Response, int] | None:
        if expected is None or not request.path.startswith("/api/"):
            return None
        sent = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(sent, expected):
            return None
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
        run = store.create_run(body.get("id"), endpoint_id, environment_id, body.get("thresholds"))
        logger.info("run %s: created", run["id"])
        return ok(run, 201)

    @app.get("/api/perf/runs")
    def list_runs() -> tuple[Response, int]:
        store.expire_silent_runs(progress_timeout)
        return ok(store.list_runs())

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
        return render_template_string(_LIST_PAGE, runs=store.list_runs())

    @app.get("/runs/<run_id>")
    def run_page(run_id: str) -> str | tuple[str, int]:
        try:
            run = fresh(run_id)
        except RunMissing as exc:
            return render_template_string("<p>{{ message }}</p>", message=str(exc)), 404
        summary = run["summary"] if isinstance(run["summary"], dict) else {}
        total = summary.get("total") if isinstance(summary.get("total"), dict) else None
        return render_template_string(
            _RUN_PAGE,
            run=run,
            total=total,
            error=summary.get("error"),
            criteria=criteria_of(run),
            results=results_of(run),
        )

    return app
