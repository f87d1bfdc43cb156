"""A small reference implementation of the performance-test platform's API.

The plugin's tests and demo talk to it over real HTTP, and teams without a platform
can run it: ``perfx-platform serve``. The contract it implements is ``openapi.yaml``
in this package.

>>> from locust_perfx.reference import create_app
>>> app = create_app("perfx-platform.sqlite3", token="s3cret", envelope=True, progress_timeout=0)
>>> app.test_client().get("/api/perf/runs").status_code  # no token: refused
401
"""

from __future__ import annotations

from locust_perfx.exceptions import MissingExtra

REQUIRES = ("jsonschema", "referencing", "yaml")
"""The modules only the reference platform uses: the ``reference`` extra installs them."""

try:
    from locust_perfx.reference.app import create_app
except ModuleNotFoundError as err:
    missing = (err.name or "").partition(".")[0]
    if missing not in REQUIRES:
        raise
    raise MissingExtra(missing, "reference", "the reference platform") from None

__all__ = ["create_app"]
