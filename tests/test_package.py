"""The package's shape: its exceptions carry their data, and its modules import one way only,
so that each can be imported (and tested) alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from locust_perfx import ConfigError, PerfxError
from locust_perfx.reference import REQUIRES
from tests.fixtures.locust import ROOT

PACKAGE = ROOT / "locust_perfx"


def test_config_error_carries_every_problem() -> None:
    err = ConfigError(["--a: missing", '--b: expected an integer, got "x"'])
    assert isinstance(err, PerfxError)
    assert isinstance(err, ValueError)
    assert err.problems == ["--a: missing", '--b: expected an integer, got "x"']


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports anywhere in its text:
    at the top, in a function, or for the type checker only (a circle there still ties two
    modules together for a reader and for mypy)."""
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # from pkg import module, or from module import name
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each listed once, from its smallest module name."""
    found = []
    for start in sorted(graph):
        paths = [[start]]
        while paths:
            path = paths.pop()
            for module in sorted(graph[path[-1]]):
                if module == start:
                    found.append([*path, start])
                elif module > start and module not in path:
                    paths.append([*path, module])
    return found


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph()
    assert "locust_perfx.options" in graph["locust_perfx.registry"]
    assert "locust_perfx.exceptions" in graph["locust_perfx"]


def test_no_module_imports_itself_back() -> None:
    """Lower modules keep their own defaults, and the option table refers to them: the table
    importing the platform client that took its default URL from the table was a circle."""
    assert circles(import_graph()) == []


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c", "a"]]


def test_the_plugin_imports_nothing_the_reference_extra_installs() -> None:
    """jsonschema, referencing and PyYAML come with the ``reference`` extra only: every module
    outside ``reference/`` (the plugin, its export process, the perfx command) runs without."""
    outside = sorted(name for name in import_graph() if not name.startswith(REFERENCE))
    probe = (
        "import locust\n"  # first, as in Locust: its gevent patches ssl before requests loads
        "import importlib, json, sys\n"
        f"for name in {outside!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(result.stdout))

    assert "locust_perfx.plugin" in loaded
    assert not {m for m in loaded if m.startswith(REFERENCE)} | (set(REQUIRES) & loaded)


REFERENCE = "locust_perfx.reference"
