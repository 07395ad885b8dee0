"""ASHA with the rank aggregate and RUSH's thresholds (imports Ray: load it only to build a
Tuner; a module of its own so that Tune can pickle the scheduler with the experiment).

:class:`TransferASHA` is :class:`ray.tune.schedulers.ASHAScheduler` with two additions, decided
alike in ``metatune simulate`` (:mod:`tune_jobs.report.transfer_hpo`):

- ``rank``: the result ASHA compares is the rank meta-score (each task's quantile among the
  trials seen at the same unit, after Salinas et al., 2020), not the trial's own meta_score;
- ``rush_first``: the first that many trials are the warm start's configurations; at each rung
  where ASHA lets one go on, its score raises that rung's threshold; a later trial below the
  threshold at a rung stops there (RUSH, Zappella et al., 2021).
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from trainables import objective
from tune_jobs.report.transfer_hpo import RankMeter, RushThresholds


class TransferASHA(ASHAScheduler):
    def __init__(self, tasks: list[str], rank: bool, rush_first: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tasks = tasks
        self._meter = RankMeter() if rank else None
        self._rush = RushThresholds() if rush_first else None
        self._first: list[str] = []
        self._rush_first = rush_first

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if len(self._first) < self._rush_first:
            self._first.append(trial.trial_id)

    def _rungs_of(self, trial_id: str) -> set[float]:
        bracket = self._trial_info.get(trial_id)
        return {m for m, seen in bracket._rungs if trial_id in seen} if bracket else set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        units = result.get(self._time_attr)
        if units is None or self._metric not in result:
            return super().on_trial_result(tune_controller, trial, result)
        if self._meter is not None:
            scores = {t: result[objective.metric(t, objective.SCORE)] for t in self._tasks}
            result = {**result, self._metric: self._meter.meta(scores, units)}
        before = self._rungs_of(trial.trial_id)
        action = super().on_trial_result(tune_controller, trial, result)
        rung = self._rungs_of(trial.trial_id) - before
        if self._rush is None or action != TrialScheduler.CONTINUE or not rung:
            return action
        milestone, value = int(rung.pop()), self._metric_op * result[self._metric]
        if trial.trial_id in self._first:
            self._rush.update(milestone, value)
        elif not self._rush.passes(milestone, value):
            self._num_stopped += 1
            return TrialScheduler.STOP
        return action
