"""Live view of a running search: a short leaderboard in the log as results arrive, and the
search's own metrics published through Ray's metrics API (dashboard, Prometheus).
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from trainables import objective

GAUGES = {
    "metatune_best_meta_score": ("best validation meta-score so far", ("experiment",)),
    "metatune_trials": ("trials by state", ("experiment", "state")),
    "metatune_trials_at_rung": ("trials that reached each ASHA rung (budget units)",
                                ("experiment", "rung")),
    "metatune_task_best_val_acc": ("best validation accuracy so far, per task",
                                   ("experiment", "task")),
}


class SearchMetrics:
    """Bookkeeping of a search's progress, turned into gauge values. Pure; no Ray needed."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)
        self.latest: dict[str, dict[str, Any]] = {}
        self.units: dict[str, int] = {}
        self.best: float | None = None
        self.task_best: dict[str, float] = {}

    def record(self, trial_id: str, result: dict[str, Any]) -> None:
        score = result.get(objective.META_SCORE)
        self.latest[trial_id] = {"units": result.get("units"), objective.META_SCORE: score,
                                 **{t: result.get(objective.metric(t, objective.VAL_ACC))
                                    for t in self.tasks}}
        self.units[trial_id] = max(self.units.get(trial_id, 0), int(result.get("units") or 0))
        if score is not None and (self.best is None or score > self.best):
            self.best = score
        for t in self.tasks:
            acc = result.get(objective.metric(t, objective.VAL_ACC))
            if acc is not None and acc > self.task_best.get(t, -1.0):
                self.task_best[t] = acc

    def values(self, states: dict[str, int]) -> list[tuple[str, float, dict[str, str]]]:
        """(gauge, value, tags) triples; rungs are cumulative: trials with units >= rung."""
        out = []
        if self.best is not None:
            out.append(("metatune_best_meta_score", self.best, {}))
        for state, n in states.items():
            out.append(("metatune_trials", float(n), {"state": state}))
        for rung in sorted(set(self.units.values())):
            reached = sum(1 for u in self.units.values() if u >= rung)
            out.append(("metatune_trials_at_rung", float(reached), {"rung": str(rung)}))
        for t, acc in self.task_best.items():
            out.append(("metatune_task_best_val_acc", acc, {"task": t}))
        return out


class LeaderboardCallback(Callback):
    """Prints the top trials at most every ``every_s`` seconds and publishes the search metrics."""

    def __init__(self, tasks: list[str], experiment: str = "", every_s: float = 20.0,
                 top: int = 5) -> None:
        self.experiment, self.every_s, self.top = experiment, every_s, top
        self.metrics = SearchMetrics(tasks)
        self._last_print = 0.0
        self._gauges: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:  # gauges live in this process only
        return {**self.__dict__, "_gauges": None}

    def _publish(self, trials: list) -> None:
        try:
            if self._gauges is None:
                from ray.util.metrics import Gauge

                self._gauges = {name: Gauge(name, description=desc, tag_keys=keys)
                                for name, (desc, keys) in GAUGES.items()}
            states: dict[str, int] = {}
            for t in trials:
                states[t.status] = states.get(t.status, 0) + 1
            for name, value, tags in self.metrics.values(states):
                self._gauges[name].set(value, tags={"experiment": self.experiment, **tags})
        except Exception as exc:  # metrics are an extra; never let them stop a search
            print(f"[metatune] metrics not published: {exc}", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.metrics.record(trial.trial_id, result)
        self._publish(trials)
        if time.monotonic() - self._last_print >= self.every_s:
            self._last_print = time.monotonic()
            print(self.render(), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._publish(trials)
        print(self.render(), flush=True)

    def render(self) -> str:
        latest = self.metrics.latest
        tasks = self.metrics.tasks
        ranked = sorted(latest.items(),
                        key=lambda kv: -(kv[1][objective.META_SCORE] or -1e9))[: self.top]
        lines = [f"[metatune] leaderboard of {self.experiment} ({len(latest)} trials reporting)",
                 f"  {'trial':<14}{'units':>6}{'meta':>9}" + "".join(f"{t[:16]:>18}" for t in tasks)]
        for tid, r in ranked:
            accs = "".join(f"{(r[t] if r[t] is not None else float('nan')):>18.4f}" for t in tasks)
            lines.append(f"  {tid:<14}{r['units'] or 0:>6}{r[objective.META_SCORE]:>9.4f}{accs}")
        return "\n".join(lines)
