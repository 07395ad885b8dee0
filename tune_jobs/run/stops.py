"""Ctrl-C and SIGTERM stop a search in order, and say so.

Ray Tune stops a run gracefully on SIGUSR1 (and on SIGINT, with its own handler): it saves the
experiment state one last time and returns from ``fit()`` as if the search had ended. Metatune
takes both signals itself: during ``fit()`` the first one asks Tune for that graceful stop and is
remembered, so that the pipeline can raise :class:`Interrupted` instead of evaluating and
reporting a search that did not finish; before the trials (Ray start, preparation) it stops at
once with ``KeyboardInterrupt``. A second signal always stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A search stopped by a signal. ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int, experiment: str, done: int | None, total: int) -> None:
        self.signum, self.experiment, self.done, self.total = signum, experiment, done, total
        if done is None:
            what = "before any trial started; nothing to resume: `metatune run` starts it again"
        else:
            what = (f"{done} of {total} trials done; `metatune resume {experiment}` continues "
                    "it")
        super().__init__(f"interrupted ({signal.Signals(signum).name}): {what}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Which stop signal arrived, and whether Tune's ``fit()`` is running."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.in_fit = False
        self.fit_started = False  # from then on there is an experiment to resume

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if self.in_fit and first:
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop: state saved, fit returns
        else:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Take SIGINT and SIGTERM for the duration (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        # Tune would swap its own SIGINT handler in for fit(); SIGUSR1 stays Tune's.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self.take()
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def take(self) -> None:
        """(Re)install the handlers: ray.init puts a SIGTERM handler of its own (sys.exit) in."""
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                signal.signal(s, self._handle)

    @contextmanager
    def fitting(self) -> Iterator[None]:
        self.in_fit = self.fit_started = True
        try:
            yield
        finally:
            self.in_fit = False
