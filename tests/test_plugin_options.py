"""The plugin in real locust processes: options, typed arguments, host, and clear refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.faults import FaultServer
from tests.fixtures.locust import EXAMPLES, ROOT, LocustRunner, Target, free_port, headless
from tests.fixtures.platform import PlatformFactory, PlatformServer
from tests.fixtures.waiting import wait_until

SCHEMA: dict[str, Any] = json.loads((EXAMPLES / "schema.json").read_text())
ECHO = ROOT / "tests" / "locustfiles" / "echo.py"
GOOD_ARGS = ("--model", "gpt-4", "--gpu_model", "H100")
EXPECTED_OPTIONS = {"model": "gpt-4", "batch_size": 32, "gpu_model": "H100", "warm_up": False}
EXPECTED_ENV = {
    "PERFX_MODEL": "gpt-4",
    "PERFX_BATCH_SIZE": "32",
    "PERFX_GPU_MODEL": "H100",
    "PERFX_WARM_UP": "false",
}


def echoes(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def assert_sees_the_run(record: dict[str, Any], run_id: str, host: str) -> None:
    assert record["options"] == {"run_id": run_id, **EXPECTED_OPTIONS}
    assert record["env"] == {"PERFX_RUN_ID": run_id, **EXPECTED_ENV}
    assert record["env_at_test_start"] == record["env"]
    assert record["host"] == host


def test_without_run_id_the_plugin_is_inert(
    locust_runner: LocustRunner, target: Target, fault_server: FaultServer
) -> None:
    code, output = locust_runner.run(
        "--headless",
        "-u",
        "2",
        "-t",
        "2s",
        "-H",
        target.url,
        env={"PERFX_PLATFORM_URL": fault_server.url},
    )
    assert code == 0, output
    assert target.total > 0
    assert fault_server.requests == []
    assert "perfx" not in output.lower()


def test_typed_arguments_and_host_reach_a_local_run(
    locust_runner: LocustRunner, target: Target, platform_server: PlatformServer, tmp_path: Path
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 2 -t 2s"),
        *GOOD_ARGS,
        locustfile=ECHO,
        env={"ECHO_DIR": str(tmp_path)},
    )
    assert code == 0, output
    [record] = echoes(tmp_path)
    assert_sees_the_run(record, run_id, target.url)
    assert target.counts["/echo"] > 0


@pytest.mark.slow
def test_workers_see_the_arguments_without_being_given_them(
    locust_runner: LocustRunner, target: Target, platform_server: PlatformServer, tmp_path: Path
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    master, workers = locust_runner.start_distributed(
        *headless(run_id, platform_server.url, "-u 4 -r 4 -t 3s"),
        *GOOD_ARGS,
        locustfile=ECHO,
        env={"ECHO_DIR": str(tmp_path)},
    )
    assert master.wait(60) == 0, master.output
    for worker in workers:
        assert worker.wait(30) == 0, worker.output
    records = echoes(tmp_path)
    assert len(records) == 2
    for record in records:
        assert_sees_the_run(record, run_id, target.url)


@pytest.mark.slow
def test_processes_mode_workers_see_the_arguments(
    locust_runner: LocustRunner, target: Target, platform_server: PlatformServer, tmp_path: Path
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "--processes 2 -u 4 -r 4 -t 3s"),
        *GOOD_ARGS,
        locustfile=ECHO,
        env={"ECHO_DIR": str(tmp_path)},
    )
    assert code == 0, output
    records = echoes(tmp_path)
    assert len(records) == 2
    for record in records:
        assert_sees_the_run(record, run_id, target.url)


def refusal(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("perfx: ")]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param(
            ("--batch_size", "lots", "--gpu_model", "TPU"),
            {},
            [
                "--model is required: pass --model VALUE or set PERFX_MODEL",
                '--batch_size (from the command line): expected an integer, got "lots"',
                "--gpu_model (from the command line): expected one of A100, H100, RTX4090, "
                'got "TPU"',
            ],
            id="all-problems-at-once",
        ),
        pytest.param(
            GOOD_ARGS,
            {"PERFX_WARM_UP": "sometimes"},
            ['--warm_up (from PERFX_WARM_UP): expected true or false, got "sometimes"'],
            id="from-env",
        ),
        pytest.param(
            ("--batch_si", "lots", "--model", "m", "--gpu_model", "A100"),
            {},
            ['--batch_size (from the command line): expected an integer, got "lots"'],
            id="abbreviated-flag",
        ),
        pytest.param(
            (*GOOD_ARGS, "--influxdb-url", "127.0.0.1:1", "--influxdb-interval", "0"),
            {"PERFX_PLATFORM_TIMEOUT": "abc", "PERFX_INFLUXDB_TAGS": "run_id=x"},
            [
                "--platform-timeout (from PERFX_PLATFORM_TIMEOUT): expected a number of "
                'seconds, got "abc"',
                "--influxdb-interval: expected seconds > 0, got 0.0",
                "--influxdb-url is set but --influxdb-org is not: set --influxdb-org or "
                "PERFX_INFLUXDB_ORG (InfluxDB 1.x: -)",
                "--influxdb-tags: 'run_id' is reserved by the exporter, pick another name",
                "--influxdb-url: expected http://host:port, got '127.0.0.1:1'",
                "--influxdb-url is set but --influxdb-bucket is not: set --influxdb-bucket or "
                "PERFX_INFLUXDB_BUCKET",
            ],
            id="plugin-options-all-at-once",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_load(
    locust_runner: LocustRunner,
    target: Target,
    platform_server: PlatformServer,
    args: tuple[str, ...],
    env: dict[str, str],
    expected: list[str],
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 1 -t 5s"),
        *args,
        env=env,
    )
    assert code == 2, output
    assert refusal(output) == [f"perfx: {line}" for line in expected]
    assert "Traceback" not in output
    assert target.total == 0
    assert platform_server.get_run(run_id)["status"] == "pending"


UNKNOWN_TYPE = (
    "argument_schema parameter 'mode': unknown type 'date'; expected one of string, int, "
    "float, bool, choice"
)
HOST_CLASH = (
    "schema parameter 'host' clashes with the option -H/--host; rename the parameter on "
    "the platform"
)
RUN_TIME_CLASH = (
    "schema parameter 'run_time' clashes with the option -t/--run-time; rename the "
    "parameter on the platform"
)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"parameters": [{"name": "mode", "type": "date"}]}, [UNKNOWN_TYPE]),
        ({"parameters": [{"name": "host", "type": "string"}]}, [HOST_CLASH]),
        ({"parameters": [{"name": "run_time", "type": "int"}]}, [RUN_TIME_CLASH]),
        pytest.param(
            {
                "parameters": [
                    {"name": "mode", "type": "date"},
                    {"name": "host", "type": "string"},
                    {"name": "run_time", "type": "int"},
                ]
            },
            [UNKNOWN_TYPE, HOST_CLASH, RUN_TIME_CLASH],
            id="every-kind-at-once",
        ),
    ],
)
def test_a_broken_schema_is_refused(
    locust_runner: LocustRunner,
    target: Target,
    platform_server: PlatformServer,
    schema: dict[str, Any],
    expected: list[str],
) -> None:
    # Raw call: the platform's own API description would reject the broken schema.
    response = platform_server.api(
        "POST",
        "/api/perf/runs",
        {
            "endpoint": {"name": "broken", "argument_schema": schema},
            "environment": {"name": "local", "host": target.url},
        },
    )
    run_id = response.json()["id"]
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-t 5s"),
    )
    assert code == 2, output
    assert refusal(output) == [f"perfx: {line}" for line in expected]
    assert target.total == 0


def test_platform_problems_are_one_line_each(
    locust_runner: LocustRunner,
    target: Target,
    platform_factory: PlatformFactory,
) -> None:
    server = platform_factory(token="s3cret-token")
    run_id = server.create_run(SCHEMA, target.url)
    cases = [
        (
            ("--run-id", "run_missing", "--platform-token", "s3cret-token"),
            f"perfx: run run_missing does not exist on {server.url}: check --run-id",
        ),
        (
            ("--run-id", run_id, "--platform-token", "wrong"),
            f"perfx: the platform at {server.url} refused the token (401): check "
            "--platform-token or PERFX_PLATFORM_TOKEN",
        ),
    ]
    for args, expected in cases:
        code, output = locust_runner.run(
            *args,
            "--platform-url",
            server.url,
            "--platform-timeout",
            "0",
            "--headless",
        )
        assert (code, refusal(output)) == (1, [expected]), output
        assert "s3cret-token" not in output and "wrong" not in output.replace(expected, "")
    assert target.total == 0


def test_every_problem_that_needs_no_platform_comes_with_the_platforms(
    locust_runner: LocustRunner, platform_server: PlatformServer
) -> None:
    code, output = locust_runner.run(
        *("--run-id", "run_missing", "--platform-url", platform_server.url),
        *("--threshold", "p95 < 500", "--influxdb-url", "http://127.0.0.1:9", "--headless"),
    )

    assert code == 2, output
    assert refusal(output) == [
        f"perfx: run run_missing does not exist on {platform_server.url}: check --run-id",
        "perfx: threshold 'p95 < 500' (from the command line): unknown metric 'p95'; expected "
        "one of p50_ms, p90_ms, p95_ms, p99_ms, avg_ms, max_ms, failure_ratio, failures, rps, "
        "requests",
        "perfx: --influxdb-url is set but --influxdb-org is not: set --influxdb-org or "
        "PERFX_INFLUXDB_ORG (InfluxDB 1.x: -)",
        "perfx: --influxdb-url is set but --influxdb-bucket is not: set --influxdb-bucket or "
        "PERFX_INFLUXDB_BUCKET",
    ]


def test_unreachable_platform_is_named(locust_runner: LocustRunner, target: Target) -> None:
    url = "http://127.0.0.1:9"
    code, output = locust_runner.run(*headless("run_1", url, "--platform-timeout 0"))
    assert (code, refusal(output)) == (
        1,
        [f"perfx: cannot reach the platform at {url}: check --platform-url or PERFX_PLATFORM_URL"],
    )


def test_a_finished_run_is_not_run_again(
    locust_runner: LocustRunner,
    target: Target,
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    platform_server.api(
        "POST",
        f"/api/perf/runs/{run_id}/fail",
        {"finished_at": "2026-11-23T10:00:00Z", "reason": "old", "exit_code": 1, "summary": {}},
    )
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url),
        *GOOD_ARGS,
    )
    assert (code, refusal(output)) == (
        1,
        [f"perfx: run {run_id} is already failed; create a new run on the platform"],
    )
    assert target.total == 0


@pytest.mark.parametrize("given_by", ["the command line", "LOCUST_HOST"])
def test_user_host_wins_over_the_platforms(
    locust_runner: LocustRunner,
    target: Target,
    platform_server: PlatformServer,
    tmp_path: Path,
    given_by: str,
) -> None:
    run_id = platform_server.create_run(SCHEMA, "http://platform-host.invalid")
    env = {"ECHO_DIR": str(tmp_path)}
    if given_by == "LOCUST_HOST":
        env["LOCUST_HOST"] = target.url
        host_args: tuple[str, ...] = ()
    else:
        host_args = ("-H", target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 1 -t 1s"),
        *GOOD_ARGS,
        *host_args,
        locustfile=ECHO,
        env=env,
    )
    assert code == 0, output
    assert (
        f"perfx: using --host {target.url} from {given_by}, not the platform's "
        "http://platform-host.invalid"
    ) in output
    assert echoes(tmp_path)[0]["host"] == target.url


def test_arguments_from_env_and_config_file(
    locust_runner: LocustRunner, target: Target, platform_server: PlatformServer, tmp_path: Path
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    conf = tmp_path / "perf.conf"
    conf.write_text(
        f"run-id = {run_id}\nplatform-url = {platform_server.url}\n"
        "gpu_model = A100\nbatch_size = 8\n"
    )
    code, output = locust_runner.run(
        "--config",
        str(conf),
        "--headless",
        "-u",
        "1",
        "-t",
        "1s",
        locustfile=ECHO,
        env={"ECHO_DIR": str(tmp_path), "PERFX_MODEL": "from-env"},
    )
    assert code == 0, output
    [record] = echoes(tmp_path)
    assert record["options"]["gpu_model"] == "A100"
    assert record["options"]["batch_size"] == 8
    assert record["options"]["model"] == "from-env"


def test_dry_run_prints_the_resolved_run_without_secrets_or_load(
    locust_runner: LocustRunner,
    target: Target,
    platform_factory: PlatformFactory,
) -> None:
    server = platform_factory(token="s3cret-token")
    run_id = server.create_run(SCHEMA, target.url, endpoint="rerank")
    code, output = locust_runner.run(
        *headless(run_id, server.url, "--platform-token s3cret-token --batch_size 64 --dry-run"),
        *GOOD_ARGS,
        "--threshold",
        "p95_ms < 500 for GET /echo, abort after 10s",
        env={"PYTHONPROFILEIMPORTTIME": "1"},  # Python lists every module it imports
    )
    assert code == 0, output
    imported = re.findall(r"^import time:.*\| +(\S+)$", output, re.MULTILINE)
    assert "locust_perfx.plan" in imported
    assert not {"locust_perfx.controller", "influxdb_client"} & set(imported)
    resolved = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert resolved["arguments"] == {**EXPECTED_OPTIONS, "batch_size": 64}
    assert resolved["thresholds"] == [
        {
            "criterion": "p95_ms < 500 for GET /echo",
            "abort": True,
            "delay_s": 10.0,
            "per_interval": False,
            "source": "the command line",
        }
    ]
    assert (resolved["endpoint"], resolved["host"]) == ("rerank", target.url)
    assert "s3cret-token" not in output
    assert target.total == 0
    assert server.get_run(run_id)["status"] == "pending"


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_verbose_logs_every_platform_call_and_never_the_token(
    verbose: bool, locust_runner: LocustRunner, target: Target, platform_factory: PlatformFactory
) -> None:
    server = platform_factory(token="s3cret-token")
    run_id = server.create_run(SCHEMA, target.url)
    code, output = locust_runner.run(
        *headless(run_id, server.url, "-u 1 -t 2s --platform-progress 0.5"),
        *("--platform-token", "s3cret-token", *GOOD_ARGS),
        *(["--verbose"] if verbose else []),
    )

    assert code == 0, output
    run_url = f"{server.url}/api/perf/runs/{run_id}"
    calls = [
        f"perfx: GET {run_url} -> 200 in ",  # at start-up, before Locust sets up its logging
        f"perfx: POST {run_url}/start -> 200 in ",
        f"perfx: POST {run_url}/progress -> 200 in ",
        f"perfx: POST {run_url}/complete -> 200 in ",
        f"perfx: run {run_id}: idle -> testing",
        f"perfx: run {run_id}: finishing -> done",
    ]
    assert [call in output for call in calls] == [verbose] * len(calls)
    assert "s3cret-token" not in output
    stamped = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] \S+/[A-Z]+/locust_perfx\.\w+: perfx: "
    if verbose:  # the first line too, printed before Locust set up its logging
        for line in (line for line in output.splitlines() if "perfx: " in line):
            assert re.match(stamped, line), line


def test_a_dry_run_checks_what_the_test_would_and_never_serves(
    locust_runner: LocustRunner, target: Target, platform_server: PlatformServer
) -> None:
    run_id = platform_server.create_run(SCHEMA, target.url)
    code, output = locust_runner.run(
        *("--run-id", run_id, "--platform-url", platform_server.url, "--gpu_model", "A100"),
        *("--dry-run", "--web-port", str(free_port())),
    )
    assert code == 2, output
    assert refusal(output) == ["perfx: --model is required: pass --model VALUE or set PERFX_MODEL"]
    assert "web interface" not in output
    assert platform_server.get_run(run_id)["status"] == "pending"


def test_help_comes_at_once_when_the_platform_cannot_be_reached() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust_perfx.cli",
            "--help",
            "--run-id",
            "run_1",
            "--platform-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--platform-url" in result.stdout and "--influxdb-bucket" in result.stdout
    assert result.stderr.strip() == (
        f"perfx: cannot reach the platform at {url}: check --platform-url or PERFX_PLATFORM_URL; "
        "the options of run run_1 are not listed below"
    )


def test_perfx_help_lists_plugin_and_schema_options(platform_server: PlatformServer) -> None:
    run_id = platform_server.create_run(SCHEMA)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust_perfx.cli",
            "--help",
            "--run-id",
            run_id,
            "--platform-url",
            platform_server.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in (
        "--run-id",
        "--platform-url",
        "--influxdb-bucket",
        "--dry-run",
        "--model",
        "--gpu_model",
        "GPU model. One of A100, H100, RTX4090. Required. No default.",
        "documents per request.",
    ):
        assert flag in " ".join(result.stdout.split())  # argparse wraps the help text


def test_the_run_is_fetched_once_however_often_the_web_ui_rebuilds_the_parser(
    locust_runner: LocustRunner, fault_server: FaultServer, target: Target
) -> None:
    # The fault server stands in for the platform only to count every request it gets.
    fault_server.fallback = (
        200,
        {
            "id": "run_1",
            "status": "pending",
            "endpoint": {"name": "e", "argument_schema": SCHEMA},
            "environment": {"name": "x", "host": target.url},
        },
    )
    port = free_port()
    proc = locust_runner.start(
        "--run-id",
        "run_1",
        "--platform-url",
        fault_server.url,
        *GOOD_ARGS,
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(port),
    )
    proc.wait_for("Starting web interface")
    for _ in range(3):
        page = wait_until(lambda: _get(f"http://127.0.0.1:{port}/"), message="the web UI answers")
        assert "gpu_model" in page
    assert [(r.method, r.path) for r in fault_server.requests] == [("GET", "/api/perf/runs/run_1")]
    assert target.total == 0


def _get(url: str) -> str | None:
    try:
        return requests.get(url, timeout=5).text
    except requests.ConnectionError:
        return None
