"""The verdict equals Locust's exit code, whoever set it and in whatever order they listen."""

from __future__ import annotations

import re
from typing import Any

import pytest
from locust.env import Environment
from locust.event import Events

from locust_perfx.exits import QuittingWatch, locust_exit_code
from tests.fixtures.locust import PLUGIN, ROOT, LocustRunner, Target, headless
from tests.fixtures.platform import PlatformServer
from tests.test_cli import perfx

BEHAVIOURS = ROOT / "tests" / "locustfiles" / "behaviours.py"


def strict(environment: Environment, **_: Any) -> None:
    environment.process_exit_code = 3


def broken(**_: Any) -> None:
    raise RuntimeError("a listener's bug")


@pytest.mark.parametrize("registered", ["before the plugin", "after the plugin"])
def test_the_last_word_sees_every_quitting_listeners_exit_code(registered: str) -> None:
    environment = Environment(events=Events())
    seen: list[int] = []
    quitting = environment.events.quitting
    if registered == "before the plugin":
        quitting.add_listener(strict)
    watch = QuittingWatch(environment, lambda **_: seen.append(locust_exit_code(environment)))
    if registered == "after the plugin":
        quitting.add_listener(strict)

    quitting.fire(environment=environment, reverse=True)  # as Locust's shutdown() fires it

    assert seen == [3]
    assert watch.set_by_other
    assert watch.setter == f"the quitting listener strict in {__name__}"


def test_a_listener_that_raises_is_handled_as_locust_handles_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from locust import log

    monkeypatch.setattr(log, "unhandled_greenlet_exception", False)
    environment = Environment(events=Events())
    seen: list[int] = []
    environment.events.quitting.add_listener(broken)
    QuittingWatch(environment, lambda **_: seen.append(locust_exit_code(environment)))
    environment.events.quitting.fire(environment=environment, reverse=True)
    assert seen == [2]  # logged, and Locust's exit code 2, as without the plugin


def test_the_plugins_own_code_is_not_taken_for_anothers() -> None:
    environment = Environment(events=Events())
    watch = QuittingWatch(environment, lambda **_: watch.set_own(6))
    environment.events.quitting.fire(environment=environment, reverse=True)
    assert environment.process_exit_code == 6
    assert not watch.set_by_other
    environment.events.quitting.fire(environment=environment, reverse=True)  # SIGTERM: twice
    assert not watch.set_by_other


def test_a_code_set_before_quitting_is_named_as_such() -> None:
    environment = Environment(events=Events())
    watch = QuittingWatch(environment, lambda **_: None)
    environment.process_exit_code = 7  # say, a task
    environment.events.quitting.fire(environment=environment, reverse=True)
    assert watch.setter == "the locustfile or another plugin, before quitting"


@pytest.mark.parametrize("order", ["plugin first", "locustfile first"])
def test_a_locustfiles_exit_code_fails_the_run_in_either_file_order(
    locust_runner: LocustRunner, platform_server: PlatformServer, target: Target, order: str
) -> None:
    files = f"{PLUGIN},{BEHAVIOURS}" if order == "plugin first" else f"{BEHAVIOURS},{PLUGIN}"
    run_id = platform_server.create_run(None, target.url)
    code, output = locust_runner.run(
        *headless(run_id, platform_server.url, "-u 2 -r 2 -t 2s"),
        locustfile=files,
        plugin=False,
        env={"BEHAVIOUR": "exit_code"},
    )
    assert code == 3, output
    run = platform_server.get_run(run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    assert run["reason"] == "exit code 3 set by the quitting listener strict in behaviours"
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("checks", "behaviour", "code", "reason"),
    [
        ("--check-rps 100000", "ok", 3, r"exit code 3 set by locust-plugins' quitting listener"),
        ("--check-avg-response-time 0.0001", "ok", 3, r"exit code 3 set by locust-plugins'"),
        ("--check-fail-ratio 0.01", "fail", 3, r"exit code 3 set by locust-plugins'"),
        # Its fail-ratio check replaces --exit-code-on-error: failures under it pass.
        ("--check-fail-ratio 0.9", "fail", 0, None),
        ("--check-rps 1 --check-avg-response-time 60000", "ok", 0, None),
    ],
)
def test_locust_plugins_checks_decide_as_they_do_without_perfx(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    checks: str,
    behaviour: str,
    code: int,
    reason: str | None,
) -> None:
    pytest.importorskip("locust_plugins")
    run_id = platform_server.create_run(None, target.url)
    exit_code, output = locust_runner.run(
        *headless(run_id, platform_server.url, f"-u 2 -r 2 -t 2s {checks}"),
        locustfile=BEHAVIOURS,
        env={"BEHAVIOUR": behaviour},
    )
    plain, plain_output = locust_runner.run(
        "--headless",
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "2s",
        "-H",
        target.url,
        *checks.split(),
        locustfile=BEHAVIOURS,
        plugin=False,
        env={"BEHAVIOUR": behaviour},
    )
    assert exit_code == plain == code, (output, plain_output)
    run = platform_server.get_run(run_id)
    assert "Traceback" not in output
    if reason is None:
        assert (run["status"], run["reason"]) == ("completed", None)
    else:
        assert (run["status"], run["exit_code"]) == ("failed", code)
        assert re.match(reason, run["reason"]), run["reason"]


@pytest.mark.parametrize(
    ("feature", "options", "code"),
    [
        # The test ends itself: the run completes. One user: locust-plugins quits the runner
        # when the last user stops, which two users stopping at once can both miss.
        ("", "-u 1 --iterations 20 -t 60s", 0),
        ("transactions", "-u 2 -t 2s", 0),
        ("ips", "-u 2 -t 2s", 0),
        ("reschedule", "-u 2 -t 2s", 1),
        ("distributor", "-u 2 --processes 2 -t 3s", 0),
    ],
)
def test_locust_plugins_features_give_the_exit_code_they_give_without_perfx(
    locust_runner: LocustRunner,
    platform_server: PlatformServer,
    target: Target,
    feature: str,
    options: str,
    code: int,
) -> None:
    pytest.importorskip("locust_plugins")
    locustfile = ROOT / "tests" / "locustfiles" / "with_locust_plugins.py"
    run_id = platform_server.create_run(None, target.url)
    args = f"-r 2 {options}"
    exit_code, output = locust_runner.run(
        *headless(run_id, platform_server.url, args),
        locustfile=locustfile,
        env={"FEATURE": feature},
    )
    plain_target = target.total
    plain, plain_output = locust_runner.run(
        "--headless", "-H", target.url, *args.split(),
        locustfile=locustfile,
        plugin=False,
        env={"FEATURE": feature},
    )  # fmt: skip
    assert exit_code == plain == code, (output, plain_output)
    assert "Traceback" not in output
    run = platform_server.get_run(run_id)
    assert run["status"] == ("completed" if code == 0 else "failed"), run["reason"]
    assert run["summary"]["total"]["requests"] == plain_target > 0
    if feature == "reschedule":
        assert target.counts["/never"] == 0 and run["exit_code"] == 1


def test_perfx_help_lists_both_plugins_options() -> None:
    pytest.importorskip("locust_plugins")
    helped = perfx("--help")
    assert helped.returncode == 0, helped.stderr
    for flag in ("--run-id", "--state-dir", "--check-rps", "--check-fail-ratio", "--iterations"):
        assert f"  {flag} " in helped.stdout or f", {flag} " in helped.stdout, flag
