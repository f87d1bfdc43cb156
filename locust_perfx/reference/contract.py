"""openapi.yaml as the server reads it: request bodies are checked against the contract itself.

The checks are jsonschema's (Draft 2020-12, the dialect of OpenAPI 3.1 schemas, with
``$ref`` resolved inside the document), so what the server accepts cannot drift from
what the contract says. Only the wording is ours: one line per problem, naming the field.

>>> bodies = RequestBodies(load_spec())
>>> bodies.problems("reportProgress", {"at": "soon", "users": "ten"})  # doctest: +ELLIPSIS
["missing field 'workers'", ..., "field 'at': 'soon' is not a 'date-time'", ...]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

#: The document's base URI in the registry: refs like ``#/components/...`` resolve under it.
SPEC_URI = "urn:locust-perfx:openapi"
JSON_MEDIA = "application/json"
#: Longest problem line; jsonschema quotes the whole offending value.
MAX_PROBLEM = 200

# RFC 3339's date-time (section 5.6); datetime.fromisoformat alone also takes ISO 8601 forms
# such as dates without a time or times without an offset.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})", re.ASCII | re.IGNORECASE
)


@cache
def load_spec() -> dict[str, Any]:
    """The parsed openapi.yaml shipped in this package; parsed once per process."""
    text = resources.files("locust_perfx.reference").joinpath("openapi.yaml").read_text("utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


def registry(spec: dict[str, Any]) -> Registry[Any]:
    """A registry holding the whole document at :data:`SPEC_URI`, for validators to resolve refs."""
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    schemas: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return schemas


def escape(part: str) -> str:
    """Escape one JSON-pointer segment (a path like ``/api/perf/runs`` is one segment)."""
    return part.replace("~", "~0").replace("/", "~1")


def parse_timestamp(text: str) -> datetime:
    """Read an RFC 3339 date-time as an aware datetime in UTC.

    Raises ValueError if ``text`` is not one (or names no real moment: February 30, a leap
    second) and OverflowError if it lies beyond what datetime holds once moved to UTC.
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    return datetime.fromisoformat(text.upper()).astimezone(UTC)


# jsonschema's own date-time check needs the rfc3339-validator package, and would pass
# moments that datetime cannot hold, which the server then could not store in UTC.
_FORMAT_CHECKER = FormatChecker(formats=())


@_FORMAT_CHECKER.checks("date-time", raises=(ValueError, OverflowError))
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):  # other types are the "type" keyword's to judge
        parse_timestamp(value)
    return True


class RequestBodies:
    """The request-body schema of every operation in the contract, by operationId.

    Validators are built once, here; :meth:`problems` is what a request pays.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        schemas = registry(spec)
        self._validators: dict[str, Draft202012Validator] = {}
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method == "parameters" or "requestBody" not in operation:
                    continue
                pointer = f"/paths/{escape(path)}/{method}/requestBody/content/"
                pointer += f"{escape(JSON_MEDIA)}/schema"
                self._validators[operation["operationId"]] = Draft202012Validator(
                    {"$ref": f"{SPEC_URI}#{pointer}"},
                    registry=schemas,
                    format_checker=_FORMAT_CHECKER,
                )

    def problems(self, operation_id: str, body: Any) -> list[str]:
        """Every way ``body`` breaks the operation's schema, one line each, by field path."""
        errors = self._validators[operation_id].iter_errors(body)
        ordered = sorted(errors, key=lambda error: [str(part) for part in error.absolute_path])
        return list(dict.fromkeys(line for error in ordered for line in _describe(error)))


def _field(path: Iterable[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)[1:]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM else text[: MAX_PROBLEM - 3] + "..."


def _missing(error: ValidationError) -> list[str]:
    """The fields a ``required`` error is about: jsonschema words them but names none."""
    wanted = error.validator_value if isinstance(error.validator_value, list) else []
    present = error.instance if isinstance(error.instance, dict) else {}
    return [str(name) for name in wanted if name not in present]


def _describe(error: ValidationError) -> list[str]:
    where = _field(error.absolute_path)
    at = f"field '{where}': " if where else ""
    if error.validator == "required":
        return [
            f"missing field '{_field([*error.absolute_path, name])}'" for name in _missing(error)
        ]
    if error.validator in ("anyOf", "oneOf") and error.context:
        return _alternatives(error, at)
    return [at + _clip(error.message)]


def _alternatives(error: ValidationError, at: str) -> list[str]:
    """Name what an anyOf/oneOf wanted: the fields it lacks, the types it takes, or the
    problems inside the one alternative whose type the value has."""
    options = error.context or []
    if all(option.validator == "required" for option in options):
        names = dict.fromkeys(name for option in options for name in _missing(option))
        fields = " or ".join(f"'{_field([*error.absolute_path, name])}'" for name in names)
        return [f"missing field {fields}"]

    def wrong_type(option: ValidationError) -> bool:
        return option.validator == "type" and option.absolute_path == error.absolute_path

    branches: dict[int, list[ValidationError]] = {}
    for option in options:
        branches.setdefault(int(option.relative_schema_path[0]), []).append(option)
    fitting = [found for found in branches.values() if not any(map(wrong_type, found))]
    if len(fitting) == 1:
        return [line for option in fitting[0] for line in _describe(option)]
    if not fitting:
        types = " or ".join(repr(option.validator_value) for option in filter(wrong_type, options))
        return [at + _clip(f"{error.instance!r} is not of type {types}")]
    return [at + _clip(error.message)]
