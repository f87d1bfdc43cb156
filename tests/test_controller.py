"""The run controller in-process: a real Locust environment and LocalRunner, the reference
platform over real HTTP, and Locust's own shutdown sequence (``main.py`` ``shutdown``)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from locust import HttpUser, constant, task
from locust.argument_parser import parse_options
from locust.env import Environment
from locust.event import Events

from locust_perfx.controller import RunController
from locust_perfx.criteria import parse_criteria
from locust_perfx.exits import locust_exit_code
from locust_perfx.plan import RunPlan, Settings
from locust_perfx.platform import PlatformClient
from tests.fixtures.locust import Target
from tests.fixtures.platform import PlatformServer
from tests.fixtures.waiting import wait_until


class Visitor(HttpUser):
    wait_time = constant(0.05)

    @task
    def visit(self) -> None:
        self.client.get("/ok")


@pytest.fixture(autouse=True)
def own_signal_handlers() -> Iterator[None]:
    """The controller chains Ctrl-C as it would in Locust: give pytest its handler back."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def running_controller(platform: PlatformServer, target: Target, *thresholds: str) -> RunController:
    """A headless run of one user, started on the platform and generating load."""
    run_id = platform.create_run(None, target.url)
    with PlatformClient(platform.url) as client:
        info = client.get_run(run_id)
    options = parse_options(["--headless", "-u", "1", "-r", "1", "--exit-code-on-error", "1"])
    environment = Environment(
        user_classes=[Visitor], events=Events(), host=target.url, parsed_options=options
    )
    environment.create_local_runner()
    settings = Settings(run_id, platform_url=platform.url, platform_timeout=1)
    criteria = tuple(parse_criteria(thresholds, "the test"))
    plan = RunPlan(settings, info, {}, host=target.url, criteria=criteria)
    controller = RunController.open(environment, plan)
    controller.attach()
    assert environment.runner is not None
    environment.runner.start(1, 1)
    wait_until(lambda: environment.stats.total.num_requests > 0, message="load")
    return controller


def shut_down(environment: Environment) -> int:
    """What Locust's ``shutdown()`` does once the test ended: quitting, code, quit."""
    assert environment.runner is not None
    environment.runner.quit()
    environment.events.quitting.fire(environment=environment, reverse=True)
    code = locust_exit_code(environment)
    environment.events.quit.fire(exit_code=code)
    return code


def test_a_quitting_listener_registered_after_the_plugin_decides_the_verdict(
    platform_server: PlatformServer, target: Target
) -> None:
    controller = running_controller(platform_server, target)
    environment = controller.environment

    @environment.events.quitting.add_listener
    def late_check(environment: Environment, **_: Any) -> None:
        environment.process_exit_code = 3

    assert shut_down(environment) == 3
    run = platform_server.get_run(controller.plan.run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    assert run["reason"] == (
        "exit code 3 set by the quitting listener "
        "test_a_quitting_listener_registered_after_the_plugin_decides_the_verdict.<locals>"
        f".late_check in {__name__}"
    )


@pytest.mark.parametrize(("other_code", "exit_code"), [(None, 6), (3, 3)])
def test_the_plugins_own_code_only_where_locust_would_exit_0(
    platform_server: PlatformServer, target: Target, other_code: int | None, exit_code: int
) -> None:
    controller = running_controller(platform_server, target, "rps >= 100000")
    environment = controller.environment
    if other_code is not None:
        environment.events.quitting.add_listener(
            lambda environment, **_: setattr(environment, "process_exit_code", other_code)
        )

    assert shut_down(environment) == exit_code
    run = platform_server.get_run(controller.plan.run_id)
    assert (run["status"], run["exit_code"]) == ("failed", exit_code)
    if other_code is None:
        assert run["reason"].startswith("thresholds breached: rps >= 100000: observed ")
    else:
        assert re.match(
            r"exit code 3 set by the quitting listener \S+<lambda> in tests\.test_controller; "
            r"thresholds also breached: rps >= 100000: observed ",
            run["reason"],
        ), run["reason"]


def test_a_greenlet_that_dies_fails_the_run_and_every_greenlet_ends_with_it(
    platform_server: PlatformServer, target: Target
) -> None:
    controller = running_controller(platform_server, target)

    def broken() -> None:
        raise KeyError("a bug")

    controller.greenlets.spawn(broken).join()
    assert len(controller.greenlets) > 0  # the ticker, at least

    assert shut_down(controller.environment) == 1
    run = platform_server.get_run(controller.plan.run_id)
    assert run["status"] == "failed"
    assert run["reason"] == "the perfx plugin failed: KeyError: 'a bug' (in a greenlet)"
    gevent.sleep(0)  # the kills are delivered on the next turn of the loop
    assert len(controller.greenlets) == 0
