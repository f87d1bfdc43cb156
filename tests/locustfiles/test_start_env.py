"""Logs, at each test_start, the PERFX_* values a locustfile's own listener sees."""

import logging
import os

from locust import HttpUser, constant, events, task


@events.test_start.add_listener
def log_the_run(**kwargs: object) -> None:
    seen = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PERFX_"))
    logging.info("test_start sees %s.", seen)


class Visitor(HttpUser):
    wait_time = constant(0.1)

    @task
    def hit(self) -> None:
        self.client.get("/")
