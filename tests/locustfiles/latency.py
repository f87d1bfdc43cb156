"""As many requests to /fast as to /slow, back to back: the target's latency per path is
the test's to set, and each name gets enough requests per interval for its p95."""

from locust import HttpUser, constant, task


class Visitor(HttpUser):
    wait_time = constant(0)

    @task
    def fast(self) -> None:
        self.client.get("/fast")

    @task
    def slow(self) -> None:
        self.client.get("/slow")
