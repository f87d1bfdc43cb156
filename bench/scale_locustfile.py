"""The scale load: FastHttpUsers with no wait, cycling through ``BENCH_NAMES`` request names.

Each user starts at a random name and takes the next one on every request, so every name is
requested every export interval (the worst case for the master: all entries change).
``BENCH_PROBE_FILE`` (set for the master only) loads the loop-lateness probe.
"""

import os
import random

from locust import FastHttpUser, constant, task

if os.environ.get("BENCH_PROBE_FILE"):
    import probe  # noqa: F401  (the master's loop lateness; see probe.py)

NAMES = int(os.environ.get("BENCH_NAMES", "10000"))


class Api(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.item = random.randrange(NAMES)

    @task
    def item(self) -> None:
        self.item = (self.item + 1) % NAMES
        self.client.get(f"/api/item/{self.item}")
