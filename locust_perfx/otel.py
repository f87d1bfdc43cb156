"""The run's identity in Locust's OpenTelemetry resource (``locust --otel``).

Locust builds its ``Resource`` in ``main()`` (``locust/opentelemetry.py``), after the full
parse of the command line and so after the plugin fetched the run. ``Resource.create``
merges the ``OTEL_RESOURCE_ATTRIBUTES`` environment variable into it: the plugin adds
``perfx.run_id``, ``perfx.endpoint`` and ``perfx.environment`` there, keeping every attribute
the user set (a key already present is left alone), so the traces and metrics of a run can
be found by its run id. Values are percent-encoded as the OpenTelemetry specification asks.
The resource is built once per process: a web UI that starts another run keeps the first
run's id there, and a worker (which does not fetch the run) has none unless its environment
sets it.

>>> environ = {"OTEL_RESOURCE_ATTRIBUTES": "team=search,perfx.endpoint=mine"}
>>> add_resource_attributes({"perfx.run_id": "run 1", "perfx.endpoint": "rerank"}, environ)
>>> environ["OTEL_RESOURCE_ATTRIBUTES"]
'team=search,perfx.endpoint=mine,perfx.run_id=run%201'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Final
from urllib.parse import quote

VARIABLE: Final = "OTEL_RESOURCE_ATTRIBUTES"


def add_resource_attributes(
    attributes: Mapping[str, str], environ: MutableMapping[str, str] = os.environ
) -> None:
    """Append ``attributes`` to ``OTEL_RESOURCE_ATTRIBUTES``, except keys already set there."""
    current = environ.get(VARIABLE, "").strip().strip(",")
    present = {item.split("=", 1)[0].strip() for item in current.split(",") if "=" in item}
    added = [
        f"{key}={quote(value, safe='')}"
        for key, value in attributes.items()
        if key not in present and value
    ]
    if added:
        environ[VARIABLE] = ",".join([current, *added] if current else added)
