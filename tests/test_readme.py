"""README.rst says what the code does: every option is documented, every command exists."""

from __future__ import annotations

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
