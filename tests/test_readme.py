"""The docs say what the code does: every option is documented, every command exists, and
the examples in docstrings still run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from locust_perfx.options import OPTIONS
from tests.fixtures.locust import ROOT

README = (ROOT / "README.rst").read_text()


def test_every_option_and_its_variable_is_in_the_options_table() -> None:
    for option in OPTIONS:
        assert f"``{option.flag}``" in README, option.flag
        assert f"``{option.env_var}``" in README, option.env_var


def test_the_two_newcomer_commands_exist() -> None:
    assert "bash examples/demo.sh" in README and (ROOT / "examples" / "demo.sh").exists()
    assert "bash .ci/run" in README and (ROOT / ".ci" / "run").exists()
    assert ".venv/bin/tox" in (ROOT / ".ci" / "run").read_text()


def test_readme_renders_without_errors() -> None:
    """docutils raises on the first warning (a malformed table, a broken reference)."""
    import docutils.core

    docutils.core.publish_doctree(README, settings_overrides={"halt_level": 2, "report_level": 5})


def modules_with_examples() -> list[str]:
    """Every module of the package whose docstrings hold an example (``>>>``)."""
    package = ROOT / "locust_perfx"
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if ">>>" in path.read_text()
    )


@pytest.mark.parametrize("module", modules_with_examples())
def test_docstring_examples_still_run(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the examples create their SQLite file where they run
    results = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)

    assert not results.failed
