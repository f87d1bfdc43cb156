"""The run's ``argument_schema``: parsing it, and turning raw strings into typed values.

Pure code, no Locust and no I/O, so every rule here is testable on its own. One
:func:`coerce` serves every source of a value (command line, environment, config file,
web UI form), so a bad value reads the same wherever it came from.

>>> schema = RunSchema.from_json({"parameters": [{"name": "batch_size", "type": "int"}]})
>>> schema.resolve({"batch_size": "32"})
{'batch_size': 32}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from locust_perfx.exceptions import ConfigError

Value = str | int | float | bool | None

TYPES: Final = ("string", "int", "float", "bool", "choice")
TRUE_WORDS: Final = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS: Final = frozenset({"false", "0", "no", "off"})
NAME_PATTERN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

_EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false"}


@dataclass(frozen=True)
class Parameter:
    """One schema parameter; ``default`` is kept raw (platforms send strings) until resolved."""

    name: str
    type: str = "string"
    required: bool = False
    default: str | None = None
    description: str = ""
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The command-line flag, spelled as the platform names the parameter."""
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        """The attribute name on ``parsed_options`` (argparse turns dashes into underscores)."""
        return self.name.replace("-", "_")

    @property
    def env_var(self) -> str:
        """The environment variable that sets it and that the locustfile can read."""
        return "PERFX_" + self.dest.upper()


@dataclass(frozen=True)
class RunSchema:
    """The ordered parameters of one endpoint's ``argument_schema``."""

    parameters: tuple[Parameter, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> RunSchema:
        """Parse the platform's JSON; one ConfigError lists every defect.

        ``None`` or an empty object means the endpoint takes no arguments.
        """
        schema, problems = cls.parse(data)
        if problems:
            raise ConfigError(problems)
        return schema

    @classmethod
    def parse(cls, data: Any) -> tuple[RunSchema, list[str]]:
        """The sound parameters and the defects of the rest, so that the defects can be
        reported together with every other problem of the run instead of one round at a time.
        """
        if data is None:
            return cls(), []
        if not isinstance(data, Mapping):
            return cls(), [f"argument_schema must be an object, got {_kind(data)}"]
        raw_params = data.get("parameters") or []
        if not isinstance(raw_params, list):
            return cls(), [f"argument_schema.parameters must be a list, got {_kind(raw_params)}"]
        problems: list[str] = []
        params: list[Parameter] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_params):
            try:
                param = _parse_parameter(raw, index)
            except ConfigError as err:
                problems.extend(err.problems)
                continue
            if param.dest in seen:
                problems.append(f"argument_schema: parameter {param.name!r} is defined twice")
                continue
            seen.add(param.dest)
            params.append(param)
        return cls(tuple(params)), problems

    def resolve(
        self, raw: Mapping[str, object], sources: Mapping[str, str] | None = None
    ) -> dict[str, Value]:
        """Coerce every parameter's raw value (missing ones take their default).

        Raises one :class:`ConfigError` listing every bad or missing value, so the user
        fixes them all in one go. ``raw`` is keyed by :attr:`Parameter.dest`.
        """
        sources = sources or {}
        values: dict[str, Value] = {}
        problems: list[str] = []
        for param in self.parameters:
            value = raw.get(param.dest)
            try:
                values[param.dest] = resolve_value(param, value, sources.get(param.dest, ""))
            except ConfigError as err:
                problems.extend(err.problems)
        if problems:
            raise ConfigError(problems)
        return values


def resolve_value(param: Parameter, raw: object, source: str = "") -> Value:
    """The typed value of one parameter: the given value, else its default, else ``None``."""
    if _is_missing(raw):
        if param.default is not None:
            return coerce(param, param.default, "the platform's default")
        if param.required:
            raise ConfigError(
                f"{param.option} is required: pass {param.option} VALUE or set {param.env_var}"
            )
        return None
    return coerce(param, raw, source)


def coerce(param: Parameter, raw: object, source: str = "") -> Value:
    """Turn one raw value into the parameter's type, or raise a one-line ConfigError.

    Already-typed values (a bool checkbox from the web UI, a default) pass through the
    same checks as strings, so every source obeys the same rules.
    """
    text = raw.strip() if isinstance(raw, str) else raw
    where = f" (from {source})" if source else ""
    if param.type == "bool":
        if isinstance(text, bool):
            return text
        word = str(text).lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    elif param.type == "int":
        if isinstance(text, int) and not isinstance(text, bool):
            return text
        if isinstance(text, str) and re.fullmatch(r"[+-]?\d{1,30}", text):
            return int(text)
    elif param.type == "float":
        if isinstance(text, int | float) and not isinstance(text, bool):
            return float(text)
        if isinstance(text, str):
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if number == number and number not in (float("inf"), float("-inf")):
                    return number
    elif param.type == "choice":
        if str(text) in param.choices:
            return str(text)
        allowed = ", ".join(param.choices)
        raise ConfigError(f'{param.option}{where}: expected one of {allowed}, got "{_show(raw)}"')
    else:
        return str(text)
    raise ConfigError(
        f'{param.option}{where}: expected {_EXPECTED[param.type]}, got "{_show(raw)}"'
    )


def render(value: Value) -> str:
    """The canonical text of a value, for ``PERFX_<NAME>`` variables and logs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _parse_parameter(raw: object, index: int) -> Parameter:
    where = f"argument_schema.parameters[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected an object, got {_kind(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{where}: name must be a letter followed by letters, digits, '_' or '-', got {name!r}"
        )
    where = f"argument_schema parameter {name!r}"
    problems: list[str] = []
    type_ = raw.get("type") or "string"
    if type_ not in TYPES:
        problems.append(f"{where}: unknown type {type_!r}; expected one of {', '.join(TYPES)}")
    choices_raw = raw.get("choices")
    choices: tuple[str, ...] = ()
    if choices_raw is not None:
        if not isinstance(choices_raw, list) or not all(
            isinstance(c, str | int | float) and not isinstance(c, bool) for c in choices_raw
        ):
            problems.append(f"{where}: choices must be a list of strings")
        else:
            choices = tuple(str(c) for c in choices_raw)
    if type_ == "choice" and not choices:
        problems.append(f"{where}: type 'choice' needs a non-empty list of choices")
    default = raw.get("default")
    if default is not None and not isinstance(default, str | int | float | bool):
        problems.append(f"{where}: default must be a string, got {_kind(default)}")
    required = raw.get("required", False)
    if isinstance(required, str) and required.lower() in TRUE_WORDS | FALSE_WORDS:
        required = required.lower() in TRUE_WORDS
    if required is not None and not isinstance(required, bool):
        problems.append(f"{where}: required must be true or false, got {required!r}")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        problems.append(f"{where}: description must be a string")
    if problems:
        raise ConfigError(problems)
    param = Parameter(
        name=name,
        type=type_,
        required=required is True,
        default=None if default is None else render(default),
        description=description,
        choices=choices,
    )
    if param.default is not None:
        try:
            coerce(param, param.default, "")
        except ConfigError as err:
            raise ConfigError(f"{where}: its default is invalid: {err}") from None
    return param


def _is_missing(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _show(raw: object) -> str:
    text = str(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
