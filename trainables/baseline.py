"""Classical baselines: what a one-line scikit-learn model reaches on a task, so that a search
can be measured against it (and a custom task's reference accuracy measured, not assumed).

* text: TF-IDF over word 1–2-grams with a linear SVM;
* images: logistic regression on the frozen source backbone's features (the CNN's penultimate
  layer after source pretraining), or on the pixels when a task has no source.

Each is fitted on the same training examples a trial trains on (``train_limit`` applied the same
way) and scored on the same validation examples (``val_limit``) and on the whole test split. It is
fitted once per (data fingerprint, split seed, method) and cached with the other shared work.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainables.config import TaskSpec, TextOptions, TrialSettings, VisionOptions, field_names
from trainables.data import cache
from trainables.data.splits import Dataset, trial_view

TEXT_METHOD = "tfidf word 1-2-grams + linear SVM (scikit-learn)"
FEATURES_METHOD = "logistic regression on the frozen source backbone's features (scikit-learn)"
PIXELS_METHOD = "logistic regression on pixels (scikit-learn)"
RESULT = "baseline.json"


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A task's classical baseline: what it is and how it scored. JSON only at the edges (its
    cache file, task_data.json, the reports)."""

    method: str
    val_acc: float | None = None
    test_acc: float | None = None  # None when the task has no test split
    val_macro_f1: float | None = None
    test_macro_f1: float | None = None
    seconds: float = 0.0  # the fit's wall time
    train_examples: int = 0
    val_examples: int = 0  # the trials' validation set size too

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        names = field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _scores(model: Any, features: dict[str, Any], splits: dict[str, Any]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    out = {}
    for split in ("val", "test"):
        if len(splits[split].y) == 0:
            continue
        pred = model.predict(features[split])
        out[f"{split}_acc"] = float(accuracy_score(splits[split].y, pred))
        out[f"{split}_macro_f1"] = float(f1_score(splits[split].y, pred, average="macro",
                                                  zero_division=0))
    return out


def fit_text(splits: dict[str, Any]) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=200_000)
    features = {"train": vectorizer.fit_transform(list(splits["train"].x))}
    for split in ("val", "test"):
        features[split] = vectorizer.transform(list(splits[split].x))
    model = LinearSVC(C=0.5).fit(features["train"], splits["train"].y)
    return {"method": TEXT_METHOD, **_scores(model, features, splits)}


def _backbone_features(x: np.ndarray, weights: dict, info: dict, width: float) -> np.ndarray:
    import torch

    from trainables.data.cifar import to_tensor
    from trainables.vision import SmallCNN

    model = SmallCNN(info["num_classes"], width)
    model.load_state_dict(weights)
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), 1024):
            h = to_tensor(x[s:s + 1024], info["mean"], info["std"])
            for block in model.blocks():
                h = block(h)
            out.append(h.numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def fit_image(splits: dict[str, Any], source: tuple[dict, dict] | None,
              width: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if source is not None:
        weights, info = source
        features = {s: _backbone_features(d.x, weights, info, width) for s, d in splits.items()}
        method = FEATURES_METHOD
    else:
        features = {s: d.x.reshape(len(d.x), -1).astype(np.float32) / 255.0
                    for s, d in splits.items()}
        method = PIXELS_METHOD
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    model.fit(features["train"], splits["train"].y)
    return {"method": method, **_scores(model, features, splits)}


def baseline(spec: TaskSpec, target: Dataset, source: Dataset | None,
             settings: TrialSettings) -> Baseline:
    """The task's classical baseline (cached): ``method``, ``val_acc``, ``test_acc``, macro-F1s,
    and the seconds its fit took."""
    key: dict[str, Any] = {"data": target.fingerprint(), "split_seed": settings.split_seed,
                           "train_limit": spec.model.train_limit,
                           "val_limit": spec.budget.val_limit, "version": 2}
    source_weights = None
    if spec.kind == "image":
        assert isinstance(spec.model, VisionOptions)
        if source is not None:
            from trainables.vision import source_key, source_model

            key["source"] = source_key(source, spec.model)
            source_weights = source_model(source, spec.model, settings.cache_dir)
        key["method"] = FEATURES_METHOD if source is not None else PIXELS_METHOD
    else:
        assert isinstance(spec.model, TextOptions)
        key["method"] = TEXT_METHOD

    def build(folder: Path) -> None:
        started = time.perf_counter()
        splits = trial_view(target, spec.model.train_limit, spec.budget.val_limit).splits
        if spec.kind == "text":
            result = fit_text(splits)
        else:
            result = fit_image(splits, source_weights, spec.model.width)
        result["seconds"] = round(time.perf_counter() - started, 2)
        result["train_examples"] = len(splits["train"].y)
        result["val_examples"] = len(splits["val"].y)  # the trials' validation set too
        (folder / RESULT).write_text(json.dumps(result, indent=1))

    folder = cache.build_once("baseline", key, build, settings.cache_dir)
    return Baseline.from_dict(json.loads((folder / RESULT).read_text()))
