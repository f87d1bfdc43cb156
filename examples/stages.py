"""A load shape whose stages are the run's arguments: the platform decides the steps.

::

    python examples/target.py --port 8081 &
    perfx-platform new-run --schema examples/stages_schema.json --host http://127.0.0.1:8081
    perfx -f examples/stages.py --run-id RUN_ID --stage_users 10,50,10 \\
        --stage_seconds 60,300,60 --headless

The test ends after the last stage (no ``-t`` needed). A shape runs where the run is owned,
in the local process or on the master (workers only spawn what the master tells them), and
that is where the plugin puts the arguments: ``environment.parsed_options`` there.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable
from typing import TypeVar

from locust import HttpUser, LoadTestShape, constant_throughput, task

T = TypeVar("T")


class Searcher(HttpUser):
    wait_time = constant_throughput(10)

    @task
    def search(self) -> None:
        self.client.get("/search")


def listed(options: Namespace, name: str, kind: Callable[[str], T]) -> list[T]:
    """The argument ``name`` (``"10,50,10"``) as a list; a bad one ends the test, named."""
    text = getattr(options, name)
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--{name}: expected a comma-separated list, got {text!r}") from None


class StagesFromArguments(LoadTestShape):
    """Stage i runs ``stage_users[i]`` users for ``stage_seconds[i]`` seconds."""

    def tick(self) -> tuple[int, float] | None:
        # Read at every tick, not once: the web UI's start form may change the arguments
        # between two tests of the same Locust process.
        options = self.runner.environment.parsed_options
        users = listed(options, "stage_users", int)
        seconds = listed(options, "stage_seconds", float)
        if len(users) != len(seconds):
            raise ValueError("--stage_users and --stage_seconds must list as many stages")
        elapsed = self.get_run_time()
        ends = 0.0
        for count, duration in zip(users, seconds, strict=True):
            ends += duration
            if elapsed < ends:
                return count, max(count, 1)  # each stage's users within a second
        return None
