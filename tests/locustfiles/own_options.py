"""An ordinary locustfile with options and a web route of its own, as teams write them.

Nothing here knows about perfx: the tests run it under plain Locust and under the plugin
and expect the same behaviour. ``OWN_FLAG=--model`` also registers that flag (a run
argument of examples/schema.json, say, or one of the plugin's own).
"""

import logging
import os
from typing import Any

from locust import HttpUser, constant, events, task


@events.init_command_line_parser.add_listener
def own_options(parser: Any) -> None:
    parser.add_argument(
        "--greeting", default="hello", include_in_web_ui=True, help="the path the users request"
    )
    parser.add_argument(
        "--api-key", default="", is_secret=True, include_in_web_ui=True, help="a secret"
    )
    parser.add_argument("--repeat", type=int, default=1, env_var="LOCUST_REPEAT")
    if os.environ.get("OWN_FLAG"):
        parser.add_argument(os.environ["OWN_FLAG"], default="mine", include_in_web_ui=True)


@events.init.add_listener
def own_route(environment: Any, **kwargs: Any) -> None:
    if environment.web_ui:

        @environment.web_ui.app.route("/own/options")
        def options() -> dict[str, Any]:
            parsed = environment.parsed_options
            return {"greeting": parsed.greeting, "repeat": parsed.repeat}


@events.test_start.add_listener
def own_test_start(environment: Any, **kwargs: Any) -> None:
    parsed = environment.parsed_options
    logging.info("own test_start: greeting=%s repeat=%s", parsed.greeting, parsed.repeat)


class Greeter(HttpUser):
    wait_time = constant(0.05)

    @task
    def greet(self) -> None:
        parsed = self.environment.parsed_options
        for _ in range(parsed.repeat):
            self.client.get(f"/greet/{parsed.greeting}", name="/greet/[greeting]")
