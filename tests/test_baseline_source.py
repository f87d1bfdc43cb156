"""Where a run's baseline comes from, checked before any load: the reference platform's
fields, query and ``set-baseline``, the plugin's choice and refusals, on real servers."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from locust_perfx.baseline import NO_BASELINE_YET, choose, resolve
from locust_perfx.exceptions import ConfigError
from locust_perfx.platform import PlatformClient, RunInfo
from locust_perfx.reference.pages import summary_view
from tests.fixtures.locust import ROOT, LocustRunner, Target, headless
from tests.fixtures.openapi import validate_response
from tests.fixtures.platform import PlatformServer
from tests.fixtures.waiting import wait_until
from tests.test_cli import perfx
from tests.test_compare import entry, summary
from tests.test_reference_cli import perfx_platform
from tests.test_signals import web_ui
from tests.test_webui import tab_rows

DASH = "\N{EN DASH}"
LOCUSTFILE = ROOT / "tests" / "locustfiles" / "thresholds.py"
START = {"arguments": {}, "host": "http://t:1", "started_at": "2026-11-23T10:00:00Z"}
SUMMARY = {"total": {"requests": 10, "p95_ms": 100, "rps": 5.0, "failure_ratio": 0.0}}


def completed_run(platform: PlatformServer, endpoint: str = "demo", **kwargs: Any) -> str:
    run_id = platform.create_run(endpoint=endpoint, **kwargs)
    platform.api("POST", f"/api/perf/runs/{run_id}/start", START).raise_for_status()
    body = {"finished_at": "2026-11-23T10:00:10Z", "summary": SUMMARY}
    platform.api("POST", f"/api/perf/runs/{run_id}/complete", body).raise_for_status()
    return run_id


def resolved(platform: PlatformServer, run_id: str, option: str = "") -> Any:
    with PlatformClient(platform.url) as client:
        info = client.get_run(run_id)
        return resolve(client, info, option, "the command line", retry_for=0)


def test_set_baseline_takes_a_completed_run_of_the_endpoint_and_refuses_the_others(
    platform_server: PlatformServer,
) -> None:
    good = completed_run(platform_server)
    other = completed_run(platform_server, endpoint="other")
    pending = platform_server.create_run()
    url = ["--url", platform_server.url]

    refused = perfx_platform("set-baseline", "demo", other, *url)
    assert refused.returncode == 1
    assert f"run {other} belongs to endpoint 'other', not 'demo'" in refused.stderr
    refused = perfx_platform("set-baseline", "demo", pending, *url)
    assert f"run {pending} is pending, not completed" in refused.stderr
    done = perfx_platform("set-baseline", "demo", good, *url)
    assert done.returncode == 0, done.stderr
    run = platform_server.get_run(platform_server.create_run())
    assert run["endpoint"]["baseline_run_id"] == good and run["baseline_run_id"] is None
    validate_response("GET", "/api/perf/runs/{run_id}", 200, run)
    assert perfx_platform("set-baseline", "demo", "none", *url).returncode == 0
    assert platform_server.get_run(pending)["endpoint"]["baseline_run_id"] is None


def test_the_run_list_filters_by_endpoint_environment_and_status(
    platform_server: PlatformServer,
) -> None:
    first = completed_run(platform_server)
    latest = completed_run(platform_server)
    completed_run(platform_server, environment="prod")
    platform_server.create_run()
    query = "?endpoint=demo&environment=local&status=completed&limit=1"
    runs = platform_server.api("GET", "/api/perf/runs" + query).json()
    assert [r["id"] for r in runs] == [latest]
    runs = platform_server.api("GET", "/api/perf/runs?endpoint=demo&environment=local").json()
    assert [r["id"] for r in runs][1:] == [latest, first]
    assert platform_server.api("GET", "/api/perf/runs?limit=0").status_code == 400
    assert platform_server.api("GET", "/api/perf/runs?limit=\u0661").status_code == 400
    # Past SQLite's integers: all runs (it raised IntegrityError "datatype mismatch": a 500).
    huge = platform_server.api("GET", f"/api/perf/runs?limit={2**64}")
    assert huge.status_code == 200 and len(huge.json()) == 4


def test_the_baseline_is_the_options_then_the_runs_then_the_endpoints(
    platform_server: PlatformServer,
) -> None:
    endpoints, runs = completed_run(platform_server), completed_run(platform_server)
    assert perfx_platform("set-baseline", "demo", endpoints, "--url", platform_server.url)
    run_id = platform_server.create_run()
    assert resolved(platform_server, run_id).run_id == endpoints
    own = platform_server.create_run(baseline_run_id=runs)
    found = resolved(platform_server, own)
    assert (found.run_id, found.source) == (runs, f"run {own} on the platform")
    assert found.summary == SUMMARY
    found = resolved(platform_server, own, endpoints)
    assert (found.run_id, found.source) == (endpoints, "--baseline (from the command line)")


def test_a_missing_unfinished_or_foreign_baseline_is_refused_with_the_fix(
    platform_server: PlatformServer,
) -> None:
    run_id = platform_server.create_run()
    foreign = completed_run(platform_server, endpoint="other")
    with pytest.raises(ConfigError, match=r"baseline run run_nope \(from --baseline \(from the "):
        resolved(platform_server, run_id, "run_nope")
    with pytest.raises(ConfigError, match="does not exist on the platform; name a completed run"):
        resolved(platform_server, run_id, "run_nope")
    with pytest.raises(ConfigError, match=f"run {run_id} .* is pending, not completed"):
        resolved(platform_server, run_id, run_id)
    with pytest.raises(ConfigError, match="belongs to endpoint 'other', not 'demo'"):
        resolved(platform_server, run_id, foreign)


def test_auto_takes_the_latest_completed_run_of_the_endpoint_and_environment(
    platform_server: PlatformServer,
) -> None:
    first = platform_server.create_run()
    found = resolved(platform_server, first, "auto")
    assert found.run_id == "" and found.note.startswith(NO_BASELINE_YET)
    earlier = completed_run(platform_server)
    completed_run(platform_server, environment="prod")
    completed_run(platform_server, endpoint="other")
    found = resolved(platform_server, platform_server.create_run(), "auto")
    assert found.run_id == earlier
    assert found.source == "--baseline (from the command line): the latest completed run"


def test_a_platform_without_the_baseline_fields_still_works() -> None:
    """An older platform's run: no baseline_run_id anywhere, so no baseline unless asked."""
    body = {"id": "run_1", "status": "pending", "endpoint": {"name": "demo"}, "environment": {}}
    info = RunInfo.from_json(body, "run_1", "http://platform")
    assert (info.baseline_run_id, info.endpoint_baseline_run_id) == ("", "")
    assert choose("", "the default", info) is None


