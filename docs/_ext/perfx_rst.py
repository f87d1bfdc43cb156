"""The reStructuredText of the pages that restate code, made from the code itself.

Plain functions of the code's data, without Sphinx, so that the tests can check what they
make (``tests/test_docs.py``); ``perfx_docs`` puts their text into the pages.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from locust_perfx import influx, options, snapshot

INLINE = re.compile(r"([\\*`|_])")
MARKDOWN_CODE = re.compile(r"`([^`]+)`")


def escape(text: str) -> str:
    """Text as it reads, in reStructuredText: ``__other__`` is no hyperlink, ``*`` no emphasis."""
    return INLINE.sub(r"\\\1", text)


def prose(text: str) -> str:
    """The OpenAPI description's Markdown, as far as it uses any: `code` and lists."""
    parts = MARKDOWN_CODE.split(" ".join(text.split()) if "\n- " not in text else text)
    # Even parts are prose, odd parts were between backticks.
    out = "".join(escape(p) if i % 2 == 0 else f"``{p}``" for i, p in enumerate(parts))
    return out.replace(":\n- ", ":\n\n- ").strip()


def list_table(header: Sequence[str], rows: Iterable[Sequence[str]], widths: str = "") -> str:
    """A ``list-table``: cells may hold any inline markup and run to any length."""
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            text = cell.replace("\n", " ") or "\\ "
            lines.append(f"   {'*' if i == 0 else ' '} - {text}")
    return "\n".join(lines) + "\n"


# -- the options page -------------------------------------------------------------------


def options_table() -> str:
    """Every option of the plugin, from the option table the parser is given."""
    rows = []
    for option in options.OPTIONS:
        flag = f"``{option.flag}``" if option.flag_only else f"``{option.flag} {option.metavar}``"
        notes = []
        if option.repeatable:
            notes.append("Repeatable.")
        if option.secret:
            notes.append("Secret: never logged, sent to the platform or shown in the web UI.")
        if option.in_web_ui:
            notes.append("Also a field of the web UI's start form.")
        if option.flag_only:
            notes.append("A switch: ``true`` in the environment or a config file.")
        meaning = " ".join([escape(option.help), *notes])
        key = f"``{option.flag.removeprefix('--')}``"
        rows.append((flag, f"``{option.env_var}``", key, meaning))
    return list_table(
        ("option", "environment variable", "config file key", "meaning"), rows, "22 22 18 38"
    )


# -- the InfluxDB layout ----------------------------------------------------------------

