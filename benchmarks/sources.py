"""Which source pretraining transfers? A target trained for the same budget (4 units of 60
steps, every layer training) from the same CNN pretrained on a source with labels (supervised),
without them (autoencoder, contrastive), or from scratch (none), over 3 trial seeds, with the
head started at random and from a linear probe (``head_init: probe``, LP-FT). Also: a linear
probe (logistic regression) on each frozen backbone's features alone.

Two pairs of data: the CIFAR-10 → CIFAR-100 stand-ins, and real images nobody here wrote:
scikit-learn's bundled handwritten digits (``load_digits``, 8×8 greyscale, upsampled to 32×32
by the custom-task loader), the digits 0–4 as the source and 5–9 as the target (disjoint
classes).
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
    from trainables.data.splits import trial_view
    from trainables.tasks import load_data
    from trainables.vision import SmallCNN, features, source_model

    (spec,) = settings.tasks
    target, source = load_data(spec, settings.data_dir)
    target = trial_view(target, spec.model.train_limit, spec.budget.val_limit)
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


def digits(folder: Path) -> dict[str, str]:
    """scikit-learn's handwritten digits as two .npz data sets with disjoint classes: the source
    (0–4) and the target (5–9, relabelled 0–4)."""
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = (x.reshape(-1, 8, 8) / 16.0).astype(np.float32)  # [0, 1] greyscale
    folder.mkdir(parents=True, exist_ok=True)
    low = y < 5
    np.savez(folder / "digits_0_4.npz", x=images[low], y=y[low])
    np.savez(folder / "digits_5_9.npz", x=images[~low], y=y[~low] - 5)
    return {"source": str(folder / "digits_0_4.npz"), "target": str(folder / "digits_5_9.npz")}


def _method(pair: str, method: str, data: Path, cache: str, steps: int, units: int,
            seeds: list[int], real: dict[str, str]) -> dict:
    from trainables.config import MetaConfig
    from trainables.meta import MetaTrial
    from trainables.tasks import trial_settings

    opts = {"source_steps": steps, "source_batch": 64, "steps_per_unit": 60, "base_lr": 2e-3}
    if pair == "digits":
        name, custom = "digits", {"digits": {"type": "image", "train": real["target"]}}
        opts["source"] = "none" if method == "none" else real["source"]
        if method != "none":
            opts["source_method"] = method
    else:
        name, custom = "cifar_transfer", None
        opts.update({"source": "none"} if method == "none" else {"source_method": method})
    settings = trial_settings([name], str(data), {name: opts}, custom, max_units=units,
                              cache_dir=cache)
    started = time.perf_counter()
    probe = _probe(settings)  # builds (and times) the source once
    pretrain_s = time.perf_counter() - started
    result: dict = {"probe_val_acc": probe, "pretrain_and_probe_s": round(pretrain_s, 1)}
    for head in ("random", "probe"):
        curves = []
        for seed in seeds:
            trial = MetaTrial(MetaConfig(unfreeze_frac=1.0, dropout=0.0, seed=seed,
                                         head_init=head), settings)
            curves.append([round(trial.run_unit()[f"{name}/val_acc"], 4) for _ in range(units)])
        final = [c[-1] for c in curves]
        key = "val_acc" if head == "random" else "val_acc_probe_init"
        result[key] = round(sum(final) / len(final), 4)
        result[f"{key}_per_seed"] = final
        result[f"{key}_curves"] = curves
    return result


def run(tmp: Path, quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    data = synthetic_data(tmp / "data")
    real = digits(tmp / "digits")
    steps, units, seeds = (200, 3, [0]) if quick else (400, 4, [0, 1, 2])
    out: dict = {"source_steps": steps, "units": units, "steps_per_unit": 60, "seeds": seeds,
                 "pairs": {"stand-in": "CIFAR-10 → CIFAR-100 stand-ins",
                           "digits": "load_digits 0–4 → 5–9 (real images, disjoint classes)"}}
    for pair, key in (("stand-in", "methods"), ("digits", "digits")):
        out[key] = {}
        for method in METHODS:
            out[key][method] = _method(pair, method, data, str(tmp / "cache"), steps, units,
                                       seeds, real)
            print(pair, method, out[key][method], flush=True)
        none = out[key]["none"]
        out[key + "_above_none"] = {
            m: {"fine_tuned": v["val_acc"] > none["val_acc"],
                "probe_init": v["val_acc_probe_init"] > none["val_acc_probe_init"],
                "probe": v["probe_val_acc"] > none["probe_val_acc"]}
            for m, v in out[key].items() if m != "none"}
    return save("sources", out)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
