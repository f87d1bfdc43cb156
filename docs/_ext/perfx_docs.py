"""The docs' own Sphinx extension: the pages that restate code are generated from it.

- ``.. perfx-options::``: every option of the plugin, from its option table;
- ``.. perfx-influx-layout::``: the measurements, tags and fields of the ``perfx`` layout,
  from the points it writes;
- ``.. perfx-dashboard:: PATH``: the panels of the Grafana dashboard at PATH, with their
  descriptions;
- ``.. perfx-openapi:: PATH``: the platform's API, operations then schemas, from the
  OpenAPI description at PATH (relative to the page);
- ``.. perfx-modules:: PATH``: one line per module of the package at PATH;
- ``.. perfx-autodoc:: PATH``: a section per module of that package, by autodoc.

The text comes from ``perfx_rst``; Sphinx rebuilds a page when its file changes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import perfx_rst
import yaml
from docutils.nodes import Node
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class _Generated(SphinxDirective):
    """A directive whose content is reStructuredText made from a file or from the code."""

    def source(self) -> Path:
        return Path(self.env.relfn2path(self.arguments[0], self.env.docname)[1])

    def text(self) -> str:
        raise NotImplementedError

    def run(self) -> list[Node]:
        return self.parse_text_to_nodes(self.text(), allow_section_headings=True)


class Options(_Generated):
    def text(self) -> str:
        self.env.note_dependency(perfx_rst.options.__file__)
        return perfx_rst.options_table()


class InfluxLayout(_Generated):
    def text(self) -> str:
        for module in (perfx_rst.influx, perfx_rst.snapshot):
            self.env.note_dependency(module.__file__)
        return perfx_rst.influx_layout(perfx_rst.perfx_points())


class Dashboard(_Generated):
    required_arguments: ClassVar[int] = 1

    def text(self) -> str:
        path = self.source()
        self.env.note_dependency(str(path))
        return perfx_rst.dashboard_panels(json.loads(path.read_text()))


class OpenAPI(_Generated):
    required_arguments: ClassVar[int] = 1

    def text(self) -> str:
        spec = self.source()
        self.env.note_dependency(str(spec))
        return perfx_rst.openapi(yaml.safe_load(spec.read_text()))


class Modules(_Generated):
    required_arguments: ClassVar[int] = 1
    make: ClassVar[Callable[[Path], str]] = staticmethod(perfx_rst.module_map)

    def text(self) -> str:
        package = self.source()
        for path in package.rglob("*.py"):
            self.env.note_dependency(str(path))
        return self.make(package)


class Autodoc(Modules):
    make = staticmethod(perfx_rst.autodoc)


def run_examples(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Make each ``>>>`` example of a docstring a ``.. doctest::`` block, so that
    ``-b doctest`` runs what the API page shows, in its module's globals (as
    ``doctest.testmod`` does): one group per module, whose setup loads those globals."""
    module = max((m for m in sys.modules if name == m or name.startswith(m + ".")), key=len)
    setup = f"globals().update(vars(importlib.import_module({module!r})))"
    out, i = [], 0
    while i < len(lines):
        if not lines[i].lstrip().startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(f"{indent}   {lines[i][len(indent) :]}")
            i += 1
        out += [f"{indent}.. testsetup:: {module}", "", f"{indent}   {setup}", ""]
        out += [f"{indent}.. doctest:: {module}", "", *block, ""]
    lines[:] = out


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", run_examples)
    app.add_directive("perfx-options", Options)
    app.add_directive("perfx-openapi", OpenAPI)
    app.add_directive("perfx-influx-layout", InfluxLayout)
    app.add_directive("perfx-dashboard", Dashboard)
    app.add_directive("perfx-modules", Modules)
    app.add_directive("perfx-autodoc", Autodoc)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
