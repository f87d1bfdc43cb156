"""An example locustfile for the deploy/ recipes: replace it with your own; it stays a plain
locustfile. The run's arguments are in ``self.environment.parsed_options`` and ``PERFX_*``
variables on every worker (read them in a task or ``on_start``, not at import time)."""

from locust import HttpUser, constant, task


class Visitor(HttpUser):
    wait_time = constant(0.1)

    @task
    def visit(self) -> None:
        self.client.get("/")
