"""After the search: re-train the winner with several seeds and score it on the test splits,
and export the winning trial's models in the formats the field's own tools load.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from trainables.config import MetaConfig
from trainables.meta import MetaTrial, final_test
from tune_jobs import spaces
from tune_jobs.report import best_row
from tune_jobs.results import best_checkpoint, load_rows

FINAL_SEED_BASE = 1000  # seeds of the final runs differ from every seed the search used


def _final_test_task(config: dict[str, Any], settings: dict[str, Any]) -> dict[str, float]:
    from trainables.config import TrialSettings
    from trainables.trainable import prepare_process

    trial_settings = TrialSettings.from_dict(settings)
    device = prepare_process(trial_settings)
    return final_test(MetaConfig.from_dict(config), trial_settings, device)


def evaluate_on_test(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """Mean ± std of test metrics of ``config`` over ``final_eval.seeds`` fresh runs (on Ray)."""
    n = spec["final_eval"]["seeds"]
    if n == 0:
        return None
    import ray

    settings = spaces.trial_settings(spec, spec["data_dir"]).to_dict()
    remote = ray.remote(_final_test_task).options(
        num_cpus=spec["resources"].get("cpu", 1), num_gpus=spec["resources"].get("gpu", 0))
    seeds = [FINAL_SEED_BASE + i for i in range(n)]
    runs = ray.get([remote.remote({**config, "seed": s}, settings) for s in seeds])
    metrics = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        metrics[key] = {"mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "values": values}
    return {"config": config, "seeds": seeds, "metrics": metrics}


def export_best(spec: dict[str, Any], exp_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the winning trial's best checkpoint, per task, as standard model folders."""
    out = Path(out)
    rows = load_rows(exp_dir, list(spec["tasks"]), spec["asha"]["max_t"])
    best = best_row(rows)
    if best is None:
        raise ValueError(f"{exp_dir}: no trial has reported a result yet; nothing to export")
    ckpt = best_checkpoint(best)
    if ckpt is None:
        raise ValueError(f"{best['trial_dir']}: the best trial has no complete checkpoint")
    meta = MetaConfig.from_dict(best["config"])
    trial = MetaTrial(meta, spaces.trial_settings(spec, spec["data_dir"]))
    trial.restore(ckpt["path"])
    out.mkdir(parents=True, exist_ok=True)
    exported: dict[str, Any] = {}
    for name, task in trial.tasks.items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        model = task.learner.model.cpu()
        if hasattr(task, "tokenizer"):  # a transformers model: from_pretrained loads it
            model.config.id2label = dict(enumerate(task.dataset.label_names))
            model.config.label2id = {v: k for k, v in model.config.id2label.items()}
            model.save_pretrained(folder)
            task.tokenizer.save_pretrained(folder)
        else:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                      str(folder / "model.safetensors"))
            (folder / "config.json").write_text(json.dumps({
                "architecture": "SmallCNN", "num_classes": task.dataset.num_classes,
                "width": task.opts.width, "dropout": task.cfg.dropout,
                "input": "uint8 RGB 32x32, NCHW, divided by 255 then normalised",
                "mean": task.source_info["mean"], "std": task.source_info["std"],
                "label_names": task.dataset.label_names}, indent=1))
        task.learner.model.to(task.learner.device)
        val = task.learner.evaluate("val")
        reported = ckpt["metrics"].get(f"{name}/val_acc")
        info = {"task": name, "trial_id": best["trial_id"], "checkpoint": ckpt["path"],
                "units": ckpt["units"], "meta_config": best["config"],
                "reported_val_acc": reported, "val_acc_after_export": val["acc"]}
        (folder / "metatune.json").write_text(json.dumps(info, indent=1))
        exported[name] = info
    (out / "meta_config.json").write_text(json.dumps(best["config"], indent=1))
    return exported
