"""The package imports without side effects and exposes its public surface."""

from locust_perfx import ConfigError, PerfxError


def test_config_error_carries_every_problem() -> None:
    err = ConfigError(["--a: missing", '--b: expected an integer, got "x"'])
    assert isinstance(err, PerfxError)
    assert isinstance(err, ValueError)
    assert err.problems == ["--a: missing", '--b: expected an integer, got "x"']
