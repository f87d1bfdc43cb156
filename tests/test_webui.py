"""The web UI hooks without a browser: name restoring, form checks, and what the UI's HTTP
answers hold (real Locust processes, the real platform, plain ``requests``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.datastructures import ImmutableMultiDict

from locust_perfx.webui import (
    STATUS_ROUTE,
    TAB_KEY,
    form_clashes,
    locust_form_problems,
    restore_names,
    without_credentials,
)
from tests.fixtures.locust import EXAMPLES, ROOT, LocustRunner, Target, free_port
from tests.fixtures.platform import PlatformFactory
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until

PLATFORM_TOKEN = "plat-tok-0b7c44-never-shown"
INFLUX_TOKEN = "influx-tok-93ae10-never-shown"
SCHEMA: dict[str, Any] = json.loads((EXAMPLES / "schema.json").read_text())
GOOD_FORM = {
    "user_count": "2",
    "spawn_rate": "2",
    "host": "",
    "run_time": "",
    "model": "m2",
    "batch_size": "8",
    "gpu_model": "A100",
    "warm_up": "false",
}
HTTP_TIMEOUT = 5.0


def test_mangled_names_get_their_real_name_back() -> None:
    # The keys exactly as Locust's form sends them back (seen in the browser test).
    form = ImmutableMultiDict(
        [("p_95_threshold", "99.5"), ("use_http_2", "true"), ("a_bc", "zz"), ("run_time", "5s")]
    )
    restored = restore_names(form, ["p95_threshold", "use_http2", "a_b_c", "runtime_x", "run_id"])
    assert restored.to_dict() == {
        "p95_threshold": "99.5",
        "use_http2": "true",
        "a_b_c": "zz",
        "run_time": "5s",
    }


def test_a_parameter_that_squashes_like_a_form_field_never_takes_its_value() -> None:
    restored = restore_names(ImmutableMultiDict([("run_time", "5s")]), ["runtime"])
    assert restored.to_dict() == {"run_time": "5s"}


def test_names_the_form_cannot_tell_apart_are_named() -> None:
    assert form_clashes(["p95_threshold", "use_http2", "a_b_c", "batch_size"]) == {}
    assert form_clashes(["a_bc", "ab_c"]) == {
        "a_bc": "schema parameters 'a_bc' and 'ab_c' read the same in the web UI form, which "
        "drops '_', '-' and case; rename one of them on the platform"
    }
    assert form_clashes(["RunId"]) == {
        "RunId": "schema parameter 'RunId' reads the same as the web UI field 'run_id' once "
        "the form drops '_', '-' and case; rename it on the platform"
    }


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("user_count", "-1", 'Number of users: expected a whole number, got "-1"'),
        ("spawn_rate", "0", 'Ramp up: expected a number of users per second above 0, got "0"'),
        ("spawn_rate", "inf", 'Ramp up: expected a number of users per second above 0, got "inf"'),
        ("run_time", "soon", 'Run time: expected 20s, 3m, 1h20m or similar, got "soon"'),
    ],
)
def test_what_locust_would_refuse_is_refused_before_the_run_starts(
    field: str, value: str, problem: str
) -> None:
    assert locust_form_problems({**GOOD_FORM, field: value}) == [problem]
    assert locust_form_problems({**GOOD_FORM, "run_time": "1m30s"}) == []


def test_urls_lose_their_credentials() -> None:
    assert without_credentials("http://u:pw@influx:8086/x?y=1") == "http://influx:8086/x?y=1"
    assert without_credentials("https://platform.example") == "https://platform.example"


class Ui:
    """Plain HTTP to one Locust web UI, recording every body it answers."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.bodies: list[str] = []

    def ready(self) -> None:
        """Locust logs its web address a moment before it listens there."""
        wait_until(
            lambda: self.http.get(self.base_url + "/", timeout=HTTP_TIMEOUT, allow_redirects=False),
            ignore=(requests.ConnectionError,),
            message=f"{self.base_url} listening",
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        response = self.http.get(self.base_url + path, timeout=HTTP_TIMEOUT, **kwargs)
        self.bodies.append(response.text)
        return response

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> requests.Response:
        response = self.http.post(self.base_url + path, data=data, timeout=HTTP_TIMEOUT, **kwargs)
        self.bodies.append(response.text)
        return response

    def stop(self) -> requests.Response:
        """Press Stop: a POST since Locust 2.47, a GET before (each answers 405 to the other)."""
        response = self.post("/stop", {})
        return self.get("/stop") if response.status_code == 405 else response


def tab_rows(ui: Ui) -> dict[str, str]:
    """The PerfX tab's rows, as they ride on /stats/requests."""
    body = ui.get("/stats/requests").json()
    [rows] = [s["data"] for s in body["extended_stats"] if s["key"] == TAB_KEY]
    return {row["field"]: row["value"] for row in rows}


@pytest.mark.slow
def test_a_distributed_master_under_a_base_path_serves_the_tab_and_never_a_token(
    platform_factory: PlatformFactory,
    locust_runner: LocustRunner,
    target: Target,
    victoria_metrics: VictoriaMetrics,
) -> None:
    platform = platform_factory(token=PLATFORM_TOKEN)
    run_id = platform.create_run(SCHEMA, target.url)
    port = free_port()
    master, workers = locust_runner.start_distributed(
        *("--run-id", run_id, "--platform-url", platform.url, "--platform-token", PLATFORM_TOKEN),
        *("--model", "m1", "--gpu_model", "H100"),
        *("--influxdb-url", victoria_metrics.url, "--influxdb-token", INFLUX_TOKEN),
        *("--influxdb-org", "perf", "--influxdb-bucket", "locust", "--influxdb-interval", "1"),
        *("--web-host", "127.0.0.1", "--web-port", str(port), "--web-base-path", "/lt"),
        workers=1,
    )
    master.wait_for("Starting web interface")
    master.wait_for("1 workers connected")
    ui = Ui(f"http://127.0.0.1:{port}/lt")
    ui.ready()

    index = ui.get("/")
    assert index.status_code == 200 and "window.templateArgs" in index.text
    assert '"extended_tabs": [{"key": "perfx", "title": "PerfX"}]' in index.text
    pending = ui.get(STATUS_ROUTE).json()
    assert pending["state"] == "pending" and pending["loop"] is None  # no test watched yet

    refused = ui.post("/swarm", {**GOOD_FORM, "run_id": run_id, "batch_size": "lots"}).json()
    assert refused == {
        "success": False,
        "message": '--batch_size (from the web UI form): expected an integer, got "lots"',
        "host": target.url,
    }
    assert platform.calls(run_id) == []

    started = ui.post("/swarm", {**GOOD_FORM, "run_id": run_id}).json()
    assert started["success"] is True, started
    wait_until(lambda: platform.get_run(run_id)["status"] == "running", message="running")
    wait_until(lambda: target.total > 0, message="the workers load the target")
    status = ui.get(STATUS_ROUTE).json()
    assert status["state"] == "running"
    assert "status" not in status  # the fetch-time "pending" is not a live fact
    assert status["run_url"] == f"{platform.url}/runs/{run_id}"
    assert status["arguments"] == {
        "model": "m2",
        "batch_size": 8,
        "gpu_model": "A100",
        "warm_up": False,
    }
    rows = wait_until(
        lambda: (r := tab_rows(ui))["Platform state"] == "running" and r, message="the tab's rows"
    )
    assert rows["Run id"] == run_id and rows["Argument batch_size"] == "8"
    assert rows["Event loop"].startswith("p99 lateness "), rows  # the master's, watched
    for path in ("/exceptions", "/logs", "/tasks", "/worker-count"):
        ui.get(path)

    ui.stop()
    wait_until(
        lambda: platform.get_run(run_id)["status"] == "completed", timeout=15, message="completed"
    )
    finished = wait_until(
        lambda: (s := ui.get(STATUS_ROUTE).json())["state"] == "finished" and s,
        message="the tab says finished",
    )
    assert finished["outcome"] == "completed"
    ui.get("/")
    master.stop()
    for worker in workers:
        worker.stop()

    outputs = [master.output, *(w.output for w in workers)]
    for secret in (PLATFORM_TOKEN, INFLUX_TOKEN):
        for body in ui.bodies + outputs:
            assert secret not in body


LOGIN_LOCUSTFILE = """
import os

from locust import events

from examples_locustfile import Shopper  # noqa: F401


@events.init.add_listener
def no_user_ever_signs_in(environment, **kwargs):
    if environment.web_ui:
        environment.web_ui.app.secret_key = os.urandom(16)
        environment.web_ui.login_manager.user_loader(lambda user_id: None)
"""


@pytest.mark.slow
def test_with_web_login_a_visitor_who_is_not_signed_in_sees_nothing_and_starts_nothing(
    platform_factory: PlatformFactory,
    locust_runner: LocustRunner,
    target: Target,
    tmp_path: Path,
) -> None:
    (tmp_path / "examples_locustfile.py").write_text((EXAMPLES / "locustfile.py").read_text())
    locustfile = tmp_path / "login_locustfile.py"
    locustfile.write_text(LOGIN_LOCUSTFILE)
    platform = platform_factory(token=PLATFORM_TOKEN)
    run_id = platform.create_run(SCHEMA, target.url)
    port = free_port()
    proc = locust_runner.start(
        *("--run-id", run_id, "--platform-url", platform.url, "--platform-token", PLATFORM_TOKEN),
        *("--model", "m1", "--gpu_model", "H100", "--web-login"),
        *("--web-host", "127.0.0.1", "--web-port", str(port)),
        locustfile=locustfile,
        env={"PYTHONPATH": str(tmp_path)},
    )
    proc.wait_for("Starting web interface")
    ui = Ui(f"http://127.0.0.1:{port}")
    ui.ready()

    status = ui.get(STATUS_ROUTE, allow_redirects=False)
    assert status.status_code == 302 and "/login" in status.headers["Location"]
    stats = ui.get("/stats/requests", allow_redirects=False)
    assert stats.status_code == 302 and TAB_KEY not in stats.text
    swarm = ui.post("/swarm", {**GOOD_FORM, "run_id": run_id}, allow_redirects=False)
    assert swarm.status_code == 302
    assert platform.get_run(run_id)["status"] == "pending"
    assert platform.calls(run_id) == []
    assert target.total == 0


@pytest.mark.slow
def test_parameters_the_form_cannot_tell_apart_are_refused_at_start_up(
    platform_server: Any, locust_runner: LocustRunner, target: Target
) -> None:
    schema = {"parameters": [{"name": "a_bc", "type": "string"}, {"name": "ab_c", "type": "int"}]}
    run_id = platform_server.create_run(schema, target.url)
    code, output = locust_runner.run(
        *("--run-id", run_id, "--platform-url", platform_server.url),
        *("--web-host", "127.0.0.1", "--web-port", str(free_port())),
        timeout=10,
    )
    assert code == 2
    assert (
        "perfx: schema parameters 'a_bc' and 'ab_c' read the same in the web UI form, which "
        "drops '_', '-' and case; rename one of them on the platform"
    ) in output
    assert platform_server.get_run(run_id)["status"] == "pending"


def test_required_arguments_may_wait_for_the_start_form(
    platform_factory: PlatformFactory, locust_runner: LocustRunner, target: Target
) -> None:
    platform = platform_factory()
    run_id = platform.create_run(SCHEMA, target.url)
    port = free_port()
    proc = locust_runner.start(
        *("--run-id", run_id, "--platform-url", platform.url),
        *("--web-host", "127.0.0.1", "--web-port", str(port)),
    )
    proc.wait_for("Starting web interface")
    ui = Ui(f"http://127.0.0.1:{port}")
    ui.ready()
    page = ui.get("/").text
    start = page.index("window.templateArgs = ") + len("window.templateArgs = ")
    form = json.JSONDecoder().raw_decode(page, start)[0]["extra_options"]
    # A required choice without a default: nothing chosen for the user, marked required, its
    # label consistent with what is shown.
    assert form["gpu_model"]["choices"] == ["", "A100", "H100", "RTX4090"]
    assert not form["gpu_model"]["default_value"] and form["gpu_model"]["is_required"]
    assert form["gpu_model"]["help_text"] == (
        "GPU model. One of A100, H100, RTX4090. Required. No default."
    )
    refused = ui.post(
        "/swarm", {**GOOD_FORM, "run_id": run_id, "model": "", "batch_size": "lots"}
    ).json()
    assert refused == {
        "success": False,
        "message": "model is required: fill it in the form; "
        '--batch_size (from the web UI form): expected an integer, got "lots"',
        "host": target.url,
    }
    assert platform.calls(run_id) == []
    bad = {"user_count": "abc", "batch_size": "lots", "gpu_model": "TPU", "model": "m"}
    every = ui.post("/swarm", {**GOOD_FORM, "run_id": run_id, **bad}).json()["message"]
    assert every.split("; ") == [
        'Number of users: expected a whole number, got "abc"',
        '--batch_size (from the web UI form): expected an integer, got "lots"',
        '--gpu_model (from the web UI form): expected one of A100, H100, RTX4090, got "TPU"',
    ]
    assert platform.calls(run_id) == []
    assert ui.post("/swarm", {**GOOD_FORM, "run_id": run_id}).json()["success"] is True
    run = wait_until(lambda: platform.get_run(run_id), message="the run")
    assert (run["status"], run["arguments"]["model"]) == ("running", "m2")


def test_a_scripted_start_without_the_runs_fields_uses_the_values_given_at_start_up(
    platform_server: Any, locust_runner: LocustRunner, target: Target
) -> None:
    # Locust's docs drive the web API with just the user count and ramp up.
    run_id = platform_server.create_run(SCHEMA, target.url)
    port = free_port()
    proc = locust_runner.start(
        *("--run-id", run_id, "--platform-url", platform_server.url),
        *("--model", "m1", "--gpu_model", "H100", "--batch_size", "16"),
        *("--web-host", "127.0.0.1", "--web-port", str(port), "--threshold", "p95_ms < 60000"),
    )
    proc.wait_for("Starting web interface")
    ui = Ui(f"http://127.0.0.1:{port}")
    ui.ready()
    started = ui.post("/swarm", {"user_count": "1", "spawn_rate": "1"}).json()
    assert started["success"] is True, started
    run = platform_server.get_run(run_id)
    assert run["status"] == "running"
    assert run["arguments"] == {
        "model": "m1",
        "batch_size": 16,
        "gpu_model": "H100",
        "warm_up": False,
    }
    assert tab_rows(ui)["Threshold p95_ms < 60000"].startswith(("not judged yet", "passed"))
    ui.stop()
    run = wait_until(
        lambda: (r := platform_server.get_run(run_id))["status"] == "completed" and r,
        message="Stop completes the run",
    )
    [result] = run["summary"]["thresholds"]
    assert result["passed"] is True
    assert tab_rows(ui)["Threshold p95_ms < 60000"] == f"passed (observed {result['observed']:g})"


def test_each_web_ui_start_shows_its_own_run_to_the_locustfiles_test_start(
    platform_server: Any, locust_runner: LocustRunner, target: Target
) -> None:
    """A locustfile's test_start listener runs before the plugin's: the values come earlier."""
    first = platform_server.create_run(SCHEMA, target.url)
    second = platform_server.create_run(SCHEMA, target.url)
    port = free_port()
    proc = locust_runner.start(
        *("--run-id", first, "--platform-url", platform_server.url, "--model", "m1"),
        *("--gpu_model", "H100", "--web-host", "127.0.0.1", "--web-port", str(port)),
        locustfile=ROOT / "tests" / "locustfiles" / "test_start_env.py",
    )
    proc.wait_for("Starting web interface")
    ui = Ui(f"http://127.0.0.1:{port}")
    ui.ready()
    for run_id, model in ((first, "m2"), (second, "m3")):
        form = {**GOOD_FORM, "run_id": run_id, "model": model}
        assert ui.post("/swarm", form).json()["success"] is True
        proc.wait_for(rf"test_start sees .*PERFX_MODEL={model} PERFX_RUN_ID={run_id} ")
        ui.stop()
        wait_until(
            lambda run_id=run_id: platform_server.get_run(run_id)["status"] == "completed",
            message="Stop completes the run",
        )
    assert len(re.findall("test_start sees", proc.output)) == 2
