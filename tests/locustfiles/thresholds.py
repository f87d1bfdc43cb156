"""Requests to /fast and /slow (the target's latency is the test's to set), and to /fail
when FAIL is set."""

import os

from locust import HttpUser, constant, task


class Visitor(HttpUser):
    wait_time = constant(0.05)

    @task(3)
    def fast(self) -> None:
        self.client.get("/fast")

    @task
    def slow(self) -> None:
        self.client.get("/slow")

    @task
    def fail(self) -> None:
        if os.environ.get("FAIL"):
            self.client.get("/fail")
