"""The README and the docstrings: the newcomer's commands exist, the README still renders on
PyPI and stays a landing page, and the examples in docstrings still run."""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest
import readme_renderer.rst

from tests.fixtures.locust import ROOT

README = (ROOT / "README.rst").read_text()
DOCS = ROOT / "docs"


def test_the_two_newcomer_commands_exist() -> None:
    assert "bash examples/demo.sh" in README and (ROOT / "examples" / "demo.sh").exists()
    assert "bash .ci/run" in README and (ROOT / ".ci" / "run").exists()
    assert ".venv/bin/tox" in (ROOT / ".ci" / "run").read_text()


def test_readme_renders_on_pypi() -> None:
    """PyPI renders the long description with readme_renderer (what ``twine check`` runs):
    on any docutils warning it shows the raw text instead, so a warning fails here."""
    warnings = io.StringIO()
    html = readme_renderer.rst.render(README, stream=warnings)

    assert html is not None, warnings.getvalue()
    assert not warnings.getvalue()
    assert "bash examples/demo.sh" in html


def test_readme_is_a_landing_page() -> None:
    """The rest lives in docs/; the README only introduces and points there."""
    assert len(README.splitlines()) < 200
    pages = {path.name for path in DOCS.glob("*.rst")} - {"index.rst", "changelog.rst"}
    assert {"quickstart.rst", "configuration.rst", "troubleshooting.rst"} <= pages
    for page in pages:  # the README's map of the docs names every page
        assert f"``docs/{page}``" in README, page


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
