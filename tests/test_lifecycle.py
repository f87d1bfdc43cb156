"""The platform learns how every run ended, exactly once, from the process that owns it."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from locust_perfx.lifecycle import EXIT_STATUS_REFUSED, EXIT_STATUS_SAVED
from tests.fixtures.faults import FaultServer, Reply
from tests.fixtures.locust import ROOT, LocustProcess, LocustRunner, Target, headless
from tests.fixtures.openapi import validate_request
from tests.fixtures.platform import PlatformFactory, PlatformServer
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until
from tests.test_cli import perfx

pytestmark = pytest.mark.locust_contract

BEHAVIOURS = ROOT / "tests" / "locustfiles" / "behaviours.py"
STARTED = r"perfx: run \S+ started on"


class Interruption(NamedTuple):
    signum: int
    reason: str
    """What the run's ``fail`` call says."""


SIGNALS = pytest.mark.parametrize(
    "interruption",
    [
        Interruption(signal.SIGINT, "interrupted by SIGINT (Ctrl-C) before the test finished"),
        Interruption(signal.SIGTERM, "interrupted by SIGTERM before the test finished"),
    ],
    ids=["SIGINT", "SIGTERM"],
)


def status_calls(platform: PlatformServer, run_id: str) -> list[tuple[str, int]]:
    return [
        (c["call"], c["http_status"]) for c in platform.calls(run_id) if c["call"] != "progress"
    ]


def started(
    locust_runner: LocustRunner,
    platform: PlatformServer,
    target: Target,
    options: str,
) -> tuple[str, LocustProcess]:
    """A new run of BEHAVIOURS against ``target``, headless with ``options``, returned once
    the plugin has started it on the platform."""
    run_id = platform.create_run(None, target.url)
    proc = locust_runner.start(*headless(run_id, platform.url, options), locustfile=BEHAVIOURS)
    proc.wait_for(STARTED)
    return run_id, proc


def completed_once(platform: PlatformServer, run_id: str, target: Target) -> dict[str, Any]:
    """The run completed by one accepted start and one complete, with a summary counting what
    the target served; returns the run."""
    run = platform.get_run(run_id)
    assert (run["status"], run["reason"]) == ("completed", None)
    assert_summary_matches_target(run, target)
    assert status_calls(platform, run_id) == [("start", 200), ("complete", 200)]
    return run


def assert_summary_matches_target(run: dict[str, Any], target: Target) -> None:
    summary = run["summary"]
    validate_request(
        "POST",
        "/api/perf/runs/{run_id}/complete",
        {"finished_at": run["finished_at"], "summary": summary},
    )
    assert summary["total"]["requests"] == target.total > 0
    per_name = {r["name"]: r["requests"] for r in summary["requests"]}
    assert per_name == {path: count for path, count in target.counts.items()}


def scripted_run(target: Target) -> dict[str, object]:
    """The pending ``run_1`` a fault server's script answers with (then changes)."""
    return {
        "id": "run_1",
        "status": "pending",
        "endpoint": {"name": "e"},
        "environment": {"name": "x", "host": target.url},
    }


def script_a_started_run(
    fault_server: FaultServer, target: Target, *then: Reply
) -> dict[str, object]:
    """The fault server answers the run's look-up and its start, then with ``then``."""
    run = scripted_run(target)
    fault_server.script = [(200, run), (200, {**run, "status": "running"}), *then]
    return run


def run_headless(
    locust_runner: LocustRunner,
    platform: PlatformServer,
    target: Target,
    options: str,
    behaviour: str = "ok",
    timeout: float = 60,
) -> tuple[str, int, str]:
    run_id = platform.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform.url, options),
        locustfile=BEHAVIOURS,
        env={"BEHAVIOUR": behaviour},
        timeout=timeout,
    )
    return run_id, code, output


def completes_headless(
    locust_runner: LocustRunner, platform: PlatformServer, target: Target, options: str
) -> tuple[str, dict[str, Any]]:
    """A headless test with ``options`` that exits 0 and completes its run once; the run."""
    run_id, code, output = run_headless(locust_runner, platform, target, options)
    assert code == 0, output
    return run_id, completed_once(platform, run_id, target)


