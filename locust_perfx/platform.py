"""The platform's HTTP client: the only module that talks to the platform or touches ``requests``.

Every call has a timeout; calls that may safely be repeated are retried with backoff for a
bounded *time* (not a count), because what users configure is how long a run may wait for
a flaky platform. HTTP failures become the :class:`~locust_perfx.exceptions.PlatformError`
tree here, at one boundary.

>>> with PlatformClient("http://localhost:8000") as client:  # doctest: +SKIP
...     run = client.get_run("run_20250101_120000_abc123")
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import requests

from locust_perfx import __version__
from locust_perfx.exceptions import (
    PlatformAuthError,
    PlatformError,
    PlatformUnavailable,
    RunNotFound,
    RunStateConflict,
)
from locust_perfx.schema import RunSchema

logger = logging.getLogger(__name__)

DEFAULT_PLATFORM_URL: Final = "http://localhost:8000"
DEFAULT_TIMEOUT: Final = 5.0
"""Seconds for one HTTP call (connect and read each)."""
DEFAULT_RETRY_FOR: Final = 60.0
"""Seconds to keep retrying a start or final status through an outage."""
PROGRESS_INTERVAL: Final = 10.0
"""Seconds between two progress reports."""
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 8.0
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RunInfo:
    """What the plugin needs of a platform run."""

    id: str
    status: str
    endpoint: str
    environment: str
    host: str
    schema: RunSchema

    @classmethod
    def from_json(cls, data: Any, run_id: str, url: str) -> RunInfo:
        """Build from a run body; a body missing its essentials is a PlatformError."""
        if not isinstance(data, dict):
            raise PlatformError(
                f"the platform's answer for run {run_id} is not a run object",
                url=url,
                run_id=run_id,
            )
        endpoint = data.get("endpoint") or {}
        environment = data.get("environment") or {}
        if not isinstance(endpoint, dict) or not isinstance(environment, dict):
            raise PlatformError(
                f"run {run_id}: endpoint and environment must be objects", url=url, run_id=run_id
            )
        return cls(
            id=str(data.get("id") or run_id),
            status=str(data.get("status") or "unknown"),
            endpoint=str(endpoint.get("name") or ""),
            environment=str(environment.get("name") or ""),
            host=str(environment.get("host") or ""),
            schema=RunSchema.from_json(endpoint.get("argument_schema")),
        )


class PlatformClient:
    """A session to one platform, with its token kept out of every message and log."""

    def __init__(
        self,
        base_url: str = DEFAULT_PLATFORM_URL,
        token: str = "",
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"locust-perfx/{__version__}"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"PlatformClient({self.base_url!r})"

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def run_url(self, run_id: str) -> str:
        return f"{self.base_url}/api/perf/runs/{run_id}"

    def get_run(self, run_id: str, *, retry_for: float = 0.0) -> RunInfo:
        """Fetch a run; retried through outages for ``retry_for`` seconds."""
        body = self._call("GET", run_id, "", None, retry_for)
        return RunInfo.from_json(body, run_id, self.run_url(run_id))

    def start(self, run_id: str, body: dict[str, Any], *, retry_for: float = 0.0) -> Any:
        return self._call("POST", run_id, "/start", body, retry_for)

    def finish(self, run_id: str, call: str, body: dict[str, Any], *, retry_for: float) -> None:
        """Send the final status (``complete`` or ``fail``), exactly once.

        When an earlier attempt may have reached the platform (a timeout, a 5xx) and the
        retry gets a 409, the run already showing the status we sent means the first
        attempt was delivered and only its answer was lost. A 409 on the first attempt is
        a real refusal (say, the platform's own watchdog failed the run).
        """
        url = self.run_url(run_id) + f"/{call}"
        wanted = {"complete": "completed", "fail": "failed"}[call]
        attempted = False

        def attempt() -> Any:
            nonlocal attempted
            try:
                return self._once("POST", url, run_id, body)
            except RunStateConflict:
                if attempted and self.get_run(run_id).status == wanted:
                    return None
                raise
            finally:
                attempted = True

        self._retrying(attempt, retry_for)

    def progress(self, run_id: str, body: dict[str, Any]) -> None:
        """Report live numbers once; never retried (the next report supersedes it)."""
        self._call("POST", run_id, "/progress", body, 0.0)

    def _call(
        self, method: str, run_id: str, suffix: str, body: dict[str, Any] | None, retry_for: float
    ) -> Any:
        url = self.run_url(run_id) + suffix
        return self._retrying(lambda: self._once(method, url, run_id, body), retry_for)

    @staticmethod
    def _retrying(attempt: Callable[[], Any], retry_for: float) -> Any:
        """``attempt()`` until it stops raising PlatformUnavailable or ``retry_for`` runs out."""
        deadline = time.monotonic() + retry_for
        delay = BACKOFF_FIRST
        while True:
            try:
                return attempt()
            except PlatformUnavailable as err:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                pause = min(delay * (1 + random.random() / 2), BACKOFF_MAX, left)
                logger.warning("%s; retrying in %.1f s", err, pause)
                time.sleep(pause)
                delay *= 2

    def _once(self, method: str, url: str, run_id: str, body: dict[str, Any] | None) -> Any:
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.Timeout:
            raise PlatformUnavailable(
                f"the platform at {self.base_url} did not answer within {self.timeout:g} s",
                url=url,
                run_id=run_id,
            ) from None
        except requests.RequestException:
            raise PlatformUnavailable(
                f"cannot reach the platform at {self.base_url}: check --platform-url "
                "or PERFX_PLATFORM_URL",
                url=url,
                run_id=run_id,
            ) from None
        return _unwrap(response, url, run_id, self.base_url)


def _unwrap(response: requests.Response, url: str, run_id: str, base_url: str) -> Any:
    """The body of a success, or the right PlatformError carrying the platform's own words."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    message = _message(body)
    kwargs: dict[str, Any] = {"url": url, "status": status, "run_id": run_id}
    if status in RETRY_STATUSES:
        raise PlatformUnavailable(
            f"the platform at {base_url} answered {status}" + (f": {message}" if message else ""),
            **kwargs,
        )
    if status == 404:
        raise RunNotFound(f"run {run_id} does not exist on {base_url}: check --run-id", **kwargs)
    if status in (401, 403):
        raise PlatformAuthError(
            f"the platform at {base_url} refused the token ({status}): "
            "check --platform-token or PERFX_PLATFORM_TOKEN",
            **kwargs,
        )
    if status == 409:
        raise RunStateConflict(
            message or f"run {run_id} is not in a state that allows this", **kwargs
        )
    if status >= 400:
        raise PlatformError(
            f"the platform refused {url} ({status})" + (f": {message}" if message else ""),
            **kwargs,
        )
    if body is None:
        raise PlatformError(
            f"the platform at {base_url} answered {status} with a body that is not JSON",
            **kwargs,
        )
    if isinstance(body, dict) and "code" in body and ("data" in body or message):
        if body["code"] not in (0, "0", 200):
            raise PlatformError(
                f"the platform refused run {run_id}: {message or 'code ' + str(body['code'])}",
                **kwargs,
            )
        return body.get("data")
    return body


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    for key in ("message", "msg", "error", "detail"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return ""
