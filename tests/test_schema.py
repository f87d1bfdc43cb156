"""The argument schema: parsing the platform's JSON and typing every value the same way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locust_perfx import ConfigError
from locust_perfx.schema import Parameter, RunSchema, coerce, resolve_value

SEED_SCHEMA = {
    "parameters": [
        {"name": "model", "type": "string", "required": True, "default": None},
        {"name": "batch_size", "type": "int", "required": False, "default": "32"},
        {
            "name": "gpu_model",
            "type": "choice",
            "required": True,
            "choices": ["A100", "H100", "RTX4090"],
        },
        {"name": "temperature", "type": "float", "default": "0.5"},
        {"name": "stream", "type": "bool", "default": "false"},
    ]
}


def test_seed_schema_defaults_arrive_as_strings_and_are_typed() -> None:
    schema = RunSchema.from_json(SEED_SCHEMA)
    values = schema.resolve({"model": "gpt-4", "gpu_model": "H100"})
    assert values == {
        "model": "gpt-4",
        "batch_size": 32,
        "gpu_model": "H100",
        "temperature": 0.5,
        "stream": False,
    }


def test_every_problem_is_reported_at_once() -> None:
    schema = RunSchema.from_json(SEED_SCHEMA)
    with pytest.raises(ConfigError) as caught:
        schema.resolve(
            {"batch_size": "lots", "gpu_model": "TPU", "stream": "maybe"},
            {"batch_size": "PERFX_BATCH_SIZE", "gpu_model": "the command line"},
        )
    assert caught.value.problems == [
        "--model is required: pass --model VALUE or set PERFX_MODEL",
        '--batch_size (from PERFX_BATCH_SIZE): expected an integer, got "lots"',
        '--gpu_model (from the command line): expected one of A100, H100, RTX4090, got "TPU"',
        '--stream: expected true or false, got "maybe"',
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        (True, True),
    ],
)
def test_bool_words(text: object, value: bool) -> None:
    assert coerce(Parameter("flag", "bool"), text) is value


@pytest.mark.parametrize("text", ["3.5", "", "1e3", "0x10", "ten"])
def test_int_rejects_what_is_not_a_whole_number(text: str) -> None:
    with pytest.raises(ConfigError, match="expected an integer"):
        coerce(Parameter("n", "int"), text or " x ")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1,5"])
def test_float_rejects_non_finite_and_locale_numbers(text: str) -> None:
    with pytest.raises(ConfigError, match="expected a number"):
        coerce(Parameter("x", "float"), text)


def test_an_empty_value_means_not_given() -> None:
    assert resolve_value(Parameter("n", "int", default="7"), "  ") == 7
    assert resolve_value(Parameter("n", "int"), "") is None


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"parameters": [{"name": "x", "type": "date"}]},
            "argument_schema parameter 'x': unknown type 'date'; expected one of string, int, "
            "float, bool, choice",
        ),
        (
            {"parameters": [{"name": "x", "type": "choice"}]},
            "argument_schema parameter 'x': type 'choice' needs a non-empty list of choices",
        ),
        (
            {"parameters": [{"name": "1x"}]},
            "argument_schema.parameters[0]: name must be a letter followed by letters, digits, "
            "'_' or '-', got '1x'",
        ),
        (
            {"parameters": [{"name": "n", "type": "int", "default": "many"}]},
            "argument_schema parameter 'n': its default is invalid: --n: expected an integer, "
            'got "many"',
        ),
        (
            {"parameters": [{"name": "a"}, {"name": "a"}]},
            "argument_schema: parameter 'a' is defined twice",
        ),
        ({"parameters": "model"}, "argument_schema.parameters must be a list, got str"),
        ([], "argument_schema must be an object, got list"),
    ],
)
def test_schema_defects_are_named(schema: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RunSchema.from_json(schema)
    assert message in caught.value.problems


def test_a_missing_schema_means_no_arguments() -> None:
    assert RunSchema.from_json(None).parameters == ()
    assert RunSchema.from_json({}).parameters == ()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
parameter_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=10), st.sampled_from(["a", "b_c", "d-e"]), json_values),
        "type": st.one_of(
            st.sampled_from(["string", "int", "float", "bool", "choice"]), json_values
        ),
        "required": json_values,
        "default": json_values,
        "choices": st.one_of(st.lists(st.text(max_size=5), max_size=3), json_values),
        "description": json_values,
    },
)


@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"parameters": st.one_of(st.lists(parameter_like, max_size=5), json_values)}
        ),
    )
)
def test_any_json_yields_a_schema_or_a_config_error(data: Any) -> None:
    json.dumps(data)  # only what a platform could send
    try:
        schema = RunSchema.from_json(data)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p for p in err.problems)
    else:
        assert all(isinstance(p, Parameter) for p in schema.parameters)


@given(
    st.sampled_from(["string", "int", "float", "bool"]),
    st.one_of(st.text(), st.integers(), st.floats(), st.booleans()),
)
def test_any_value_is_typed_or_refused_cleanly(type_: str, raw: object) -> None:
    param = Parameter("x", type_)
    try:
        value = coerce(param, raw, "somewhere")
    except ConfigError as err:
        assert err.problems[0].startswith("--x (from somewhere): expected ")
    else:
        expected = {"string": str, "int": int, "float": float, "bool": bool}[type_]
        assert type(value) is expected


@given(st.text())
def test_choice_accepts_exactly_its_choices(raw: str) -> None:
    param = Parameter("gpu", "choice", choices=("A100", "H100"))
    try:
        value = coerce(param, raw)
    except ConfigError:
        assert raw.strip() not in param.choices
    else:
        assert value in param.choices
