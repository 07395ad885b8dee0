"""The summary of a search: every figure the report, the terminal and ``summary.json`` show,
as one record computed from the trial rows by :mod:`tune_jobs.report.analysis`."""

from __future__ import annotations

import dataclasses
from typing import Any

from trainables import objective
from tune_jobs.report.analysis import (
    against_baselines,
    asha_rungs,
    baselines_of,
    best_row,
    collapsed,
    first_rung_signal,
    importance_caveat,
    leaderboard,
    leave_one_task_out,
    matched,
    param_importance,
    per_task_best,
    regret,
    rung_counts,
    task_acc,
    task_agreement,
    tradeoff,
)
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import FinalEval, TrialRow, checkpoint_fallback


@dataclasses.dataclass
class Summary:
    """What a search found. Its parts are JSON-shaped (they go to summary.json as they are);
    ``best`` is None until a trial has reported."""

    experiment: str
    tasks: list[str]
    data: str | None  # the data folder
    data_kind: str | None  # synthetic | real
    task_data: dict[str, Any] | None  # task_data.json: each task's data and baseline
    num_trials: int
    trials_by_outcome: dict[str, int]  # stop reason in words -> trials
    rungs: dict[str, int]  # ASHA milestone -> trials that reached it
    leaderboard: list[dict[str, Any]]
    per_task_best: dict[str, dict[str, Any]]
    leave_one_task_out: list[dict[str, Any]]
    param_importance: dict[str, float]
    importance_caveat: str | None
    pareto: dict[str, Any] | None
    collapsed: list[dict[str, Any]]
    first_rung_ignored: list[dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    warm_start: list[dict[str, Any]]
    final_eval: FinalEval | None
    damaged_checkpoints: list[dict[str, Any]]
    checkpoint_fallback: str | None
    transfers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # whether the tasks rank configurations alike (analysis.task_agreement); None: one task
    task_agreement: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    provisional: str | None = None  # why the figures are not final (still running, interrupted)
    # how the meta-score combines the tasks, and what ASHA's stops were decided on
    aggregate: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of summary.json (no ``best`` key before a trial has reported)."""
        out = dataclasses.asdict(self)
        if self.best is None:
            del out["best"]
        return out


def summarise(spec: SearchSpec, rows: list[TrialRow], final: FinalEval | None,
              task_data: dict[str, Any] | None = None,
              warm: list[dict[str, Any]] | None = None,
              transfers: list[dict[str, Any]] | None = None) -> Summary:
    """Everything the report shows, computed from the trial rows by the pure analysis."""
    tasks = list(spec.tasks)
    baselines = baselines_of(task_data)
    asha = spec.asha
    milestones = asha_rungs(asha.max_t, asha.grace_period, asha.reduction_factor, asha.brackets)
    best = best_row(rows)
    return Summary(
        experiment=spec.experiment, tasks=tasks, data=spec.data_dir, data_kind=spec.data_kind,
        task_data=task_data, num_trials=len(rows),
        trials_by_outcome=_count(r.stopped for r in rows),
        rungs={str(m): c for m, c in rung_counts(rows, milestones).items()},
        leaderboard=leaderboard(rows, tasks),
        per_task_best=per_task_best(rows, tasks),
        leave_one_task_out=leave_one_task_out(rows, tasks, spec.trial_aggregate),
        param_importance=param_importance(rows, spec.space),
        importance_caveat=importance_caveat(rows),
        pareto=tradeoff(rows, tasks),
        collapsed=collapsed(rows, final, tasks),
        first_rung_ignored=(first_rung_signal(rows, tasks, milestones[0], baselines)
                            if len(tasks) > 1 else []),
        baselines=against_baselines(rows, final, baselines, tasks),
        warm_start=matched(rows, warm or []),
        aggregate={"meta_score": spec.trial_aggregate, "asha_decided_on": spec.metric_aggregate
                   if spec.asha.enabled else "none (asha.enabled=false)"},
        final_eval=final,
        damaged_checkpoints=[
            {"trial_id": r.trial_id, "path": c["path"], "meta_score": c["meta_score"],
             "problem": c["problem"]}
            for r in rows for c in r.damaged_checkpoints],
        checkpoint_fallback=checkpoint_fallback(best) if best is not None else None,
        transfers=transfers or [],
        task_agreement=task_agreement(rows, tasks),
        best=None if best is None else {
            "trial_id": best.trial_id, "config": best.config,
            "meta_score": best.metrics[objective.META_SCORE],
            "val_acc": {t: task_acc(best, t) for t in tasks},
            "regret": regret(rows, tasks, best.trial_id),
            "units": best.units, "trial_dir": best.trial_dir})


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
