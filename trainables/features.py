"""Frozen features, computed once per search, and the linear probe that starts a head from them.

A trial with ``unfreeze_frac < 1`` trains only the top of its backbone. Its frozen blocks run in
eval mode (no dropout), so their output for an example is the same in every step of every trial
that freezes the same blocks of the same weights. That output is computed once per (frozen
weights, frozen depth, data fingerprint, max length), stored in the shared cache as one
memory-mapped ``.npy`` per split, and the trials run only the unfrozen top on it: the same
numbers as computing them, to the rounding of the storage dtype (float16 by default; float32
stores them exactly as computed in float32). The cache is bounded: an entry that would take the
cache's features folder (every search that shares the cache) past the limit is not built, and
the trial computes the frozen blocks itself.

With the frozen features at hand, a linear probe on them costs seconds: ``head_init: probe``
starts the classifier head from that fit, then fine-tunes (LP-FT, Kumar et al., ICLR 2022).
"""

from __future__ import annotations

import hashlib
import inspect
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from trainables.data import cache

NAMESPACE = "features"


def params_digest(modules: list[torch.nn.Module]) -> str:
    """One SHA-256 over the parameters and buffers of ``modules``, in order: what their output
    depends on besides the input."""
    h = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            h.update(f"{i}.{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    return h.hexdigest()[:24]


def _folder_bytes(folder: Path) -> int:
    """Bytes of the built entries (a build cut short leaves a hidden temporary folder, which
    is not an entry and is not counted)."""
    return sum(f.stat().st_size for entry in folder.iterdir()
               if entry.is_dir() and not entry.name.startswith(".")
               for f in entry.glob("*.npy"))


def cached(parts: dict[str, Any], nbytes: int, build: Callable[[], dict[str, np.ndarray]],
           limit: int, cache_dir: str | None) -> dict[str, np.ndarray] | None:
    """The arrays of one features entry, memory-mapped read-only; built the first time when
    ``nbytes`` more fit under ``limit`` bytes of features in the cache. None when they do not
    fit: the caller computes the frozen blocks itself.

    A full disk during the build removes the half-built entry (it is never used) and raises
    :class:`~trainables.checkpoint.DiskFull` naming the folder and the bytes needed.
    """
    if limit <= 0:  # the cache is off
        return None
    folder = cache.entry_path(NAMESPACE, parts, cache_dir)
    if not folder.is_dir():
        root = folder.parent
        root.mkdir(parents=True, exist_ok=True)
        # one budget for the whole namespace: a check and its build are one step
        with FileLock(str(root / ".limit.lock")):
            if not folder.is_dir():
                if _folder_bytes(root) + nbytes > limit:
                    return None
                _build(parts, nbytes, build, cache_dir)
    return {f.stem: np.load(f, mmap_mode="r") for f in sorted(folder.glob("*.npy"))}


def _build(parts: dict[str, Any], nbytes: int, build: Callable[[], dict[str, np.ndarray]],
           cache_dir: str | None) -> None:
    from trainables.checkpoint import DiskFull

    def write(tmp: Path) -> None:
        for name, array in build().items():
            np.save(tmp / f"{name}.npy", array)

    try:
        cache.build_once(NAMESPACE, parts, write, cache_dir)
    except OSError as exc:
        folder = cache.entry_path(NAMESPACE, parts, cache_dir)
        # numpy reports a short write without ENOSPC: the free space says what it was
        if DiskFull.of(exc, folder.parent) is None and \
                shutil.disk_usage(folder.parent).free >= nbytes:
            raise
        raise DiskFull(f"disk full at {folder.parent} writing frozen features (needed about "
                       f"{nbytes / 2**20:.1f} MiB); free space there, or set "
                       "feature_cache_limit lower (0 turns the cache off)") from None


def fit_probe(train: np.ndarray, labels: np.ndarray, num_classes: int,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression on ``train`` features, as the weight and bias of a
    linear head on those same (unstandardised) features: ``logits = x @ W.T + b``.

    Its L2 strength is chosen by 3-fold cross-validation on the training examples (the
    validation split stays the search's): an over-confident probe would start fine-tuning at a
    loss above chance."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    x = np.asarray(train, dtype=np.float64)
    mean, std = x.mean(0), x.std(0)
    # a feature nearly constant on the training set (a ReLU that rarely fires) would get a huge
    # weight once the standardisation is folded in: its scale is floored
    std = np.maximum(std, 1e-2 * float(np.median(std)) + 1e-6)
    z = (x - mean) / std
    folds = min(3, int(np.bincount(labels).max()), int(np.bincount(labels)[np.unique(labels)].min()))
    if folds >= 2:
        extra = ({"use_legacy_attributes": False}  # scikit-learn >= 1.8: no FutureWarning
                 if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters
                 else {})
        # scored by log loss: a calibrated start, not only an accurate one
        with warnings.catch_warnings():  # scikit-learn 1.9's notices of its next defaults
            warnings.simplefilter("ignore", FutureWarning)
            fit = LogisticRegressionCV(Cs=[0.01, 0.1, 1.0], cv=folds, max_iter=200,
                                       scoring="neg_log_loss", random_state=seed,
                                       **extra).fit(z, labels)
    else:  # a class with one example: no fold to hold out
        fit = LogisticRegression(C=0.1, max_iter=300, random_state=seed).fit(z, labels)
    coef = np.zeros((num_classes, x.shape[1]))
    bias = np.zeros(num_classes)
    if len(fit.classes_) == 2:  # sklearn keeps one row for two classes: logit of class 1
        coef[fit.classes_[1]], bias[fit.classes_[1]] = fit.coef_[0], fit.intercept_[0]
    else:
        coef[fit.classes_], bias[fit.classes_] = fit.coef_, fit.intercept_
    missing = np.setdiff1d(np.arange(num_classes), fit.classes_)
    # never seen in training: a finite prior below every fitted class, not a wall of -1e4
    bias[missing] = bias[fit.classes_].min() - np.log(len(labels) + num_classes)
    weight = coef / std  # the standardisation folded into the head
    return weight.astype(np.float32), (bias - weight @ mean).astype(np.float32)


def probe(parts: dict[str, Any], features: Callable[[], np.ndarray], labels: np.ndarray,
          num_classes: int, cache_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe head's ``(weight, bias)`` fitted on ``features()`` (training split), cached by
    ``parts`` with the other shared work: every trial with the same features starts from it."""
    arrays = cache.get_or_build(
        "probes", {**parts, "probe": "logreg-cv-logloss/2", "classes": num_classes},
        lambda: dict(zip(("weight", "bias"), fit_probe(features(), labels, num_classes),
                         strict=True)),
        cache_dir)
    return torch.from_numpy(arrays["weight"]), torch.from_numpy(arrays["bias"])


def set_head(head: torch.nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Start a linear head from a probe's fit."""
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
