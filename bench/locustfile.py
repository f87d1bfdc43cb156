"""The benchmark load: one FastHttpUser with no wait, against a local nginx."""

from locust import FastHttpUser, constant, task


class Fast(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self) -> None:
        self.client.get("/")
