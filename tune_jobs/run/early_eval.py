"""The final evaluation's runs started during the search, on a slot it leaves idle.

Near its end an ASHA search often runs its last survivor alone: every trial has been created,
none waits to start, and the other slots stay empty until it finishes. This callback then
starts the final evaluation of the best finished trial (a fresh run per task and seed, as
:func:`tune_jobs.run.final_eval.evaluate_on_test` does), one run at a time while a slot is free.

It is a guess, and nothing depends on it: a run of (configuration, task, seed) on the same
resources gives the same result whenever it starts. When the search ends, the runs are kept only
if that trial is the winner (:meth:`EarlyFinalEval.take`); otherwise they are cancelled, and they
cost nothing but a slot that had no work. A trial waiting to start (a retry after a failure)
cancels them at once, so that they never hold a trial back.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import ray
from ray.tune import Callback
from ray.tune.experiment import Trial

from trainables import objective
from tune_jobs.run.final_eval import Run, run_resources, runs_of, start_run
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import unit_seconds


def _waiting(trials: list[Trial]) -> bool:
    """Whether a trial waits for a slot (a new one, a retry, one paused by the scheduler)."""
    return any(t.status in (Trial.PENDING, Trial.PAUSED) for t in trials)


def _ended(ref: Any) -> bool:
    """Whether the Ray task of ``ref`` has ended (returned or failed)."""
    ready, _ = ray.wait([ref], timeout=0)
    return bool(ready)


class EarlyFinalEval(Callback):
    """Starts the final evaluation of the best finished trial on a slot no trial can use.

    Checked once per controller step (when the trials' statuses are final): Ray's free
    resources are read at most every ``poll_s`` seconds, so that a slot freed by a trial is
    used within about that long. Ray's figure lags a start, so for ``gap_s`` seconds after a
    run starts no other starts, unless that run has ended already (its slot is then free for
    the next one at once). Whatever goes wrong in here is one warning and the end of it: it
    never fails a trial or the search.
    """

    def __init__(self, spec: SearchSpec, gap_s: float = 5.0, poll_s: float = 0.5) -> None:
        self.spec, self.gap_s, self.poll_s = spec, gap_s, poll_s
        self.active = True
        self.trial_id: str | None = None  # the trial whose configuration the runs evaluate
        self.config: dict[str, Any] | None = None
        self.runs: dict[Run, Any] = {}  # (seed, task) -> the Ray task's ref
        self.last: tuple[float, Any] | None = None  # when the latest run started, and its ref
        self.read_at = -float("inf")  # when the free resources were last read

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks (tuner.pkl)
        return {"spec": self.spec, "gap_s": self.gap_s, "poll_s": self.poll_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The copy a restored Tuner brings back has no one to hand its runs to: it does nothing.
        self.__init__(state["spec"], state["gap_s"], state.get("poll_s", 0.5))  # type: ignore[misc]
        self.active = False

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self.runs and _waiting(trials):
            self.cancel()  # a trial needs the slot

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if not self.active:
            return
        try:
            self._maybe_start(trials)
        except Exception as exc:  # noqa: BLE001 (a guess that fails must not fail the search)
            self.active = False
            self.cancel()
            print(f"[metatune] warning: the final evaluation is not started early ({exc}); "
                  "it runs after the search", file=sys.stderr, flush=True)

    def _maybe_start(self, trials: list[Trial]) -> None:
        if (not self.spec.final_eval.seeds or len(trials) < self.spec.num_samples
                or _waiting(trials)
                or not any(t.status == Trial.RUNNING for t in trials)):
            return
        done = [t for t in trials if t.status == Trial.TERMINATED
                and isinstance((t.last_result or {}).get(objective.META_SCORE), (int, float))]
        if not done:
            return
        best = max(done, key=lambda t: t.last_result[objective.META_SCORE])
        todo = runs_of(self.spec, unit_seconds(best.last_result, self.spec.tasks))
        if best.trial_id != self.trial_id:
            self.cancel()  # a better trial has finished: evaluate that one instead
            self.trial_id, self.config = best.trial_id, dict(best.config)
        now = time.monotonic()
        if len(self.runs) >= len(todo) or now - self.read_at < self.poll_s:
            return
        if self.last and now - self.last[0] < self.gap_s and not _ended(self.last[1]):
            return  # Ray's free resources may not show the latest start yet
        self.read_at = now
        run = todo[len(self.runs)]
        if not self._slot_free(run_resources(self.spec, run[1])):
            return
        assert self.config is not None
        self.runs[run] = start_run(self.spec, self.config, run)
        self.last = (now, self.runs[run])
        print(f"[metatune] a slot is free: the final evaluation of {best.trial_id} (the best "
              f"finished trial) starts {run[1]} with seed {run[0]} now; kept if it wins",
              flush=True)

    @staticmethod
    def _slot_free(need: dict[str, float]) -> bool:
        free = ray.available_resources()
        return all(free.get(k, 0.0) >= v for k, v in need.items() if v)

    def take(self, trial_id: str, config: dict[str, Any]) -> dict[Run, Any]:
        """The runs already started for the winner (``trial_id`` with ``config``); any other
        runs are cancelled."""
        same = json.dumps(config, sort_keys=True, default=str) == json.dumps(
            self.config, sort_keys=True, default=str)
        if trial_id == self.trial_id and same:
            runs, self.runs = self.runs, {}
            return runs
        self.cancel()
        return {}

    def cancel(self) -> None:
        from tune_jobs.run.final_eval import cancel

        runs, self.runs, self.last = self.runs, {}, None
        cancel(runs.values())
