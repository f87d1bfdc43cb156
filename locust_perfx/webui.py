"""Web UI integration: the run's arguments are checked, and the run started, when Start is pressed.

Locust's ``/swarm`` copies form values into ``parsed_options`` without checking types,
choices or required values, and its form renames some option names on the way back
(``p95_threshold`` returns as ``p_95_threshold``). A ``before_request`` hook on
``/swarm`` maps the names back, runs the same :func:`~locust_perfx.schema.coerce` as the
command line, and starts the platform run; any refusal is returned as
``{"success": false, "message": ...}``, which Locust's page shows, and no user spawns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Response, jsonify, request
from werkzeug.datastructures import ImmutableMultiDict

from locust_perfx.exceptions import ConfigError, PerfxError

if TYPE_CHECKING:
    from locust.web import WebUI

    from locust_perfx.options import OptionRegistry
    from locust_perfx.session import RunSession

logger = logging.getLogger(__name__)


def squash(name: str) -> str:
    """The part of an option name the web UI's renaming keeps: letters and digits, lower-cased."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def restore_names(
    form: ImmutableMultiDict[str, str], dests: Iterable[str]
) -> ImmutableMultiDict[str, str]:
    """Give form keys the web UI mangled their option's real name back."""
    by_squash = {squash(dest): dest for dest in dests}
    items = []
    for key, value in form.items(multi=True):
        if key not in by_squash.values() and squash(key) in by_squash:
            key = by_squash[squash(key)]
        items.append((key, value))
    return ImmutableMultiDict(items)


def install(web_ui: WebUI, session: RunSession, registry: OptionRegistry) -> None:
    """Hook the start form of ``web_ui`` to ``session``."""

    @web_ui.app.before_request
    def check_swarm() -> Response | None:
        if request.method != "POST" or not request.path.endswith("/swarm"):
            return None
        dests = [p.dest for p in session.info.schema.parameters] + ["run_id"]
        request.form = restore_names(request.form, dests)  # type: ignore[misc]
        try:
            session.start_from_form(request.form)
        except PerfxError as err:
            problems = err.problems if isinstance(err, ConfigError) else [str(err)]
            message = "; ".join(problems)
            logger.error("perfx: not starting: %s", message)
            return jsonify({"success": False, "message": message, "host": session.host})
        return None
