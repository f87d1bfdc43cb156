import locust  # noqa: F401  (gevent must monkey-patch before requests/urllib3 load)

"""Shared fixtures live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "tests.fixtures.platform",
    "tests.fixtures.tsdb",
    "tests.fixtures.influxdb1",
    "tests.fixtures.locust",
    "tests.fixtures.faults",
    "tests.fixtures.browser",
    "tests.fixtures.netns",
]
