"""The baseline comparison's error rates, from real Locust runs: how often identical runs are
flagged (false positives), and how often a +20% p95 on one name is (detection).

    python -m bench.baseline [--pairs 20] [--shifted 10] [--seconds 10] [--users 8]

Each run is a real ``locust`` process with the plugin, synced with a real reference platform
(``perfx-platform serve``, SQLite), loading a real HTTP target whose latency per path is set
here: ``/fast`` 100 ms, ``/slow`` 200 ms (``tests/locustfiles/latency.py``: as many of each).
A first run warms the target, the platform and the machine's caches and is left out. The
runs then go A0, A1, B1, A2, B2, ... (B: ``/slow`` at 240 ms), so a drift of the machine
hits both kinds alike. A/A: each A against the A before it, with the default limits (p95 +10%,
rps -5%, failure ratio +0.01) and confidence (95%); a false positive is any regression on
any name or metric. Detection: each B against the A just before it; detected when
``GET /slow`` p95 is a regression. Prints the table; asserts nothing.

Live judging is replayed on the same pairs: ``p95_ms < baseline + 10% for each name,
abort``, judged as a run judges it at each interval (:meth:`Judge.check_baseline`, from the
5th on), on the run's series cut to that interval against the baseline's same first
seconds; an abort is the first interval that finds a regression. A summary has no p95 at
an earlier moment, so the run's whole-run p95 there is its final one (the series, which
the significance test uses, are exact).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import ROOT, free_port, log, versions, wait_for
from locust_perfx.compare import MIN_INTERVALS, TOTAL, Comparison, Limit, compare, so_far
from tests.fixtures.locust import Target

LOCUSTFILE = ROOT / "tests" / "locustfiles" / "latency.py"
FAST, SLOW, SHIFT = 0.1, 0.2, 1.2


class Platform:
    """``perfx-platform serve`` on a fresh SQLite file, stopped on exit."""

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (tmp / "platform.log").open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "locust_perfx.reference.cli", "serve"),
                *("--db", str(tmp / "platform.sqlite3"), "--port", str(port)),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self._up(), 15, "the platform answers")

    def _up(self) -> bool:
        try:
            return requests.get(self.url + "/api/perf/runs", timeout=1).ok
        except requests.RequestException:
            return False

    def run(self, target: str) -> str:
        body = {
            "endpoint": {"name": "bench", "argument_schema": {"parameters": []}},
            "environment": {"name": "local", "host": target},
        }
        return str(requests.post(self.url + "/api/perf/runs", json=body, timeout=5).json()["id"])

    def summary(self, run_id: str) -> dict[str, Any]:
        run = requests.get(f"{self.url}/api/perf/runs/{run_id}", timeout=5).json()
        if run["status"] != "completed":
            raise RuntimeError(f"run {run_id} is {run['status']}: {run.get('reason')}")
        summary: dict[str, Any] = run["summary"]
        return summary

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def one_run(platform: Platform, target: Target, seconds: int, users: int, tmp: Path) -> Any:
    run_id = platform.run(target.url)
    command = [sys.executable, "-m", "locust", "-f", f"{ROOT / 'perfx_plugin.py'},{LOCUSTFILE}"]
    command += ["--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s"]
    command += ["--run-id", run_id, "--platform-url", platform.url, "--influxdb-interval", "1"]
    command += ["--stop-timeout", "5"]
    with (tmp / f"{run_id}.log").open("wb") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=120)
    return platform.summary(run_id)


def flagged(table: Comparison) -> list[str]:
    return [f"{r.name} {r.metric}" for r in table.regressions]


LIVE = "p95_ms < baseline + 10% for each name, abort"
_LIVE_LIMIT = Limit("p95_ms", 0.10)


def live_abort(base: dict[str, Any], run: dict[str, Any]) -> int | None:
    """The interval at which live judging of :data:`LIVE` would have stopped ``run``; None:
    never. Replayed from the summaries with the comparison ``Judge.check_baseline`` makes
    (the run so far against ``so_far`` of the baseline; see the module's docstring);
    ``locust_perfx.criteria`` is not imported: importing Locust here, after ``requests``,
    would monkey-patch ssl too late."""
    for k in range(MIN_INTERVALS, len(run["total"]["series"]["requests"]) + 1):
        seconds = float(k)  # 1 s intervals
        table = compare(so_far(base, seconds), so_far(run, seconds), limits=[_LIVE_LIMIT])
        if any(row.name != TOTAL for row in table.regressions):  # "for each name"
            return k
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20, help="A/A comparisons (20)")
    parser.add_argument("--shifted", type=int, default=10, help="+20%% comparisons (10)")
    parser.add_argument("--seconds", type=int, default=10, help="run length (10)")
    parser.add_argument("--users", type=int, default=8, help="users (8)")
    options = parser.parse_args()
    started = time.monotonic()
    target = Target()
    target.delays["/fast"] = FAST
    with tempfile.TemporaryDirectory(prefix="perfx-bench-baseline-") as name:
        tmp = Path(name)
        platform = Platform(tmp)
        try:
            target.slow_seconds = SLOW
            one_run(platform, target, options.seconds, options.users, tmp)  # warm-up, left out
            a = [one_run(platform, target, options.seconds, options.users, tmp)]
            false_positives, detected = [], []
            pairs: dict[str, list[tuple[Any, Any]]] = {"A/A": [], "+20%": []}
            for i in range(1, options.pairs + 1):
                target.slow_seconds = SLOW
                a.append(one_run(platform, target, options.seconds, options.users, tmp))
                aa = flagged(compare(a[i - 1], a[i]))
                false_positives.append(aa)
                pairs["A/A"].append((a[i - 1], a[i]))
                log(f"A/A {i}: {'flagged ' + ', '.join(aa) if aa else 'nothing flagged'}")
                if i <= options.shifted:
                    target.slow_seconds = SLOW * SHIFT
                    b = one_run(platform, target, options.seconds, options.users, tmp)
                    ab = flagged(compare(a[i], b))
                    detected.append("GET /slow p95_ms" in ab)
                    pairs["+20%"].append((a[i], b))
                    log(f"+20% {i}: {'flagged ' + ', '.join(ab) if ab else 'nothing flagged'}")
        finally:
            platform.stop()
            target.close()
    report(options, false_positives, detected, time.monotonic() - started, a[-1])
    report_live({kind: [live_abort(*pair) for pair in done] for kind, done in pairs.items()})


def report(
    options: argparse.Namespace,
    false_positives: list[list[str]],
    detected: list[bool],
    took: float,
    last: dict[str, Any],
) -> None:
    info = versions()
    fp = sum(1 for f in false_positives if f)
    hits = sum(detected)
    slow = next(r for r in last["requests"] if r["name"] == "/slow")
    intervals = len(slow["series"]["requests"])
    per_interval = slow["requests"] / max(intervals, 1)
    print(f"locust-perfx baseline comparison benchmark, {time.strftime('%Y-%m-%d')}")
    print(
        f"{info['cores']} cores ({info['cpu']}), Python {info['python']}, "
        f"Locust {info['locust']}; machine shared with other work: load average "
        f"{Path('/proc/loadavg').read_text().split()[0]} at the end"
    )
    print(
        f"runs: {options.seconds} s, {options.users} users, 1 s intervals ({intervals} whole "
        f"intervals, ~{per_interval:.0f} /slow requests each), /fast {FAST * 1000:.0f} ms, "
        f"/slow {SLOW * 1000:.0f} ms; {took / 60:.1f} min in all"
    )
    print("defaults: p95 +10%, rps -5%, failure ratio +0.01, 95% confidence (two-sided MWU)")
    print()
    print(
        f"false positives (A/A, any name or metric flagged): {fp} of {len(false_positives)}"
        f" = {fp / len(false_positives):.0%}   goal <= 1 in 20: "
        f"{'met' if fp / len(false_positives) <= 0.05 else 'NOT met'}"
    )
    for i, names in enumerate(false_positives, 1):
        if names:
            print(f"  A/A {i}: {', '.join(names)}")
    if detected:
        print(
            f"detection (/slow +20%, GET /slow p95 flagged): {hits} of {len(detected)} = "
            f"{hits / len(detected):.0%}   goal >= 90%: "
            f"{'met' if hits / len(detected) >= 0.9 else 'NOT met'}"
        )


def report_live(live: dict[str, list[int | None]]) -> None:
    print(f"live judging, replayed ({LIVE}; judged from interval {MIN_INTERVALS} on):")
    for kind, stops in live.items():
        if not stops:
            continue
        at = sorted(k for k in stops if k is not None)
        when = f", at interval {', '.join(map(str, at))}" if at else ""
        print(f"  {kind}: aborted {len(at)} of {len(stops)} = {len(at) / len(stops):.0%}{when}")


if __name__ == "__main__":
    main()
