"""The perfx command: init writes the plugin file, dashboards the Grafana dashboards, resend
delivers a saved final status, --version names the versions a bug report needs."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import locust
import pytest

from locust_perfx import __version__
from locust_perfx.cli import PLUGIN_SOURCE
from tests.fixtures.locust import PLUGIN, ROOT
from tests.fixtures.platform import PlatformServer
from tests.fixtures.processes import starts_processes


@starts_processes
def perfx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust_perfx.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_the_plugin_locust_and_python(flag: str) -> None:
    result = perfx(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"locust-perfx {__version__} (Locust {locust.__version__}, "
        f"Python {platform.python_version()})\n"
    )


@pytest.mark.parametrize("command", [["--help"], ["help"]])
def test_help_is_the_perfx_commands_with_its_variables_and_subcommands(command: list[str]) -> None:
    result = perfx(*command)

    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith("Usage: perfx [options]")
    assert "Usage: locust" not in result.stdout and "\n    locust -f" not in result.stdout
    for line in ("perfx init [DIR]", "perfx resend FILE", "perfx dashboards [DIR]"):
        assert line in result.stdout
    for variable in ("PERFX_RUN_ID", "PERFX_PLATFORM_TOKEN", "PERFX_THRESHOLDS", "PERFX_<NAME>"):
        assert variable in result.stdout
    assert "--platform-url" in result.stdout  # Locust's options and the plugin's, as before


def test_help_on_a_command_is_that_commands_help() -> None:
    result = perfx("help", "resend")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: perfx resend")


def test_init_writes_the_plugin_file_the_repository_ships(tmp_path: Path) -> None:
    result = perfx("init", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "perfx_plugin.py").read_text() == PLUGIN_SOURCE == PLUGIN.read_text()


def test_the_plugin_file_run_on_its_own_says_how_to_use_it() -> None:
    result = subprocess.run(
        [sys.executable, str(PLUGIN)], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert "locust -f perfx_plugin.py,locustfile.py --run-id RUN_ID" in result.stderr


def test_init_keeps_a_different_file_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "perfx_plugin.py").write_text("# mine\n")
    result = perfx("init", str(tmp_path))
    assert result.returncode == 1
    assert "exists and differs; pass --force to overwrite it" in result.stderr
    assert perfx("init", str(tmp_path), "--force").returncode == 0


def test_dashboards_writes_both_into_a_new_folder(tmp_path: Path) -> None:
    folder = tmp_path / "grafana" / "dashboards"
    result = perfx("dashboards", str(folder))

    assert result.returncode == 0, result.stderr
    shipped = sorted((ROOT / "locust_perfx" / "dashboards").glob("*.json"))
    assert [path.name for path in shipped] == [
        "locust-perfx-influxdb1-influxql.json",
        "locust-perfx-influxdb2-flux.json",
    ]
    for path in shipped:
        assert json.loads((folder / path.name).read_text()) == json.loads(path.read_text())


def test_dashboards_keeps_an_edited_copy_and_writes_none_unless_forced(tmp_path: Path) -> None:
    edited = tmp_path / "locust-perfx-influxdb2-flux.json"
    edited.write_text('{"title": "mine"}')
    result = perfx("dashboards", str(tmp_path))

    assert result.returncode == 1
    assert f"perfx: {edited} exists and differs; pass --force to overwrite it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [edited.name]
    assert edited.read_text() == '{"title": "mine"}'
    assert perfx("dashboards", str(tmp_path), "--force").returncode == 0
    assert json.loads(edited.read_text())["title"] != "mine"


def test_resend_delivers_a_saved_final_status(
    platform_server: PlatformServer, tmp_path: Path
) -> None:
    run_id = platform_server.create_run()
    platform_server.api(
        "POST",
        f"/api/perf/runs/{run_id}/start",
        {"arguments": {}, "host": "http://t", "started_at": "2026-11-23T10:00:00Z", "locust": {}},
    )
    saved = tmp_path / f"perfx-{run_id}.final.json"
    saved.write_text(
        json.dumps(
            {
                "run_id": run_id,
                "call": "fail",
                "body": {
                    "finished_at": "2026-11-23T10:01:00Z",
                    "reason": "interrupted by SIGTERM",
                    "exit_code": 1,
                    "summary": {"total": {"requests": 3}},
                },
            }
        )
    )
    result = perfx("resend", str(saved), "--platform-url", platform_server.url)
    assert result.returncode == 0, result.stderr
    run = platform_server.get_run(run_id)
    assert (run["status"], run["reason"]) == ("failed", "interrupted by SIGTERM")


@pytest.mark.parametrize("edit", [{"run_id": None}, {"body": "x"}, {"call": 3}])
def test_resend_names_what_is_wrong_in_an_edited_file(
    tmp_path: Path, edit: dict[str, object]
) -> None:
    edited = tmp_path / "perfx-run_1.final.json"
    record = {"run_id": "run_1", "call": "complete", "body": {}, **edit}
    edited.write_text(json.dumps({k: v for k, v in record.items() if v is not None}))

    result = perfx("resend", str(edited), "--platform-url", "http://127.0.0.1:9")

    assert result.returncode == 1
    [wrong] = [name for name in ("run_id", "body", "call") if name in edit]
    assert result.stderr == (
        f"perfx: {edited} is not a saved perfx final status: {wrong} missing or malformed (the "
        "plugin writes run_id, call and body); pass the file it saved, unedited\n"
    )


def test_resend_refuses_a_file_it_did_not_write(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text("[1, 2]")
    result = perfx("resend", str(bogus), "--platform-url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.startswith(f"perfx: {bogus} is not a saved perfx final status")