def test_a_clean_local_run_completes_with_its_summary(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
) -> None:
    options = "-u 3 -r 3 -t 2s --platform-progress 0.5"
    run_id, run = completes_headless(locust_runner, platform_server, target, options)
    assert run["locust"]["mode"] == "local" and run["locust"]["users"] == 3
    assert run["summary"]["users_peak"] == 3
    assert any(c["call"] == "progress" for c in platform_server.calls(run_id))
    last = run["progress"]  # the p95 of the requests since the report before, for charts
    assert 0 <= last["p95_ms"] <= run["summary"]["total"]["max_ms"]


@pytest.mark.parametrize(
    ("behaviour", "code", "reason"),
    [
        ("fail", 1, r"request failures: \d+ of \d+ requests failed \(\d+\.\d%\); exit code 1"),
        ("raise_in_task", 1, r"unhandled exception in user code: .*bad user code"),
        ("raise_in_test_start", 2, r"Locust exited with code 2 \(an event listener raised"),
        ("exit_code", 3, r"exit code 3 set by the quitting listener strict in behaviours"),
        ("plugin_crash", 1, r"the perfx plugin failed: RuntimeError: injected fault \(in tick\)"),
    ],
)
def test_locusts_verdict_decides_and_the_reason_says_why(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    behaviour: str,
    code: int,
    reason: str,
) -> None:
    run_id, exit_code, output = run_headless(
        locust_runner,
        platform_server,
        target,
        "-u 2 -r 2 -t 2s --platform-progress 0.5",
        behaviour=behaviour,
    )
    assert exit_code == code, output
    run = platform_server.get_run(run_id)
    assert run["status"] == "failed"
    assert run["exit_code"] == code
    assert re.match(reason, run["reason"]), run["reason"]
    assert status_calls(platform_server, run_id) == [("start", 200), ("fail", 200)]


@pytest.mark.slow
def test_distributed_summary_includes_the_workers_last_reports(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
) -> None:
    run_id = platform_server.create_run(None, target.url)
    master, workers = locust_runner.start_distributed(
        *headless(run_id, platform_server.url, "-u 6 -r 6 -t 3s"),
        locustfile=BEHAVIOURS,
    )
    assert master.wait(60) == 0, master.output
    for worker in workers:
        assert worker.wait(30) == 0
        assert "perfx" not in worker.output
    run = completed_once(platform_server, run_id, target)
    assert run["locust"]["mode"] == "master"
    assert run["summary"]["workers"] == 2


@pytest.mark.slow
def test_processes_mode_reports_once_from_the_master(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
) -> None:
    completes_headless(locust_runner, platform_server, target, "--processes 2 -u 4 -r 4 -t 3s")


SLOW = '''"""Every request takes the target's slow_seconds: some are in flight when -t ends."""
from locust import HttpUser, constant, task

class Waiter(HttpUser):
    wait_time = constant(0)

    @task
    def slow(self) -> None:
        self.client.get("/slow")
'''


@pytest.mark.slow
def test_processes_mode_summary_counts_requests_that_end_after_locust_quit(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    tmp_path: Path,
) -> None:
    """At -t Locust's master tells its workers to quit and stops listening 0.5 s later; a
    worker sends its last report once its users finished the request in flight
    (--stop-timeout), here 1 s after that: plain Locust's own totals miss it."""
    target.slow_seconds = 1.5
    locustfile = tmp_path / "slow.py"
    locustfile.write_text(SLOW)
    run_id = platform_server.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "--processes 2 -u 4 -r 100 -t 2s"),
        locustfile=locustfile,
    )
    assert code == 0, output
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed"
    assert_summary_matches_target(run, target)


@SIGNALS
def test_an_interrupted_run_fails_with_the_signal(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    interruption: Interruption,
) -> None:
    run_id, proc = started(locust_runner, platform_server, target, "-u 2 -t 60s")
    wait_until(lambda: target.total > 0, message="load reaches the target")
    proc.signal(interruption.signum)
    assert proc.wait(30) != 0
    run = platform_server.get_run(run_id)
    assert (run["status"], run["reason"]) == ("failed", interruption.reason)
    assert run["summary"]["total"]["requests"] == target.total
    assert status_calls(platform_server, run_id) == [("start", 200), ("fail", 200)]


@SIGNALS
def test_a_master_interrupted_while_waiting_for_workers_fails_the_run(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    interruption: Interruption,
) -> None:
    run_id, proc = started(
        locust_runner, platform_server, target, "--master --master-bind-port 0 --expect-workers 2"
    )
    proc.signal(interruption.signum)
    assert proc.wait(30) != 0
    run = platform_server.get_run(run_id)
    assert (run["status"], run["reason"]) == ("failed", interruption.reason), proc.output


