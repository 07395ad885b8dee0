"""The final evaluation's seeds started during the search, on a slot it leaves idle.

Near its end an ASHA search often runs its last survivor alone: every trial has been created,
none waits to start, and the other slots stay empty until it finishes. This callback then
starts the final evaluation of the best finished trial (a fresh run per seed, as
:func:`tune_jobs.run.final_eval.evaluate_on_test` does), one seed at a time while a slot is free.

It is a guess, and nothing depends on it: a run of (configuration, seed) on the same resources
gives the same result whenever it starts. When the search ends, the runs are kept only if that
trial is the winner (:meth:`EarlyFinalEval.take`); otherwise they are cancelled, and they cost
nothing but a slot that had no work. A trial waiting to start (a retry after a failure) cancels
them at once, so that they never hold a trial back.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.tune import Callback
from ray.tune.experiment import Trial

from trainables import objective
from tune_jobs.spec.search_spec import SearchSpec


class EarlyFinalEval(Callback):
    """Starts the final evaluation of the best finished trial on a slot no trial can use."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec
        self.trial_id: str | None = None  # the trial whose configuration the runs evaluate
        self.config: dict[str, Any] | None = None
        self.runs: dict[int, Any] = {}  # seed -> the Ray task's ref

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks: no refs in there
        return {"spec": self.spec, "trial_id": None, "config": None, "runs": {}}

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        self._maybe_start(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        self._maybe_start(trials)

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self.runs and any(t.status in (Trial.PENDING, Trial.PAUSED) for t in trials):
            self.cancel()  # a trial needs the slot

    def _maybe_start(self, trials: list[Trial]) -> None:
        from tune_jobs.run.final_eval import FINAL_SEED_BASE, start_seed

        seeds = self.spec.final_eval.seeds
        if (not seeds or len(trials) < self.spec.num_samples
                or any(t.status in (Trial.PENDING, Trial.PAUSED) for t in trials)
                or not any(t.status == Trial.RUNNING for t in trials)):
            return
        done = [t for t in trials if t.status == Trial.TERMINATED
                and (t.last_result or {}).get(objective.META_SCORE) is not None]
        if not done:
            return
        best = max(done, key=lambda t: t.last_result[objective.META_SCORE])
        if best.trial_id != self.trial_id:
            self.cancel()  # a better trial has finished: evaluate that one instead
            self.trial_id, self.config = best.trial_id, dict(best.config)
        if len(self.runs) >= seeds or not self._slot_free():
            return
        seed = FINAL_SEED_BASE + len(self.runs)
        assert self.config is not None
        self.runs[seed] = start_seed(self.spec, self.config, seed)
        print(f"[metatune] a slot is free: the final evaluation of {best.trial_id} (the best "
              f"finished trial) starts seed {seed} now; kept if it wins", flush=True)

    def _slot_free(self) -> bool:
        free = ray.available_resources()
        res = self.spec.resources
        return free.get("CPU", 0.0) >= res.cpu and free.get("GPU", 0.0) >= res.gpu

    def take(self, trial_id: str, config: dict[str, Any]) -> dict[int, Any]:
        """The runs already started for the winner (``trial_id`` with ``config``); any other
        runs are cancelled."""
        if trial_id == self.trial_id and config == self.config:
            runs, self.runs = self.runs, {}
            return runs
        self.cancel()
        return {}

    def cancel(self) -> None:
        for ref in self.runs.values():
            ray.cancel(ref, force=True)
        self.runs = {}
