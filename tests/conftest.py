"""Shared fixtures live in tests/fixtures/, one module per real component.

The test tiers: a test that starts a process (Locust, the platform, VictoriaMetrics, influxd,
Chromium, a network namespace, any subprocess) is marked ``integration`` here, from the
fixtures it uses and the process-starting helpers it calls; ``tox -e fast`` runs the rest,
and any of the rest that starts a process anyway fails and says how to mark it.
"""

from __future__ import annotations

import subprocess
import types
from collections.abc import Iterator

import locust  # noqa: F401  (gevent must monkey-patch before requests/urllib3 load)
import pytest

from tests.fixtures.processes import (
    PROCESS_FIXTURES,
    SHARED_PROCESS_FIXTURES,
    STARTS_PROCESSES,
    xdist_worker_on_gevent,
)

pytest_plugins = [
    "tests.fixtures.platform",
    "tests.fixtures.tsdb",
    "tests.fixtures.influxdb1",
    "tests.fixtures.locust",
    "tests.fixtures.faults",
    "tests.fixtures.browser",
    "tests.fixtures.netns",
]

RUNNERS = ("locust_runner", "host_runner")
"""The fixtures that start Locust processes (tests/fixtures/locust.py, netns.py)."""

INTEGRATION = "integration"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        xdist_worker_on_gevent(config)
    config.addinivalue_line(
        "markers",
        f"{INTEGRATION}: starts a process (set automatically from the fixtures and helpers a "
        "test uses; see tests/fixtures/processes.py)",
    )


def _code_names(code: types.CodeType) -> Iterator[str]:
    """The global names a function's code refers to, its nested functions' included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _calls_a_process_helper(item: pytest.Function) -> bool:
    scope = vars(item.module) if item.module is not None else {}
    for name in _code_names(item.function.__code__):
        helper = scope.get(name)
        if helper is subprocess or getattr(helper, STARTS_PROCESSES, False):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the integration tier, and keep a module's tests on one pytest-xdist worker when
    they share a module-scoped process (``--dist loadgroup``): started once, not per worker."""
    grouped = bool(items) and items[0].config.pluginmanager.hasplugin("xdist")
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if not item.get_closest_marker(INTEGRATION) and (
            PROCESS_FIXTURES.intersection(item.fixturenames) or _calls_a_process_helper(item)
        ):
            item.add_marker(INTEGRATION)
        if grouped and SHARED_PROCESS_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


class ProcessStarted(AssertionError):
    """A test not marked ``integration`` started a process."""

    def __init__(self, nodeid: str, args: object) -> None:
        super().__init__(
            f"{nodeid} started a process ({args!r}) but is not an integration test: use a "
            "fixture of tests/fixtures/processes.PROCESS_FIXTURES, decorate the helper that "
            "starts it with @starts_processes, or mark the test @pytest.mark.integration"
        )


def _popen_classes() -> set[type[subprocess.Popen[bytes]]]:
    import gevent.subprocess

    return {gevent.monkey.get_original("subprocess", "Popen"), gevent.subprocess.Popen}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """Outside the integration tier, starting a process fails the test (set-up included)."""
    if item.get_closest_marker(INTEGRATION):
        return (yield)
    originals = {cls: cls._execute_child for cls in _popen_classes()}  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen[bytes], args: object, *rest: object) -> None:
        raise ProcessStarted(item.nodeid, args)

    for cls in originals:
        cls._execute_child = refuse  # type: ignore[attr-defined]
    try:
        return (yield)
    finally:
        for cls, original in originals.items():
            cls._execute_child = original  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Stop a test's Locust processes before any fixture is torn down.

    Fixtures end in the reverse order of their set-up, so a platform or InfluxDB set up after
    the runner would go first, and a master still ending its run would retry its final status
    or its last export against nothing until the runner's stop gives up and kills it.
    """
    for name in RUNNERS:
        runner = getattr(item, "funcargs", {}).get(name)
        if runner is not None:
            runner.stop_all()
