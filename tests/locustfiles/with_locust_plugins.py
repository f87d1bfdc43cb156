"""A locustfile using locust-plugins' features, the one FEATURE picks: transactions (its
TransactionManager), ips (constant_total_ips), reschedule (RescheduleTaskOnFail on failing
requests), distributor (a Distributor handing each request an id from the master)."""

import os
from collections.abc import Iterator
from typing import Any

from locust import HttpUser, constant, events, task
from locust.runners import WorkerRunner
from locust_plugins import constant_total_ips
from locust_plugins.distributor import Distributor
from locust_plugins.listeners import RescheduleTaskOnFail
from locust_plugins.transaction_manager import TransactionManager

FEATURE = os.environ.get("FEATURE", "")
distributor: Iterator[int] | None = None


@events.init.add_listener
def on_init(environment: Any, **kwargs: Any) -> None:
    global distributor
    if FEATURE == "reschedule":
        RescheduleTaskOnFail(environment)
    if FEATURE == "distributor":
        ids = None if isinstance(environment.runner, WorkerRunner) else iter(range(10**9))
        distributor = Distributor(environment, ids)


class Visitor(HttpUser):
    wait_time = constant_total_ips(5) if FEATURE == "ips" else constant(0.05)

    def on_start(self) -> None:
        self.transactions = TransactionManager()

    @task
    def visit(self) -> None:
        if FEATURE == "transactions":
            self.transactions.start_transaction("visit")
            self.client.get("/ok")
            self.transactions.end_transaction("visit")
        elif FEATURE == "reschedule":
            self.client.get("/fail")
            self.client.get("/never")  # rescheduled before this: the target never sees it
        elif FEATURE == "distributor":
            assert distributor is not None
            self.client.get(f"/ok?id={next(distributor)}", name="/ok")
        else:
            self.client.get("/ok")
