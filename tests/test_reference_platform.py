"""The reference platform's API, over real HTTP against the real server process.

Every response is checked against openapi.yaml, and every well-formed request body too.
"""

from __future__ import annotations

import html
import re
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locust_perfx.reference.app import AUTH_MESSAGE
from locust_perfx.reference.store import watchdog_reason
from tests.fixtures.openapi import validate_request, validate_response
from tests.fixtures.platform import DEFAULT_SCHEMA, PlatformFactory, PlatformServer
from tests.fixtures.waiting import wait_until

if TYPE_CHECKING:
    import requests

SCHEMA = {
    "parameters": [
        {"name": "model", "type": "string", "required": True, "default": None},
        {"name": "batch_size", "type": "int", "required": False, "default": "32"},
        {"name": "gpu", "type": "choice", "required": True, "choices": ["A100", "H100"]},
    ]
}
START = {
    "arguments": {"model": "gpt-4", "batch_size": 32, "gpu": "H100"},
    "host": "http://127.0.0.1:1",
    "started_at": "2026-11-23T10:00:00Z",
    "locust": {
        "version": "2.47.0",
        "mode": "local",
        "users": 10,
        "spawn_rate": 5,
        "run_time": "1m",
        "locustfile": "locustfile.py",
    },
}
TOTALS = {
    "requests": 100,
    "failures": 2,
    "failure_ratio": 0.02,
    "rps": 9.5,
    "avg_ms": 12.5,
    "min_ms": 1.0,
    "max_ms": 80.0,
    "median_ms": 10.0,
    "p90_ms": 20.0,
    "p95_ms": 30.0,
    "p99_ms": 70.0,
    "bytes": 12345,
}
SUMMARY = {
    "duration_s": 10.5,
    "started_at": "2026-11-23T10:00:00Z",
    "finished_at": "2026-11-23T10:00:10Z",
    "users_peak": 10,
    "workers": 0,
    "total": TOTALS,
    "requests": [{"method": "GET", "name": "/", **TOTALS}],
    "errors": [{"method": "GET", "name": "/", "error": "HTTPError(500)", "occurrences": 2}],
    "export": {"influxdb": {"points_written": 10}},
}
COMPLETE = {"finished_at": "2026-11-23T10:00:10Z", "summary": SUMMARY}
FAIL = {
    "finished_at": "2026-11-23T10:00:10Z",
    "reason": "locust exited with code 1",
    "exit_code": 1,
    "summary": None,
}
PROGRESS = {
    "at": "2026-11-23T10:00:05Z",
    "users": 10,
    "workers": 0,
    "rps": 9.5,
    "fail_ratio": 0.0,
    "requests": 50,
    "failures": 0,
}
BODIES: dict[str, dict[str, Any]] = {
    "start": START,
    "complete": COMPLETE,
    "fail": FAIL,
    "progress": PROGRESS,
}
RUN_ID = re.compile(r"^run_\d{8}_\d{6}_[0-9a-f]{6}$")
RELEASED_FILE = Path(__file__).with_name("data") / "platform-0.1.0.db"
"""An empty database file as the first release (0.1.0) wrote it: such files must keep working."""
ENDPOINT_CRITERIA = [
    "p95_ms < 500 for GET /search, abort after 10s",
    {"metric": "failure_ratio", "op": "<=", "limit": 0.01, "scope": None, "abort": True},
]
RUN_CRITERIA = [{"expression": "p95_ms < 800 for GET /search", "per_interval": True}]
RESULTS = [
    {
        "criterion": "p95_ms < 800 for GET /search",
        "abort": False,
        "delay_s": 0.0,
        "per_interval": True,
        "source": "run run-1 on the platform",
        "observed": 912.0,
        "limit": 800.0,
        "passed": False,
        "first_breach_at": 1795428005.5,
    },
    {
        "criterion": "failure_ratio <= 0.01",
        "abort": True,
        "delay_s": 0.0,
        "per_interval": False,
        "source": "endpoint 'search' on the platform",
        "observed": 0.0012345678,
        "limit": 0.01,
        "passed": True,
        "first_breach_at": None,
    },
    {
        "criterion": "requests >= 1 for GET /other",
        "observed": None,
        "limit": 1,
        "passed": True,
    },
]


