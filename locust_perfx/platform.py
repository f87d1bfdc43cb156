"""The platform's HTTP client: the only module that talks to the platform or touches ``requests``.

Every call has a timeout; calls that may safely be repeated are retried with backoff for a
bounded *time* (not a count), because what users configure is how long a run may wait for
a flaky platform. HTTP failures become the :class:`~locust_perfx.exceptions.PlatformError`
tree here, at one boundary.

>>> with PlatformClient("http://localhost:8000") as client:  # doctest: +SKIP
...     run = client.get_run("run_20250101_120000_abc123")
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

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
DEFAULT_RETRY_FOR: Final = 60.0
"""Seconds to keep retrying a start or final status through an outage."""
REFUSED_FOR: Final = 10.0
"""Seconds the run's look-up at start-up retries while every connection is refused: nothing
listens at ``--platform-url`` (a typo'd port, a platform not started) is far more often a
mistake than an outage, and is reported this soon; a platform that answers at all, or times
out, gets the whole ``--platform-timeout``."""
DEFAULT_TIMEOUT: Final = 5.0
"""Seconds for one HTTP call (connect and read each)."""
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 8.0
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
NOT_HANDLED: Final = frozenset({429, 503})
"""Statuses saying the server did not handle the request (RFC 9110), so applied nothing."""

T = TypeVar("T")


@dataclass(frozen=True)
class RunInfo:
    """What the plugin needs of a platform run."""

    id: str
    status: str
    endpoint: str
    environment: str
    host: str
    schema: RunSchema
    schema_problems: tuple[str, ...] = ()
    """Defects of the endpoint's argument_schema, reported with the run's other problems."""
    endpoint_thresholds: tuple[object, ...] = ()
    """Pass/fail criteria of every run of the endpoint, as the platform wrote them."""
    run_thresholds: tuple[object, ...] = ()
    """The run's own criteria: each overrides the endpoint's of the same metric and scope."""
    baseline_run_id: str = ""
    """The run's own baseline run, when the platform has one (an optional field)."""
    endpoint_baseline_run_id: str = ""
    """The endpoint's baseline run, for its runs that name none."""

    @classmethod
    def from_json(cls, data: Any, run_id: str, url: str) -> RunInfo:
        """Build from a run body; a body missing its essentials is a PlatformError.

        A JSON answer without a run's ``status`` and ``id`` or ``endpoint`` is most likely
        another service's (a health check, a gateway): the message names the URL first.
        """
        if not isinstance(data, dict) or not (
            "status" in data and ("id" in data or "endpoint" in data)
        ):
            raise PlatformError(
                f"{url} answered JSON that is not a run (no status, id or endpoint): check that "
                "--platform-url is the platform's base URL (without /api), then --run-id",
                url=url,
                run_id=run_id,
            )
        endpoint = data.get("endpoint") or {}
        environment = data.get("environment") or {}
        if not isinstance(endpoint, dict) or not isinstance(environment, dict):
            raise PlatformError(
                f"run {run_id}: endpoint and environment must be objects", url=url, run_id=run_id
            )
        schema, schema_problems = RunSchema.parse(endpoint.get("argument_schema"))
        return cls(
            id=str(data.get("id") or run_id),
            status=str(data.get("status") or "unknown"),
            endpoint=str(endpoint.get("name") or ""),
            environment=str(environment.get("name") or ""),
            host=str(environment.get("host") or ""),
            schema=schema,
            schema_problems=tuple(schema_problems),
            endpoint_thresholds=_listed(endpoint.get("thresholds")),
            run_thresholds=_listed(data.get("thresholds")),
            baseline_run_id=str(data.get("baseline_run_id") or ""),
            endpoint_baseline_run_id=str(endpoint.get("baseline_run_id") or ""),
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
        """Fetch a run; retried through outages for ``retry_for`` seconds, through refused
        connections for at most :data:`REFUSED_FOR` of them (see there)."""
        url = self.run_url(run_id)
        body = self._retrying(
            lambda: self._once("GET", url, run_id, None), retry_for, refused_for=REFUSED_FOR
        )
        return RunInfo.from_json(body, run_id, url)

    def run_body(self, run_id: str, *, retry_for: float = 0.0) -> dict[str, Any]:
        """A run as the platform answers it (summary included); for a baseline run."""
        url = self.run_url(run_id)
        body = self._retrying(lambda: self._once("GET", url, run_id, None), retry_for)
        if not isinstance(body, dict):
            raise PlatformError(
                f"the platform's answer for run {run_id} is not a run object", url=url
            )
        return body

    def latest_completed_run(
        self, endpoint: str, environment: str, *, before: str, retry_for: float = 0.0
    ) -> dict[str, Any] | None:
        """The most recent completed run of ``endpoint`` in ``environment`` other than
        ``before``; ``None`` if there is none.

        Asks with the contract's filters (``?endpoint=&environment=&status=completed``) and
        filters the answer again: a platform that ignores them answers every run.
        """
        url = f"{self.base_url}/api/perf/runs"
        query = f"{url}?endpoint={quote(endpoint)}&environment={quote(environment)}"
        query += "&status=completed&limit=2"
        runs = self._retrying(lambda: self._once("GET", query, before, None), retry_for)
        for run in runs if isinstance(runs, list) else ():
            if (
                isinstance(run, dict)
                and run.get("id") != before
                and run.get("status") == "completed"
                and _name(run.get("endpoint")) == endpoint
                and _name(run.get("environment")) == environment
            ):
                return run
        return None

    def start(self, run_id: str, body: dict[str, Any], *, retry_for: float = 0.0) -> None:
        """Move the run from pending to running; RunStateConflict when it is not pending.

        An attempt whose answer was lost (a timeout, a reset, a 5xx from a proxy) may have
        started the run: then a retry's 409 is settled by the run's status, see
        :meth:`_state_call`.
        """
        self._state_call(run_id, "start", body, retry_for)

    def finish(
        self,
        run_id: str,
        call: str,
        body: dict[str, Any],
        *,
        retry_for: float,
        maybe_applied: bool = False,
    ) -> None:
        """Send the final status (``complete`` or ``fail``), exactly once.

        Retried through outages for ``retry_for`` seconds; an answer lost on the way back
        is recognised by the run's status, see :meth:`_state_call`. ``maybe_applied``: an
        earlier send (``perfx resend`` of a saved status) may have landed already.
        """
        self._state_call(run_id, call, body, retry_for, maybe_applied)

    def progress(self, run_id: str, body: dict[str, Any]) -> None:
        """Report live numbers once; never retried (the next report supersedes it)."""
        url = self.run_url(run_id) + "/progress"
        self._once("POST", url, run_id, body, need_body=False)

    def _state_call(
        self,
        run_id: str,
        call: str,
        body: dict[str, Any],
        retry_for: float,
        maybe_applied: bool = False,
    ) -> None:
        """POST a status change, retried; a 409 is settled by the run's status on the platform.

        An attempt that failed without a clear answer (a timeout, a reset, a 500, 502 or
        504) may have been applied, its answer lost on the way back. So on a 409 the run is
        read:

        - it shows the status this call sets, after such an attempt: that attempt landed;
        - it still allows the call: the 409 contradicts the run, so it is no refusal to
          act on (a PlatformError, not RunStateConflict: a final status is then saved
          for ``perfx resend``, not dropped);
        - anything else is a real refusal, even when the status matches on a first attempt
          (say, the platform's own watchdog failed the run).

        When time runs out after such an attempt, one last look at the run settles it too.
        """
        url = self.run_url(run_id) + f"/{call}"

        def attempt() -> None:
            nonlocal maybe_applied
            try:
                self._once("POST", url, run_id, body, need_body=False)
            except RunStateConflict as refusal:
                self._settle_conflict(run_id, call, refusal, maybe_applied)
            except PlatformUnavailable as err:
                maybe_applied = maybe_applied or err.status not in NOT_HANDLED
                raise

        try:
            self._retrying(attempt, retry_for)
        except PlatformUnavailable as err:
            if not maybe_applied:
                raise
            # Out of time, but an attempt may have landed: one look at the run settles it.
            if not _landed(run_id, call, self._status_if_known(run_id)):
                raise err.answer_lost() from None

    def _settle_conflict(
        self, run_id: str, call: str, refusal: RunStateConflict, maybe_applied: bool
    ) -> None:
        """Return if our earlier attempt landed; otherwise raise what the 409 really means."""
        status = self.get_run(run_id).status
        if maybe_applied and _landed(run_id, call, status):
            return
        if status in ALLOWED_FROM[call]:
            raise PlatformError(
                f"the platform answered 409 to the {call} of run {run_id} ({refusal}), yet "
                f"shows the run {status}, which allows it; check the platform or a proxy "
                "in front of it",
                url=refusal.url,
                status=refusal.status,
                run_id=run_id,
            )
        raise refusal

    def _status_if_known(self, run_id: str) -> str | None:
        """The run's status, or None when the platform cannot tell us now."""
        try:
            return self.get_run(run_id).status
        except PlatformError:
            return None

    @staticmethod
    def _retrying(
        attempt: Callable[[], T], retry_for: float, *, refused_for: float | None = None
    ) -> T:
        """``attempt()`` until it stops raising PlatformUnavailable or ``retry_for`` runs out
        (``refused_for``, when shorter, while every attempt is refused).

        The platform's ``Retry-After`` is a floor for the pause; one that reaches past the
        deadline ends the retries at once, rather than sleeping into a certain failure.
        """
        started = time.monotonic()
        deadline = started + retry_for
        delay = BACKOFF_FIRST
        answered = False
        while True:
            try:
                return attempt()
            except PlatformUnavailable as err:
                answered = answered or not err.refused
                if not answered and refused_for is not None:
                    deadline = min(deadline, started + refused_for)
                left = deadline - time.monotonic()
                asked = err.retry_after or 0.0
                if left <= 0 or asked > left:
                    raise
                backoff = min(delay * (1 + random.random() / 2), BACKOFF_MAX)
                pause = min(max(backoff, asked), left)
                logger.warning("%s; retrying in %.1f s", err, pause)
                time.sleep(pause)
                delay *= 2

    def _once(
        self,
        method: str,
        url: str,
        run_id: str,
        body: dict[str, Any] | None,
        *,
        need_body: bool = True,
    ) -> Any:
        """One HTTP call; ``need_body=False`` takes any 2xx as applied, readable or not.

        Each is logged at DEBUG (``--verbose``): method, URL, outcome and time, never a
        header (the token) or a body (the run's arguments may be confidential)."""
        started = time.monotonic()
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            took = (time.monotonic() - started) * 1000
            logger.debug("perfx: %s %s -> %s after %.0f ms", method, url, type(err).__name__, took)
            raise self._unavailable(err, url, run_id) from None
        took = (time.monotonic() - started) * 1000
        logger.debug("perfx: %s %s -> %s in %.0f ms", method, url, response.status_code, took)
        return _unwrap(response, url, run_id, self.base_url, need_body=need_body)

    def _unavailable(
        self, err: requests.RequestException, url: str, run_id: str
    ) -> PlatformUnavailable:
        if isinstance(err, requests.Timeout):
            return PlatformUnavailable(
                f"the platform at {self.base_url} did not answer within {self.timeout:g} s",
                url=url,
                run_id=run_id,
            )
        return PlatformUnavailable(
            f"cannot reach the platform at {self.base_url}: check --platform-url "
            "or PERFX_PLATFORM_URL",
            url=url,
            run_id=run_id,
            refused=_refused(err),
        )


def _refused(err: BaseException) -> bool:
    """Whether a connection error was a refusal (nothing listens at the URL)."""
    cause: BaseException | None = err
    for _ in range(8):  # requests -> urllib3 MaxRetryError -> NewConnectionError -> OSError
        if cause is None or isinstance(cause, ConnectionRefusedError):
            return cause is not None
        reason = getattr(cause, "reason", None)
        first = cause.args[0] if cause.args else None
        cause = (
            reason
            if isinstance(reason, BaseException)
            else first
            if isinstance(first, BaseException)
            else cause.__cause__ or cause.__context__
        )
    return False


SETS: Final = {"start": "running", "complete": "completed", "fail": "failed"}
"""The status each state call moves a run to."""
ALLOWED_FROM: Final = {
    "start": frozenset({"pending"}),
    "complete": frozenset({"running"}),
    "fail": frozenset({"pending", "running"}),
}
"""The statuses each state call is allowed from (platform-api.md)."""
SUCCESS_CODES: Final = frozenset({0, 200})
"""Envelope codes that mean success: 0 per platform-api.md, 200 as many platforms send."""


def _unwrap(
    response: requests.Response, url: str, run_id: str, base_url: str, *, need_body: bool
) -> Any:
    """The body of a success, or the right PlatformError carrying the platform's own words."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    message = _message(body)
    kwargs: dict[str, Any] = {"url": url, "status": status, "run_id": run_id}
    if status in RETRY_STATUSES:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise PlatformUnavailable(
            f"the platform at {base_url} answered {status}"
            + (f": {message}" if message else "")
            + (f" (Retry-After: {retry_after:g} s)" if retry_after is not None else ""),
            retry_after=retry_after,
            **kwargs,
        )
    if status == 404:
        raise RunNotFound(_not_found(run_id, base_url, body), **kwargs)
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
        if need_body:
            raise PlatformError(
                f"the platform at {base_url} answered {status} with a body that is not JSON; "
                "check --platform-url points at the platform's API, not a web page or proxy",
                **kwargs,
            )
        # A 2xx says the call was applied; what the body should have said is not needed.
        logger.warning(
            "perfx: the platform at %s answered %s with a body that is not JSON; "
            "taking it as applied",
            base_url,
            status,
        )
        return None
    code = _envelope_code(body)
    if code is None:
        return body
    if code not in SUCCESS_CODES:
        raise PlatformError(
            f"the platform refused run {run_id}: {message or f'code {code}'}", **kwargs
        )
    return body.get("data")


def without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part: the web UI and a saved final status show
    where, never who."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _not_found(run_id: str, base_url: str, body: Any) -> str:
    """A 404 for a run: a wrong id, unless the answer shows the URL is the likelier cause."""
    if base_url.endswith("/api"):
        return (
            f"run {run_id} not found at {base_url} (404): --platform-url ends in /api, which "
            f"the plugin adds itself; pass --platform-url {base_url.removesuffix('/api')}"
        )
    if body is None:
        return (
            f"{base_url} answered 404 without JSON for run {run_id}, unlike the platform's API: "
            "check that --platform-url is the platform's base URL, then --run-id"
        )
    return f"run {run_id} does not exist on {base_url}: check --run-id"


def _landed(run_id: str, call: str, status: str | None) -> bool:
    """Whether the run's ``status`` is what ``call`` sets: an earlier attempt landed."""
    if status != SETS[call]:
        return False
    logger.info(
        "perfx: the platform applied the %s of run %s; only its answer was lost", call, run_id
    )
    return True


def _envelope_code(body: Any) -> int | None:
    """The ``code`` of an envelope (platform-api.md), or None when ``body`` is no envelope.

    An envelope is an object with an integer ``code`` and ``data``, or a non-zero integer
    ``code`` and a ``message``/``msg``: a run that has a ``code`` of its own is not one.
    """
    if not isinstance(body, dict):
        return None
    raw = body.get("code")
    if isinstance(raw, int) and not isinstance(raw, bool):
        code = raw
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdecimal():
        code = int(raw)
    else:
        return None
    if "data" in body or (code != 0 and any(body.get(key) for key in ("message", "msg"))):
        return code
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _listed(value: Any) -> tuple[object, ...]:
    """A platform's list field; absent (or null) is empty, anything else a one-item list that
    the criteria parser will name as malformed."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def _name(record: Any) -> Any:
    return record.get("name") if isinstance(record, dict) else None


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    for key in ("message", "msg", "error", "detail"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return ""
