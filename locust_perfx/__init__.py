"""Run Locust load tests as tracked, reproducible runs of a performance-test platform.

Importing this package has no side effects: the Locust listeners live in
:mod:`locust_perfx.plugin`, which is loaded on purpose (``locust -f perfx_plugin.py,...``
or the ``perfx`` command).
"""

from __future__ import annotations

from locust_perfx.exceptions import (
    ConfigError,
    ExportError,
    PerfxError,
    PlatformAuthError,
    PlatformError,
    PlatformUnavailable,
    RunNotFound,
    RunStateConflict,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ExportError",
    "PerfxError",
    "PlatformAuthError",
    "PlatformError",
    "PlatformUnavailable",
    "RunNotFound",
    "RunStateConflict",
    "__version__",
]
