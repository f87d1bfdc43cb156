"""Beside Locust's ``--otel``: the run's spans carry its id, and the user's attributes stay."""

from __future__ import annotations

import json
import re

import pytest

from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer

BEHAVIOURS = ROOT / "tests" / "locustfiles" / "behaviours.py"


def span_resources(output: str) -> list[dict[str, str]]:
    """The resource attributes of each span the SDK's console exporter printed."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r'^\{\s*$\n\s*"name":', output, re.MULTILINE):
        span, _ = decoder.raw_decode(output, match.start())
        found.append(span["resource"]["attributes"])
    return found


def test_the_runs_spans_carry_its_id_beside_the_users_resource_attributes(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("opentelemetry.instrumentation.requests")
    run_id = platform_server.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 1 -r 1 -t 2s --otel"),
        locustfile=BEHAVIOURS,
        env={
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_RESOURCE_ATTRIBUTES": "team=search,perfx.environment=mine",
        },
    )
    assert code == 0, output
    assert "OpenTelemetry enabled" in output and "Traceback" not in output
    resources = span_resources(output)
    assert resources, output
    for attributes in resources:
        assert attributes["perfx.run_id"] == run_id
        assert attributes["perfx.endpoint"] == "demo"
        assert attributes["perfx.environment"] == "mine"  # the user's value stays
        assert attributes["team"] == "search"
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed"