def call(
    platform: PlatformServer,
    method: str,
    template: str,
    body: Any = None,
    *,
    run_id: str = "",
    raw: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """Call the platform and check the response against openapi.yaml."""
    path = template.replace("{run_id}", run_id)
    extra: dict[str, Any] = {} if headers is None else {"headers": headers}
    if raw is not None:
        extra["data"] = raw
        extra["headers"] = {**platform.headers, "Content-Type": "application/json"}
    response = platform.api(method, path, body, **extra)
    is_json = response.headers["Content-Type"].startswith("application/json")
    payload = response.json() if is_json else response.text
    validate_response(method, template, response.status_code, payload, envelope=platform.envelope)
    return response


def post(platform: PlatformServer, run_id: str, what: str, **changes: Any) -> requests.Response:
    """A well-formed state call (checked against openapi.yaml before it is sent)."""
    body = {**BODIES[what], **changes}
    template = f"/api/perf/runs/{{run_id}}/{what}"
    validate_request("POST", template, body)
    return call(platform, "POST", template, body, run_id=run_id)


def message(response: requests.Response) -> str:
    return str(response.json()["message"])


def table_rows(page: str) -> list[str]:
    """Each HTML table row's text, its cells joined by ``|`` (empty cells left out)."""
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.DOTALL)
    return [html.unescape(re.sub(r"(?:\s*<[^>]+>\s*)+", "|", row).strip("|")) for row in rows]


