"""Helpers shared by the benchmark parts: versions, ports, processes, medians."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PEER_VENV = Path(os.environ.get("PERFX_BENCH_PEER_VENV", ROOT / ".venv-bench-peer"))
BASELINE_COMMIT = "e587022"
"""The last commit whose master summed every worker report in Python: measured beside."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)  # polling another process: nothing to wait on
    raise RuntimeError(f"timed out after {timeout} s waiting until {what}")


def tool_version(command: Sequence[str]) -> str:
    if not shutil.which(command[0]):
        return "not installed"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if done.returncode == 0 and lines else "?"


_PEER_VERSION = "from importlib.metadata import version; print(version('locust-influxdb-listener'))"


def versions() -> dict[str, str]:
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "locust": version("locust"),
        "gevent": version("gevent"),
        "influxdb-client": version("influxdb-client"),
        "locust-perfx": version("locust-perfx"),
        "nginx": tool_version(["dpkg-query", "-W", "-f", "${Version}", "nginx"]),
        "victoria-metrics": tool_version(
            ["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"]
        ),
        "influxdb (1.x, peer)": tool_version(["dpkg-query", "-W", "-f", "${Version}", "influxdb"]),
        "locust-influxdb-listener": tool_version(
            [str(PEER_VENV / "bin" / "python"), "-c", _PEER_VERSION]
        ),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], percent: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * percent), len(ordered) - 1)]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
