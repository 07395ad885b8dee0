"""Live view of a running search: a short leaderboard in the log as results arrive, and the
search's own metrics published through Ray's metrics API (dashboard, Prometheus).
"""

from __future__ import annotations

import re
from pathlib import Path
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
    """One line whenever a trial finishes a unit, stops or fails (nothing between, nothing
    twice), the whole leaderboard when the search ends, and the search metrics published."""

    def __init__(self, tasks: list[str], experiment: str = "", max_t: int | None = None,
                 top: int = 5) -> None:
        self.experiment, self.max_t, self.top = experiment, max_t, top
        self.metrics = SearchMetrics(tasks)
        self._gauges: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:  # gauges live in this process only
        return {**self.__dict__, "_gauges": None}

    def __setstate__(self, state: dict[str, Any]) -> None:  # also one pickled by an older one
        self.__dict__.update({"max_t": None, "top": 5, **state})

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

    def _best(self) -> str:
        scored = [(r[objective.META_SCORE], tid, r["units"])
                  for tid, r in self.metrics.latest.items() if r[objective.META_SCORE] is not None]
        if not scored:
            return ""
        score, tid, units = max(scored)
        return f" | best {score:.4f} ({tid}, unit {units})"

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.metrics.record(trial.trial_id, result)
        self._publish(trials)
        r = self.metrics.latest[trial.trial_id]
        of = f"/{self.max_t}" if self.max_t else ""
        score = r[objective.META_SCORE]
        accs = ", ".join(f"{t} {r[t]:.3f}" for t in self.metrics.tasks if r[t] is not None)
        print(f"[metatune] {trial.trial_id} unit {r['units']}{of}: meta "
              f"{score if score is not None else float('nan'):.4f} ({accs}){self._best()}",
              flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials)
        units = self.metrics.units.get(trial.trial_id, 0)
        how = ("completed" if self.max_t and units >= self.max_t else "stopped by ASHA")
        print(f"[metatune] {trial.trial_id} {how} at unit {units}{self._best()}", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message, path = failure(trial)
        print(f"[metatune] {trial.trial_id} failed, retrying from its last checkpoint: "
              f"{message}\n  error file: {path}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._publish(trials)
        message, path = failure(trial)
        print(f"[metatune] {trial.trial_id} failed: {message}\n  error file: {path}", flush=True)

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


def failure(trial: Any) -> tuple[str, str]:
    """A failed trial's message (the last line of its error.txt that names an exception) and
    the error file's path."""
    path = Path(trial.local_path or "", "error.txt")
    text = path.read_text(errors="replace") if path.is_file() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    message = (named or lines or ["(no error file)"])[-1]
    return message[:500], str(path)


# "ValueError: …", "trainables.checkpoint.DiskFull: …", "ray.exceptions.RayTaskError(OSError): …"
_EXCEPTION_LINE = re.compile(r"^[\w.]+(\([\w.]+\))?: ")