class IgnoresFilters(http.server.BaseHTTPRequestHandler):
    """A platform whose run list ignores the filters (an older platform): every run, newest
    first. A stand-in, since the reference platform implements them."""

    runs: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        body = json.dumps(self.runs).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def unfiltered() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), IgnoresFilters)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_auto_filters_the_list_of_a_platform_that_ignores_the_filters(unfiltered: str) -> None:
    def run(run_id: str, status: str, endpoint: str = "demo", env: str = "local") -> Any:
        return {
            "id": run_id,
            "status": status,
            "endpoint": {"name": endpoint},
            "environment": {"name": env},
            "summary": SUMMARY,
        }

    IgnoresFilters.runs = [
        run("run_4", "pending"),
        run("run_3", "completed", env="prod"),
        run("run_2", "completed", endpoint="other"),
        run("run_1", "completed"),
    ]
    with PlatformClient(unfiltered) as client:
        latest = client.latest_completed_run("demo", "local", before="run_4")
    assert latest is not None and latest["id"] == "run_1"


def locust_run(
    locust_runner: LocustRunner, platform: PlatformServer, target: Target, *options: str
) -> tuple[str, int, str, dict[str, Any]]:
    """A 2 s headless run, with 0.5 s intervals: enough of them to compare."""
    run_id = platform.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform.url, "-u 2 -t 2s --influxdb-interval 0.5"),
        *options,
        locustfile=LOCUSTFILE,
        timeout=60,
    )
    return run_id, code, output, platform.get_run(run_id)


