"""Exit codes and signals: the code Locust will exit with, who set it, the plugin's own, and
Ctrl-C and SIGTERM ending the process as under plain Locust.

Locust decides its exit code in ``main.py``'s ``shutdown()``, right after it fires
``quitting`` (in reverse registration order): ``environment.process_exit_code`` if a
listener set it, else ``--exit-code-on-error`` when requests failed, else 2 after a listener
or greenlet raised, else 0. A verdict that must equal that code has to be drawn after every
``quitting`` listener ran, and listener order cannot promise that: locust-plugins registers
its checks at Locust's import, before every ``-f`` file, and ``-f locustfile.py,plugin.py``
registers the locustfile's listener before the plugin's.

So :func:`watch_quitting` wraps ``fire`` of the environment's own ``quitting`` hook (that one
object, not Locust's class): every listener runs as Locust would run it (same order, same
error handling), each one's change of ``process_exit_code`` is attributed to it, and then the
plugin's last word runs. Listeners registered later (after the plugin's ``init``) are covered
too, since the list is read when the event fires. Moving the plugin's listener to the front
of the list at ``init`` would miss those. Checked on Locust 2.47 and 2.40.

How the plugin's own codes combine with the rest (``docs``: exit codes):
another listener's non-zero code, or Locust's own, always wins; the plugin sets a code only
where Locust would exit 0: 6 for breached thresholds, 4 when the final status was only saved,
5 when the platform refused it, 1 for an interrupt, lost workers or a plugin failure. The
verdict's reason still names every cause.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

import gevent
from locust import log as locust_log
from locust.env import Environment
from locust.event import EventHook

SIGTERM_EXIT: Final = 128 + signal.SIGTERM
"""What a shell reports for a process that SIGTERM's default action ended."""


def locust_exit_code(environment: Environment) -> int:
    """The code Locust would exit with now (``main.py`` ``shutdown``)."""
    if environment.process_exit_code is not None:
        return int(environment.process_exit_code)
    runner = environment.runner
    if runner is not None and (runner.errors or runner.exceptions):
        options = environment.parsed_options
        return int(getattr(options, "exit_code_on_error", 1))
    return 2 if locust_log.unhandled_greenlet_exception else 0


def describe_listener(listener: Callable[..., Any]) -> str:
    """Who a listener is, for a reason a person reads: ``check_exit in locustfile``."""
    name = getattr(listener, "__qualname__", None) or repr(listener)
    module = getattr(listener, "__module__", None) or "an unknown module"
    if module.split(".")[0] == "locust_plugins":
        return f"locust-plugins' quitting listener {name} (its --check-* options)"
    return f"the quitting listener {name} in {module}"


class QuittingWatch:
    """Runs ``last`` after every ``quitting`` listener, and knows who set the exit code.

    ``setter`` names the listener that last changed ``environment.process_exit_code`` (or says
    it was set before ``quitting``); empty while nobody but the plugin set it.
    """

    def __init__(self, environment: Environment, last: Callable[..., None]) -> None:
        self.environment = environment
        self.setter = ""
        self._ours: int | None = None
        self._last = last
        hook: EventHook = environment.events.quitting
        self._fire: Callable[..., None] = hook.fire
        hook.fire = self._fire_then_last  # type: ignore[method-assign]  # this object only
        self._hook = hook

    def set_own(self, code: int) -> None:
        """Set the exit code as the plugin: not taken for another listener's."""
        self.environment.process_exit_code = self._ours = code

    @property
    def set_by_other(self) -> bool:
        return bool(self.setter) and self.environment.process_exit_code is not None

    def _fire_then_last(self, *, reverse: bool = False, **kwargs: Any) -> None:
        environment = self.environment
        code = environment.process_exit_code
        if code is not None and code != self._ours and not self.setter:
            self.setter = "the locustfile or another plugin, before quitting"
        # Locust's fire() iterates over its list of handlers: hand it, for this one firing,
        # each handler wrapped so that an exit code it sets is attributed to it.
        handlers = self._hook._handlers
        self._hook._handlers = [self._attributing(h) for h in handlers]
        try:
            self._fire(reverse=reverse, **kwargs)
        finally:
            self._hook._handlers = handlers
        self._last(**kwargs)

    def _attributing(self, listener: Callable[..., Any]) -> Callable[..., Any]:
        def attributed(**kwargs: Any) -> Any:
            before = self.environment.process_exit_code
            try:
                return listener(**kwargs)
            finally:
                if self.environment.process_exit_code != before:
                    self.setter = describe_listener(listener)

        return attributed


class Signals:
    """Ctrl-C and SIGTERM keep ending the process as under plain Locust, and are recorded for
    the verdict (``interrupted_by``).

    gevent runs every handler of a signal: ours beside Locust's own SIGTERM handler, once
    Locust has one. Where it has none yet, SIGTERM's default action (death) was replaced by
    ours, which must then end the process itself: ``on_unhandled_sigterm`` does.
    """

    def __init__(self, environment: Environment, on_unhandled_sigterm: Callable[[], None]) -> None:
        self.environment = environment
        self.interrupted_by = ""
        self.tests_started = 0
        """Tests this process started (``test_start``): Locust's handler exists after one."""
        self._on_unhandled_sigterm = on_unhandled_sigterm

    def install(self) -> None:
        gevent.signal_handler(signal.SIGTERM, self._on_sigterm)
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):
            signal.signal(signal.SIGINT, self._sigint_handler(previous))

    def locust_handles_sigterm(self) -> bool:
        """Whether Locust's own SIGTERM handler (``shutdown()``, then exit) is installed.

        ``main.py`` installs it only after a headless ``start_automatic_run()`` returned:
        for a master, once its workers are in and the test started; for a
        ``LoadTestShape``, only once the shape ended. Until then SIGTERM's default action
        (death) applied, which our handler replaced.
        """
        options = self.environment.parsed_options
        if not getattr(options, "headless", False):
            return True
        return self.tests_started > 0 and self.environment.shape_class is None

    def _on_sigterm(self) -> None:
        self.interrupted_by = self.interrupted_by or "SIGTERM"
        if not self.locust_handles_sigterm():
            self._on_unhandled_sigterm()

    def _sigint_handler(self, previous: Any) -> Any:
        """Record Ctrl-C, then interrupt the main greenlet as Python would.

        Python runs a signal handler in whichever greenlet is current, and some of Locust's
        greenlets (``stats_history``) swallow KeyboardInterrupt: Ctrl-C could then be lost,
        leaving a master waiting for workers forever. So Python's default handler is
        replaced by one that raises KeyboardInterrupt in the main greenlet; any other
        handler (the locustfile's own) is chained.
        """
        main = gevent.getcurrent()

        def handler(signum: int, frame: FrameType | None) -> Any:
            self.interrupted_by = self.interrupted_by or "SIGINT (Ctrl-C)"
            if previous is not signal.default_int_handler:
                return previous(signum, frame)
            gevent.get_hub().loop.run_callback(main.throw, KeyboardInterrupt)
            return None

        return handler