@pytest.mark.slow
def test_a_master_that_loses_every_worker_fails_the_run_at_once(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
) -> None:
    run_id = platform_server.create_run(None, target.url)
    master, workers = locust_runner.start_distributed(
        *headless(run_id, platform_server.url, "-u 4 -r 4 -t 120s --platform-progress 0.5"),
        locustfile=BEHAVIOURS,
    )
    wait_until(
        lambda: (platform_server.get_run(run_id)["progress"] or {}).get("requests"),
        timeout=30,
        message="the master counts the workers' first requests",
    )
    for worker in workers:
        worker.signal(signal.SIGKILL)
    assert master.wait(45) == 1, master.output
    run = platform_server.get_run(run_id)
    assert run["status"] == "failed"
    made = run["summary"]["total"]["requests"]
    assert made > 0
    assert run["reason"] == (
        f"all workers were lost (heartbeat timeout); {made} requests were made before"
    )


def test_platform_down_at_the_end_gets_the_final_status_once_it_is_back(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
) -> None:
    run_id, proc = started(
        locust_runner, platform_server, target, "-u 2 -t 2s --platform-timeout 60"
    )
    platform_server.stop()
    proc.wait_for(r"cannot reach the platform .*; retrying in")
    platform_server.start()
    assert proc.wait(60) == 0, proc.output
    completed_once(platform_server, run_id, target)


def test_platform_gone_for_good_leaves_a_file_perfx_resend_delivers(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    tmp_path: Path,
) -> None:
    run_id, proc = started(
        locust_runner, platform_server, target, "-u 2 -t 2s --platform-timeout 1"
    )
    platform_server.stop()
    assert proc.wait(60) == EXIT_STATUS_SAVED, proc.output
    saved = tmp_path / f"perfx-{run_id}.final.json"
    assert f"could not send the final status of run {run_id}" in proc.output
    assert f"perfx resend {saved}" in proc.output
    record = json.loads(saved.read_text())
    assert (record["call"], record["platform_url"]) == ("complete", platform_server.url)
    platform_server.start()
    assert platform_server.get_run(run_id)["status"] == "running"
    resent = perfx("resend", str(saved))  # no --platform-url: the file says where
    assert resent.returncode == 0, resent.stderr
    assert platform_server.get_run(run_id)["status"] == "completed"
    again = perfx("resend", str(saved))
    assert again.returncode == 1
    assert again.stderr.startswith(f"perfx: {saved} was delivered already")
    assert [c["call"] for c in platform_server.calls(run_id)].count("complete") == 1


def test_start_survives_a_platform_that_is_briefly_overloaded(
    locust_runner: LocustRunner,
    fault_server: FaultServer,
    target: Target,
) -> None:
    run = scripted_run(target)
    fault_server.script = [(200, run), (503, {}), (429, {}), (200, {**run, "status": "running"})]
    code, output = locust_runner.run(
        *headless("run_1", fault_server.url, "-u 1 -t 1s --platform-progress 0"),
        locustfile=BEHAVIOURS,
    )
    assert code == 0, output
    paths = [(r.method, r.path) for r in fault_server.requests]
    assert (
        paths[:4]
        == [("GET", "/api/perf/runs/run_1")] + [("POST", "/api/perf/runs/run_1/start")] * 3
    )
    assert paths[4:] == [("POST", "/api/perf/runs/run_1/complete")]
    validate_request("POST", "/api/perf/runs/{run_id}/start", fault_server.requests[3].body)


def test_a_locustfile_without_users_leaves_the_run_pending(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    run_id = platform_server.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url),
        locustfile=empty,
    )
    assert code == 1
    assert "No User class found" in output
    assert platform_server.get_run(run_id)["status"] == "pending"


def test_a_platform_without_progress_is_not_sent_it_again(
    locust_runner: LocustRunner, fault_server: FaultServer, target: Target
) -> None:
    # The fault server plays a platform that lacks the optional progress endpoint.
    script_a_started_run(fault_server, target, (404, {"code": 404, "message": "no such route"}))
    code, output = locust_runner.run(
        *headless("run_1", fault_server.url, "-u 1 -t 3s --platform-progress 0.5"),
        locustfile=BEHAVIOURS,
    )
    assert code == 0, output
    assert [r.path.rsplit("/", 1)[-1] for r in fault_server.requests] == [
        "run_1",
        "start",
        "progress",
        "complete",
    ]
    assert "the platform has no progress endpoint; not sending progress" in output


