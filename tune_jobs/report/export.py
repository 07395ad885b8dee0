"""``metatune export``: the winner's checkpoint copied out, verified, with its config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables import objective
from trainables.config import MetaConfig
from trainables.meta import MetaTrial
from tune_jobs.report.analysis import best_row
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import TrialRow, best_checkpoint


def export_best(spec: SearchSpec, rows: list[TrialRow], out: str | Path) -> dict[str, Any]:
    """Write the winning trial's best checkpoint, per task, as standard model folders."""
    out = Path(out)
    best = best_row(rows)
    if best is None:
        raise ValueError("no trial has reported a result yet; nothing to export")
    ckpt = best_checkpoint(best)
    if ckpt is None:
        raise ValueError(f"{best.trial_dir}: the best trial has no complete checkpoint")
    trial = MetaTrial(MetaConfig.from_dict(best.config), spec.trial_settings())
    trial.restore(ckpt["path"])
    out.mkdir(parents=True, exist_ok=True)
    exported: dict[str, Any] = {}
    for name, task in trial.tasks.items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        task.export(folder)
        val = task.learner.evaluate("val")
        info = {"task": name, "trial_id": best.trial_id, "checkpoint": ckpt["path"],
                "units": ckpt["units"], "meta_config": best.config,
                "reported_val_acc": ckpt["metrics"].get(objective.metric(name, objective.VAL_ACC)),
                "val_acc_after_export": val["acc"]}
        (folder / "metatune.json").write_text(json.dumps(info, indent=1))
        exported[name] = info
    (out / "meta_config.json").write_text(json.dumps(best.config, indent=1))
    return exported
