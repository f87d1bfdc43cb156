"""Master and workers on separate hosts (network namespaces), as a distributed team runs them.

The reference platform, the target and VictoriaMetrics sit on a services host; the master
and each worker on hosts of their own. The services' relays see every connection's peer
address, and the target counts every request by the worker host that sent it (each worker
requests ``/from/<its host>``), so each claim is checked from the servers' side.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.locust import Target, headless
from tests.fixtures.netns import HostProcess, HostRunner, Relay, Topology
from tests.fixtures.platform import PlatformServer
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until
from tests.test_export_e2e import requests_per_name
from tests.test_plugin_options import ECHO, EXPECTED_ENV, SCHEMA, echoes

pytestmark = pytest.mark.slow

BY_HOST = '''"""Each worker names its host in the path, so the target counts per worker."""
import os
from locust import HttpUser, constant, task

class Visitor(HttpUser):
    wait_time = constant(0.05)

    @task
    def visit(self) -> None:
        self.client.get("/from/" + os.environ["HOST_LABEL"])
'''
MASTER_PORT = "5557"
"""Every host has its own ports: Locust's default is free on the master's host."""
STARTED = r"perfx: run \S+ started on"
LOST_ALL = "all workers were lost (heartbeat timeout); "


def lost_all(run: dict[str, object]) -> str:
    """The reason of a run whose workers were all lost: it agrees with the summary's count."""
    made = run["summary"]["total"]["requests"]  # type: ignore[index]
    return LOST_ALL + (f"{made} requests were made before" if made else "no load was generated")


WAITING = "Waiting for workers to be ready, 0 of 3 connected"
"""Locust logs it once a second while a master waits for --expect-workers."""
MISSING = "failed to send heartbeat, setting state to missing"


@dataclass
class Site:
    """The services host as Locust's hosts see it: each server's URL there, and its relay."""

    platform: PlatformServer
    platform_url: str
    platform_peers: Relay
    target: Target
    target_url: str
    target_peers: Relay
    tsdb: VictoriaMetrics
    tsdb_url: str
    tsdb_peers: Relay

    def create_run(self, schema: dict[str, Any] | None = None) -> str:
        return self.platform.create_run(schema, self.target_url)

    def influx(self) -> tuple[str, ...]:
        return (
            *("--influxdb-url", self.tsdb_url, "--influxdb-org", "perf"),
            *("--influxdb-bucket", "locust", "--influxdb-interval", "1"),
            *("--influxdb-tags", "team=search"),
        )


