"""Where what must outlive the process is kept: a final status the platform did not take.

A container often has a read-only root filesystem (Kubernetes ``readOnlyRootFilesystem``)
or a working directory that vanishes with the pod. The final status is saved in the first
of these folders that takes it: ``--state-dir`` (``PERFX_STATE_DIR``) when given, the working
directory, the user's state directory (``$XDG_STATE_HOME/locust-perfx``, by default
``~/.local/state/locust-perfx``), the temporary directory. When none takes it, the status is
logged as one line (:data:`LOG_MARK` and compact JSON, no secrets) that ``perfx resend -``
reads back from a pasted log, and the run ends with exit code 4 as for a saved one.

>>> record = {"run_id": "run_1", "call": "complete", "body": {}}
>>> read_saved(log_line(record), "a log") == record
True
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from locust_perfx.exceptions import PerfxError

LOG_MARK: Final = "perfx-final-status:"
"""Starts the log line of a final status that could not be saved anywhere."""
APP_NAME: Final = "locust-perfx"


def state_dirs(configured: str = "") -> list[Path]:
    """The folders to try, in order: ``configured`` (else the working directory), the user's
    state directory, the temporary directory; one that cannot even be named is left out."""
    first: Callable[[], Path] = (lambda: Path(configured)) if configured else Path.cwd
    found = []
    for where in (first, _user_dir, _temp_dir):
        try:
            found.append(where())
        except (OSError, RuntimeError):  # no working directory, no home, no usable temp dir
            continue
    return list(dict.fromkeys(found))


def _user_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / APP_NAME


def _temp_dir() -> Path:
    return Path(tempfile.gettempdir())


def save(name: str, record: Mapping[str, Any], configured: str = "") -> tuple[Path | None, str]:
    """Write ``record`` as JSON to ``name`` in the first state folder that takes it.

    Returns the path, or None and what went wrong in each folder; never raises OSError.
    """
    text = json.dumps(record, indent=2, default=str)
    problems: list[str] = []
    for folder in state_dirs(configured):
        path = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Whole or not at all: a crash mid-write leaves no half file to resend.
            partial = folder / f".{name}.partial"
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)
        except OSError as err:
            problems.append(f"{folder}: {err.strerror or err}")
            continue
        return path, ""
    return None, "; ".join(problems) or "no folder to write to"


def log_line(record: Mapping[str, Any]) -> str:
    """The record as one line for the log, which :func:`read_saved` reads back."""
    return f"{LOG_MARK} {json.dumps(record, separators=(',', ':'), default=str)}"


def read_saved(text: str, source: str) -> dict[str, Any]:
    """A saved record from a file's text, or from a log holding :func:`log_line`'s line.

    A log pasted from ``kubectl logs`` carries a prefix (time, level) before the mark; the
    last marked line wins. Raises PerfxError naming ``source`` when there is none.
    """
    marked = [line for line in text.splitlines() if LOG_MARK in line]
    raw = marked[-1].split(LOG_MARK, 1)[1] if marked else text
    try:
        record = json.loads(raw)
    except ValueError as err:
        what = "its perfx-final-status line" if marked else "it"
        raise PerfxError(
            f"{source} is not a saved perfx final status ({what} is not JSON: {err}); "
            f"give the perfx-RUN.final.json file, or a log with a '{LOG_MARK}' line"
        ) from None
    if not isinstance(record, dict):
        raise PerfxError(f"{source} is not a saved perfx final status (not a JSON object)")
    return record
