"""Shared fixtures live in tests/fixtures/, one module per real component."""

import locust  # noqa: F401  (gevent must monkey-patch before requests/urllib3 load)
import pytest

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
