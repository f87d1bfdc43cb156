"""A final status the platform did not take is never lost: saved where a folder takes it,
else logged as one line that ``perfx resend`` reads back."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from locust_perfx.lifecycle import DELIVERY_EXIT_CODES, Delivery, PlatformSync, Verdict
from locust_perfx.platform import PlatformClient
from locust_perfx.state import LOG_MARK
from tests.fixtures.locust import LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer
from tests.fixtures.server import free_port

SUMMARY = {"total": {"requests": 3}}


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A path no one can create a folder at, root included: a regular file is in the way."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "state"


def finish_unreachable(
    state_dir: str, caplog: pytest.LogCaptureFixture
) -> tuple[Delivery, list[str]]:
    """Send a final status to a platform that is not there; returns what became of it."""
    with PlatformClient(f"http://127.0.0.1:{free_port()}", "s3cret-token") as client:
        sync = PlatformSync(client, "run_1", retry_for=0, state_dir=state_dir)
        with caplog.at_level(logging.ERROR, logger="locust_perfx"):
            delivery = sync.finish(Verdict(False), SUMMARY, 0)
    return delivery, [r.getMessage() for r in caplog.records]


def resend_from_stdin(text: str, platform_url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "locust_perfx.cli", "resend", "-"]
    return subprocess.run(
        [*command, "--platform-url", platform_url],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_state_dir_option_is_used_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    delivery, logs = finish_unreachable(str(tmp_path / "state"), caplog)
    saved = tmp_path / "state" / "perfx-run_1.final.json"
    assert delivery is Delivery.SAVED
    assert json.loads(saved.read_text())["body"]["summary"] == SUMMARY
    assert f"It is saved in {saved}" in logs[0]


def test_an_unwritable_working_directory_falls_back_to_the_users_state_dir(
    unwritable: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    delivery, logs = finish_unreachable(str(unwritable), caplog)
    saved = tmp_path / "xdg" / "locust-perfx" / "perfx-run_1.final.json"
    assert delivery is Delivery.SAVED and saved.exists()
    assert f"perfx resend {saved}" in logs[0]


def test_then_the_temp_dir(
    unwritable: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(unwritable))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    delivery, _ = finish_unreachable(str(unwritable), caplog)
    assert delivery is Delivery.SAVED
    assert (tmp_path / "tmp" / "perfx-run_1.final.json").exists()


def test_when_nothing_can_be_written_one_log_line_carries_it_to_perfx_resend(
    unwritable: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    platform_server: PlatformServer,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(unwritable))
    monkeypatch.setattr(tempfile, "tempdir", str(unwritable))
    delivery, logs = finish_unreachable(str(unwritable), caplog)

    assert delivery is Delivery.LOGGED
    assert DELIVERY_EXIT_CODES[delivery] == 4  # never 0: the platform's record is stale
    assert "Nor could it be saved" in logs[0] and "perfx resend -" in logs[0]
    (line,) = [m for m in logs if LOG_MARK in m]
    assert "\n" not in line and "s3cret-token" not in "".join(logs)

    # The run exists on a platform now reachable; the pasted log line (with kubectl's
    # prefix) goes to perfx resend on standard input.
    run_id = platform_server.create_run(None, "http://t")
    with PlatformClient(platform_server.url) as client:
        PlatformSync(client, run_id, retry_for=0).start({}, "http://t", {"users": 1})
    pasted = "2026-12-02T05:00:00Z ERROR " + line.replace("run_1", run_id)
    resent = resend_from_stdin(f"some other line\n{pasted}\n", platform_server.url)
    assert resent.returncode == 0, resent.stderr
    run = platform_server.get_run(run_id)
    assert (run["status"], run["summary"]) == ("completed", SUMMARY)


def test_resend_names_a_text_that_holds_no_final_status(tmp_path: Path) -> None:
    log = tmp_path / "pod.log"
    log.write_text("nothing to see\n")
    resent = subprocess.run(
        [sys.executable, "-m", "locust_perfx.cli", "resend", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resent.returncode == 1
    assert resent.stderr.startswith(f"perfx: {log} is not a saved perfx final status")
    assert "Traceback" not in resent.stderr


READ_ONLY = 'for d in /tmp /var/tmp; do mount -t tmpfs -o ro tmpfs "$d" || exit 99; done; cd /tmp'
"""A container whose every folder is read-only: the working directory, the state and temp
folders (run in a mount namespace of its own, so the test machine is untouched)."""


def test_a_read_only_container_exits_4_and_its_log_line_is_resent(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    run_id = platform_server.create_run(None, target.url)
    proc = locust_runner.start(
        *headless(run_id, platform_server.url, "-u 2 -t 2s --platform-timeout 1"),
        env={"HOME": "/tmp", "XDG_STATE_HOME": "/tmp/state", "TMPDIR": "/tmp"},
        prefix=["unshare", "-m", "sh", "-c", f'{READ_ONLY} && exec "$@"', "sh"],
    )
    proc.wait_for(r"perfx: run \S+ started on")
    platform_server.stop()

    assert proc.wait(60) == 4, proc.output
    assert "Nor could it be saved" in proc.output and "Read-only file system" in proc.output
    assert "Traceback" not in proc.output
    platform_server.start()
    assert platform_server.get_run(run_id)["status"] == "running"
    resent = resend_from_stdin(proc.output, platform_server.url)  # as kubectl logs gives it
    assert resent.returncode == 0, resent.stderr
    run = platform_server.get_run(run_id)
    assert run["status"] == "completed"
    assert run["summary"]["total"]["requests"] == target.total
