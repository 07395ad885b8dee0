"""Bad data, or a full disk, found inside a trial ends the search at once; it is never retried.

The driver checks every task's data before Ray starts (:func:`trainables.tasks.check_data`), so
this guard matters where a node's copy of the data differs from the driver's. Tune retries a
failed trial up to ``max_failures`` times whatever the error was, and bad data does not get
better on a retry. Within one step of Tune's controller, a failure is handled (the retry is
queued and ``on_trial_recover`` called), then the stopper is asked — so the queued retry is
stopped before it starts. The driver reads :data:`SEEN` after the search and exits 2 with the
loader's own message. A full disk (:class:`trainables.checkpoint.DiskFull`) also stops the search
at once, with :data:`DISK_FULL` and exit 1, since no retry makes space; but it stops the way
Ctrl-C does, with every trial left resumable for when there is space again.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

_DATA_ERROR = re.compile(r"^(?:[\w.]+\.)?DataError: (.+)$", re.MULTILINE)
_DISK_FULL = re.compile(r"^(?:[\w.]+\.)?DiskFull: (.+)$", re.MULTILINE)

# trial id -> (the loader's message, the trial's error file), for the search running in this
# process; a guard restored from Tune's state on resume records here too
SEEN: dict[str, tuple[str, str]] = {}
# trial id -> where the disk was full and what did not fit, for the same search
DISK_FULL: dict[str, str] = {}


def _last(pattern: re.Pattern[str], error_text: str) -> str | None:
    found = pattern.findall(error_text)
    return found[-1].strip() if found else None


def data_error(error_text: str) -> str | None:
    """The loader's message when a trial's error (Tune's error.txt) is a DataError, else None."""
    return _last(_DATA_ERROR, error_text)


def clear() -> None:
    """A new search, or a resumed one, starts with no stop (a restored guard shares these)."""
    SEEN.clear()
    DISK_FULL.clear()


class DataErrorStop(Callback, Stopper):
    """A Tune callback and stopper: the first trial that fails on bad data stops the search."""

    def _check(self, trial: Any) -> None:
        path = Path(trial.local_path or "", "error.txt")
        text = path.read_text() if path.is_file() else ""
        if message := data_error(text):
            SEEN[trial.trial_id] = (message, str(path))
        if (full := _last(_DISK_FULL, text)) and not DISK_FULL:
            DISK_FULL[trial.trial_id] = full
            # Tune's graceful stop (as on Ctrl-C), not the stopper's: the trials stay
            # unfinished in the saved state, so that `resume` continues every one of them
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return bool(SEEN)
