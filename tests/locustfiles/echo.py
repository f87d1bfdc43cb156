"""Records, once per process, what a user sees of the run: options, PERFX_* variables, host,
and the PERFX_* variables a ``test_start`` listener of the locustfile's own sees."""

import json
import os

from locust import HttpUser, constant, events, task

NAMES = ("run_id", "model", "batch_size", "gpu_model", "warm_up")
AT_TEST_START: dict[str, str] = {}


def perfx_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("PERFX_")}


@events.test_start.add_listener
def remember_the_environment(**kwargs: object) -> None:
    AT_TEST_START.update(perfx_environ())


class Echo(HttpUser):
    wait_time = constant(0.1)

    def on_start(self) -> None:
        path = os.path.join(os.environ["ECHO_DIR"], f"{os.getpid()}.json")
        if os.path.exists(path):
            return
        options = self.environment.parsed_options
        record = {
            "options": {name: getattr(options, name, None) for name in NAMES},
            "env": perfx_environ(),
            "env_at_test_start": AT_TEST_START,
            "host": self.host,
        }
        with open(path + ".tmp", "w") as file:
            json.dump(record, file)
        os.replace(path + ".tmp", path)

    @task
    def hit(self) -> None:
        self.client.get("/echo")
