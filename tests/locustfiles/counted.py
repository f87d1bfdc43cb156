"""A fixed load: each user requests /fast then /slow ``REQUESTS`` times, then stops (the
test idles to its ``-t``). However the users are spread, in one process or over a master's
workers, every name gets users x ``REQUESTS`` requests."""

from locust import HttpUser, constant, task
from locust.exception import StopUser

REQUESTS = 100


class Counted(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.left = REQUESTS

    @task
    def both(self) -> None:
        if not self.left:
            raise StopUser()
        self.left -= 1
        self.client.get("/fast")
        self.client.get("/slow")
