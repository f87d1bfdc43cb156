"""The scale load: FastHttpUsers cycling through ``BENCH_NAMES`` request names.

Users start at evenly spaced names and each takes the next one on every request, so with
enough requests per interval every name is requested every export interval (the worst case
for the master: all entries change). ``BENCH_RATE`` (requests per second of all users
together, ``BENCH_USERS`` of them) paces them; 0: no wait, as fast as the machine goes.
``BENCH_PROBE_FILE`` (set for the master only) loads the loop-lateness probe.
"""

import itertools
import os

from locust import FastHttpUser, constant, constant_throughput, task

if os.environ.get("BENCH_PROBE_FILE"):
    import probe  # noqa: F401  (the master's loop lateness; see probe.py)

NAMES = int(os.environ.get("BENCH_NAMES", "10000"))
USERS = int(os.environ.get("BENCH_USERS", "20"))
RATE = float(os.environ.get("BENCH_RATE", "0"))
_started = itertools.count()


class Api(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS) if RATE else constant(0)

    def on_start(self) -> None:
        # The bench's two workers interleave: worker 0's users take the even slots.
        slot = 2 * next(_started) + getattr(self.environment.runner, "worker_index", 0)
        self.item = slot * NAMES // USERS % NAMES

    @task
    def item(self) -> None:
        self.item = (self.item + 1) % NAMES
        self.client.get(f"/api/item/{self.item}")
