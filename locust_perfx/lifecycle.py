"""The verdict of a run and its delivery to the platform.

:func:`decide` turns what happened into complete or fail with a reason: Locust's own
verdict (its process exit code) plus what Locust does not count as failure but a platform
must (an interrupt, lost workers, a crash of this plugin). :class:`PlatformSync` makes the
status calls; :mod:`locust_perfx.controller` decides when.
"""

from __future__ import annotations

import enum
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from locust_perfx import state
from locust_perfx.exceptions import PerfxError, PlatformError, PlatformUnavailable, RunStateConflict
from locust_perfx.platform import PlatformClient, without_credentials
from locust_perfx.schema import Value

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL: Final = 10.0
"""Seconds between two progress reports."""


class Delivery(enum.Enum):
    """What became of a final status."""

    DELIVERED = "delivered"
    SAVED = "saved"
    """Not delivered within ``--platform-timeout``: saved to a file for ``perfx resend``."""
    REFUSED = "refused"
    """Refused by the platform (409: say its watchdog failed the run): nothing to resend."""
    LOGGED = "logged"
    """Neither delivered nor saved (no folder could be written): logged as one line."""


EXIT_STATUS_SAVED: Final = 4
"""Exit code of a test that passed but whose final status is only saved for ``perfx resend``:
the platform's record is stale until it is resent."""
EXIT_STATUS_REFUSED: Final = 5
"""Exit code of a test that passed but whose final status the platform refused."""
EXIT_THRESHOLDS: Final = 6
"""Exit code of a test Locust would pass whose thresholds were breached (or that one aborted)."""
DELIVERY_EXIT_CODES: Final = {
    Delivery.SAVED: EXIT_STATUS_SAVED,
    Delivery.LOGGED: EXIT_STATUS_SAVED,
    Delivery.REFUSED: EXIT_STATUS_REFUSED,
}


@dataclass(frozen=True)
class Verdict:
    """How the run ended: ``reason`` is empty for a completed run."""

    failed: bool
    reason: str = ""

    @property
    def call(self) -> str:
        return "fail" if self.failed else "complete"


@dataclass(frozen=True)
class Outcome:
    """The facts a verdict is drawn from, gathered from Locust at the end of a test."""

    exit_code: int
    requests: int = 0
    failures: int = 0
    exceptions: tuple[str, ...] = ()
    exit_code_set_by: str = ""
    """Who set ``environment.process_exit_code``, when another listener or the locustfile did:
    ``the quitting listener check_exit in locustfile``."""
    signal: str = ""
    workers_lost: bool = False
    plugin_error: str = ""
    breaches: tuple[str, ...] = ()
    """Each breached criterion, with what was observed (``p95_ms < 500: observed 730``)."""
    aborted: bool = False
    """A breached ``abort`` criterion stopped the test."""


def decide(outcome: Outcome) -> Verdict:
    """Complete or fail, and a reason a person understands, most fundamental cause first.

    Fails exactly when the exit code is non-zero, counting the plugin's own (an interrupt,
    lost workers, a plugin failure, breached thresholds); the reason names who set the code,
    and breached thresholds are named beside another cause.
    """
    if outcome.plugin_error:
        return Verdict(True, f"the perfx plugin failed: {outcome.plugin_error}")
    if outcome.signal:
        return Verdict(True, f"interrupted by {outcome.signal} before the test finished")
    if outcome.workers_lost:
        made = (
            f"{outcome.requests} requests were made before"
            if outcome.requests
            else "no load was generated"
        )
        return Verdict(True, f"all workers were lost (heartbeat timeout); {made}")
    breached = "; ".join(outcome.breaches)
    if outcome.aborted:
        return Verdict(True, f"aborted by a threshold: {breached}")
    why = _why_locust_fails(outcome)
    if why and breached:
        return Verdict(True, f"{why}; thresholds also breached: {breached}")
    if why or breached:
        return Verdict(True, why or f"thresholds breached: {breached}")
    return Verdict(False)


