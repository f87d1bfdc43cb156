"""A standard locustfile: nothing in it knows about the platform.

The run's arguments arrive as ``environment.parsed_options.<name>`` and ``PERFX_<NAME>``.
"""

import os

from locust import HttpUser, constant_throughput, task


class Shopper(HttpUser):
    wait_time = constant_throughput(10)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.batch_size = getattr(options, "batch_size", None) or 1
        self.model = os.environ.get("PERFX_MODEL", "none")

    @task
    def search(self) -> None:
        self.client.get(f"/search?model={self.model}&batch={self.batch_size}", name="/search")