@pytest.fixture
def site(
    topology: Topology,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> Site:
    return Site(
        platform_server,
        *topology.expose(platform_server.url),
        target,
        *topology.expose(target.url),
        victoria_metrics,
        *topology.expose(victoria_metrics.url),
    )


@pytest.fixture
def by_host(tmp_path: Path) -> Path:
    path = tmp_path / "by_host.py"
    path.write_text(BY_HOST)
    return path


class Cluster:
    """A master on the master host and workers on w1..w4, all given Locust's own flags."""

    def __init__(self, runner: HostRunner, site: Site, locustfile: Path) -> None:
        self.runner = runner
        self.site = site
        self.locustfile = locustfile
        self.master_address = runner.topology.hosts["master"].address

    def master(self, run_id: str, *args: str, plugin: bool = True) -> HostProcess:
        run = ("--run-id", run_id, "--platform-url", self.site.platform_url) if plugin else ()
        return self.runner.start(
            "master",
            "--master",
            *("--master-bind-port", MASTER_PORT),
            *run,
            *args,
            locustfile=self.locustfile,
            plugin=plugin,
        )

    def worker(self, label: str, *args: str, plugin: bool = True, **env: str) -> HostProcess:
        return self.runner.start(
            label,
            "--worker",
            *("--master-host", self.master_address, "--master-port", MASTER_PORT),
            *args,
            locustfile=self.locustfile,
            plugin=plugin,
            env={"HOST_LABEL": label, **env},
        )


@pytest.fixture
def cluster(host_runner: HostRunner, site: Site, by_host: Path) -> Cluster:
    return Cluster(host_runner, site, by_host)


def per_worker(counts: Counter[str]) -> dict[str, int]:
    return {path.removeprefix("/from/"): n for path, n in counts.items()}


def working(site: Site, labels: Sequence[str], requests: int) -> None:
    """Wait until the target has served more than ``requests`` from each worker host."""
    wait_until(
        lambda: all(site.target.counts[f"/from/{label}"] > requests for label in labels),
        timeout=60,
        message=f"the load of {', '.join(labels)} reaches the target",
    )


def assert_everyone_agrees(
    site: Site, run_id: str, lost: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The platform's summary, the sum of the InfluxDB intervals and the target agree, per
    worker host: exactly for every worker that lived to the end; a lost worker's requests
    since its last report reached the target but no report, so there the target may count
    more, never less."""
    run = site.platform.get_run(run_id)
    summary = {r["name"].removeprefix("/from/"): r["requests"] for r in run["summary"]["requests"]}
    assert run["summary"]["total"]["requests"] == sum(summary.values())
    wait_until(
        lambda: per_worker(requests_per_name(site.tsdb, run_id)) == summary,
        timeout=10,
        message=f"the InfluxDB intervals add up to the summary {summary}",
    )
    reached = per_worker(site.target.counts)
    assert summary.keys() <= reached.keys(), (summary, reached)
    for host, count in reached.items():
        if host in lost:
            assert summary.get(host, 0) <= count, (host, summary, reached)
        else:
            assert summary[host] == count, (host, summary, reached)
    return run


def test_only_the_master_talks_to_the_platform_and_the_tsdb(cluster: Cluster, site: Site) -> None:
    """w1 gets Locust's flags only; w2 gets the plugin's options anyway, on its command line
    and in PERFX_* variables: it generates load and never reports to anyone."""
    run_id = site.create_run()
    master = cluster.master(
        run_id, "--headless", "--expect-workers", "2", "-u", "4", "-r", "4", "-t", "4s",
        *site.influx(),
    )  # fmt: skip
    plain = cluster.worker("w1")
    told = cluster.worker(
        "w2",
        *("--run-id", run_id, "--platform-url", site.platform_url, *site.influx()),
        PERFX_RUN_ID=run_id,
        PERFX_PLATFORM_URL=site.platform_url,
        PERFX_INFLUXDB_URL=site.tsdb_url,
    )
    assert master.wait(90) == 0, master.output
    for worker in (plain, told):
        assert worker.wait(30) == 0, worker.output
        assert "perfx" not in worker.output
    run = assert_everyone_agrees(site, run_id)
    assert run["status"] == "completed"
    assert set(site.platform_peers.peers) == {cluster.master_address}
    assert set(site.tsdb_peers.peers) == {cluster.master_address}
    hosts = cluster.runner.topology.hosts
    assert set(site.target_peers.peers) == {hosts["w1"].address, hosts["w2"].address}


@pytest.mark.parametrize("where", ["command line", "web UI form"])
def test_the_runs_arguments_reach_every_workers_locustfile(
    host_runner: HostRunner, site: Site, tmp_path: Path, where: str
) -> None:
    cluster = Cluster(host_runner, site, ECHO)
    run_id = site.create_run(SCHEMA)
    echo = {"ECHO_DIR": str(tmp_path)}
    given = ("--model", "from-cli", "--gpu_model", "H100")
    if where == "command line":
        master = cluster.master(
            run_id, "--headless", "--expect-workers", "3", "-u", "3", "-r", "3", "-t", "3s", *given
        )
    else:
        master = cluster.master(run_id, "--web-port", "8089", *given)
    for label in ("w1", "w2", "w3"):
        cluster.worker(label, **echo)
    model = "from-cli"
    if where == "web UI form":
        master.wait_for("3 workers connected", timeout=60)
        model = "changed-in-the-form"
        form = {"user_count": "3", "spawn_rate": "3", "host": "", "run_id": run_id}
        form |= {"model": model, "batch_size": "8", "gpu_model": "A100", "warm_up": "true"}
        answer = host_runner.topology.services.http(
            "POST", f"http://{cluster.master_address}:8089/swarm", form
        )
        assert json.loads(answer)["success"] is True, answer
    records = wait_until(
        lambda: len(echoes(tmp_path)) == 3 and echoes(tmp_path),
        timeout=60,
        message="every worker's locustfile records what it sees",
    )
    expected_env = {"PERFX_RUN_ID": run_id, **EXPECTED_ENV, "PERFX_MODEL": model}
    if where == "web UI form":
        expected_env |= {
            "PERFX_BATCH_SIZE": "8",
            "PERFX_GPU_MODEL": "A100",
            "PERFX_WARM_UP": "true",
        }
    for record in records:
        assert record["options"]["model"] == model
        assert record["env"] == expected_env
        assert record["env_at_test_start"] == expected_env
        assert record["host"] == site.target_url


CHURN = {
    "joining 10 s late": ("w1", "w2", "w3"),
    "one joining mid-run": ("w1", "w2"),
    "one SIGKILLed mid-run": ("w1", "w2", "w3"),
    "one cut off mid-run": ("w1", "w2", "w3"),
}


@pytest.mark.parametrize("churn", CHURN)
def test_the_totals_agree_whoever_comes_and_goes(
    cluster: Cluster, site: Site, topology: Topology, churn: str
) -> None:
    """Locust's heartbeat decides when a worker is gone (about 4 s of silence); the plugin
    ends the run only when Locust has no worker left."""
    run_id = site.create_run()
    first = CHURN[churn]
    master = cluster.master(
        run_id, "--headless", "--expect-workers", str(len(first)), "-u", "6", "-r", "6",
        "-t", "10s", *site.influx(),
    )  # fmt: skip
    if churn == "joining 10 s late":
        wait_until(
            lambda: master.output.count(WAITING) >= 10,
            timeout=60,
            message="the master waits 10 s for its workers",
        )
    workers = [cluster.worker(label) for label in first]
    working(site, first, 40)
    lost: frozenset[str] = frozenset()
    if churn == "one joining mid-run":
        workers.append(cluster.worker("w3"))
        working(site, ["w3"], 20)
    elif churn == "one SIGKILLed mid-run":
        workers[2].signal(signal.SIGKILL)
        lost = frozenset({"w3"})
    elif churn == "one cut off mid-run":
        topology.hosts["w3"].pull_cable()
        lost = frozenset({"w3"})
    assert master.wait(90) == 0, master.output
    run = assert_everyone_agrees(site, run_id, lost)
    assert run["status"] == "completed"
    assert (MISSING in master.output) == bool(lost)


def test_losing_every_worker_fails_the_run_with_that_reason(
    cluster: Cluster, site: Site, topology: Topology
) -> None:
    run_id = site.create_run()
    master = cluster.master(
        run_id, "--headless", "--expect-workers", "2", "-u", "4", "-r", "4", "-t", "120s"
    )  # fmt: skip
    for label in ("w1", "w2"):
        cluster.worker(label)
    working(site, ["w1", "w2"], 1)
    for label in ("w1", "w2"):
        topology.hosts[label].pull_cable()
    assert master.wait(60) == 1, master.output
    assert master.output.count(MISSING) == 2
    run = site.platform.get_run(run_id)
    assert (run["status"], run["reason"]) == ("failed", lost_all(run))


@pytest.mark.parametrize("processes", ["-1", "4"])
def test_processes_on_one_host_agree_with_the_target(
    host_runner: HostRunner, site: Site, by_host: Path, processes: str
) -> None:
    run_id = site.create_run()
    code = host_runner.start(
        "master",
        *headless(run_id, site.platform_url, f"--processes {processes} -u 4 -r 4 -t 4s"),
        *site.influx(),
        locustfile=by_host,
        env={"HOST_LABEL": "master"},
    ).wait(90)
    assert code == 0
    run = assert_everyone_agrees(site, run_id)
    assert run["status"] == "completed"
    assert run["locust"]["mode"] == "master"


@pytest.mark.parametrize("plugin_on", ["master only", "worker only"])
def test_a_plugin_on_one_side_only_still_runs_the_test(
    host_runner: HostRunner, site: Site, tmp_path: Path, plugin_on: str
) -> None:
    """A worker image without perfx_plugin.py still gets the typed arguments in
    ``parsed_options`` (Locust sends them with each spawn), but no ``PERFX_*`` variables: the
    plugin sets those. A plugin on the workers only is inert: the master has no run."""
    cluster = Cluster(host_runner, site, ECHO)
    run_id = site.create_run(SCHEMA)
    on_master = plugin_on == "master only"
    master = cluster.master(
        run_id,
        *("--headless", "--expect-workers", "1", "-u", "2", "-r", "2", "-t", "3s"),
        *(("--model", "m", "--gpu_model", "H100") if on_master else ("-H", site.target_url)),
        plugin=on_master,
    )
    worker = cluster.worker("w1", plugin=not on_master, ECHO_DIR=str(tmp_path))
    assert master.wait(60) == 0, master.output
    assert worker.wait(30) == 0, worker.output
    assert "Traceback" not in master.output + worker.output
    [record] = echoes(tmp_path)
    assert record["env"] == {}
    assert record["host"] == site.target_url
    if on_master:
        assert record["options"] == {
            "run_id": run_id, "model": "m", "batch_size": 32, "gpu_model": "H100", "warm_up": False
        }  # fmt: skip
        assert site.platform.get_run(run_id)["status"] == "completed"
        assert re.search(r"perfx: worker \S+ runs without the perfx plugin", master.output)
    else:
        assert set(record["options"].values()) == {None}
        assert site.platform.get_run(run_id)["status"] == "pending"
        assert re.search(
            r"Unknown message type received from worker .*: perfx_worker", master.output
        )
        assert "perfx:" not in master.output + worker.output
