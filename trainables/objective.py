"""Metric names, per-task normalisation and the meta-score. Pure functions over numbers.

``s_t = (acc_t − chance_t) / (ref_t − chance_t)``: 0 at chance, 1 at the task's reference
accuracy. The meta-score is the mean of ``s_t`` over the tasks; or the min, for a search that
must not sacrifice any task; or the geometric mean, which rewards balanced progress: a task
still at chance pulls it towards 0 however well another task does, so a slow-starting task is
not ignored at ASHA's first rung (scores below ``GEOMEAN_FLOOR`` count as that floor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

META_SCORE = "meta_score"
ITERATION = "training_iteration"  # Tune's count of reports
# Budget units a trial has trained: ASHA's clock. It equals Tune's count of reports unless a
# trial went back to an earlier checkpoint after a damaged one; then units are the truth.
UNITS = "units"
AGGREGATES = ("mean", "min", "geomean")
GEOMEAN_FLOOR = 0.01
# Per-task metric names (reported as metric(task, name)); "score" is the normalised s_t.
VAL_ACC, VAL_MACRO_F1, VAL_TOP5_ACC, VAL_LOSS = "val_acc", "val_macro_f1", "val_top5_acc", "val_loss"
TRAIN_LOSS, SCORE = "train_loss", "score"
TASK_METRICS = (VAL_ACC, VAL_MACRO_F1, VAL_TOP5_ACC, VAL_LOSS, TRAIN_LOSS, SCORE)
# The final evaluation's, on the test splits (never used for selection).
TEST_ACC, TEST_MACRO_F1, TEST_TOP5_ACC, TEST_SCORE = (
    "test_acc", "test_macro_f1", "test_top5_acc", "test_score")
TEST_TASK_METRICS = (TEST_ACC, TEST_MACRO_F1, TEST_TOP5_ACC, TEST_SCORE)
TEST_META_SCORE = "test_meta_score"


def metric(task: str, name: str) -> str:
    """The reported key of one task's metric, e.g. ``newsgroups/val_acc``."""
    return f"{task}/{name}"


def normalise(acc: float, chance: float, reference: float) -> float:
    """How far ``acc`` got from chance towards the reference accuracy (may exceed 1)."""
    if not 0.0 <= chance < reference <= 1.0:
        raise ValueError(
            f"chance={chance!r}, reference={reference!r} are invalid: need 0 <= chance < reference <= 1"
        )
    return (acc - chance) / (reference - chance)


def aggregate(scores: Iterable[float], how: str = "mean") -> float:
    """Combine per-task normalised scores into the meta-score."""
    values = list(scores)
    if not values:
        raise ValueError("aggregate of no task scores: the trial has no tasks")
    if how == "mean":
        return sum(values) / len(values)
    if how == "min":
        return min(values)
    if how == "geomean":
        return math.exp(sum(math.log(max(v, GEOMEAN_FLOOR)) for v in values) / len(values))
    raise ValueError(f"aggregate={how!r} is invalid: choose from {list(AGGREGATES)}")


def required_keys(tasks: Iterable[str]) -> list[str]:
    return [META_SCORE] + [metric(t, m) for t in tasks for m in TASK_METRICS]


def validate_report(report: Mapping[str, float], tasks: Iterable[str]) -> None:
    """Raise if a metric a trial must report is missing or not a finite number."""
    missing = [k for k in required_keys(tasks) if k not in report]
    if missing:
        raise ValueError(f"report is missing metric(s) {missing}")
    bad = {k: v for k, v in report.items()
           if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise ValueError(f"report has non-finite metric(s) {bad}; training diverged "
                         "(try a smaller lr_scale)")
