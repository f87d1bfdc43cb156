"""A locustfile whose behaviour a test picks with BEHAVIOUR (ok, fail, raise_in_task,
raise_in_test_start, exit_code, plugin_crash, summary_crash, export_close_crash)."""

import os

from locust import HttpUser, constant, events, task

BEHAVIOUR = os.environ.get("BEHAVIOUR", "ok")


class Visitor(HttpUser):
    wait_time = constant(0.05)

    @task(3)
    def ok(self) -> None:
        self.client.get("/ok")

    @task
    def other(self) -> None:
        if BEHAVIOUR == "fail":
            self.client.get("/fail")
        elif BEHAVIOUR == "raise_in_task":
            raise ValueError("bad user code")
        else:
            self.client.get("/other")


if BEHAVIOUR == "raise_in_test_start":

    @events.test_start.add_listener
    def broken(**kwargs: object) -> None:
        raise RuntimeError("broken test_start listener")


if BEHAVIOUR == "exit_code":

    @events.quitting.add_listener
    def strict(environment: object, **kwargs: object) -> None:
        environment.process_exit_code = 3  # type: ignore[attr-defined]


if BEHAVIOUR == "plugin_crash":
    # Fault injection: no real input makes the plugin crash, so the test breaks it on purpose.
    import locust_perfx.watch

    def broken_progress_body(self: object) -> dict[str, object]:
        raise RuntimeError("injected fault")

    locust_perfx.watch.RunWatch.progress_body = broken_progress_body  # type: ignore[method-assign]


if BEHAVIOUR in ("summary_crash", "export_close_crash"):
    # Fault injection: a bug while ending the run must not keep the verdict from the platform.
    import locust_perfx.exporter
    import locust_perfx.watch

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected fault")

    owner, name = (
        (locust_perfx.watch.RunWatch, "summary")
        if BEHAVIOUR == "summary_crash"
        else (locust_perfx.exporter.MetricsExporter, "close")
    )
    # A rename must fail here, not leave the fault uninjected and the test proving nothing.
    assert callable(getattr(owner, name)), f"{owner.__name__}.{name} is gone"
    setattr(owner, name, broken)
