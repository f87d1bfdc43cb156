"""The reference platform, fuzzed in-process from its own openapi.yaml with Schemathesis.

Every operation gets valid and invalid requests, and a state machine follows the
contract's links (create -> start -> progress -> complete | fail, refused calls
included). Every answer must be no 5xx, and a documented status, content type and body.

Schemathesis is driven through Hypothesis here, without its pytest plugin: that plugin
imports requests before conftest.py imports Locust, which must monkey-patch ssl first,
so pytest runs with ``-p no:schemathesis``.
"""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from locust_perfx.reference import create_app
from locust_perfx.reference.contract import load_spec

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Examples per operation and mode, scenarios and steps per scenario of the state machine:
#: enough to find what this suite has found, few enough for under a minute on two cores.
MAX_EXAMPLES = 25
MAX_SCENARIOS = 40
MAX_STEPS = 10
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """Every documented operation, and again with invalid input where it takes any."""
    cases = []
    for path, item in load_spec()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            cases.append((method.upper(), path, GenerationMode.POSITIVE))
            if "parameters" in item or "requestBody" in operation:
                cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return cases


@pytest.fixture(scope="module")
def contract() -> schemathesis.BaseSchema:
    # The state machine sends valid bodies only (a 400 ends a chain; invalid bodies are the
    # per-operation test's), and follows only the contract's links: the ones Schemathesis
    # infers copy a pending run's nulls into required fields of the next body.
    config = schemathesis.Config.from_dict(
        {
            "phases": {
                "stateful": {"generation": {"mode": "positive"}, "inference": {"algorithms": []}}
            }
        }
    )
    with resources.as_file(resources.files("locust_perfx.reference") / "openapi.yaml") as path:
        return schemathesis.openapi.from_path(path, config=config)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """One app for every operation's fuzz: they only add rows, and expect no empty store."""
    return create_app(tmp_path_factory.mktemp("fuzz") / "platform.sqlite3", progress_timeout=0)


@pytest.mark.parametrize(("method", "path", "mode"), _cases())
def test_every_operation_answers_as_documented(
    contract: schemathesis.BaseSchema, app: Flask, method: str, path: str, mode: GenerationMode
) -> None:
    @FUZZ_SETTINGS
    @given(case=contract[path][method].as_strategy(generation_mode=mode))
    def answers_as_documented(case: Case) -> None:
        case.call_and_validate(checks=CHECKS, app=app)

    answers_as_documented()


def test_runs_driven_through_their_links_answer_as_documented(
    contract: schemathesis.BaseSchema, tmp_path: Path
) -> None:
    databases = (tmp_path / f"scenario-{n}.sqlite3" for n in itertools.count())

    class Runs(contract.as_state_machine()):  # type: ignore[misc]
        # A fresh store per scenario: Hypothesis draws each step from what earlier answers
        # held, so the same draws must meet the same answers (not a 409 for a run id an
        # earlier scenario took) or it reports the test as flaky.
        def setup(self) -> None:
            self.app = create_app(next(databases), progress_timeout=0)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"app": self.app}

        def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    # Generate only, as Schemathesis's own stateful runner does.
    Runs.run(
        settings=settings(
            FUZZ_SETTINGS,
            max_examples=MAX_SCENARIOS,
            stateful_step_count=MAX_STEPS,
            phases=[Phase.generate],
        )
    )
