"""``perfx-platform``: serving, and the client commands against the real server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.platform import LISTENING_PREFIX, PlatformFactory, PlatformServer
from tests.fixtures.processes import starts_processes

CLI = [sys.executable, "-m", "locust_perfx.reference.cli"]
#: Seconds a client command may take (its own HTTP timeout is 5 s).
COMMAND_TIMEOUT = 30.0
SCHEMA = {"parameters": [{"name": "model", "type": "string", "required": True}]}
START = {"arguments": {}, "host": "http://t:1", "started_at": "2026-11-23T10:00:00Z"}
FAIL = {"finished_at": "2026-11-23T10:00:10Z", "reason": "thresholds breached", "exit_code": 6}


@starts_processes
def perfx_platform(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("hidden", ["yaml", "jsonschema", "referencing", None])
def test_without_the_reference_extra_perfx_platform_says_how_to_install_it(
    hidden: str | None,
) -> None:
    """The extra's modules are installed here, so the child hides one from imports (None in
    ``sys.modules``), as an install without the extra lacks it; ``perfx-platform``'s entry
    point then says what to install, in one line."""
    entry = "from locust_perfx.cli import reference_platform; sys.exit(reference_platform())"
    code = f"import sys; sys.modules.update({{{hidden!r}: None}}); {entry}"
    result = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )

    if hidden is None:
        assert (result.returncode, result.stderr) == (0, "")
        assert "serve" in result.stdout
    else:
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (
            f"perfx-platform: the reference platform needs the {hidden} module: "
            "pip install 'locust-perfx[reference]'\n"
        )


def schema_file(tmp_path: Path) -> str:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    return str(path)


def test_serve_prints_one_listening_line_and_stops_cleanly_on_sigterm(
    platform_server: PlatformServer,
) -> None:
    assert platform_server.url.startswith("http://127.0.0.1:")
    assert platform_server.port > 0

    assert platform_server.stop() == 0
    assert platform_server.stdout_lines == [f"{LISTENING_PREFIX}{platform_server.url}\n"]
    assert "Traceback" not in platform_server.output


def test_serve_stops_cleanly_on_sigint(platform_server: PlatformServer) -> None:
    assert platform_server.process is not None
    platform_server.process.send_signal(signal.SIGINT)

    assert platform_server.process.wait(COMMAND_TIMEOUT) == 0
    assert "Traceback" not in platform_server.output


def test_serve_reports_a_busy_port_in_one_line(platform_server: PlatformServer) -> None:
    db = str(platform_server.db_path.with_name("other.sqlite3"))

    result = perfx_platform("serve", "--db", db, "--port", str(platform_server.port))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"perfx-platform: cannot listen on 127.0.0.1:{platform_server.port}: "
    )
    assert "Traceback" not in result.stderr


def test_new_run_prints_only_the_id_and_show_and_list_find_it(
    platform_server: PlatformServer, tmp_path: Path
) -> None:
    url = ["--url", platform_server.url]

    created = perfx_platform(
        "new-run", *url, "--schema", schema_file(tmp_path), "--host", "http://target:9"
    )
    run_id = created.stdout.strip()
    shown = perfx_platform("show", run_id, *url)
    listed = perfx_platform("list", *url)

    assert created.returncode == shown.returncode == listed.returncode == 0, created.stderr
    assert created.stdout == f"{run_id}\n"
    run = platform_server.get_run(run_id)
    assert run["endpoint"]["name"] == "demo"
    assert run["endpoint"]["argument_schema"] == SCHEMA
    assert run["environment"]["name"] == "local"
    assert run["environment"]["host"] == "http://target:9"
    assert json.loads(shown.stdout) == run
    assert shown.stderr == ""  # no criteria, nothing to word
    assert listed.stdout == f"{run_id}  pending    demo  {run['created_at']}\n"


def test_new_run_takes_an_id_names_and_the_url_from_the_environment(
    platform_server: PlatformServer, tmp_path: Path
) -> None:
    env = {"PERFX_PLATFORM_URL": platform_server.url, "PATH": ""}

    created = perfx_platform(
        "new-run",
        "--schema",
        schema_file(tmp_path),
        "--host",
        "http://rerank:8080",
        "--endpoint",
        "rerank",
        "--environment",
        "staging",
        "--id",
        "nightly-1",
        env=env,
    )

    assert created.stdout == "nightly-1\n", created.stderr
    run = platform_server.get_run("nightly-1")
    assert (run["endpoint"]["name"], run["environment"]["name"]) == ("rerank", "staging")


def test_new_run_takes_the_runs_and_the_endpoints_thresholds_and_show_words_them(
    platform_server: PlatformServer, tmp_path: Path
) -> None:
    common = [
        "--url",
        platform_server.url,
        "--schema",
        schema_file(tmp_path),
        "--host",
        "http://t:1",
    ]

    created = perfx_platform(
        "new-run",
        *common,
        *("--endpoint-threshold", "p95_ms < 500 for GET /search"),
        *("--endpoint-threshold", "rps >= 200"),
        *("--threshold", "p95_ms < 800 for GET /search, abort after 10s"),
    )
    run_id = created.stdout.strip()
    later = perfx_platform("new-run", *common).stdout.strip()
    shown = perfx_platform("show", run_id, "--url", platform_server.url)

    assert created.returncode == shown.returncode == 0, created.stderr
    run = platform_server.get_run(run_id)
    assert run["endpoint"]["thresholds"] == ["p95_ms < 500 for GET /search", "rps >= 200"]
    assert run["thresholds"] == ["p95_ms < 800 for GET /search, abort after 10s"]
    assert json.loads(shown.stdout) == run
    assert shown.stderr.splitlines() == [
        "threshold of endpoint demo: p95_ms < 500 for GET /search",
        "threshold of endpoint demo: rps >= 200",
        f"threshold of run {run_id}: p95_ms < 800 for GET /search, abort after 10s",
    ]
    assert platform_server.get_run(later)["endpoint"]["thresholds"] == run["endpoint"]["thresholds"]
    assert platform_server.get_run(later)["thresholds"] is None


def test_show_words_each_result_once_the_run_has_ended(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run(thresholds=[{"expression": "rps >= 200", "abort": True}])
    breached = {
        "criterion": "rps >= 200",
        "source": f"run {run_id} on the platform",
        "observed": 123.456789,
        "limit": 200,
        "passed": False,
        "first_breach_at": 1795428005.25,
    }
    unjudged = {
        "criterion": "p95_ms < 500 for GET /x",
        "observed": None,
        "limit": 500,
        "passed": True,
    }
    platform_server.api("POST", f"/api/perf/runs/{run_id}/start", START).raise_for_status()
    platform_server.api(
        "POST",
        f"/api/perf/runs/{run_id}/fail",
        {**FAIL, "summary": {"thresholds": [breached, unjudged]}},
    ).raise_for_status()

    shown = perfx_platform("show", run_id, "--url", platform_server.url)

    assert shown.stderr.splitlines() == [
        f'threshold of run {run_id}: {{"expression": "rps >= 200", "abort": true}}',
        f"BREACHED  rps >= 200: observed 123.457, limit 200, from run {run_id} on the platform, "
        "first breached at 2026-11-23T10:00:05.250Z",
        "passed    p95_ms < 500 for GET /x: observed no requests, limit 500",
    ]


def test_client_commands_send_the_token_and_cope_with_the_envelope(
    platform_factory: PlatformFactory, tmp_path: Path
) -> None:
    platform = platform_factory(token="cli-token", envelope=True)
    schema = schema_file(tmp_path)

    with_token = ["--url", platform.url, "--token", "cli-token"]
    created = perfx_platform("new-run", *with_token, "--schema", schema, "--host", "http://t:1")
    token_env = {"PERFX_PLATFORM_TOKEN": "cli-token", "PATH": ""}
    by_env = perfx_platform("show", created.stdout.strip(), "--url", platform.url, env=token_env)
    anonymous = perfx_platform("list", "--url", platform.url)

    assert created.returncode == 0, created.stderr
    assert json.loads(by_env.stdout)["id"] == created.stdout.strip()
    assert anonymous.returncode == 1
    assert anonymous.stderr == "perfx-platform: HTTP 401: missing or invalid bearer token\n"


def test_an_unreachable_platform_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = perfx_platform("list", "--url", "http://127.0.0.1:1/")

    assert result.returncode == 1
    assert result.stderr == (
        "perfx-platform: cannot reach http://127.0.0.1:1: is the server running?\n"
    )


def test_an_unknown_run_is_one_line_and_exit_1(platform_server: PlatformServer) -> None:
    result = perfx_platform("show", "run_nope", "--url", platform_server.url)

    assert result.returncode == 1
    assert result.stderr == (
        "perfx-platform: HTTP 404: run run_nope not found: create it first "
        "(POST /api/perf/runs or `perfx-platform new-run`)\n"
    )


def test_a_bad_schema_file_or_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    not_json = tmp_path / "bad.json"
    not_json.write_text("{oops")
    not_schema = tmp_path / "list.json"
    not_schema.write_text("[]")
    common = ["--url", "http://127.0.0.1:1", "--host", "http://t:1"]

    missing = perfx_platform("new-run", *common, "--schema", str(tmp_path / "nope.json"))
    broken = perfx_platform("new-run", *common, "--schema", str(not_json))
    wrong = perfx_platform("new-run", *common, "--schema", str(not_schema))
    bad_url = perfx_platform("list", "--url", "localhost:8000")

    assert {r.returncode for r in (missing, broken, wrong, bad_url)} == {2}
    assert missing.stderr == (
        f"perfx-platform: --schema {tmp_path / 'nope.json'}: cannot read it "
        "(No such file or directory)\n"
    )
    assert broken.stderr.startswith(f"perfx-platform: --schema {not_json}: not valid JSON (")
    assert wrong.stderr == (
        f'perfx-platform: --schema {not_schema}: expected an object like {{"parameters": [...]}}\n'
    )
    assert bad_url.stderr == ("perfx-platform: --url 'localhost:8000' is not a valid http(s) URL\n")
