"""Sphinx configuration of the locust-perfx docs (``tox -e docs``; Read the Docs reads it too).

The pages that restate code are generated from it by ``docs/_ext/perfx_docs.py``, so they
cannot drift: nothing here fetches from the network (no intersphinx).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Locust imports gevent, which must patch ssl before urllib3 builds a context, as
# ``locust`` itself does first thing; Sphinx has imported ssl by now, so patch it here.
from gevent import monkey

monkey.patch_all()

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

from locust_perfx import __version__  # noqa: E402

project = "locust-perfx"
author = "the locust-perfx authors"
copyright = "the locust-perfx authors"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "perfx_docs",
]

root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False

html_theme = "furo"
html_title = f"locust-perfx {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# ``-b doctest`` runs the pages' ``.. doctest::`` blocks, the docstrings' examples among them
# (perfx_docs makes each a block in its module's globals; plain ``>>>`` blocks are not run).
# They run in a scratch folder: some create files where they run.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import importlib, os, tempfile
os.chdir(tempfile.mkdtemp(prefix="perfx-doctest-"))
"""