def test_a_missing_baseline_stops_the_run_before_any_load(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    _, code, output, run = locust_run(
        locust_runner, platform_server, target, "--baseline", "run_gone"
    )
    assert code == 2, output
    assert "perfx: baseline run run_gone (from --baseline (from the command line)) does not " in (
        output
    )
    assert run["status"] == "pending" and target.total == 0
    assert "Traceback" not in output


def test_auto_on_a_first_run_is_not_judged_and_the_next_run_is_compared_with_it(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target, tmp_path: Path
) -> None:
    first, code, output, run = locust_run(
        locust_runner, platform_server, target, "--baseline", "auto"
    )
    assert code == 0, output
    table = run["summary"]["baseline"]
    assert table["judged"] is False and table["rows"] == []
    assert table["notes"][0].startswith(NO_BASELINE_YET)
    assert "perfx: not compared with a baseline: no baseline yet" in output

    _, code, output, run = locust_run(locust_runner, platform_server, target, "--baseline", "auto")
    assert code == 0, output
    table = run["summary"]["baseline"]
    assert table["judged"] is True and table["baseline_run_id"] == first
    names = {row["name"] for row in table["rows"]}
    assert {"Aggregated", "GET /fast", "GET /slow"} <= names
    assert f"perfx: compared with baseline run {first}: " in output
    validate_response("GET", "/api/perf/runs/{run_id}", 200, run)
    page = platform_server.api("GET", f"/runs/{run['id']}").text
    assert f"<p>Compared with baseline run {first}</p>" in page
    row = next(r for r in table["rows"] if r["name"] == "GET /slow" and r["metric"] == "p95_ms")
    shown = f'<tr><td>GET /slow</td><td>p95_ms</td>\n<td class="num">{round(row["baseline"])}</td>'
    assert shown in page


def test_the_run_page_shows_a_first_runs_note_and_survives_a_malformed_table() -> None:
    first = summary_view(
        {
            "baseline": {
                "baseline_run_id": None,
                "judged": False,
                "notes": ["no baseline yet: first run"],
                "rows": [],
            }
        }
    )
    assert first.baseline == ["Not compared: no baseline", "no baseline yet: first run"]
    assert first.baseline_rows == []
    odd = summary_view({"baseline": {"rows": [5, {"metric": "rps", "delta": -2.5, "p": 0.01234}]}})
    assert odd.baseline_rows == [[DASH, "rps", DASH, DASH, "-2.5", "0.012", DASH]]
    assert summary_view({"baseline": "?"}).baseline == []


# -- perfx compare ----------------------------------------------------------------------------


def run_with(platform: PlatformServer, summary: dict[str, Any], endpoint: str = "demo") -> str:
    run_id = platform.create_run(endpoint=endpoint)
    platform.api("POST", f"/api/perf/runs/{run_id}/start", START).raise_for_status()
    body = {"finished_at": "2026-11-23T10:00:10Z", "summary": summary}
    platform.api("POST", f"/api/perf/runs/{run_id}/complete", body).raise_for_status()
    return run_id


def test_perfx_compare_prints_the_table_of_two_runs_for_a_ci_comment(
    platform_server: PlatformServer,
) -> None:
    base = run_with(platform_server, summary(entry("/search", [100] * 10)))
    now = run_with(platform_server, summary(entry("/search", [131] * 10)))
    url = ("--platform-url", platform_server.url)

    markdown = perfx("compare", base, now, "--format", "markdown", *url)
    assert markdown.returncode == 0, markdown.stderr
    assert "| GET /search | p95_ms | 100 | 131 | +31% | <0.001 | regression |" in markdown.stdout
    assert "- 1 regression(s); worst: p95_ms for GET /search: 131 vs baseline 100 ms" in (
        markdown.stdout
    )
    data = json.loads(perfx("compare", base, now, "--format", "json", *url).stdout)
    assert data["baseline_run_id"] == base and data["regressions"] == 1
    text = perfx("compare", now, now, *url)
    assert "no regression" in text.stdout and text.returncode == 0


def test_perfx_compare_names_a_run_it_cannot_compare(platform_server: PlatformServer) -> None:
    done = run_with(platform_server, summary(entry("/search", [100] * 10)))
    pending = platform_server.create_run()
    url = ("--platform-url", platform_server.url)

    unfinished = perfx("compare", done, pending, *url)
    assert unfinished.returncode == 2
    assert f"perfx: run {pending} (pending) has no summary to compare" in unfinished.stderr
    missing = perfx("compare", "run_nope", done, *url)
    assert missing.returncode == 1
    assert "perfx: run run_nope does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr + unfinished.stderr


def test_the_perfx_tab_shows_the_baseline_and_after_the_run_its_table(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target
) -> None:
    base, code, output, _ = locust_run(locust_runner, platform_server, target)
    assert code == 0, output
    run_id = platform_server.create_run(None, target.url)
    _, ui = web_ui(
        *(locust_runner, platform_server, run_id, "--baseline", base, "--threshold"),
        *("p95_ms < baseline + 10% for each name", "--influxdb-interval", "0.5"),
        locustfile=LOCUSTFILE,
    )
    assert tab_rows(ui)["Baseline"] == f"run {base} (from --baseline (from the command line))"
    assert ui.post("/swarm", {"user_count": "2", "spawn_rate": "2"}).json()["success"]
    wait_until(lambda: target.total > 20, message="some load")
    threshold = "Threshold p95_ms < baseline + 10% for each name"
    live = wait_until(  # judged live on the run so far, every 0.5 s interval, and said so
        lambda: "so far (provisional): " in (v := tab_rows(ui)[threshold]) and v,
        message="the provisional judgement in the tab",
    )
    assert re.search(r"for (Aggregated|GET /\S+): .*, after \d+ intervals$", live), live
    ui.stop()
    run = wait_until(
        lambda: (r := platform_server.get_run(run_id))["status"] != "running" and r,
        message="Stop ends the run",
    )
    rows = wait_until(
        lambda: "Baseline comparison" in (r := tab_rows(ui)) and r, message="the table in the tab"
    )
    assert rows["Baseline comparison"].startswith(f"compared with baseline run {base}: ")
    table = run["summary"]["baseline"]
    for row in table["rows"]:
        shown = rows[f"vs baseline: {row['name']} {row['metric']}"]
        assert shown == f"{row['verdict']}: {row['reason']}"
    [result] = run["summary"]["thresholds"]
    judged = rows["Threshold p95_ms < baseline + 10% for each name"]
    assert judged.startswith("passed: " if result["passed"] else "BREACHED: ")
    assert result["detail"] in judged
