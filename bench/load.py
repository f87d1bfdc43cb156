"""Parts 1 and 2: what the plugin, and a per-request peer exporter, cost the generated load.

The same locustfile (``FastHttpUser``, no wait) against nginx on 127.0.0.1, in interleaved
rounds of the same duration: plain Locust; Locust with the plugin fully on (``perfx_plugin.py``
synced with ``perfx-platform serve``, metrics to VictoriaMetrics every second); Locust with
``locust-influxdb-listener`` writing every request to InfluxDB 1.x. Every server runs for the
whole part, so each configuration shares the machine with the same idle neighbours.

Requests are counted by nginx (``stub_status``) and CPU read from ``/proc`` (psutil) for the
Locust processes and their children (the plugin's export process), both over the same window
after the warm-up. Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.common import BENCH, PEER_VENV, ROOT, free_port, log, wait_for

PLUGIN = ROOT / "perfx_plugin.py"
LOCUSTFILE = BENCH / "locustfile.py"
PEER_LOCUSTFILE = BENCH / "peer_locustfile.py"
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location = /nginx_status {{ stub_status; }}
        location / {{ default_type text/plain; return 200 "ok"; }}
    }}
}}
"""
INFLUXDB_CONF = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{tmp}/influxdb/meta"
[data]
  dir = "{tmp}/influxdb/data"
  wal-dir = "{tmp}/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
"""


class Servers:
    """nginx, the reference platform, VictoriaMetrics and InfluxDB 1.x, all on 127.0.0.1."""

    def __init__(self, tmp: Path, peer: bool) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self.nginx_port = free_port()
        self.platform_url = ""
        self.vm_url = ""
        self.influxdb_port = free_port() if peer else 0

    def start(self) -> None:
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.nginx_port))
        self._spawn(["nginx", "-c", str(conf), "-p", str(self.tmp)], "nginx")
        wait_for(lambda: self._status_or_none(), 10, "nginx answers")
        platform_port = free_port()
        self._spawn(
            [
                *(sys.executable, "-m", "locust_perfx.reference.cli", "serve"),
                *("--db", str(self.tmp / "platform.sqlite3"), "--port", str(platform_port)),
            ],
            "platform",
        )
        self.platform_url = f"http://127.0.0.1:{platform_port}"
        wait_for(lambda: _get(self.platform_url + "/api/perf/runs") is not None, 15, "platform")
        vm_port = free_port()
        self._spawn(
            [
                *("/usr/bin/victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}"),
                *(f"-storageDataPath={self.tmp / 'vm'}", "-retentionPeriod=100y"),
            ],
            "victoria-metrics",
        )
        self.vm_url = f"http://127.0.0.1:{vm_port}"
        wait_for(lambda: _get(self.vm_url + "/health") == "OK", 15, "VictoriaMetrics")
        if self.influxdb_port:
            conf = self.tmp / "influxdb.conf"
            conf.write_text(
                INFLUXDB_CONF.format(tmp=self.tmp, port=self.influxdb_port, rpc_port=free_port())
            )
            self._spawn(["influxd", "-config", str(conf)], "influxd")
            url = f"http://127.0.0.1:{self.influxdb_port}/ping"
            wait_for(lambda: _get(url) is not None, 20, "InfluxDB 1.x")

    def _spawn(self, args: list[str], name: str) -> None:
        with (self.tmp / f"{name}.log").open("ab") as out:
            self.processes.append(
                subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
            )
        self.names.append(name)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each server, its children (nginx's workers) included."""
        return {
            name: _cpu([process])[0]
            for name, process in zip(self.names, self.processes, strict=True)
        }

    def requests_served(self) -> int:
        """nginx's request counter; it counts this status request too."""
        status = _get(f"http://127.0.0.1:{self.nginx_port}/nginx_status")
        assert status is not None, "nginx stopped"
        return int(status.splitlines()[2].split()[2])

    def _status_or_none(self) -> str | None:
        return _get(f"http://127.0.0.1:{self.nginx_port}/nginx_status")

    def create_run(self) -> str:
        body = {
            "endpoint": {"name": "bench", "argument_schema": {"parameters": []}},
            "environment": {"name": "bench", "host": f"http://127.0.0.1:{self.nginx_port}"},
        }
        request = urllib.request.Request(
            self.platform_url + "/api/perf/runs",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.load(response)["id"])

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


