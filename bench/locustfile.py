"""The benchmark load: one FastHttpUser with no wait, against a local nginx."""

import os

from locust import FastHttpUser, constant, task

if os.environ.get("BENCH_ACCOUNT_FILE"):
    import account  # noqa: F401  (charges CPU to the plugin's greenlets; see account.py)


class Fast(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self) -> None:
        self.client.get("/")
