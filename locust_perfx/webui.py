"""Web UI integration: the run's arguments are checked, and the run started, when Start is pressed;
a PerfX tab shows the run's live state.

Locust's ``/swarm`` copies form values into ``parsed_options`` without checking types,
choices or required values, and its form renames some option names on the way back
(``p95_threshold`` returns as ``p_95_threshold``). A ``before_request`` hook on
``/swarm`` maps the names back, checks the fields Locust itself would refuse, runs the
same :func:`~locust_perfx.schema.coerce` as the command line and starts the platform run;
any refusal is returned as ``{"success": false, "message": ...}``, which Locust's page
shows, and no user spawns.

The PerfX tab is one of Locust's extended tabs: a two-column table whose rows ride on
``/stats/requests`` (the page polls it every 2 s while a test runs, and once on load). The
same state is served as JSON at ``<web base path>/perfx/status``. Neither holds a token, nor
the credentials of a URL.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import ImmutableMultiDict

from locust_perfx.baseline import baseline_line
from locust_perfx.exceptions import ConfigError, PerfxError
from locust_perfx.loop import loop_line
from locust_perfx.platform import without_credentials
from locust_perfx.schema import Value, render

if TYPE_CHECKING:
    from locust.web import WebUI

    from locust_perfx.controller import RunController
    from locust_perfx.plan import RunPlan

logger = logging.getLogger(__name__)

TAB_KEY: Final = "perfx"
TAB_TITLE: Final = "PerfX"
STATUS_ROUTE: Final = "/perfx/status"
RUN_ID_FIELD: Final = "run_id"
LOCUST_FORM_FIELDS: Final = (
    "user_count",
    "spawn_rate",
    "host",
    "run_time",
    "profile",
    "user_classes",
    "shape_class",
)
"""Fields of Locust's own start form: a mangled schema name must never be mistaken for one."""


def squash(name: str) -> str:
    """The part of an option name the web UI's renaming keeps: letters and digits, lower-cased."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def form_clashes(dests: Iterable[str]) -> dict[str, str]:
    """Schema names the form cannot tell apart once it drops '_', '-' and case.

    The form's round trip keeps only :func:`squash` of a name, so two parameters (or a
    parameter and a form field) with the same squash would receive each other's values.
    Keyed like :attr:`OptionRegistry.clashes <locust_perfx.registry.OptionRegistry>`: the
    parameter's dest (the first of a group) to one problem.

    >>> list(form_clashes(["a_bc", "ab_c", "p95_threshold"]))
    ['a_bc']
    """
    taken = {squash(field): field for field in (RUN_ID_FIELD, *LOCUST_FORM_FIELDS)}
    groups: dict[str, list[str]] = {}
    for dest in dests:
        groups.setdefault(squash(dest), []).append(dest)
    clashes = {}
    for key, group in groups.items():
        names = " and ".join(repr(name) for name in group)
        if key in taken:
            verb = "read" if len(group) > 1 else "reads"
            clashes[group[0]] = (
                f"schema parameter{'s' if len(group) > 1 else ''} {names} {verb} the same as "
                f"the web UI field {taken[key]!r} once the form drops '_', '-' and case; "
                "rename it on the platform"
            )
        elif len(group) > 1:
            clashes[group[0]] = (
                f"schema parameters {names} read the same in the web UI form, which drops "
                "'_', '-' and case; rename one of them on the platform"
            )
    return clashes


def restore_names(
    form: ImmutableMultiDict[str, str], dests: Iterable[str]
) -> ImmutableMultiDict[str, str]:
    """Give form keys the web UI mangled their option's real name back."""
    by_squash = {squash(dest): dest for dest in dests}
    items = []
    for key, value in form.items(multi=True):
        if key not in LOCUST_FORM_FIELDS and key not in by_squash.values():
            key = by_squash.get(squash(key), key)
        items.append((key, value))
    return ImmutableMultiDict(items)


