"""The docs' pages that restate code are made from it (``docs/_ext/perfx_rst.py``) and hold
all of it; ``tox -e docs`` builds them with warnings as errors."""

from __future__ import annotations

import ast
import json
import re
import sys
from typing import Any

import docutils.core
import docutils.nodes
import yaml

from locust_perfx.options import OPTIONS
from tests.fixtures.locust import ROOT

DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import perfx_rst  # noqa: E402

OPENAPI = ROOT / "locust_perfx" / "reference" / "openapi.yaml"


def doctree(rst: str, strict: bool = True) -> docutils.nodes.document:
    """``strict``: any docutils warning raises; else Sphinx's roles (``:ref:``, ``:mod:``)
    stay as their source text (Sphinx itself checks them: ``tox -e docs``)."""
    tree = docutils.core.publish_doctree(
        rst,
        settings_overrides={
            "halt_level": 2 if strict else 5,
            "report_level": 5,
            "doctitle_xform": False,
        },
    )
    for message in list(tree.findall(docutils.nodes.system_message)):
        message.parent.remove(message)
    return tree


def table_rows(tree: docutils.nodes.Element) -> list[list[str]]:
    return [
        [entry.astext() for entry in row.findall(docutils.nodes.entry)]
        for row in tree.findall(docutils.nodes.row)
    ]


def sections(tree: docutils.nodes.document) -> dict[str, docutils.nodes.section]:
    return {section[0].astext(): section for section in tree.findall(docutils.nodes.section)}


def test_the_options_page_lists_every_option_with_its_variable_and_help() -> None:
    header, *rows = table_rows(doctree(perfx_rst.options_table()))
    by_flag = {row[0].split()[0]: row for row in rows}

    assert header == ["option", "environment variable", "config file key", "meaning"]
    assert len(rows) == len(OPTIONS)
    for option in OPTIONS:
        _, variable, key, meaning = by_flag[option.flag]
        assert variable == option.env_var
        assert key == option.flag.removeprefix("--")
        assert meaning.startswith(option.help)  # as written: __other__, 'p95_ms < 500 ...'
    assert ".. perfx-options::" in (DOCS / "configuration.rst").read_text()


def test_the_api_page_has_every_operation_and_every_field_of_every_schema() -> None:
    spec: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
    found = sections(doctree(perfx_rst.openapi(spec), strict=False))

    for path, item in spec["paths"].items():
        for method in set(item) & set(perfx_rst.METHODS):
            operation = found[f"{method.upper()} {path}"]
            tables = [table_rows(table) for table in operation.findall(docutils.nodes.table)]
            [statuses] = [[row[0] for row in rows[1:]] for rows in tables if rows[0][0] == "status"]
            assert statuses == list(item[method]["responses"]), (method, path)
    for name, schema in spec["components"]["schemas"].items():
        fields = {row[0] for row in table_rows(found[name])[1:]}
        named = {*schema.get("properties", {}), *schema.get("then", {}).get("properties", {})}
        named |= set(schema.get("else", {}).get("properties", {}))
        assert named == fields, name
    assert (
        ".. perfx-openapi:: ../locust_perfx/reference/openapi.yaml"
        in (DOCS / "reference-platform.rst").read_text()
    )


def test_the_module_map_and_the_api_page_have_every_module() -> None:
    package = ROOT / "locust_perfx"
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
    }
    _, *rows = table_rows(doctree(perfx_rst.module_map(package), strict=False))
    mapped = {row[0].removeprefix(":mod:`").removesuffix("`") for row in rows if row[1]}
    documented = set(sections(doctree(perfx_rst.autodoc(package), strict=False)))

    assert {"locust_perfx.plugin", "locust_perfx.reference.app"} <= modules
    assert mapped == modules  # each with what it is for
    assert documented == modules


