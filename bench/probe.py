"""The master's event loop as a user sees it: a greenlet that sleeps 5 ms and records how late
it wakes, gen-2 garbage collections, and the CPU and longest slice of the plugin's greenlets.

Imported by ``bench/scale_locustfile.py`` when ``BENCH_PROBE_FILE`` is set (the bench sets it
for the master only); it starts on the master (or a local runner), never on a worker. Both
configurations, plain Locust and the plugin, run it, so its own cost (a trace call per
greenlet switch, one wake every 5 ms) is the same on both sides of the comparison. At exit it
writes JSON to ``BENCH_PROBE_FILE``: every wake's wall time and lateness, every gen-2
collection's wall time and duration, and the plugin greenlets' CPU and slices, each with its
wall time, so the bench can keep only its measurement window.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import time
from typing import Any

import gevent
import greenlet
from locust import events
from locust.runners import WorkerRunner

SLEEP = 0.005
"""Seconds the probe sleeps; lateness is how much longer than this the sleep took."""

wakes: list[tuple[float, float]] = []  # (time.time(), ms late)
collections: list[tuple[float, float]] = []  # gen-2 only: (time.time(), ms)
plugin_slices: list[tuple[float, float, float, str]] = []  # (time.time(), CPU ms, wall ms, who)
_gc_started = [0.0]
_switched_in = [0.0, 0.0]  # perf_counter, thread_time when a plugin greenlet was switched in
_current: list[Any] = [None, ""]  # the plugin greenlet running, its function


def _probe() -> None:
    while True:
        started = time.perf_counter()
        gevent.sleep(SLEEP)
        wakes.append((time.time(), (time.perf_counter() - started - SLEEP) * 1000))


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        collections.append((time.time(), (time.perf_counter() - _gc_started[0]) * 1000))


def _plugin_function(glet: Any) -> str:
    """The qualified name of the plugin function ``glet`` runs, or "" if it is not the plugin's."""
    run = getattr(glet, "_run", None)
    function = getattr(run, "__func__", run)
    module = getattr(function, "__module__", "") or ""
    return getattr(function, "__qualname__", "?") if module.startswith("locust_perfx") else ""


def _trace(event: str, args: tuple[Any, Any]) -> None:
    """Charge each slice a plugin greenlet ran (switched in to switched out) to the plugin."""
    if event not in ("switch", "throw"):
        return
    origin, target = args
    if _current[0] is not None and origin is _current[0]:
        plugin_slices.append(
            (
                time.time(),
                (time.thread_time() - _switched_in[1]) * 1000,
                (time.perf_counter() - _switched_in[0]) * 1000,
                _current[1],
            )
        )
        _current[0] = None
    who = _plugin_function(target)
    if who:
        _current[:] = target, who
        _switched_in[:] = time.perf_counter(), time.thread_time()


def _dump() -> None:
    with open(os.environ["BENCH_PROBE_FILE"], "w") as file:
        json.dump(
            {"wakes": wakes, "collections": collections, "plugin_slices": plugin_slices}, file
        )


@events.init.add_listener
def _start(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    gc.callbacks.append(_on_gc)
    greenlet.settrace(_trace)
    gevent.spawn(_probe)
    atexit.register(_dump)
