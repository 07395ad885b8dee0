"""Which source pretraining transfers? The CIFAR-100 stand-in trained for the same budget (4
units of 60 steps, every layer training) from the same CNN pretrained on the CIFAR-10 stand-in
with labels (supervised), without them (autoencoder, contrastive), or from scratch (none), over
3 trial seeds. Also: a linear probe (logistic regression) on each frozen backbone's features,
which tells the features apart from how well they fine-tune.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import save, synthetic_data

METHODS = ("none", "supervised", "autoencoder", "contrastive")


def _probe(settings) -> float:
    """Validation accuracy of a logistic regression on the frozen source backbone's features."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from trainables.data.cifar import channel_stats, to_tensor
    from trainables.tasks import load_data
    from trainables.vision import SmallCNN, features, source_model

    (spec,) = settings.tasks
    target, source = load_data(spec, settings.data_dir)
    if source is None:
        torch.manual_seed(0)
        model, (mean, std) = SmallCNN(1), channel_stats(target.splits["train"].x)
    else:
        weights, info = source_model(source, spec.model, settings.cache_dir)
        model, mean, std = SmallCNN(info["num_classes"]), info["mean"], info["std"]
        model.load_state_dict(weights)
    model.eval()
    with torch.no_grad():
        f = {s: features(model, to_tensor(torch.from_numpy(target.splits[s].x), mean, std))
             .numpy() for s in ("train", "val")}
    scale = float(np.std(f["train"])) + 1e-8
    clf = LogisticRegression(max_iter=500).fit(f["train"] / scale, target.splits["train"].y)
    return round(float(clf.score(f["val"] / scale, target.splits["val"].y)), 4)


def run(tmp: Path, quick: bool = False) -> dict:
    import torch

    from trainables.config import MetaConfig
    from trainables.meta import MetaTrial
    from trainables.tasks import trial_settings

    torch.set_num_threads(1)
    data = synthetic_data(tmp / "data")
    steps, units, seeds = (200, 3, [0]) if quick else (400, 4, [0, 1, 2])
    out: dict = {"source_steps": steps, "units": units, "steps_per_unit": 60, "seeds": seeds,
                 "methods": {}}
    for method in METHODS:
        opts = {"source_steps": steps, "source_batch": 64, "steps_per_unit": 60}
        opts.update({"source": "none"} if method == "none" else {"source_method": method})
        settings = trial_settings(["cifar_transfer"], str(data),
                                  {"cifar_transfer": {"base_lr": 2e-3, **opts}},
                                  max_units=units, cache_dir=str(tmp / "cache"))
        started = time.perf_counter()
        probe = _probe(settings)  # builds (and times) the source once
        pretrain_s = time.perf_counter() - started
        curves = []
        for seed in seeds:
            trial = MetaTrial(MetaConfig(unfreeze_frac=1.0, dropout=0.0, seed=seed), settings)
            curves.append([round(trial.run_unit()["cifar_transfer/val_acc"], 4)
                           for _ in range(units)])
        final = [c[-1] for c in curves]
        out["methods"][method] = {"val_acc": round(sum(final) / len(final), 4),
                                  "per_seed": final, "curves": curves, "probe_val_acc": probe,
                                  "pretrain_and_probe_s": round(pretrain_s, 1)}
        print(method, out["methods"][method], flush=True)
    return save("sources", out)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
