"""openapi.yaml is a valid OpenAPI 3.1 document that covers the app, and the helpers explain."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from locust_perfx.criteria import Result, parse_criteria
from locust_perfx.reference import create_app
from locust_perfx.reference.contract import load_spec
from tests.fixtures.openapi import validate_request, validate_response

RUN = {
    "id": "run_20261123_170000_ab12cd",
    "status": "pending",
    "endpoint": {"id": 7, "name": "rerank", "argument_schema": {"parameters": []}},
    "environment": {"id": 3, "name": "staging", "host": "http://rerank.staging:8080"},
    "arguments": None,
    "host": None,
    "locust": None,
    "created_at": "2026-11-23T17:00:00Z",
    "started_at": None,
    "finished_at": None,
    "reason": None,
    "exit_code": None,
    "summary": None,
    "progress": None,
}


def test_openapi_yaml_is_a_valid_openapi_3_1_document() -> None:
    # Imported here: it pulls in requests, which must not load before Locust's monkey-patch
    # while pytest collects the other test modules.
    from openapi_spec_validator import validate

    assert load_spec()["openapi"].startswith("3.1")
    validate(load_spec())


def test_every_route_of_the_app_is_documented_and_nothing_else(tmp_path: Path) -> None:
    app = create_app(tmp_path / "platform.sqlite3", progress_timeout=0)
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        choices = re.search(r"<any\(([^)]*)\):\w+>", path)
        paths = (
            [path.replace(choices.group(0), c.strip()) for c in choices.group(1).split(",")]
            if choices
            else [path]
        )
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        served |= {(m.lower(), p) for p in paths for m in methods}

    documented = {
        (m, p) for p, item in load_spec()["paths"].items() for m in item if m != "parameters"
    }

    assert served == documented


def test_every_link_leads_to_a_documented_operation_and_fills_its_parameters() -> None:
    spec = load_spec()
    shared = spec["components"]["parameters"]
    parameters = {
        operation["operationId"]: {
            shared[p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"]
            for p in item.get("parameters", []) + operation.get("parameters", [])
        }
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method != "parameters"
    }
    links = [
        link
        for response in spec["components"]["responses"].values()
        for link in response.get("links", {}).values()
    ]

    assert {link["operationId"] for link in links} == {
        "startRun",
        "reportProgress",
        "completeRun",
        "failRun",
        "getRun",
        "listCalls",
    }
    for link in links:
        assert set(link["parameters"]) == parameters[link["operationId"]]


def test_validate_request_names_every_problem() -> None:
    with pytest.raises(AssertionError) as caught:
        validate_request(
            "POST", "/api/perf/runs/{run_id}/progress", {"at": "soon", "users": -1, "rps": "x"}
        )

    text = str(caught.value)
    assert text.startswith(
        "POST /api/perf/runs/{run_id}/progress request does not match openapi.yaml:"
    )
    assert "at $.at: 'soon' is not a 'date-time'" in text
    assert "at $.users: -1 is less than the minimum of 0" in text
    assert "'workers' is a required property" in text


def test_validate_request_accepts_extra_fields_and_rejects_a_body_where_none_is_taken() -> None:
    validate_request("POST", "/api/perf/environments", {"name": "a", "host": "h", "note": "x"})

    with pytest.raises(AssertionError, match=r"GET /api/perf/runs request takes no body"):
        validate_request("GET", "/api/perf/runs", {"x": 1})


def test_validate_response_checks_runs_envelopes_and_documented_statuses() -> None:
    validate_response("GET", "/api/perf/runs/{run_id}", 200, RUN)
    validate_response("GET", "/api/perf/runs", 200, {"code": 0, "data": [RUN]}, envelope=True)
    validate_response("GET", "/", 200, "<html></html>")

    with pytest.raises(AssertionError, match=r"at \$\.status: 'done' is not one of"):
        validate_response("GET", "/api/perf/runs/{run_id}", 200, {**RUN, "status": "done"})
    with pytest.raises(AssertionError, match=r'expected \{"code": 0, "data": \.\.\.\}'):
        validate_response("GET", "/api/perf/runs/{run_id}", 200, RUN, envelope=True)
    with pytest.raises(AssertionError, match=r"409 response is not documented; documented: "):
        validate_response("GET", "/api/perf/runs/{run_id}", 409, {"code": 409, "message": "x"})
    with pytest.raises(AssertionError, match=r"/api/perf/run/\{id\} is not in openapi.yaml"):
        validate_response("GET", "/api/perf/run/{id}", 200, RUN)


def test_the_criteria_the_plugin_reads_and_the_results_it_sends_fit_the_contract() -> None:
    forms = [
        "p95_ms < 500 for GET /search, abort after 10s, per interval",
        {"metric": "p99_ms", "op": "<", "limit": 900, "scope": "GET /search", "abort": True},
        {"expression": "rps >= 200", "abort": True, "delay": 10, "per_interval": False},
    ]
    criteria = parse_criteria(forms, "endpoint 'search' on the platform")
    results = [
        Result(criteria[0], 730.0, False, 1795428005.5),
        Result(criteria[1], None, True),
        Result(criteria[2], 250.0, True),
    ]

    endpoint = {"name": "search", "argument_schema": {"parameters": []}, "thresholds": forms}
    validate_request("POST", "/api/perf/endpoints", endpoint)
    validate_request(
        "POST",
        "/api/perf/runs/{run_id}/complete",
        {
            "finished_at": "2026-11-23T10:00:10Z",
            "summary": {"thresholds": [r.describe() for r in results]},
        },
    )
    validate_response(
        "GET",
        "/api/perf/runs/{run_id}",
        200,
        {**RUN, "thresholds": forms[1:], "endpoint": {**RUN["endpoint"], "thresholds": forms[:1]}},
    )