COMMON_TAGS = {"run_id": "run_1", "endpoint": "search", "environment": "staging"}
LINE = re.compile(r'((?:[^ \\]|\\.)+) ((?:[^ "\\]|\\.|"(?:[^"\\]|\\.)*")+) \d+')
PAIR = re.compile(r'([^,=]+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def perfx_points() -> list[str]:
    """What the ``perfx`` layout writes for one interval of one timed request name with one
    error, a run event, a judged criterion and a comparison with a baseline run: every
    measurement it has."""
    timings = tuple(100 for _ in snapshot.PERCENTILES)
    entry = snapshot.EntryDelta("/search", "GET", 10, 1, 10, 1000.0, 5000, 80, 120, timings)
    total = entry._replace(name="Aggregated", method="")
    error = snapshot.ErrorDelta("GET", "/search", "HTTPError 500", 1)
    interval = snapshot.Interval(0.0, 5.0, total, (entry,), (error,))
    layout = influx.PerfxLayout(COMMON_TAGS)
    return [
        *layout.interval_points(interval, snapshot.Sample(5.0, 10, 2), 5000),
        layout.event_point("start", "run run_1 started", 5000),
        *layout.threshold_points([("p95_ms < 500", 100.0, 500.0, True)], 5000),
        *layout.baseline_points(
            "run_0",
            [
                influx.BaselineRow(
                    "GET", "/search", "p95_ms", 100, 131, 31, 0.31, 0.002, "regression"
                )
            ],
            5000,
        ),
    ]


def influx_layout(points: Iterable[str]) -> str:
    """Each measurement with the tags it adds to the common ones and its fields, in the order
    the points name them."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for point in points:
        match = LINE.fullmatch(point)
        if not match:
            raise ValueError(f"not a line of line protocol: {point}")
        measurement, *tags = re.split(r"(?<!\\),", match[1])
        extra, fields = found.setdefault(measurement, ([], []))
        for tag in (tag.split("=", 1)[0] for tag in tags):
            if tag not in COMMON_TAGS and tag not in extra:
                extra.append(tag)
        for name in (pair[0] for pair in PAIR.findall(match[2])):
            if name not in fields:
                fields.append(name)
    rows = [
        (
            f"``{measurement}``",
            ", ".join(f"``{tag}``" for tag in tags),
            ", ".join(f"``{field}``" for field in fields),
        )
        for measurement, (tags, fields) in found.items()
    ]
    return list_table(("measurement", "extra tags", "fields"), rows, "20 20 60")


# -- the Grafana dashboards --------------------------------------------------------------


def dashboard_panels(dashboard: Mapping[str, Any]) -> str:
    """Each panel of a Grafana dashboard, its kind and its own description, in page order."""
    rows = [
        (
            escape(panel["title"]),
            panel.get("type", ""),
            escape(panel.get("description", "")),
        )
        for panel in dashboard["panels"]
    ]
    return list_table(("panel", "kind", "what it shows"), rows, "25 12 63")


# -- the module map ---------------------------------------------------------------------


def module_map(package: Path) -> str:
    """One line per module of the package: its name and its docstring's first sentence."""
    rows = []
    for name in modules(package):
        path = package.parent.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        summary = " ".join(docstring.split("\n\n")[0].split())
        rows.append((f":mod:`{name}`", summary))
    return list_table(("module", "what it is for"), rows, "30 70")


def modules(package: Path) -> list[str]:
    """The dotted names of the package's modules, the package first."""
    return [
        ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted(package.rglob("*.py"))
    ]


def autodoc(package: Path) -> str:
    """A section per module, its docstrings by autodoc: a new module is on the page at once.

    A package's own section has its docstring only: what it re-exports is documented where
    it is defined.
    """
    out = []
    for name in modules(package):
        title = f"``{name}``"
        out += [title, "-" * len(title), "", f".. automodule:: {name}"]
        if package.parent.joinpath(*name.split(".")).is_dir():
            out.append("   :no-members:")
        out.append("")
    return "\n".join(out)


# -- the platform's API -----------------------------------------------------------------

METHODS = ("get", "put", "post", "patch", "delete")


def label(name: str) -> str:
    return f"openapi-{name.lower()}"


def resolve(spec: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """A ``$ref``'d object with its siblings (OpenAPI 3.1 lets them override the target)."""
    if "$ref" not in node:
        return node
    target: Any = spec
    for key in node["$ref"].removeprefix("#/").split("/"):
        target = target[key]
    return {**resolve(spec, target), **{k: v for k, v in node.items() if k != "$ref"}}


def type_of(schema: Mapping[str, Any]) -> str:
    """A schema as a reader names its type: ``Run``, ``string or null``, ``array of Run``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f":ref:`{name} <{label(name)}>`"
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(type_of(option) for option in schema[key])
    kinds = schema.get("type", "any")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = []
    for kind in kinds:
        if kind == "array" and "items" in schema:
            words.append(f"array of {type_of(schema['items'])}")
        elif "format" in schema and kind != "null":
            words.append(f"{kind} ({schema['format']})")
        else:
            words.append(kind)
    text = " or ".join(words)
    if "enum" in schema:
        text += ": " + ", ".join(f"``{value}``" for value in schema["enum"])
    return text


def literal(value: Any) -> str:
    return f"``{value if isinstance(value, str) else json.dumps(value)}``"


def limits(schema: Mapping[str, Any]) -> str:
    """A schema's bounds, default, pattern and examples, in words."""
    parts = [
        f"{word} {schema[key]}"
        for key, word in (("minimum", "at least"), ("maximum", "at most"))
        if key in schema
    ]
    if schema.get("minLength") == 1:
        parts.append("not empty")
    if "default" in schema:
        parts.append(f"default {literal(schema['default'])}")
    if "pattern" in schema:
        parts.append(f"pattern {literal(schema['pattern'])}")
    if schema.get("examples"):
        parts.append("e.g. " + ", ".join(literal(e) for e in schema["examples"][:2]))
    return "; ".join(parts)


def field_rows(
    properties: Mapping[str, Any], required: Iterable[str], when: str = ""
) -> Iterator[tuple[str, str, str, str]]:
    needed = set(required)
    for name, field in properties.items():
        about = [prose(field["description"])] if "description" in field else []
        if extra := limits(field):
            about.append(f"({extra})")
        yes = "yes," if name in needed else ""
        yield f"``{name}``", type_of(field), f"{yes} {when}".strip(" ,") or "no", " ".join(about)


def schema_section(spec: Mapping[str, Any], name: str, schema: Mapping[str, Any]) -> str:
    title = f"``{name}``"
    lines = [f".. _{label(name)}:", "", title, "^" * len(title), ""]
    if "description" in schema:
        lines += [prose(schema["description"]), ""]
    properties = dict(schema.get("properties", {}))
    rows = list(field_rows(properties, schema.get("required", [])))
    for base in schema.get("allOf", []):
        if "$ref" in base:
            lines += [f"Every field of {type_of(base)}, and:", ""]
    if "if" in schema:  # one field (``expression``) stands instead of several (its parts)
        given = schema["if"].get("required", [])
        other = schema["else"]
        parts = ", ".join(f"``{name}``" for name in other.get("required", []))
        rows += field_rows(schema["then"].get("properties", {}), [], f"instead of {parts}")
        names = ", ".join(f"``{name}``" for name in given)
        needed = other.get("required", [])
        rows += field_rows(other.get("properties", {}), needed, f"without {names}")
    alternatives = [
        " or ".join(f"``{r['required'][0]}``" for r in part["anyOf"])
        for part in schema.get("allOf", [])
        if "anyOf" in part
    ]
    if alternatives:
        lines += ["Requires " + "; and ".join(alternatives) + ".", ""]
    if rows:
        lines += [list_table(("field", "type", "required", "meaning"), rows, "18 24 12 46")]
    else:
        extra = limits(schema)
        lines += [f"Type: {type_of(schema)}." + (f" ({extra})" if extra else ""), ""]
    return "\n".join(lines)


def answer_rows(spec: Mapping[str, Any], responses: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    for status, raw in responses.items():
        answer = resolve(spec, raw)
        bodies = [
            f"{type_of(content['schema'])}" + ("" if kind == "application/json" else f" ({kind})")
            for kind, content in answer.get("content", {}).items()
        ]
        yield f"``{status}``", prose(answer.get("description", "")), ", ".join(bodies)


def meaning(node: Mapping[str, Any]) -> str:
    """A parameter's description, then its schema's bounds in brackets."""
    extra = limits(node.get("schema", node))
    text = prose(node.get("description", ""))
    return f"{text} ({extra})".strip() if extra else text


def operation_section(
    spec: Mapping[str, Any],
    path: str,
    method: str,
    operation: Mapping[str, Any],
    shared: Sequence[Any],
) -> str:
    title = f"``{method.upper()} {path}``"
    lines = [f".. _{label(operation['operationId'])}:", "", title, "^" * len(title), ""]
    lines += [prose(operation.get("summary", "")), ""]
    if "description" in operation:
        lines += [prose(operation["description"]), ""]
    parameters = [resolve(spec, p) for p in [*shared, *operation.get("parameters", [])]]
    if parameters:
        rows = [
            (
                f"``{parameter['name']}``",
                parameter["in"],
                type_of(parameter["schema"]),
                "yes" if parameter.get("required") else "no",
                meaning(parameter),
            )
            for parameter in parameters
        ]
        header = ("parameter", "in", "type", "required", "meaning")
        lines += [list_table(header, rows, "18 8 22 10 42")]
    if body := operation.get("requestBody"):
        schema = body["content"]["application/json"]["schema"]
        lines += [f"Body: {type_of(schema)}{'' if body.get('required') else ', optional'}.", ""]
    rows = answer_rows(spec, operation.get("responses", {}))
    lines += [list_table(("status", "meaning", "body"), rows, "10 60 30")]
    return "\n".join(lines)


def openapi(spec: Mapping[str, Any]) -> str:
    """The operations, then the schemas they name, of an OpenAPI 3.1 description."""
    info = spec["info"]
    out = [prose(info.get("summary", "")), "", prose(info.get("description", "")), ""]
    out += ["Operations", "~~~~~~~~~~", ""]
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                out.append(
                    operation_section(spec, path, method, item[method], item.get("parameters", []))
                )
    out += ["Schemas", "~~~~~~~", ""]
    for name, schema in spec["components"]["schemas"].items():
        out.append(schema_section(spec, name, schema))
    return "\n".join(out)