def test_progress_pauses_as_long_as_the_platforms_retry_after_asks(
    locust_runner: LocustRunner, fault_server: FaultServer, target: Target
) -> None:
    # The fault server plays a platform that rate-limits progress once (429, Retry-After: 3):
    # the reference platform never does.
    run = script_a_started_run(
        fault_server, target, (429, {"code": 429, "message": "slow down"}, {"Retry-After": "3"})
    )
    fault_server.fallback = (200, {**run, "status": "completed"})
    code, output = locust_runner.run(
        *headless("run_1", fault_server.url, "-u 1 -t 5s --platform-progress 0.5"),
        locustfile=BEHAVIOURS,
    )

    assert code == 0, output
    progress = [r.at for r in fault_server.requests if r.path.endswith("/progress")]
    assert len(progress) >= 2, output
    assert progress[1] - progress[0] >= 3.0  # not the 0.5 s of --platform-progress
    assert fault_server.requests[-1].path.endswith("/complete")


def test_a_final_status_the_platform_refuses_is_reported_not_saved(
    locust_runner: LocustRunner,
    platform_factory: PlatformFactory,
    target: Target,
    tmp_path: Path,
) -> None:
    # The platform's watchdog fails the run while it runs, since it sends no progress.
    platform = platform_factory(progress_timeout=1.0)
    run_id, proc = started(locust_runner, platform, target, "-u 1 -t 6s --platform-progress 0")
    wait_until(lambda: platform.get_run(run_id)["status"] == "failed", message="the watchdog")
    assert proc.wait(30) == EXIT_STATUS_REFUSED, proc.output
    refused = re.search(
        rf"perfx: the platform refused the complete of run {run_id}: (.*)", proc.output
    )
    assert refused, proc.output
    assert refused.group(1) == (
        f"run {run_id} is already failed; a final status is accepted only once"
    )
    assert not (tmp_path / f"perfx-{run_id}.final.json").exists()
    assert platform.get_run(run_id)["reason"].startswith("no progress for 1")


@pytest.mark.parametrize("behaviour", ["summary_crash", "export_close_crash"])
def test_the_verdict_is_sent_even_when_ending_the_run_breaks(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    victoria_metrics: VictoriaMetrics,
    behaviour: str,
) -> None:
    run_id = platform_server.create_run(None, target.url)
    influx = f"--influxdb-url {victoria_metrics.url} --influxdb-org o --influxdb-bucket b"
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, f"-u 1 -t 2s {influx}"),
        locustfile=BEHAVIOURS,
        env={"BEHAVIOUR": behaviour},
    )
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed", output
    assert status_calls(platform_server, run_id) == [("start", 200), ("complete", 200)]
    if behaviour == "summary_crash":
        assert run["summary"] == {
            "error": "the summary could not be built: RuntimeError: injected fault"
        }
    else:
        assert run["summary"]["total"]["requests"] == target.total
    assert code == 0, output


@pytest.mark.parametrize(("maybe_applied", "code"), [(True, 0), (False, 1)])
def test_resend_recognises_a_final_status_whose_first_send_may_have_landed(
    fault_server: FaultServer, tmp_path: Path, maybe_applied: bool, code: int
) -> None:
    # The fault server plays a platform that applied the first send but lost its answer:
    # the resend gets 409 and the run already shows the saved verdict.
    saved = tmp_path / "perfx-run_1.final.json"
    body = {"finished_at": "2026-12-01T10:00:00Z", "summary": {}}
    record = {"run_id": "run_1", "call": "complete", "body": body, "maybe_applied": maybe_applied}
    saved.write_text(json.dumps(record))
    completed = {
        "id": "run_1",
        "status": "completed",
        "endpoint": {"name": "e"},
        "environment": {"name": "x", "host": "http://t"},
    }
    fault_server.script = [(409, {"message": "run run_1 is already completed"}), (200, completed)]
    resent = perfx("resend", str(saved), "--platform-url", fault_server.url)
    assert resent.returncode == code, resent.stderr
    if maybe_applied:
        assert resent.stdout.startswith("delivered the final status of run run_1")
        assert not saved.exists() and saved.with_name(saved.name + ".delivered").exists()
    else:  # a repeat the platform refuses: said so, and why that is likely
        assert resent.stderr.startswith(
            "perfx: the platform refused the complete of run run_1: run run_1 is already "
            "completed. The run has a final status already: this one was delivered before"
        )
