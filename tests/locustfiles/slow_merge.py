"""A plain locustfile whose master may hold its own event loop at each worker report it merges.

With ``SLOW_MERGE_SECONDS`` set, the master's ``worker_report`` listener blocks the whole
process for that long, without yielding to gevent: the stand-in for Locust's own merge of a
report at many thousands of request names. Unset, it is an ordinary locustfile.
"""

import os

import gevent.monkey
from locust import HttpUser, constant, events, task

HOLD = float(os.environ.get("SLOW_MERGE_SECONDS", "0"))
blocking_sleep = gevent.monkey.get_original("time", "sleep")


class Visitor(HttpUser):
    wait_time = constant(0.1)

    @task
    def visit(self) -> None:
        self.client.get("/ok")


@events.worker_report.add_listener
def merge_slowly(**_: object) -> None:
    if HOLD:
        blocking_sleep(HOLD)
