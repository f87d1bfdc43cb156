"""In-process CPU accounting: how much of a Locust process's CPU the plugin's own code takes.

Imported by ``bench/locustfile.py`` when ``BENCH_ACCOUNT_FILE`` is set. Every greenlet switch
charges the CPU time since the previous switch to the greenlet that ran; greenlets whose
function lives in ``locust_perfx`` (the export writer, the progress ticker) count as the
plugin's. Listeners that run once per test (start, final status) are left out: they cost
no load. The tracing slows every switch, so these runs are never the ones timed side by side.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from typing import Any

import greenlet

_totals = {"perfx_s": 0.0, "all_s": 0.0}
_last = time.thread_time()


def _is_perfx(glet: Any) -> bool:
    run = getattr(glet, "_run", None)
    module = getattr(getattr(run, "__func__", run), "__module__", "") or ""
    return module.startswith("locust_perfx")


def _trace(event: str, args: tuple[Any, Any]) -> None:
    global _last
    if event not in ("switch", "throw"):
        return
    now = time.thread_time()
    spent, _last = now - _last, now
    _totals["all_s"] += spent
    if _is_perfx(args[0]):
        _totals["perfx_s"] += spent


def _dump() -> None:
    with open(os.environ["BENCH_ACCOUNT_FILE"], "w") as file:
        json.dump(_totals, file)


greenlet.settrace(_trace)
atexit.register(_dump)
