"""One trial of the meta-search without Ray: every task advances one budget unit in lockstep,
then all are evaluated and scored together. Save/restore covers every task of the trial.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from trainables import objective
from trainables.checkpoint import load_checkpoint, save_checkpoint
from trainables.config import MetaConfig, TrialSettings
from trainables.loop import seed_everything
from trainables.tasks import Task, build_task, chance, reference

TRIAL_FILE = "trial.json"


class MetaTrial:
    """All tasks of one trial under one MetaConfig."""

    def __init__(self, meta: MetaConfig, settings: TrialSettings, device: str = "cpu") -> None:
        self.meta, self.settings = meta, settings
        seed_everything(meta.seed)
        self.tasks: dict[str, Task] = {}
        self.refs: dict[str, tuple[float, float]] = {}
        for name in settings.tasks:
            options = {**settings.task_options.get(name, {}), "max_units": settings.max_units}
            task, _ = build_task(name, meta, settings.data_dir, options, settings.cache_dir,
                                 device=device, bf16=settings.bf16,
                                 split_seed=settings.split_seed)
            self.tasks[name] = task
            self.refs[name] = (chance(task.dataset.num_classes),
                               reference(name, task.dataset.source, options))
        self.units = 0

    def run_unit(self) -> dict[str, Any]:
        """Train every task for one unit, evaluate each on validation, return the full report."""
        report: dict[str, Any] = {}
        scores = []
        for name, task in self.tasks.items():
            started = time.perf_counter()
            train = task.learner.train_unit()
            val = task.learner.evaluate("val")
            low, ref = self.refs[name]
            score = objective.normalise(val["acc"], low, ref)
            scores.append(score)
            report.update({
                objective.metric(name, "val_acc"): val["acc"],
                objective.metric(name, "val_macro_f1"): val["macro_f1"],
                objective.metric(name, "val_top5_acc"): val["top5_acc"],
                objective.metric(name, "val_loss"): val["loss"],
                objective.metric(name, "train_loss"): train["train_loss"],
                objective.metric(name, "lr"): train["lr"],
                objective.metric(name, "score"): score,
                objective.metric(name, "seconds"): time.perf_counter() - started,
            })
        self.units += 1
        report[objective.META_SCORE] = objective.aggregate(scores, self.settings.aggregate)
        report["units"] = self.units
        objective.validate_report(report, self.tasks)
        return report

    def save(self, folder: str | Path) -> Path:
        """Write every task's full state (one verified checkpoint per task) into ``folder``."""
        folder = Path(folder)
        for name, task in self.tasks.items():
            tensors, state = task.learner.state()
            state["config"] = {"meta": self.meta.to_dict(), "task": name,
                               "train": {k: v for k, v in task.learner.cfg.__dict__.items()
                                         if k != "extra"},
                               "label_names": task.dataset.label_names}
            save_checkpoint(folder / name, tensors, state)
        (folder / TRIAL_FILE).write_text(json.dumps(
            {"units": self.units, "meta": self.meta.to_dict(), "tasks": list(self.tasks),
             "settings": self.settings.to_dict()}, indent=1))
        return folder

    def restore(self, folder: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save`, for every task of the trial."""
        folder = Path(folder)
        info = json.loads((folder / TRIAL_FILE).read_text())
        if info["meta"] != self.meta.to_dict():
            raise ValueError(f"{folder}: checkpoint was made by config {info['meta']}, "
                             f"not {self.meta.to_dict()}")
        missing = [t for t in self.tasks if not (folder / t).is_dir()]
        if missing:
            raise ValueError(f"{folder}: no checkpoint for task(s) {missing}")
        for name, task in self.tasks.items():
            tensors, state = load_checkpoint(folder / name)
            task.learner.load(tensors, state)
        self.units = int(info["units"])


def trial_units(folder: str | Path) -> int:
    return int(json.loads((Path(folder) / TRIAL_FILE).read_text())["units"])


def final_test(meta: MetaConfig, settings: TrialSettings, device: str = "cpu") -> dict[str, float]:
    """Train ``meta`` from scratch for the full budget and score it on every task's test split.

    The test split is touched only here, after selection, never by the search itself.
    """
    trial = MetaTrial(meta, settings, device=device)
    for _ in range(settings.max_units):
        trial.run_unit()
    out: dict[str, float] = {}
    scores = []
    for name, task in trial.tasks.items():
        test = task.learner.evaluate("test")
        low, ref = trial.refs[name]
        scores.append(objective.normalise(test["acc"], low, ref))
        out[objective.metric(name, "test_acc")] = test["acc"]
        out[objective.metric(name, "test_macro_f1")] = test["macro_f1"]
        out[objective.metric(name, "test_top5_acc")] = test["top5_acc"]
        out[objective.metric(name, "test_score")] = scores[-1]
    out["test_meta_score"] = objective.aggregate(scores, settings.aggregate)
    return out