def test_a_new_run_is_pending_with_its_endpoint_and_environment(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(SCHEMA, "http://target:8080", endpoint="rerank")

    run = call(platform_server, "GET", "/api/perf/runs/{run_id}", run_id=run_id).json()

    assert RUN_ID.match(run_id)
    assert run["status"] == "pending"
    assert run["endpoint"]["name"] == "rerank"
    assert run["endpoint"]["argument_schema"] == SCHEMA
    assert run["environment"] == {"id": 1, "name": "local", "host": "http://target:8080"}
    assert run["arguments"] is None and run["host"] is None and run["locust"] is None
    assert run["created_at"].endswith("Z")


def test_a_run_goes_from_pending_to_running_to_completed(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run(SCHEMA)

    started = post(platform_server, run_id, "start").json()
    assert started["status"] == "running"
    assert started["arguments"] == START["arguments"]
    assert started["host"] == START["host"]
    assert started["locust"] == START["locust"]
    assert started["started_at"] == "2026-11-23T10:00:00Z"

    assert post(platform_server, run_id, "progress").json()["progress"] == PROGRESS

    completed = post(platform_server, run_id, "complete").json()
    assert completed["status"] == "completed"
    assert completed["summary"] == SUMMARY
    assert completed["finished_at"] == "2026-11-23T10:00:10Z"
    assert platform_server.get_run(run_id) == completed


def test_a_second_start_is_refused_with_a_message_that_says_what_to_do(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run()
    post(platform_server, run_id, "start")

    again = post(platform_server, run_id, "start")
    assert again.status_code == 409
    assert again.json() == {
        "code": 409,
        "message": f"run {run_id} is already running; create a new run",
    }

    post(platform_server, run_id, "complete")
    after_end = post(platform_server, run_id, "start")
    assert message(after_end) == f"run {run_id} is already completed; create a new run"


def test_complete_is_refused_unless_the_run_is_running(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()

    early = post(platform_server, run_id, "complete")
    assert early.status_code == 409
    assert message(early) == f"run {run_id} is pending, not running: call start before complete"

    post(platform_server, run_id, "start")
    assert post(platform_server, run_id, "complete").status_code == 200
    twice = post(platform_server, run_id, "complete")
    assert twice.status_code == 409
    assert "already completed; a final status is accepted only once" in message(twice)


def test_fail_is_accepted_from_pending(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()

    failed = post(platform_server, run_id, "fail", reason="--model: missing", exit_code=2)

    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert failed.json()["reason"] == "--model: missing"
    assert failed.json()["exit_code"] == 2
    assert failed.json()["started_at"] is None


def test_fail_is_refused_once_the_run_has_a_final_status(platform_server: PlatformServer) -> None:
    completed = platform_server.create_run()
    post(platform_server, completed, "start")
    post(platform_server, completed, "complete")
    failed = platform_server.create_run()
    post(platform_server, failed, "fail")

    late_fail = post(platform_server, completed, "fail")
    second_fail = post(platform_server, failed, "fail", summary=SUMMARY)

    assert late_fail.status_code == second_fail.status_code == 409
    assert message(late_fail) == (
        f"run {completed} is already completed; a final status is accepted only once"
    )
    assert message(second_fail) == (
        f"run {failed} is already failed; a final status is accepted only once"
    )
    assert platform_server.get_run(completed)["status"] == "completed"
    assert platform_server.get_run(failed)["summary"] is None


def test_progress_is_accepted_only_while_running(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()

    before = post(platform_server, run_id, "progress")
    post(platform_server, run_id, "start")
    during = post(platform_server, run_id, "progress", users=7)
    post(platform_server, run_id, "complete")
    after = post(platform_server, run_id, "progress")

    assert (before.status_code, during.status_code, after.status_code) == (409, 200, 409)
    assert message(before) == (
        f"run {run_id} is pending, not running: progress is accepted only while running"
    )
    assert platform_server.get_run(run_id)["progress"]["users"] == 7


def test_the_calls_log_keeps_every_state_call_in_order_refused_ones_included(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run()
    for what in ("complete", "start", "progress", "start", "complete", "fail", "complete"):
        post(platform_server, run_id, what)

    calls = call(platform_server, "GET", "/api/perf/runs/{run_id}/calls", run_id=run_id).json()

    assert [(c["call"], c["http_status"]) for c in calls] == [
        ("complete", 409),
        ("start", 200),
        ("progress", 200),
        ("start", 409),
        ("complete", 200),
        ("fail", 409),
        ("complete", 409),
    ]
    assert all(c["at"].endswith("Z") for c in calls)


def test_concurrent_final_calls_are_accepted_exactly_once(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()
    post(platform_server, run_id, "start")

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda what: post(platform_server, run_id, what).status_code,
                ["complete", "fail"] * 8,
            )
        )

    assert sorted(statuses) == [200] + [409] * 15
    finals = [c for c in platform_server.calls(run_id) if c["http_status"] == 200]
    assert len(finals) == 2  # the start and exactly one final status


def test_an_unknown_run_is_404_on_every_run_route(platform_server: PlatformServer) -> None:
    responses = [
        call(platform_server, "GET", "/api/perf/runs/{run_id}", run_id="run_nope"),
        call(platform_server, "GET", "/api/perf/runs/{run_id}/calls", run_id="run_nope"),
        *(
            call(
                platform_server,
                "POST",
                f"/api/perf/runs/{{run_id}}/{what}",
                body,
                run_id="run_nope",
            )
            for what, body in BODIES.items()
        ),
    ]

    assert {r.status_code for r in responses} == {404}
    assert message(responses[0]) == (
        "run run_nope not found: create it first (POST /api/perf/runs or `perfx-platform new-run`)"
    )


def test_malformed_json_is_a_400_that_says_so(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()

    def start(raw: str) -> requests.Response:
        return call(
            platform_server, "POST", "/api/perf/runs/{run_id}/start", raw=raw, run_id=run_id
        )

    response = start("{not json")
    not_an_object = start("[1, 2]")
    not_a_number = start('{"arguments": {"x": NaN}}')
    too_large = start('{"arguments": {"x": 1e400}}')
    half_a_pair = start('{"arguments": {"x": "\\ud800"}}')

    assert response.status_code == 400
    assert message(response).startswith("malformed JSON body (")
    assert message(response).endswith("); send a JSON object")
    assert message(not_an_object) == "invalid startRun body: [1, 2] is not of type 'object'"
    assert message(not_a_number) == "malformed JSON body (NaN is not JSON); send a JSON object"
    assert message(too_large) == (
        "malformed JSON body (1e400 does not fit in a 64-bit float); send a JSON object"
    )
    assert message(half_a_pair) == (
        "the body is not valid Unicode: '\\ud800' is half a surrogate pair"
    )
    assert platform_server.calls(run_id) == []


def test_missing_and_mistyped_fields_are_named(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()
    start = {k: v for k, v in START.items() if k != "host"}

    no_host = call(platform_server, "POST", "/api/perf/runs/{run_id}/start", start, run_id=run_id)
    post(platform_server, run_id, "start")
    bad_progress = call(
        platform_server,
        "POST",
        "/api/perf/runs/{run_id}/progress",
        {**PROGRESS, "users": "ten", "at": "yesterday"},
        run_id=run_id,
    )
    bad_run = call(platform_server, "POST", "/api/perf/runs", {"environment_id": "x"})
    bad_fail = call(
        platform_server,
        "POST",
        "/api/perf/runs/{run_id}/fail",
        {**FAIL, "exit_code": 2**64, "summary": {"total": {"rps": -1}}},
        run_id=run_id,
    )

    assert no_host.status_code == bad_progress.status_code == bad_run.status_code == 400
    assert message(no_host) == "invalid startRun body: missing field 'host'"
    assert message(bad_progress) == (
        "invalid reportProgress body: field 'at': 'yesterday' is not a 'date-time'; "
        "field 'users': 'ten' is not of type 'integer'"
    )
    assert message(bad_run) == (
        "invalid createRun body: missing field 'endpoint_id' or 'endpoint'; "
        "field 'environment_id': 'x' is not of type 'integer'"
    )
    assert message(bad_fail) == (
        "invalid failRun body: "
        "field 'exit_code': 18446744073709551616 is greater than the maximum of "
        "9223372036854775807; field 'summary.total.rps': -1 is less than the minimum of 0"
    )


def test_an_argument_schema_must_have_the_contracts_shape_but_may_name_any_type(
    platform_server: PlatformServer,
) -> None:
    odd = {"parameters": [{"name": "when", "type": "date"}]}
    broken = {"parameters": [{"name": "", "type": "int", "default": 32}, {"type": "int"}]}

    stored = call(
        platform_server, "POST", "/api/perf/endpoints", {"name": "odd", "argument_schema": odd}
    )
    refused = call(
        platform_server, "POST", "/api/perf/endpoints", {"name": "e", "argument_schema": broken}
    )
    inline = call(
        platform_server,
        "POST",
        "/api/perf/runs",
        {"endpoint": {"name": "e", "argument_schema": {}}, "environment_id": 1},
    )

    assert stored.status_code == 201  # the plugin, not the platform, refuses an unknown type
    assert stored.json()["argument_schema"] == odd
    assert message(refused) == (
        "invalid createEndpoint body: "
        "field 'argument_schema.parameters[0].default': 32 is not of type 'string', 'null'; "
        "field 'argument_schema.parameters[0].name': '' should be non-empty; "
        "missing field 'argument_schema.parameters[1].name'"
    )
    assert message(inline) == (
        "invalid createRun body: missing field 'endpoint.argument_schema.parameters'"
    )


def test_timestamps_are_stored_in_utc_with_z(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()

    run = post(platform_server, run_id, "start", started_at="2026-11-23T12:00:00.250+02:00").json()

    assert run["started_at"] == "2026-11-23T10:00:00.250Z"


def test_a_timestamp_needs_an_offset_and_a_moment_that_utc_can_hold(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run()

    def fail(finished_at: str) -> requests.Response:
        body = {**FAIL, "finished_at": finished_at}
        return call(platform_server, "POST", "/api/perf/runs/{run_id}/fail", body, run_id=run_id)

    no_offset = fail("2026-11-23T10:00:00")
    before_year_one = fail("0001-01-01T00:00:00+01:00")
    no_such_day = fail("2026-02-30T10:00:00Z")

    assert message(no_offset) == (
        "invalid failRun body: field 'finished_at': '2026-11-23T10:00:00' is not a 'date-time'"
    )
    assert before_year_one.status_code == no_such_day.status_code == 400
    assert platform_server.calls(run_id) == []


def test_a_duplicate_run_id_is_409_and_a_malformed_one_400(
    platform_server: PlatformServer,
) -> None:
    platform_server.create_run(run_id="nightly-42")

    again = call(
        platform_server,
        "POST",
        "/api/perf/runs",
        {"id": "nightly-42", "endpoint_id": 1, "environment_id": 1},
    )
    newline = call(
        platform_server,
        "POST",
        "/api/perf/runs",
        {"id": "nightly-43\n", "endpoint_id": 1, "environment_id": 1},
    )

    assert again.status_code == 409
    assert message(again) == "run nightly-42 already exists; choose another id or omit it"
    assert newline.status_code == 400
    assert message(newline).startswith("invalid createRun body: field 'id': 'nightly-43\\n' ")


def test_runs_can_be_created_from_endpoint_and_environment_ids(
    platform_server: PlatformServer,
) -> None:
    endpoint_body = {"name": "rerank", "argument_schema": SCHEMA}
    environment_body = {"name": "staging", "host": "http://rerank.staging:8080"}
    validate_request("POST", "/api/perf/endpoints", endpoint_body)
    validate_request("POST", "/api/perf/environments", environment_body)

    endpoint = call(platform_server, "POST", "/api/perf/endpoints", endpoint_body)
    environment = call(platform_server, "POST", "/api/perf/environments", environment_body)
    body = {"endpoint_id": endpoint.json()["id"], "environment_id": environment.json()["id"]}
    validate_request("POST", "/api/perf/runs", body)
    run = call(platform_server, "POST", "/api/perf/runs", body)
    same_name = call(platform_server, "POST", "/api/perf/endpoints", endpoint_body)
    unknown = call(platform_server, "POST", "/api/perf/runs", {**body, "endpoint_id": 99})
    beyond_sqlite = call(platform_server, "POST", "/api/perf/runs", {**body, "endpoint_id": 2**63})

    assert (endpoint.status_code, environment.status_code, run.status_code) == (201, 201, 201)
    assert run.json()["endpoint"] == endpoint.json()
    assert run.json()["environment"] == environment.json()
    assert same_name.status_code == 409
    assert unknown.status_code == 400
    assert message(unknown) == (
        "endpoint_id 99: no such endpoint; create it with POST /api/perf/endpoints "
        "or pass it inline"
    )
    assert message(beyond_sqlite) == (
        "invalid createRun body: field 'endpoint_id': 9223372036854775808 is greater than "
        "the maximum of 9223372036854775807"
    )


def test_an_inline_endpoint_and_environment_are_reused_by_name_and_updated(
    platform_server: PlatformServer,
) -> None:
    first = platform_server.create_run({"parameters": []}, "http://old:1")
    second = platform_server.create_run(SCHEMA, "http://new:2")

    old, new = platform_server.get_run(first), platform_server.get_run(second)

    assert old["endpoint"]["id"] == new["endpoint"]["id"]
    assert old["environment"]["id"] == new["environment"]["id"]
    assert new["endpoint"]["argument_schema"] == SCHEMA
    assert new["environment"]["host"] == "http://new:2"


def test_runs_are_listed_newest_first(platform_server: PlatformServer) -> None:
    ids = [platform_server.create_run(run_id=f"run-{n}") for n in range(3)]

    listed = call(platform_server, "GET", "/api/perf/runs").json()

    assert [run["id"] for run in listed] == ids[::-1]


def test_unknown_routes_and_methods_answer_json_errors(platform_server: PlatformServer) -> None:
    missing = platform_server.api("GET", "/api/perf/nope")
    wrong_method = platform_server.api("DELETE", "/api/perf/runs")

    assert missing.json() == {
        "code": 404,
        "message": "no route GET /api/perf/nope; see openapi.yaml for the API",
    }
    assert wrong_method.status_code == 405
    assert wrong_method.json()["message"].startswith("DELETE is not allowed on /api/perf/runs")


def test_envelope_mode_wraps_success_bodies_but_not_errors(
    platform_factory: PlatformFactory,
) -> None:
    platform = platform_factory(envelope=True)
    run_id = platform.create_run(SCHEMA)

    got = call(platform, "GET", "/api/perf/runs/{run_id}", run_id=run_id)
    started = post(platform, run_id, "start")
    refused = post(platform, run_id, "start")
    listed = call(platform, "GET", "/api/perf/runs")

    assert got.json()["code"] == 0 and got.json()["data"]["id"] == run_id
    assert started.json()["data"]["status"] == "running"
    assert listed.json() == {"code": 0, "data": [started.json()["data"]]}
    assert refused.json() == {
        "code": 409,
        "message": f"run {run_id} is already running; create a new run",
    }


def test_token_mode_requires_the_bearer_token_and_never_prints_it(
    platform_factory: PlatformFactory,
) -> None:
    token = "tok-7f3a9c-never-print-me"
    platform = platform_factory(token=token)
    run_id = platform.create_run()
    post(platform, run_id, "start")

    anonymous = call(platform, "GET", "/api/perf/runs/{run_id}", run_id=run_id, headers={})
    wrong = call(
        platform,
        "POST",
        "/api/perf/runs/{run_id}/complete",
        COMPLETE,
        run_id=run_id,
        headers={"Authorization": "Bearer not-it"},
    )
    page = call(platform, "GET", "/runs/{run_id}", run_id=run_id, headers={})

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json() == {"code": 401, "message": AUTH_MESSAGE}
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert platform.get_run(run_id)["status"] == "running"
    assert page.status_code == 401  # the pages need the token too
    assert platform.stop() == 0
    assert "run " in platform.output  # the server did log something...
    assert token not in platform.output  # ...but never the token


def test_the_watchdog_fails_a_run_whose_load_generator_went_silent(
    platform_factory: PlatformFactory,
) -> None:
    platform = platform_factory(progress_timeout=0.5)
    run_id = platform.create_run()
    post(platform, run_id, "start")

    run = wait_until(
        lambda: (r := platform.get_run(run_id))["status"] == "failed" and r,
        timeout=10,
        message="the watchdog to fail the silent run",
    )

    assert run["reason"] == watchdog_reason(0.5)
    assert run["reason"] == "no progress for 0.5 s: the load generator went silent"
    assert run["finished_at"] is not None
    late_progress = post(platform, run_id, "progress")
    assert late_progress.status_code == 409
    assert message(late_progress) == (
        f"run {run_id} is failed, not running: progress is accepted only while running"
    )
    assert post(platform, run_id, "complete").status_code == 409
    assert [c["call"] for c in platform.calls(run_id)] == ["start", "progress", "complete"]


def test_the_watchdog_spares_a_run_that_keeps_reporting_progress(
    platform_factory: PlatformFactory,
) -> None:
    platform = platform_factory(progress_timeout=0.5)
    run_id = platform.create_run()
    post(platform, run_id, "start")
    keep_until = time.monotonic() + 1.5  # three timeouts' worth of heartbeats

    wait_until(
        lambda: (
            post(platform, run_id, "progress").status_code == 200 and time.monotonic() > keep_until
        ),
        timeout=10,
        interval=0.1,
        message="1.5 s of accepted progress calls",
    )

    assert platform.get_run(run_id)["status"] == "running"


def test_the_html_pages_show_runs_and_escape_what_they_show(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(endpoint="<script>alert(1)</script>")
    post(platform_server, run_id, "start", arguments={"model": "<b>gpt</b>"})
    post(platform_server, run_id, "complete")

    index = call(platform_server, "GET", "/")
    page = call(platform_server, "GET", "/runs/{run_id}", run_id=run_id)
    missing = call(platform_server, "GET", "/runs/{run_id}", run_id="run_nope")

    assert index.headers["Content-Type"].startswith("text/html")
    assert f'href="runs/{run_id}"' in index.text
    assert "<script>" not in index.text and "&lt;script&gt;" in index.text
    assert "completed" in page.text
    assert "&lt;b&gt;gpt&lt;/b&gt;" in page.text
    assert "<th>p95_ms</th><td>30</td>" in page.text
    assert missing.status_code == 404
    assert "run run_nope not found" in missing.text


def test_runs_survive_a_restart_on_the_same_port(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run()
    post(platform_server, run_id, "start")
    url = platform_server.url

    assert platform_server.stop(kill=True) == -9
    platform_server.start()

    assert platform_server.url == url
    assert platform_server.get_run(run_id)["status"] == "running"
    assert post(platform_server, run_id, "complete").status_code == 200


def test_a_run_without_thresholds_says_it_has_none(platform_server: PlatformServer) -> None:
    run = platform_server.get_run(platform_server.create_run())

    assert run["thresholds"] is None
    assert run["endpoint"]["thresholds"] is None


def test_thresholds_of_an_endpoint_and_of_a_run_are_stored_as_given(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(
        endpoint="search", endpoint_thresholds=ENDPOINT_CRITERIA, thresholds=RUN_CRITERIA
    )
    endpoint = call(
        platform_server,
        "POST",
        "/api/perf/endpoints",
        {"name": "other", "argument_schema": SCHEMA, "thresholds": ["rps >= 200"]},
    )
    by_id = {
        "endpoint_id": endpoint.json()["id"],
        "environment_id": 1,
        "thresholds": ["p99_ms < 1"],
    }
    validate_request("POST", "/api/perf/runs", by_id)
    other = call(platform_server, "POST", "/api/perf/runs", by_id).json()

    run = platform_server.get_run(run_id)
    assert run["endpoint"]["thresholds"] == ENDPOINT_CRITERIA
    assert run["thresholds"] == RUN_CRITERIA
    assert endpoint.json()["thresholds"] == ["rps >= 200"]
    assert other["endpoint"]["thresholds"] == ["rps >= 200"]
    assert other["thresholds"] == ["p99_ms < 1"]


def test_a_run_created_without_endpoint_thresholds_keeps_the_endpoints_and_null_clears_them(
    platform_server: PlatformServer,
) -> None:
    def endpoint_criteria_after(**creation: Any) -> Any:
        run_id = platform_server.create_run(**creation)
        return platform_server.get_run(run_id)["endpoint"]["thresholds"]

    assert endpoint_criteria_after(endpoint_thresholds=["rps >= 200"]) == ["rps >= 200"]
    assert endpoint_criteria_after(thresholds=["p95_ms < 500"]) == ["rps >= 200"]
    assert endpoint_criteria_after(endpoint_thresholds=["rps >= 300"]) == ["rps >= 300"]
    assert endpoint_criteria_after(endpoint_thresholds=[]) == []
    cleared = call(
        platform_server,
        "POST",
        "/api/perf/runs",
        {
            "endpoint": {"name": "demo", "argument_schema": SCHEMA, "thresholds": None},
            "environment_id": 1,
        },
    )
    assert cleared.json()["endpoint"]["thresholds"] is None


def test_a_criterion_the_plugin_would_refuse_is_stored_but_a_malformed_form_is_not(
    platform_server: PlatformServer,
) -> None:
    unknown_metric = platform_server.create_run(
        endpoint_thresholds=["p95 < 500"], thresholds=[{"metric": "p95", "op": "<", "limit": 5}]
    )
    malformed = call(
        platform_server,
        "POST",
        "/api/perf/runs",
        {
            "endpoint_id": 1,
            "environment_id": 1,
            "thresholds": ["", {"metric": "p95_ms", "op": "=<", "limit": "5"}, {"op": "<"}, 5],
        },
    )

    assert platform_server.get_run(unknown_metric)["endpoint"]["thresholds"] == ["p95 < 500"]
    assert message(malformed) == (
        "invalid createRun body: field 'thresholds[0]': '' should be non-empty; "
        "field 'thresholds[1].op': '=<' is not one of ['<', '<=', '>', '>=', '==', '!=']; "
        "field 'thresholds[1].limit': '5' is not of type 'number'; "
        "missing field 'thresholds[2].metric'; missing field 'thresholds[2].limit'; "
        "field 'thresholds[3]': 5 is not of type 'string' or 'object'"
    )


def test_the_results_of_the_criteria_are_kept_with_the_summary_and_must_be_typed(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run()
    post(platform_server, run_id, "start")

    untyped = call(
        platform_server,
        "POST",
        "/api/perf/runs/{run_id}/complete",
        {**COMPLETE, "summary": {"thresholds": [{"criterion": "rps > 1", "passed": "yes"}]}},
        run_id=run_id,
    )
    failed = post(platform_server, run_id, "fail", summary={**SUMMARY, "thresholds": RESULTS})

    assert message(untyped) == (
        "invalid completeRun body: missing field 'summary.thresholds[0].observed'; "
        "missing field 'summary.thresholds[0].limit'; "
        "field 'summary.thresholds[0].passed': 'yes' is not of type 'boolean'"
    )
    assert failed.json()["summary"]["thresholds"] == RESULTS


def test_a_summary_the_plugin_could_not_build_carries_its_error(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run()
    post(platform_server, run_id, "start")
    error = "the summary could not be built: KeyError: 'total'"

    failed = post(platform_server, run_id, "fail", summary={"error": error})
    page = call(platform_server, "GET", "/runs/{run_id}", run_id=run_id)

    assert failed.json()["summary"] == {"error": error}
    assert f"could not build the summary: {error}" in html.unescape(page.text)


def test_the_run_page_shows_the_criteria_and_how_each_stood(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(
        endpoint="search", endpoint_thresholds=ENDPOINT_CRITERIA, thresholds=RUN_CRITERIA
    )
    post(platform_server, run_id, "start")
    post(platform_server, run_id, "complete", summary={**SUMMARY, "thresholds": RESULTS})

    page = call(platform_server, "GET", "/runs/{run_id}", run_id=run_id).text
    rows = table_rows(page)

    assert "endpoint search|p95_ms < 500 for GET /search, abort after 10s" in rows
    assert (
        'endpoint search|{"metric": "failure_ratio", "op": "<=", "limit": 0.01, "scope": null, '
        '"abort": true}' in rows
    )
    assert (
        f'run {run_id}|{{"expression": "p95_ms < 800 for GET /search", "per_interval": true}}'
        in rows
    )
    assert (
        "BREACHED|p95_ms < 800 for GET /search|912|800|run run-1 on the platform|"
        "2026-11-23T10:00:05.500Z" in rows
    )
    assert "passed|failure_ratio <= 0.01|0.00123457|0.01|endpoint 'search' on the platform" in rows
    assert "passed|requests >= 1 for GET /other|no requests|1" in rows


def test_an_older_database_file_gains_the_threshold_columns(
    platform_factory: PlatformFactory, tmp_path: Path
) -> None:
    old = tmp_path / "platform.sqlite3"  # the file platform_factory() opens first
    shutil.copyfile(RELEASED_FILE, old)
    with closing(sqlite3.connect(old)) as conn, conn:
        conn.execute("INSERT INTO endpoints VALUES (1, 'demo', '{\"parameters\":[]}')")
        conn.execute("INSERT INTO environments VALUES (1, 'local', 'http://127.0.0.1:1')")
        conn.execute(
            "INSERT INTO runs (id, status, endpoint_id, environment_id, created_at) "
            "VALUES ('run-old', 'pending', 1, 1, '2026-11-23T10:00:00Z')"
        )

    platform = platform_factory()
    new = platform.create_run(endpoint_thresholds=["rps >= 1"], thresholds=["p95_ms < 9"])

    before = platform.get_run("run-old")
    assert (before["thresholds"], before["status"]) == (None, "pending")
    assert platform.get_run(new)["endpoint"] == {
        "id": 1,
        "name": "demo",
        "argument_schema": DEFAULT_SCHEMA,
        "thresholds": ["rps >= 1"],
        "baseline_run_id": None,  # a column added later too
    }
    assert before["baseline_run_id"] is None
    assert platform.get_run(new)["thresholds"] == ["p95_ms < 9"]
    assert post(platform, "run-old", "start").status_code == 200