def test_the_influxdb_page_has_every_measurement_tag_and_field_the_layout_writes() -> None:
    points = perfx_rst.perfx_points()
    rows = {row[0]: row[1:] for row in table_rows(doctree(perfx_rst.influx_layout(points)))[1:]}

    assert set(rows) == {point.split(",", 1)[0] for point in points}
    tags, fields = rows["locust_requests"]
    assert tags.split(", ") == ["method", "name"]
    assert fields.split(", ")[:2] == ["requests", "failures"]
    assert {"p50_ms", "p99_ms", "avg_bytes"} <= set(fields.split(", "))
    assert rows["locust_errors"][1].split(", ") == ["occurrences", "message"]
    assert rows["locust_thresholds"] == ["criterion", "limit, passed, observed"]
    assert rows["locust_baseline"] == [
        "baseline_run_id, method, metric, name",
        "baseline, current, delta, delta_pct, p, verdict, regression",
    ]
    assert ".. perfx-influx-layout::" in (DOCS / "influxdb.rst").read_text()


def test_read_the_docs_builds_what_tox_builds() -> None:
    """Read the Docs installs the same extra and fails on a warning, as ``tox -e docs`` does."""
    import configparser

    rtd = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")

    assert rtd["sphinx"] == {"configuration": "docs/conf.py", "fail_on_warning": True}
    [install] = rtd["python"]["install"]
    assert install["extra_requirements"] == tox["testenv:docs"]["extras"].split()
    assert "-W" in tox["testenv:docs"]["commands"] and "doctest" in tox["testenv:docs"]["commands"]
    assert "docs" in tox["tox"]["envlist"].replace(",", " ").split()
    docs_extra = setup["options.extras_require"]["docs"]
    assert "sphinx" in docs_extra and "furo" in docs_extra


# Flags of other tools that the pages name beside ours.
OTHER_TOOLS_FLAGS = {
    "--strict": "yamllint --strict, kubernetes-validate --strict (deploying.rst)",
    "--scale": "docker compose up --scale worker=N (deploying.rst)",
    "--dist": "pytest-xdist's --dist loadgroup (developing.rst)",
    "--parallel": "tox run-parallel --parallel 3 (developing.rst)",
    "--check": "locust-plugins' --check-* flags, compared with criteria (thresholds.rst)",
    "--check-rps": "locust-plugins",
    "--check-fail-ratio": "locust-plugins",
    "--check-avg-response-time": "locust-plugins",
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")


def registered_flags() -> set[str]:
    """Every flag the project's code registers: the plugin's option table, the examples'
    run arguments, Locust's own options, and each ``add_argument("--...")`` of the package
    and the benchmarks (``perfx``'s commands, ``perfx-platform``, ``bench/run``)."""
    from locust.argument_parser import get_parser

    flags = {option.flag for option in OPTIONS} | set(get_parser()._option_string_actions)
    for schema in (ROOT / "examples").glob("*schema.json"):
        flags |= {f"--{p['name']}" for p in json.loads(schema.read_text())["parameters"]}
    for path in [*(ROOT / "locust_perfx").rglob("*.py"), *(ROOT / "bench").glob("*.py")]:
        for call in ast.walk(ast.parse(path.read_text())):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument":
                flags |= {
                    arg.value
                    for arg in call.args
                    if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")
                }
    return flags


def test_every_flag_the_docs_name_exists() -> None:
    """A renamed or removed option cannot linger in the README or a page."""
    known = registered_flags() | set(OTHER_TOOLS_FLAGS)
    for page in [ROOT / "README.rst", *sorted(DOCS.glob("*.rst"))]:
        named = set(FLAG.findall(page.read_text()))
        assert named <= known, f"{page.name} names {sorted(named - known)}, which nothing registers"


def test_the_influxdb_page_has_every_panel_of_the_dashboards_with_its_description() -> None:
    folder = ROOT / "locust_perfx" / "dashboards"
    influxql, flux = (
        json.loads((folder / f"locust-perfx-{name}.json").read_text())
        for name in ("influxdb1-influxql", "influxdb2-flux")
    )
    _, *rows = table_rows(doctree(perfx_rst.dashboard_panels(influxql)))

    assert [(row[0], row[2]) for row in rows] == [
        (panel["title"], panel["description"]) for panel in flux["panels"]
    ]
    assert ".. perfx-dashboard::" in (DOCS / "influxdb.rst").read_text()
