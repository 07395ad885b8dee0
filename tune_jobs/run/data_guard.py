"""Bad data found inside a trial ends the search at once; it is never retried.

The driver checks every task's data before Ray starts (:func:`trainables.tasks.check_data`), so
this guard matters where a node's copy of the data differs from the driver's. Tune retries a
failed trial up to ``max_failures`` times whatever the error was, and bad data does not get
better on a retry. Within one step of Tune's controller, a failure is handled (the retry is
queued and ``on_trial_recover`` called), then the stopper is asked — so the queued retry is
stopped before it starts. The driver reads :data:`SEEN` after the search and exits 2 with the
loader's own message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

_DATA_ERROR = re.compile(r"^(?:[\w.]+\.)?DataError: (.+)$", re.MULTILINE)

# trial id -> (the loader's message, the trial's error file), for the search running in this
# process; a guard restored from Tune's state on resume records here too
SEEN: dict[str, tuple[str, str]] = {}


def data_error(error_text: str) -> str | None:
    """The loader's message when a trial's error (Tune's error.txt) is a DataError, else None."""
    found = _DATA_ERROR.findall(error_text)
    return found[-1].strip() if found else None


class DataErrorStop(Callback, Stopper):
    """A Tune callback and stopper: the first trial that fails on bad data stops the search."""

    def _check(self, trial: Any) -> None:
        path = Path(trial.local_path or "", "error.txt")
        message = data_error(path.read_text()) if path.is_file() else None
        if message:
            SEEN[trial.trial_id] = (message, str(path))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return bool(SEEN)
