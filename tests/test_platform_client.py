"""The platform client against the real reference platform, and a fault server for faults."""

from __future__ import annotations

import socket

import pytest

from locust_perfx import (
    PlatformAuthError,
    PlatformError,
    PlatformUnavailable,
    RunNotFound,
    RunStateConflict,
)
from locust_perfx.platform import PlatformClient
from tests.fixtures.faults import FaultServer
from tests.fixtures.openapi import validate_request
from tests.fixtures.platform import PlatformFactory, PlatformServer

SCHEMA = {"parameters": [{"name": "model", "type": "string", "required": True}]}
START = {
    "arguments": {"model": "m"},
    "host": "http://t",
    "started_at": "2026-11-23T10:00:00Z",
    "locust": {"version": "2.47.0", "mode": "local"},
}


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
    assert len(fault_server.requests) == 1


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


def test_non_zero_envelope_code_carries_the_platforms_message(fault_server: FaultServer) -> None:
    fault_server.script = [(200, {"code": 1003, "msg": "run is locked by another job"})]
    with PlatformClient(fault_server.url) as client, pytest.raises(PlatformError) as caught:
        client.get_run("run_1")
    assert str(caught.value) == "the platform refused run run_1: run is locked by another job"


def test_token_is_sent_as_bearer_and_never_in_a_body(fault_server: FaultServer) -> None:
    fault_server.fallback = (200, {"id": "run_1", "status": "running"})
    with PlatformClient(fault_server.url, "tok-123") as client:
        client.start("run_1", START)
    sent = fault_server.requests[0]
    assert sent.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(sent.body)