def locust_form_problems(form: Mapping[str, str]) -> list[str]:
    """What Locust's ``/swarm`` would refuse after the platform run had already been started.

    Checked first so that a refused form never leaves a run ``running`` on the platform.
    """
    # Imported here: importing locust monkey-patches the process, and this module must
    # stay importable (and its pure functions testable) without that.
    from locust.util.timespan import parse_timespan

    problems = []
    users = form.get("user_count", "").strip()
    if not users.isdigit():
        problems.append(f'Number of users: expected a whole number, got "{users}"')
    rate = form.get("spawn_rate", "").strip()
    try:
        valid_rate = 0 < float(rate) < math.inf
    except ValueError:
        valid_rate = False
    if not valid_rate:
        problems.append(f'Ramp up: expected a number of users per second above 0, got "{rate}"')
    run_time = form.get("run_time", "").strip()
    if run_time:
        try:
            parse_timespan(run_time)
        except ValueError:
            problems.append(f'Run time: expected 20s, 3m, 1h20m or similar, got "{run_time}"')
    return problems


def run_form_problems(plan: RunPlan, form: Mapping[str, str]) -> list[str]:
    """The run's problems in a form whose Locust fields are bad too, so that the user sees
    them all at once. A form naming another run is checked once that run is fetched."""
    if form.get(RUN_ID_FIELD, plan.run_id).strip() != plan.run_id:
        return []
    try:
        plan.with_form(form)
    except ConfigError as err:
        return err.problems
    return []


def run_status(controller: RunController) -> dict[str, Any]:
    """The live state of the run, one field per fact; holds no secret.

    The plan's fields (``run_id``, ``endpoint``, ``environment``, ``host``, ``arguments``,
    ``thresholds``, ``influxdb``, ``platform_url``, ``perfx_version``) and: ``state``, the
    platform run as this process drove it (``pending``, ``running``, ``finished``);
    ``phase``, the controller's; ``outcome`` and ``reason``, the verdict once decided;
    ``last_platform_error``; ``run_url``; ``export``, the InfluxDB export's health;
    ``threshold_results``; ``baseline_table``, the comparison once the run ended; ``loop``, how
    late this process's event loop woke while it tested (null before the first test). The run's
    status as fetched at start-up (``--dry-run`` prints it) is not here: it went stale with
    the first start.
    """
    verdict = controller.verdict
    plan = {k: v for k, v in controller.plan.describe().items() if k != "status"}
    phase = controller.phase.value
    if phase == "idle":
        state = "pending"
    elif phase == "done" or controller.delivery is not None:  # the final status went out
        state = "finished"
    else:
        state = "running"
    exporter = controller.exporter
    return {
        **plan,
        "state": state,
        "phase": phase,
        "outcome": None if verdict is None else ("failed" if verdict.failed else "completed"),
        "reason": None if verdict is None else verdict.reason,
        "last_platform_error": controller.sync.last_error,
        "run_url": f"{controller.client.base_url}/runs/{controller.plan.run_id}",
        "export": None if exporter is None else exporter.health(),
        "threshold_results": [r.describe() for r in controller.watch.results()],
        "baseline_table": controller.baseline_table,
        "loop": controller.loop.figures(),
    }


def public_status(controller: RunController) -> dict[str, Any]:
    """:func:`run_status` as the UI may show it: URLs without credentials."""
    status = run_status(controller)
    for key in ("platform_url", "run_url"):
        status[key] = without_credentials(status[key])
    if status["influxdb"] is not None:
        status["influxdb"] = {
            **status["influxdb"],
            "url": without_credentials(status["influxdb"]["url"]),
        }
    return status


def tab_rows(status: Mapping[str, Any]) -> list[dict[str, str]]:
    """The PerfX tab's table: one (field, value) row per fact, in reading order."""
    rows = [
        ("Run id", status["run_id"]),
        ("Platform state", status["state"]),
        ("Outcome", status["outcome"] or "-"),
        ("Reason", status["reason"] or "-"),
        ("Last platform error", status["last_platform_error"] or "-"),
        ("Run on the platform", status["run_url"]),
        ("Endpoint", status["endpoint"]),
        ("Environment", status["environment"]),
        ("Host", status["host"]),
    ]
    arguments: Mapping[str, Value] = status["arguments"]
    rows += [(f"Argument {name}", render(value) or "-") for name, value in arguments.items()]
    results = {r["criterion"]: r for r in status["threshold_results"]}
    for criterion in status["thresholds"]:
        result = results.get(criterion["criterion"])
        rows.append((f"Threshold {criterion['criterion']}", _judged(result)))
    rows += _baseline_rows(status)
    loop = status["loop"]
    rows.append(("Event loop", "not watched yet" if loop is None else loop_line(loop)))
    export = status["export"]
    if export is None:
        rows.append(("InfluxDB export", "off (no --influxdb-url)"))
    else:
        influx = status["influxdb"]
        rows += [
            ("InfluxDB export", f"{export['state']}: {influx['url']}, bucket {influx['bucket']}"),
            ("Points written", str(export["points_written"])),
            ("Points queued", str(export["points_queued"])),
            ("Points dropped", str(export["points_dropped"])),
            ("Last export error", export["last_error"] or "-"),
        ]
    return [{"field": field, "value": str(value)} for field, value in rows]


