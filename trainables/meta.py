"""One trial of the meta-search without Ray: every task advances one budget unit in lockstep,
then all are evaluated and scored together. Save/restore covers every task of the trial.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from trainables import objective
from trainables.checkpoint import load_checkpoint, save_checkpoint
from trainables.config import MetaConfig, TaskSpec, TrialSettings
from trainables.loop import seed_everything
from trainables.tasks import Task, build_task, chance, reference, task_baseline

TRIAL_FILE = "trial.json"


class TaskRunner:
    """One task of a trial: trains a unit, evaluates, scores, saves and restores its state."""

    def __init__(self, spec: TaskSpec, meta: MetaConfig, settings: TrialSettings,
                 device: str = "cpu") -> None:
        self.name, self.meta = spec.name, meta
        self.task, _ = build_task(spec, meta, settings, device)
        self.chance = chance(self.task.dataset.num_classes)
        measured = (task_baseline(spec, settings).val_acc if spec.reference == "baseline"
                    else None)
        self.reference = reference(spec, self.task.dataset.source, measured, self.chance)

    def run_unit(self) -> dict[str, float]:
        started = time.perf_counter()
        train = self.task.learner.train_unit()
        trained = time.perf_counter()
        val = self.task.learner.evaluate("val")
        m = lambda key: objective.metric(self.name, key)  # noqa: E731
        return {m(objective.VAL_ACC): val["acc"], m(objective.VAL_MACRO_F1): val["macro_f1"],
                m(objective.VAL_TOP5_ACC): val["top5_acc"], m(objective.VAL_LOSS): val["loss"],
                m(objective.TRAIN_LOSS): train["train_loss"], m("lr"): train["lr"],
                m(objective.SCORE): objective.normalise(val["acc"], self.chance, self.reference),
                # wall seconds (the CPU/GPU work is read back inside, so these are complete)
                m("train_s"): trained - started, m("eval_s"): time.perf_counter() - trained}

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors, state = self.task.learner.state()
        learner = self.task.learner
        state["config"] = {"meta": self.meta.to_dict(), "task": self.name,
                           "train": dataclasses.asdict(learner.cfg),
                           "label_names": self.task.dataset.label_names}
        return tensors, state

    def load(self, tensors: dict[str, Any], state: dict[str, Any]) -> None:
        self.task.learner.load(tensors, state)

    def test(self) -> dict[str, float]:
        test = self.task.learner.evaluate("test")
        m = lambda key: objective.metric(self.name, key)  # noqa: E731
        return {m(objective.TEST_ACC): test["acc"], m(objective.TEST_MACRO_F1): test["macro_f1"],
                m(objective.TEST_TOP5_ACC): test["top5_acc"],
                m(objective.TEST_SCORE): objective.normalise(test["acc"], self.chance, self.reference)}


def assemble(results: list[dict[str, float]], tasks: list[str], how: str,
             units: int) -> dict[str, Any]:
    """One trial report from its tasks' unit results: every metric, the meta-score, the unit."""
    report: dict[str, Any] = {}
    for r in results:
        report.update(r)
    report[objective.META_SCORE] = objective.aggregate(
        [report[objective.metric(t, objective.SCORE)] for t in tasks], how)
    report[objective.UNITS] = units
    objective.validate_report(report, tasks)
    return report


def write_trial(folder: str | Path, states: dict[str, tuple[dict, dict]], units: int,
                meta: MetaConfig, settings: TrialSettings) -> Path:
    """Write every task's state as a verified checkpoint, plus the trial's own record."""
    folder = Path(folder)
    for name, (tensors, state) in states.items():
        save_checkpoint(folder / name, tensors, state)
    (folder / TRIAL_FILE).write_text(json.dumps(
        {"units": units, "meta": meta.to_dict(), "tasks": list(states),
         "settings": settings.to_dict()}, indent=1))
    return folder


def read_trial(folder: str | Path, meta: MetaConfig,
               tasks: list[str]) -> tuple[int, dict[str, tuple[dict, dict]]]:
    """``(units, {task: (tensors, state)})`` of a checkpoint made by :func:`write_trial`."""
    folder = Path(folder)
    info = json.loads((folder / TRIAL_FILE).read_text())
    if info["meta"] != meta.to_dict():
        raise ValueError(f"{folder}: checkpoint was made by config {info['meta']}, "
                         f"not {meta.to_dict()}")
    missing = [t for t in tasks if not (folder / t).is_dir()]
    if missing:
        raise ValueError(f"{folder}: no checkpoint for task(s) {missing}")
    return int(info["units"]), {t: load_checkpoint(folder / t) for t in tasks}


class MetaTrial:
    """All tasks of one trial under one MetaConfig, run one after another in this process."""

    def __init__(self, meta: MetaConfig, settings: TrialSettings, device: str = "cpu") -> None:
        self.meta, self.settings = meta, settings
        seed_everything(meta.seed)
        self.runners = {t.name: TaskRunner(t, meta, settings, device) for t in settings.tasks}
        self.tasks: dict[str, Task] = {n: r.task for n, r in self.runners.items()}
        self.units = 0

    def run_unit(self) -> dict[str, Any]:
        """Train every task for one unit, evaluate each on validation, return the full report."""
        results = [runner.run_unit() for runner in self.runners.values()]
        self.units += 1
        return assemble(results, list(self.runners), self.settings.aggregate, self.units)

    def save(self, folder: str | Path) -> Path:
        """Write every task's full state (one verified checkpoint per task) into ``folder``."""
        states = {name: runner.state() for name, runner in self.runners.items()}
        return write_trial(folder, states, self.units, self.meta, self.settings)

    def restore(self, folder: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save`, for every task of the trial."""
        self.units, states = read_trial(folder, self.meta, list(self.runners))
        for name, (tensors, state) in states.items():
            self.runners[name].load(tensors, state)


def trial_units(folder: str | Path) -> int:
    return int(json.loads((Path(folder) / TRIAL_FILE).read_text())["units"])


def final_test(meta: MetaConfig, settings: TrialSettings,
               device: str = "cpu") -> tuple[dict[str, float], dict[str, float]]:
    """Train ``meta`` from scratch for the full budget and score it on every task's test split.
    Returns the test metrics, and the wall seconds the run spent in ``setup`` (building its
    tasks), ``train`` and ``eval`` (validation after each unit, and the test scoring).

    The test split is touched only here, after selection, never by the search itself.
    """
    started = time.perf_counter()
    trial = MetaTrial(meta, settings, device=device)
    seconds = {"setup": time.perf_counter() - started, "train": 0.0, "eval": 0.0}
    for _ in range(settings.max_units):
        report = trial.run_unit()
        for t in trial.runners:
            seconds["train"] += report[objective.metric(t, "train_s")]
            seconds["eval"] += report[objective.metric(t, "eval_s")]
    out: dict[str, float] = {}
    for runner in trial.runners.values():
        scored = time.perf_counter()
        out.update(runner.test())
        seconds["eval"] += time.perf_counter() - scored
    out[objective.TEST_META_SCORE] = objective.aggregate(
        [out[objective.metric(t, objective.TEST_SCORE)] for t in trial.runners], settings.aggregate)
    return out, seconds
