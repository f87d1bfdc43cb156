"""The examples run as their docstrings say: real Locust processes, the reference platform,
and the example's own target service."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.locust import EXAMPLES, LocustRunner, headless
from tests.fixtures.platform import PlatformServer
from tests.fixtures.waiting import wait_until

START_TIMEOUT = 15.0
LISTENING = re.compile(r"listening on (\S+)")

StartServer = Callable[[str], str]


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[StartServer]:
    """``example_server("target.py")`` starts that example server on a free port and returns
    its URL; every server started is stopped afterwards."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(script: str) -> str:
        log = tmp_path / f"{script}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, str(EXAMPLES / script), "--port", "0"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)

        def listening() -> re.Match[str] | None:
            if process.poll() is not None:
                raise AssertionError(f"{script} exited:\n{log.read_text()}")
            return LISTENING.search(log.read_text())

        return wait_until(listening, START_TIMEOUT, message=f"{script} to listen")[1]

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return loaded


def by_name(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["method"], r["name"]): r for r in run["summary"]["requests"]}


def test_rerank_sends_the_runs_model_batch_and_gpu_pool(
    locust_runner: LocustRunner, platform_server: PlatformServer, example_server: StartServer
) -> None:
    run_id = platform_server.create_run(schema("schema.json"), example_server("target.py"))
    options = "-u 2 -r 2 -t 2s --model bge-reranker --batch_size 8 --gpu_model H100"

    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, options), locustfile=EXAMPLES / "rerank.py"
    )

    assert code == 0, output
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed"
    assert run["arguments"] == {
        "model": "bge-reranker",
        "batch_size": 8,
        "gpu_model": "H100",
        "warm_up": False,
    }
    # A response scoring another batch, model or pool than asked would be a failure.
    assert list(by_name(run)) == [("POST", "/rerank")]
    assert run["summary"]["total"]["requests"] > 0
    assert run["summary"]["total"]["failures"] == 0


def test_a_tcp_client_counts_through_the_request_event(
    locust_runner: LocustRunner, platform_server: PlatformServer, example_server: StartServer
) -> None:
    host = example_server("echo_server.py")
    run_id = platform_server.create_run(schema("tcp_echo_schema.json"), host)

    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 2 -r 2 -t 2s --payload_bytes 100"),
        locustfile=EXAMPLES / "tcp_echo.py",
    )

    assert code == 0, output
    run = platform_server.get_run(run_id)
    assert (run["status"], run["host"]) == ("completed", host)
    echo = by_name(run)[("TCP", "echo")]
    assert echo["requests"] > 0 and echo["failures"] == 0
    assert echo["bytes"] == echo["requests"] * 101  # each reply: the payload and a newline
    assert 0 < echo["avg_ms"] < 1000


@pytest.mark.slow
def test_a_shape_takes_its_stages_from_the_runs_arguments_on_the_master(
    locust_runner: LocustRunner, platform_server: PlatformServer, example_server: StartServer
) -> None:
    run_id = platform_server.create_run(schema("stages_schema.json"), example_server("target.py"))
    master, _ = locust_runner.start_distributed(
        *headless(run_id, platform_server.url, "--stage_users 3,1 --stage_seconds 1,1"),
        workers=1,
        locustfile=EXAMPLES / "stages.py",
    )

    assert master.wait() == 0, master.output
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed"
    assert run["summary"]["users_peak"] == 3
    assert run["summary"]["duration_s"] >= 2  # both stages ran, then the shape ended the test
    assert run["summary"]["total"]["requests"] > 0
