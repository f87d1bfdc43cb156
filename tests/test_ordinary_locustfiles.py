"""A locustfile with options and a web route of its own behaves with the plugin loaded
exactly as under plain Locust: each test runs it both ways and asserts the same things.

Its options reach its users from the command line and the environment, on workers too, and
from the web UI's form, where they sit beside the run's arguments; its route answers; its
``test_start`` listener runs. A flag it shares with a run argument or with the plugin is
refused before any load, naming both sides, instead of argparse's traceback inside the
locustfile's listener.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.locust import ROOT, LocustRunner, Target, free_port
from tests.fixtures.platform import PlatformServer
from tests.fixtures.waiting import wait_until
from tests.test_webui import SCHEMA, Ui

OWN = ROOT / "tests" / "locustfiles" / "own_options.py"
RUN_ARGUMENTS = ("--model", "m1", "--gpu_model", "A100")
MODES = pytest.mark.parametrize("plugin", [False, True], ids=["plain", "perfx"])


class Mode:
    """Plain Locust given the host, or the plugin given a fresh run of that host."""

    def __init__(self, plugin: bool, platform: PlatformServer, target: Target) -> None:
        self.plugin = plugin
        self.platform = platform
        self.run_id = platform.create_run(SCHEMA, target.url) if plugin else ""
        self.args = (
            ["--run-id", self.run_id, "--platform-url", platform.url, *RUN_ARGUMENTS]
            if plugin
            else ["-H", target.url]
        )

    def status(self) -> str | None:
        return str(self.platform.get_run(self.run_id)["status"]) if self.plugin else None


def template_args(ui: Ui) -> dict[str, Any]:
    """What Locust hands its web page: ``window.templateArgs = {...}`` in the index."""
    page = ui.get("/").text
    start = page.index("window.templateArgs = ") + len("window.templateArgs = ")
    args, _ = json.JSONDecoder().raw_decode(page, start)
    return dict(args)


@MODES
def test_its_options_reach_its_users_and_its_listener(
    plugin: bool, locust_runner: LocustRunner, target: Target, platform_server: PlatformServer
) -> None:
    mode = Mode(plugin, platform_server, target)
    code, output = locust_runner.run(
        *("--headless", "-u", "2", "-r", "2", "-t", "2s", "--greeting", "hey", *mode.args),
        locustfile=OWN,
        plugin=plugin,
        env={"LOCUST_REPEAT": "2"},
    )

    assert code == 0, output
    assert set(target.counts) == {"/greet/hey"}
    assert "own test_start: greeting=hey repeat=2" in output
    assert mode.status() == ("completed" if plugin else None)


@MODES
def test_its_options_given_to_the_master_reach_the_workers(
    plugin: bool, locust_runner: LocustRunner, target: Target, platform_server: PlatformServer
) -> None:
    mode = Mode(plugin, platform_server, target)
    master, workers = locust_runner.start_distributed(
        *("--headless", "-u", "2", "-r", "2", "-t", "3s", *mode.args),
        *("--greeting", "hey", "--repeat", "2"),
        workers=2,
        locustfile=OWN,
        plugin=plugin,
    )

    assert master.wait() == 0, master.output
    assert set(target.counts) == {"/greet/hey"}
    for worker in workers:
        assert worker.wait() == 0, worker.output
        assert "own test_start: greeting=hey repeat=2" in worker.output
    assert mode.status() == ("completed" if plugin else None)


@MODES
def test_its_route_and_form_fields_work_in_the_web_ui(
    plugin: bool, locust_runner: LocustRunner, target: Target, platform_server: PlatformServer
) -> None:
    mode = Mode(plugin, platform_server, target)
    port = free_port()
    locust_runner.start(
        *("--web-host", "127.0.0.1", "--web-port", str(port), "--greeting", "hey", *mode.args),
        locustfile=OWN,
        plugin=plugin,
    )
    ui = Ui(f"http://127.0.0.1:{port}")
    ui.ready()

    assert ui.get("/own/options").json() == {"greeting": "hey", "repeat": 1}
    fields = template_args(ui)["extra_options"]
    assert fields["greeting"]["default_value"] == "hey"
    assert fields["api_key"]["is_secret"] is True
    run_fields = {"model", "gpu_model", "batch_size", "warm_up"}
    assert run_fields <= set(fields) if plugin else not run_fields & set(fields)

    form = {"user_count": "1", "spawn_rate": "1", "host": target.url, "greeting": "yo"}
    assert ui.post("/swarm", form).json()["success"] is True
    wait_until(lambda: target.counts["/greet/yo"] > 0, message="the form's greeting is used")
    assert ui.get("/own/options").json()["greeting"] == "yo"
    ui.stop()

    assert set(target.counts) == {"/greet/yo"}
    if plugin:
        wait_until(lambda: mode.status() == "completed", message="Stop completes the run")


@pytest.mark.parametrize(
    ("flag", "problem"),
    [
        (
            "--model",
            "perfx: schema parameter 'model' clashes with the option --model that the "
            "locustfile (or another plugin) adds; rename the parameter on the platform or "
            "the locustfile's option",
        ),
        (
            "--influxdb-url",
            "perfx: the option --influxdb-url that the locustfile (or another plugin) adds is "
            "also an option of the perfx plugin; rename it in the locustfile",
        ),
    ],
)
def test_a_flag_it_shares_with_the_run_or_the_plugin_is_refused_before_any_load(
    flag: str,
    problem: str,
    locust_runner: LocustRunner,
    target: Target,
    platform_server: PlatformServer,
) -> None:
    mode = Mode(True, platform_server, target)
    code, output = locust_runner.run(
        *("--headless", "-u", "1", "-t", "2s", *mode.args),
        locustfile=OWN,
        env={"OWN_FLAG": flag},
    )

    assert code == 2, output
    assert problem in output
    assert "Traceback" not in output
    assert target.total == 0
    assert mode.status() == "pending"
