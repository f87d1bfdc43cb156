"""The exception tree, shaped by how callers react to each failure."""

from __future__ import annotations

from collections.abc import Iterable


class PerfxError(Exception):
    """Root of every error this plugin raises on purpose."""


class ConfigError(PerfxError, ValueError):
    """Bad input from the user or the schema; carries every problem found, not just the first."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class PlatformError(PerfxError):
    """The platform refused or failed a call; ``status`` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        run_id: str | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.run_id = run_id
        super().__init__(message)


class PlatformUnavailable(PlatformError):
    """The platform could not be reached or answered 5xx/429; safe to retry.

    ``retry_after`` is the platform's own ``Retry-After`` in seconds, when it sent one;
    ``maybe_applied`` says an attempt's answer was lost, so the platform may have applied it;
    ``refused``: nothing listens at the URL (connection refused).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        run_id: str | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = False,
        refused: bool = False,
    ) -> None:
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied
        self.refused = refused
        super().__init__(message, url=url, status=status, run_id=run_id)

    def answer_lost(self) -> PlatformUnavailable:
        """This failure, known to come after an attempt whose answer was lost."""
        lost = PlatformUnavailable(
            str(self),
            url=self.url,
            status=self.status,
            run_id=self.run_id,
            retry_after=self.retry_after,
            maybe_applied=True,
            refused=self.refused,
        )
        return lost.with_traceback(self.__traceback__)


class RunNotFound(PlatformError):
    """The platform has no run with this id (HTTP 404)."""


class PlatformAuthError(PlatformError):
    """The platform rejected the token (HTTP 401/403)."""


class RunStateConflict(PlatformError):
    """The run is not in a state that allows the call (HTTP 409), e.g. already completed."""


class MissingExtra(PerfxError, ModuleNotFoundError):
    """A module of an optional part is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, part: str) -> None:
        self.extra = extra
        super().__init__(
            f"{part} needs the {module} module: pip install 'locust-perfx[{extra}]'", name=module
        )


class ExportError(PerfxError):
    """The metrics database rejected the configuration (bad URL, token, org or bucket)."""
