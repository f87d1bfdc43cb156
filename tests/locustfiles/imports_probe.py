"""Prints every module the Locust process imported, as it quits: for tests of what the
plugin costs Locust's process. Given with ``-f`` after a locustfile."""

import json
import sys

from locust import events


@events.quitting.add_listener
def _print_modules(**_: object) -> None:
    print("modules:", json.dumps(sorted(sys.modules)), flush=True)
