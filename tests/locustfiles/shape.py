"""A step load of ten minutes: Locust has no SIGTERM handler of its own until it ends."""

from locust import HttpUser, LoadTestShape, constant, task


class Visitor(HttpUser):
    wait_time = constant(0.05)

    @task
    def ok(self) -> None:
        self.client.get("/ok")


class TenMinuteSteps(LoadTestShape):
    time_limit = 600

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        if run_time > self.time_limit:
            return None
        return (1 + int(run_time // 60), 10.0)
