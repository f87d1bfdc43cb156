"""The platform client against the real reference platform, and a fault server for faults."""

from __future__ import annotations

import functools
import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from locust_perfx import (
    PlatformAuthError,
    PlatformError,
    PlatformUnavailable,
    RunNotFound,
    RunStateConflict,
    platform,
)
from locust_perfx.platform import PlatformClient
from tests.fixtures.faults import FaultProxyFactory, FaultServer
from tests.fixtures.openapi import validate_request
from tests.fixtures.platform import PlatformFactory, PlatformServer

SCHEMA = {"parameters": [{"name": "model", "type": "string", "required": True}]}
START = {
    "arguments": {"model": "m"},
    "host": "http://t",
    "started_at": "2026-11-23T10:00:00Z",
    "locust": {"version": "2.47.0", "mode": "local"},
}
COMPLETE = {"finished_at": "2026-11-23T10:05:00Z", "summary": {}}


def test_get_run_reads_schema_and_host(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run(
        SCHEMA, "http://target:8080", endpoint="rerank", environment="staging"
    )
    with PlatformClient(platform_server.url) as client:
        run = client.get_run(run_id)
    assert (run.id, run.status, run.endpoint, run.environment, run.host) == (
        run_id,
        "pending",
        "rerank",
        "staging",
        "http://target:8080",
    )
    assert [p.name for p in run.schema.parameters] == ["model"]


def test_envelope_bodies_are_unwrapped(platform_factory: PlatformFactory) -> None:
    server = platform_factory(envelope=True)
    run_id = server.create_run(SCHEMA)
    with PlatformClient(server.url) as client:
        assert client.get_run(run_id).schema.parameters[0].required


def test_unknown_run_names_the_run_and_the_fix(platform_server: PlatformServer) -> None:
    with PlatformClient(platform_server.url) as client, pytest.raises(RunNotFound) as caught:
        client.get_run("run_nope")
    assert str(caught.value) == (
        f"run run_nope does not exist on {platform_server.url}: check --run-id"
    )


def test_a_platform_url_with_api_says_to_drop_it(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run(SCHEMA)
    with (
        PlatformClient(f"{platform_server.url}/api") as client,
        pytest.raises(RunNotFound) as caught,
    ):
        client.get_run(run_id)
    assert str(caught.value).endswith(
        "--platform-url ends in /api, which the plugin adds itself; "
        f"pass --platform-url {platform_server.url}"
    )


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """Another HTTP service: Python's own file server, which answers 404 with an HTML page."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_another_services_404_names_the_url_as_the_likelier_cause(file_server: str) -> None:
    with PlatformClient(file_server) as client, pytest.raises(RunNotFound) as caught:
        client.get_run("run_1")
    assert str(caught.value) == (
        f"{file_server} answered 404 without JSON for run run_1, unlike the platform's API: "
        "check that --platform-url is the platform's base URL, then --run-id"
    )


def test_json_that_is_not_a_run_names_the_url(fault_server: FaultServer) -> None:
    # The fault server plays another service's JSON endpoint (a health check answers anything).
    fault_server.fallback = (200, {"status": "ok", "version": "3.1"})
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformError) as caught:
        client.get_run("run_1")
    assert str(caught.value).startswith(f"{fault_server.url}/api/perf/runs/run_1 answered JSON")
    assert "check that --platform-url is the platform's base URL (without /api)" in str(
        caught.value
    )


def test_bad_token_is_an_auth_error_that_never_shows_the_token(
    platform_factory: PlatformFactory,
) -> None:
    server = platform_factory(token="right-token")
    run_id = server.create_run(SCHEMA)
    with (
        PlatformClient(server.url, "wrong-token") as client,
        pytest.raises(PlatformAuthError) as caught,
    ):
        client.get_run(run_id)
    assert "wrong-token" not in str(caught.value)
    assert "PERFX_PLATFORM_TOKEN" in str(caught.value)
    with PlatformClient(server.url, "right-token") as client:
        assert client.get_run(run_id).status == "pending"
    assert "right-token" not in repr(client)


def test_a_refused_connection_at_start_up_is_given_up_before_the_whole_budget(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(platform, "REFUSED_FOR", 1.0)  # of 10 s: the same rule, sooner
    with socket.socket() as bound:  # a port that refuses: bound, never listening
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with PlatformClient(url) as client, pytest.raises(PlatformUnavailable) as caught:
            client.get_run("run_1", retry_for=60.0)

    assert caught.value.refused
    pauses = [float(m) for m in re.findall(r"retrying in ([\d.]+) s", caplog.text)]
    assert pauses and sum(pauses) <= 1.0  # not the 60 s --platform-timeout gives an outage


def test_second_start_is_refused_with_the_platforms_reason(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(SCHEMA)
    with PlatformClient(platform_server.url) as client:
        client.start(run_id, START)
        with pytest.raises(RunStateConflict) as caught:
            client.start(run_id, START)
    assert caught.value.status == 409
    assert "running" in str(caught.value)


def test_final_status_whose_answer_was_lost_counts_as_delivered(
    fault_server: FaultServer,
) -> None:
    # A lost answer: the platform stored the first attempt but the gateway answered 504.
    run = {"id": "run_1", "status": "completed", "endpoint": {}, "environment": {}}
    fault_server.script = [
        (504, {}),
        (409, {"code": 409, "message": "run is completed"}),
        (200, run),
    ]
    with PlatformClient(fault_server.url) as client:
        client.finish("run_1", "complete", {"summary": {}}, retry_for=10)
    assert [r.method for r in fault_server.requests] == ["POST", "POST", "GET"]


def test_a_first_attempt_refused_is_a_refusal_even_if_the_status_matches(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(SCHEMA)
    body = {"finished_at": "2026-11-23T10:05:00Z", "summary": {}, "reason": "x", "exit_code": 1}
    with PlatformClient(platform_server.url) as client:
        client.finish(run_id, "fail", body, retry_for=0)  # e.g. the platform's watchdog
        with pytest.raises(RunStateConflict):
            client.finish(run_id, "fail", body, retry_for=0)
    assert [c["http_status"] for c in platform_server.calls(run_id)] == [200, 409]


def test_unreachable_platform_names_the_url_and_the_variable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with PlatformClient(url) as client, pytest.raises(PlatformUnavailable) as caught:
        client.get_run("run_x")
    assert str(caught.value) == (
        f"cannot reach the platform at {url}: check --platform-url or PERFX_PLATFORM_URL"
    )


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_overload_and_server_errors_are_retried(fault_server: FaultServer, status: int) -> None:
    fault_server.script = [(status, {"code": status, "message": "busy"})] * 2
    with PlatformClient(fault_server.url) as client:
        client.start("run_1", START, retry_for=10)
    assert len(fault_server.requests) == 3
    validate_request("POST", "/api/perf/runs/{run_id}/start", fault_server.requests[-1].body)


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_client_errors_are_never_retried(fault_server: FaultServer, status: int) -> None:
    fault_server.script = [(status, {"code": status, "message": "no"})]
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformError):
        client.start("run_1", START, retry_for=10)
    # A 409 is followed by a read of the run (GET), to tell what it means; never a retry.
    assert [r.method for r in fault_server.requests].count("POST") == 1


def test_retrying_stops_at_its_deadline(fault_server: FaultServer) -> None:
    fault_server.fallback = (503, {"code": 503, "message": "down for maintenance"})
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformUnavailable) as caught:
        client.start("run_1", START, retry_for=1.0)
    assert "answered 503: down for maintenance" in str(caught.value)
    assert 2 <= len(fault_server.requests) <= 5


def test_malformed_json_is_a_clear_error(fault_server: FaultServer) -> None:
    fault_server.script = [(200, b"<html>proxy error</html>")]
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformError) as caught:
        client.get_run("run_1")
    assert "with a body that is not JSON" in str(caught.value)


@pytest.mark.parametrize(
    "envelope",
    [
        {"code": 1003, "msg": "run is locked by another job"},
        {"code": "1003", "message": "run is locked by another job", "data": None},
    ],
)
def test_non_zero_envelope_code_carries_the_platforms_message(
    fault_server: FaultServer, envelope: dict[str, object]
) -> None:
    fault_server.script = [(200, envelope)]
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformError) as caught:
        client.get_run("run_1")
    assert str(caught.value) == "the platform refused run run_1: run is locked by another job"


@pytest.mark.parametrize("code", ["ABC", 0])
def test_a_run_with_a_code_of_its_own_is_a_run_not_an_envelope(
    fault_server: FaultServer, code: object
) -> None:
    # platform-api.md: an envelope has an integer code and data, or a non-zero code and a
    # message; a run's own "code" field (with a "message" even) makes neither.
    fault_server.fallback = (
        200,
        {
            "id": "run_1",
            "status": "pending",
            "code": code,
            "message": "nightly rerank check",
            "endpoint": {"name": "rerank", "argument_schema": SCHEMA},
            "environment": {"name": "staging", "host": "http://t"},
        },
    )
    with PlatformClient(fault_server.url) as client:
        run = client.get_run("run_1")
    assert (run.status, run.endpoint, run.host) == ("pending", "rerank", "http://t")


def test_token_is_sent_as_bearer_and_never_in_a_body(fault_server: FaultServer) -> None:
    fault_server.fallback = (200, {"id": "run_1", "status": "running"})
    with PlatformClient(fault_server.url, "tok-123") as client:
        client.start("run_1", START)
    sent = fault_server.requests[0]
    assert sent.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(sent.body)


def test_a_start_whose_answer_was_lost_counts_as_started(
    platform_server: PlatformServer, fault_proxy: FaultProxyFactory
) -> None:
    # The proxy forwards the start, then answers 502: the platform started the run, the
    # client never heard so, and its retry is refused because the run is now running.
    run_id = platform_server.create_run(SCHEMA)
    proxy = fault_proxy(platform_server.url, "start", "applied-502")
    with PlatformClient(proxy.url) as client:
        client.start(run_id, START, retry_for=10)
    assert platform_server.get_run(run_id)["status"] == "running"
    assert [(c["call"], c["http_status"]) for c in platform_server.calls(run_id)] == [
        ("start", 200),
        ("start", 409),
    ]


def test_a_final_status_whose_answer_never_came_in_time_is_settled_by_the_run(
    platform_server: PlatformServer, fault_proxy: FaultProxyFactory
) -> None:
    # The proxy forwards the complete and holds the answer past the client's timeout, so
    # no time is left to retry: one look at the run shows the complete landed.
    run_id = platform_server.create_run(SCHEMA)
    proxy = fault_proxy(platform_server.url, "complete", "applied-timeout")
    with PlatformClient(proxy.url, timeout=0.5) as client:
        client.start(run_id, START)
        client.finish(run_id, "complete", COMPLETE, retry_for=0)
    assert platform_server.get_run(run_id)["status"] == "completed"


def test_a_409_the_run_itself_contradicts_is_an_error_not_a_refusal(
    platform_server: PlatformServer, fault_proxy: FaultProxyFactory
) -> None:
    # Something in front of the platform answers 409 while the run is running: the final
    # status must not be dropped as refused (the caller saves it for perfx resend).
    run_id = platform_server.create_run(SCHEMA)
    proxy = fault_proxy(platform_server.url, "complete", "409")
    with PlatformClient(proxy.url) as client:
        client.start(run_id, START)
        with pytest.raises(PlatformError) as caught:
            client.finish(run_id, "complete", COMPLETE, retry_for=10)
    assert not isinstance(caught.value, RunStateConflict)
    assert str(caught.value) == (
        f"the platform answered 409 to the complete of run {run_id} (injected 409: run is not "
        "in a state for this), yet shows the run running, which allows it; check the "
        "platform or a proxy in front of it"
    )
    assert platform_server.get_run(run_id)["status"] == "running"


@pytest.mark.parametrize("call", ["start", "complete"])
def test_a_state_call_answered_200_with_a_body_that_is_not_json_was_applied(
    platform_server: PlatformServer, fault_proxy: FaultProxyFactory, call: str
) -> None:
    run_id = platform_server.create_run(SCHEMA)
    proxy = fault_proxy(platform_server.url, call, "malformed")
    with PlatformClient(proxy.url) as client:
        client.start(run_id, START)
        if call == "complete":
            client.finish(run_id, "complete", COMPLETE, retry_for=0)
    assert platform_server.get_run(run_id)["status"] == {"start": "running"}.get(call, "completed")
    assert proxy.fired is not None and proxy.fired.upstream == 200


@pytest.mark.parametrize("status", [429, 503])
def test_the_retry_waits_as_long_as_retry_after_asks(
    fault_server: FaultServer, status: int
) -> None:
    fault_server.script = [(status, {"message": "slow down"}, {"Retry-After": "1"})]
    fault_server.fallback = (200, {"id": "run_1", "status": "running"})
    with PlatformClient(fault_server.url) as client:
        client.start("run_1", START, retry_for=10)
    first, retry = fault_server.requests
    assert retry.at - first.at >= 1.0  # the first backoff alone is 0.5-0.75 s


def test_a_retry_after_past_the_deadline_gives_up_at_once(fault_server: FaultServer) -> None:
    fault_server.script = [(503, {"message": "maintenance"}, {"Retry-After": "30"})]
    began = time.monotonic()
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformUnavailable) as caught:
        client.start("run_1", START, retry_for=5)
    assert time.monotonic() - began < 1
    assert len(fault_server.requests) == 1
    assert caught.value.retry_after == 30
    assert str(caught.value).endswith("answered 503: maintenance (Retry-After: 30 s)")


def test_retry_after_may_be_an_http_date(fault_server: FaultServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fault_server.script = [(429, {}, {"Retry-After": later})]
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformUnavailable) as caught:
        client.start("run_1", START)
    assert caught.value.retry_after is not None and 27 < caught.value.retry_after <= 30


@pytest.mark.parametrize(("first", "maybe_applied"), [(500, True), (503, False)])
def test_a_final_status_given_up_says_whether_an_attempt_may_have_landed(
    fault_server: FaultServer, first: int, maybe_applied: bool
) -> None:
    """A 500 may come after the platform applied the call, a 503 never does (RFC 9110); the
    run cannot be read to settle it, so the error carries the doubt (``perfx resend`` reads it
    back from the saved status)."""
    fault_server.script = [(first, {}), (503, {"message": "maintenance"}, {"Retry-After": "30"})]
    fault_server.fallback = (503, {})
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformUnavailable) as caught:
        client.finish("run_1", "complete", COMPLETE, retry_for=5)
    assert caught.value.maybe_applied is maybe_applied
    assert (caught.value.status, caught.value.retry_after) == (503, 30)
    assert str(caught.value).endswith("answered 503: maintenance (Retry-After: 30 s)")