def _why_locust_fails(outcome: Outcome) -> str:
    """Who made Locust's exit code non-zero, in Locust's own order (``main.py`` shutdown)."""
    code = outcome.exit_code
    if code == 0:
        return ""
    if outcome.exit_code_set_by:
        return f"exit code {code} set by {outcome.exit_code_set_by}"
    if outcome.exceptions:
        first = outcome.exceptions[0]
        more = f" (and {len(outcome.exceptions) - 1} more)" if len(outcome.exceptions) > 1 else ""
        return f"unhandled exception in user code: {first}{more}"
    if outcome.failures:
        ratio = outcome.failures / max(outcome.requests, 1)
        return (
            f"request failures: {outcome.failures} of {outcome.requests} requests failed "
            f"({ratio:.1%}); exit code {code} (--exit-code-on-error)"
        )
    return f"Locust exited with code {code} (an event listener raised; see its log)"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PlatformSync:
    """The only caller of one run's status endpoints: start, progress, complete or fail.

    It keeps only what its calls need (the last error, when the next progress is due): the
    run controller decides when each call is due and makes each at most once. Built only in
    the process that owns the run (local runner or master), so workers never talk to the
    platform.
    """

    def __init__(
        self,
        client: PlatformClient,
        run_id: str,
        *,
        retry_for: float,
        progress_every: float = PROGRESS_INTERVAL,
        state_dir: str = "",
    ) -> None:
        self.client = client
        self.state_dir = state_dir
        """``--state-dir``: where a final status not delivered is saved (``state.py``)."""
        self.run_id = run_id
        self.retry_for = retry_for
        self.last_error = ""
        self.progress_every = progress_every
        self._progress_enabled = progress_every > 0
        self._next_progress = 0.0
        """``time.monotonic()`` before which no progress is sent."""

    def start(self, arguments: Mapping[str, Value], host: str, locust: Mapping[str, Any]) -> None:
        """Tell the platform the run starts; raises PlatformError when it refuses."""
        body = {
            "arguments": dict(arguments),
            "host": host,
            "started_at": utc_now(),
            "locust": dict(locust),
        }
        try:
            self.client.start(self.run_id, body, retry_for=self.retry_for)
        except PlatformError as err:
            self.last_error = str(err)
            raise
        self._next_progress = time.monotonic() + self.progress_every
        logger.info("perfx: run %s started on %s", self.run_id, self.client.base_url)

    def progress(self, body: Callable[[], dict[str, Any]]) -> None:
        """Send live numbers if it is time; a platform without the endpoint is left alone, and
        one that asks for a pause (``Retry-After`` with a 429 or 503) gets it."""
        now = time.monotonic()
        if not self._progress_enabled or now < self._next_progress:
            return
        self._next_progress = now + self.progress_every
        try:
            self.client.progress(self.run_id, {"at": utc_now(), **body()})
        except PlatformError as err:
            if err.status in (404, 405):
                logger.info("perfx: the platform has no progress endpoint; not sending progress")
                self._progress_enabled = False
                return
            self.last_error = str(err)
            logger.debug("perfx: progress not delivered: %s", err)
            if isinstance(err, PlatformUnavailable) and err.retry_after:
                # Retry-After counts from the answer, not from when the call was sent.
                answered = time.monotonic()
                self._next_progress = max(self._next_progress, answered + err.retry_after)

    def finish(self, verdict: Verdict, summary: Mapping[str, Any], exit_code: int) -> Delivery:
        """Send complete or fail; if it cannot be delivered, save it to a file."""
        body: dict[str, Any] = {"finished_at": utc_now(), "summary": dict(summary)}
        if verdict.failed:
            body.update(reason=verdict.reason, exit_code=exit_code or 1)
        try:
            self.client.finish(self.run_id, verdict.call, body, retry_for=self.retry_for)
        except RunStateConflict as err:
            # Sending it again would be refused again: say why, and keep nothing to resend.
            self.last_error = str(err)
            logger.error(
                "perfx: the platform refused the %s of run %s: %s", verdict.call, self.run_id, err
            )
            return Delivery.REFUSED
        except PlatformError as err:
            self.last_error = str(err)
            maybe_applied = isinstance(err, PlatformUnavailable) and err.maybe_applied
            return self._keep(verdict.call, body, maybe_applied, err)
        if verdict.failed:
            logger.info("perfx: run %s failed: %s", self.run_id, verdict.reason)
        else:
            logger.info("perfx: run %s completed", self.run_id)
        return Delivery.DELIVERED

    def _keep(
        self, call: str, body: Mapping[str, Any], maybe_applied: bool, err: PlatformError
    ) -> Delivery:
        """Save the final status for ``perfx resend``; where nothing can be written, log it."""
        url = self.client.base_url
        record = {
            "run_id": self.run_id,
            "call": call,
            "body": body,
            "maybe_applied": maybe_applied,
            # Where to resend it (perfx resend's default); never the token.
            "platform_url": without_credentials(url),
        }
        path, problem = state.save(f"perfx-{self.run_id}.final.json", record, self.state_dir)
        if path is None:
            logger.error(
                "perfx: could not send the final status of run %s: %s. Nor could it be saved "
                "(%s); set --state-dir to a writable folder. To send it later, pass the next "
                "line to: perfx resend - --platform-url %s",
                self.run_id,
                err,
                problem,
                url,
            )
            logger.error("%s", state.log_line(record))
            return Delivery.LOGGED
        logger.error(
            "perfx: could not send the final status of run %s: %s. It is saved in %s; "
            "send it later with: perfx resend %s --platform-url %s",
            self.run_id,
            err,
            path,
            path,
            url,
        )
        return Delivery.SAVED