@dataclass
class Run:
    config: str
    mode: str
    round: int
    rps: float
    cpu_us_per_request: float
    requests: int
    exit_codes: list[int]
    plugin_cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    export_process_cpu_s: float = 0.0
    window_cpu_s: float = 0.0
    locust_cpu_s: list[float] = field(default_factory=list)
    """Each Locust process's CPU seconds in the window, its children included."""
    servers_cpu_s: dict[str, float] = field(default_factory=dict)
    locust_rss_mib: float = 0.0
    """The Locust process's (the master's) own RSS at the end of the window, its children
    (the export process) apart."""
    export_rss_mib: float = 0.0
    """Each server's CPU seconds in the window (nginx, platform, TSDBs): they share the
    machine, so what the plugin makes them do is load not generated here."""


def run_once(
    servers: Servers,
    config: str,
    mode: str,
    round_: int,
    users: int,
    warmup: float,
    window: float,
    account: bool = False,
) -> Run:
    """One headless test; measure the window [warm-up, warm-up + window] after load starts.

    With ``account``, each process also reports the CPU its plugin greenlets took.
    """
    python = str(PEER_VENV / "bin" / "python") if config == "peer" else sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFX_", "LOCUST_"))}
    env["BENCH_INFLUXDB_PORT"] = str(servers.influxdb_port)
    host = f"http://127.0.0.1:{servers.nginx_port}"
    run_time = f"{int(warmup + window + 4)}s"
    common = ["--headless", "-u", str(users), "-r", str(users), "-t", run_time, "--only-summary"]
    if config in ("plain", "plain again"):
        files, extra = str(LOCUSTFILE), ["--host", host]
    elif config == "peer":
        files, extra = str(PEER_LOCUSTFILE), ["--host", host]
    else:
        run_id = servers.create_run()
        files = f"{PLUGIN},{LOCUSTFILE}"
        extra = ["--run-id", run_id, "--platform-url", servers.platform_url]
        extra += ["--influxdb-url", servers.vm_url, "--influxdb-token", "bench"]
        extra += ["--influxdb-org", "perf", "--influxdb-bucket", "bench"]
        extra += ["--influxdb-interval", "1"]
    commands: list[list[str]] = []
    if mode == "local":
        commands.append([python, "-m", "locust", "-f", files, *common, *extra])
    else:
        port = free_port()
        commands.append(
            [
                *(python, "-m", "locust", "-f", files, *common, *extra, "--master"),
                *("--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)),
                *("--expect-workers", "2"),
            ]
        )
        worker = [python, "-m", "locust", "-f", files, "--worker", "--master-host", "127.0.0.1"]
        commands += [[*worker, "--master-port", str(port)] for _ in range(2)]
    logs = servers.tmp / f"{config}-{mode}-{round_}"
    logs.mkdir()
    procs = []
    for i, command in enumerate(commands):
        if account:
            env = {**env, "BENCH_ACCOUNT_FILE": str(logs / f"account-{i}.json")}
        with (logs / f"locust-{i}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=BENCH, env=env)
            )
    try:
        before = servers.requests_served()
        wait_for(lambda: servers.requests_served() > before + 10, 60, f"{config} load starts")
        time.sleep(warmup)
        t1, r1, (c1, e1) = time.monotonic(), servers.requests_served(), _cpu(procs)
        s1 = servers.cpu()
        l1 = [_cpu([proc])[0] for proc in procs]
        time.sleep(window)
        t2, r2, (c2, e2) = time.monotonic(), servers.requests_served(), _cpu(procs)
        s2 = servers.cpu()
        l2 = [_cpu([proc])[0] for proc in procs]
        locust_rss, export_rss = _rss(procs[0])
        codes = [proc.wait(warmup + window + 60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    served = r2 - r1 - 1  # the second status request counted itself
    if any(codes):
        output = "".join(p.read_text(errors="replace")[-2000:] for p in logs.glob("*.log"))
        raise RuntimeError(f"{config} {mode} exited with {codes}:\n{output}")
    shares = [json.loads(p.read_text()) for p in sorted(logs.glob("account-*.json"))]
    return Run(
        config,
        mode,
        round_,
        served / (t2 - t1),
        (c2 - c1) / served * 1e6,
        served,
        codes,
        plugin_cpu_s=sum(s["perfx_s"] for s in shares),
        process_cpu_s=sum(s["all_s"] for s in shares),
        export_process_cpu_s=e2 - e1,
        window_cpu_s=c2 - c1,
        locust_cpu_s=[after - before for before, after in zip(l1, l2, strict=True)],
        servers_cpu_s={name: s2[name] - s1[name] for name in s2},
        locust_rss_mib=locust_rss,
        export_rss_mib=export_rss,
    )


def _rss(proc: subprocess.Popen[bytes]) -> tuple[float, float]:
    """MiB resident: the process itself, and its children together."""
    parent = psutil.Process(proc.pid)
    children = 0
    for child in parent.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return parent.memory_info().rss / 2**20, children / 2**20


def _cpu(procs: list[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """CPU seconds so far of ``procs`` and their children, and of the children alone."""
    total = children = 0.0
    for proc in procs:
        try:
            parent = psutil.Process(proc.pid)
            spawned = parent.children(recursive=True)
            total += sum(parent.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
        for child in spawned:
            try:
                used = sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
            total += used
            children += used
    return total, children


def _per_second(cpu_s: list[float], window: float) -> str:
    return ", ".join(f"{used / window * 1000:.0f}" for used in cpu_s)


def peer_problem() -> str:
    """Why the peer cannot run here, or "" when it can."""
    if not (PEER_VENV / "bin" / "python").exists():
        return f"no peer venv at {PEER_VENV} (bench/setup.sh creates it)"
    if not shutil.which("influxd"):
        return "influxd (Debian package influxdb) is not installed"
    check = subprocess.run(
        [str(PEER_VENV / "bin" / "python"), "-c", "import locust, locust_influxdb_listener"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode:
        return f"locust_influxdb_listener does not import: {check.stderr.strip()[-300:]}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=10, help="per Locust process")
    parser.add_argument("--modes", default="local,distributed")
    args = parser.parse_args()
    problem = peer_problem()
    # "plain again": the same as plain, to show how far two identical runs differ here.
    configs = ["plain", "perfx"] + ([] if problem else ["peer"]) + ["plain again"]
    tmp = Path(tempfile.mkdtemp(prefix="perfx-bench-load-"))
    servers = Servers(tmp, peer=not problem)
    runs: list[Run] = []
    try:
        servers.start()
        for mode in args.modes.split(","):
            users = args.users * (2 if mode == "distributed" else 1)
            for round_ in range(args.rounds):
                # Rotate the order each round so no configuration always goes first.
                order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
                for config in order:
                    run = run_once(servers, config, mode, round_, users, args.warmup, args.window)
                    servers_ms = ", ".join(
                        f"{name} {used / args.window * 1000:.0f}"
                        for name, used in run.servers_cpu_s.items()
                    )
                    log(
                        f"{mode} round {round_} {config}: {run.rps:,.0f} req/s, "
                        f"{run.cpu_us_per_request:.1f} us CPU/request; CPU ms/s of Locust's "
                        f"processes: {_per_second(run.locust_cpu_s, args.window)}, of servers: "
                        f"{servers_ms}"
                    )
                    runs.append(run)
            # Not timed side by side: the exact share of the plugin's own greenlets.
            account = run_once(servers, "perfx", mode, -1, users, args.warmup, args.window, True)
            log(
                f"{mode} accounting: plugin {account.plugin_cpu_s * 1000:.1f} ms of "
                f"{account.process_cpu_s:.2f} s process CPU"
            )
            runs.append(account)
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump({"peer_problem": problem, "runs": [asdict(r) for r in runs]}, sys.stdout)


if __name__ == "__main__":
    main()
