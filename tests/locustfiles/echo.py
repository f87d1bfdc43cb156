"""Records, once per process, what a user sees of the run: options, PERFX_* variables, host."""

import json
import os

from locust import HttpUser, constant, task

NAMES = ("run_id", "model", "batch_size", "gpu_model", "warm_up")


class Echo(HttpUser):
    wait_time = constant(0.1)

    def on_start(self) -> None:
        path = os.path.join(os.environ["ECHO_DIR"], f"{os.getpid()}.json")
        if os.path.exists(path):
            return
        options = self.environment.parsed_options
        record = {
            "options": {name: getattr(options, name, None) for name in NAMES},
            "env": {k: v for k, v in os.environ.items() if k.startswith("PERFX_")},
            "host": self.host,
        }
        with open(path + ".tmp", "w") as file:
            json.dump(record, file)
        os.replace(path + ".tmp", path)

    @task
    def hit(self) -> None:
        self.client.get("/echo")