DELIVERED_SUFFIX: Final = ".delivered"
"""Added to a saved final status's file name once ``perfx resend`` delivered it."""


@dataclass(frozen=True)
class SavedStatus:
    """A final status saved by :meth:`PlatformSync.finish` for ``perfx resend``."""

    source: str
    """Where it was read from, for messages: the file, or another source of the record."""
    path: Path | None
    """The file to mark delivered, if it came from one."""
    run_id: str
    call: str
    body: dict[str, Any]
    maybe_applied: bool = False
    platform_url: str = ""
    """The platform it was meant for ("" in a file from before it was recorded)."""

    @classmethod
    def load(cls, path: Path) -> SavedStatus:
        """Read and check a saved file, or a log holding its ``perfx-final-status:`` line
        (``-``: from standard input); PerfxError names what is wrong and what to pass."""
        if str(path) == "-":
            return cls.from_record(state.read_saved(sys.stdin.read(), "standard input"), "-")
        if path.name.endswith(DELIVERED_SUFFIX):
            raise PerfxError(f"{path} was delivered already; nothing to send")
        delivered = path.with_name(path.name + DELIVERED_SUFFIX)
        if not path.exists() and delivered.exists():
            raise PerfxError(f"{path} was delivered already (now {delivered}); nothing to send")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise PerfxError(f"{path} is not a saved perfx final status: {err}") from None
        record = state.read_saved(text, str(path))
        # A log holding the line is not the saved file: nothing to mark delivered.
        return cls.from_record(record, str(path), None if state.LOG_MARK in text else path)

    @classmethod
    def from_record(cls, record: Any, source: str, path: Path | None = None) -> SavedStatus:
        """Check a saved record, read from ``source``; PerfxError names what is wrong."""
        fields = {"run_id": str, "call": str, "body": dict}
        wrong = [
            name
            for name, kind in fields.items()
            if not isinstance(record, dict) or not isinstance(record.get(name), kind)
        ]
        if wrong:
            raise PerfxError(
                f"{source} is not a saved perfx final status: {', '.join(wrong)} missing or "
                "malformed (the plugin writes run_id, call and body); pass the file it saved, "
                "unedited"
            )
        if record["call"] not in ("complete", "fail"):
            raise PerfxError(f"{source}: unknown call {record['call']!r}")
        return cls(
            source=source,
            path=path,
            run_id=record["run_id"],
            call=record["call"],
            body=record["body"],
            maybe_applied=bool(record.get("maybe_applied")),
            platform_url=str(record.get("platform_url") or ""),
        )


def resend(client: PlatformClient, saved: SavedStatus, *, retry_for: float) -> Path | None:
    """Deliver a saved final status, then rename its file (``.delivered``): a second resend
    must not send it again. Returns the renamed file (None: it came from no file)."""
    try:
        client.finish(
            saved.run_id, saved.call, saved.body, retry_for=retry_for,
            maybe_applied=saved.maybe_applied,
        )  # fmt: skip
    except RunStateConflict as err:
        raise PerfxError(
            f"the platform refused the {saved.call} of run {saved.run_id}: {err}. The run has "
            "a final status already: this one was delivered before, or the platform ended the "
            f"run itself (its watchdog); nothing is left to send from {saved.source}"
        ) from None
    if saved.path is None:
        return None
    delivered = saved.path.with_name(saved.path.name + DELIVERED_SUFFIX)
    saved.path.replace(delivered)
    return delivered