def _baseline_rows(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The baseline run, then, once the run ended, its comparison: one row per name and
    metric (``summary.baseline``)."""
    baseline, table = status.get("baseline"), status.get("baseline_table")
    if baseline is None:
        return []
    if baseline["run_id"]:
        rows = [("Baseline", f"run {baseline['run_id']} (from {baseline['source']})")]
    else:
        rows = [("Baseline", f"none: {baseline['note']}")]
    if table is None:
        return rows
    rows.append(("Baseline comparison", baseline_line(table)))
    rows += [
        (f"vs baseline: {row['name']} {row['metric']}", f"{row['verdict']}: {row['reason']}")
        for row in table["rows"]
    ]
    return rows


def _judged(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return "not judged yet"
    if result.get("detail"):
        verdict = "passed" if result["passed"] else "BREACHED"
        if result["detail"].startswith("not judged"):
            return str(result["detail"])
        if result.get("provisional"):  # a relative criterion, live: the end decides
            verdict = f"{verdict} so far (provisional)"
        return f"{verdict}: {result['detail']}"
    observed = "no requests" if result["observed"] is None else f"{result['observed']:g}"
    return f"{'passed' if result['passed'] else 'BREACHED'} (observed {observed})"


def install(web_ui: WebUI, controller: RunController) -> None:
    """Hook the start form of ``web_ui`` to ``controller`` and add the PerfX tab.

    Call it in Locust's ``init``, before the first page is served.
    """
    app = web_ui.app
    assert app is not None, "Locust's WebUI creates its Flask app in __init__"
    options = web_ui.environment.parsed_options
    base_path = getattr(options, "web_base_path", None) or None
    args = web_ui.template_args
    args["extended_tabs"] = [
        *args.get("extended_tabs", []),
        {"title": TAB_TITLE, "key": TAB_KEY},
    ]
    args["extended_tables"] = [
        *args.get("extended_tables", []),
        {
            "key": TAB_KEY,
            "structure": [{"key": "field", "title": "Field"}, {"key": "value", "title": "Value"}],
        },
    ]

    blueprint = Blueprint("perfx", __name__, url_prefix=base_path)

    @blueprint.route(STATUS_ROUTE)
    @web_ui.auth_required_if_enabled
    def perfx_status() -> Response:
        return jsonify(public_status(controller))

    app.register_blueprint(blueprint)

    @app.before_request
    def check_swarm() -> Response | None:
        if request.method != "POST" or request.endpoint != "locust.swarm":
            return None
        if not _signed_in(web_ui):
            return None  # Locust's own view turns the visitor away: start nothing
        dests = [p.dest for p in controller.plan.info.schema.parameters] + [RUN_ID_FIELD]
        request.form = restore_names(request.form, dests)
        try:
            problems = locust_form_problems(request.form)
            if problems:
                raise ConfigError([*problems, *run_form_problems(controller.plan, request.form)])
            controller.start_from_form(request.form)
        except PerfxError as err:
            problems = err.problems if isinstance(err, ConfigError) else [str(err)]
            message = "; ".join(problems)
            logger.error("perfx: not starting: %s", message)
            return jsonify({"success": False, "message": message, "host": controller.plan.host})
        return None

    @app.after_request
    def add_tab_rows(response: Response) -> Response:
        # Only to Locust's own, successful stats answer: never to a login redirect.
        if request.endpoint != "locust.request_stats" or response.status_code != 200:
            return response
        body = response.get_json(silent=True)
        if not isinstance(body, dict):
            return response
        extended = [s for s in body.get("extended_stats", []) if s.get("key") != TAB_KEY]
        extended.append({"key": TAB_KEY, "data": tab_rows(public_status(controller))})
        response.set_data(json.dumps({**body, "extended_stats": extended}))
        return response


def _signed_in(web_ui: WebUI) -> bool:
    if not web_ui.web_login:
        return True
    from flask_login import current_user  # type: ignore[import-untyped]

    return bool(current_user.is_authenticated)
