"""The in-memory shape every loader returns, and the shared split rules."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class Split:
    """Inputs and integer labels of one split. ``x`` is a list of str or a uint8 NCHW array."""

    x: Any
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A task's data: ``train``/``val``/``test`` splits, class names and where it came from."""

    name: str
    splits: dict[str, Split]
    label_names: list[str]
    source: str  # "real" | "synthetic" | "custom"
    path: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def fingerprint(self) -> str:
        """A content hash of every split, used as the key of caches built from this data."""
        h = hashlib.sha256(self.name.encode())
        for split_name in sorted(self.splits):
            split = self.splits[split_name]
            h.update(split_name.encode())
            h.update(np.ascontiguousarray(split.y, dtype=np.int64).tobytes())
            if isinstance(split.x, np.ndarray):
                h.update(np.ascontiguousarray(split.x).tobytes())
            else:
                for text in split.x:
                    h.update(text.encode("utf-8", "surrogatepass"))
                    h.update(b"\0")
        return h.hexdigest()[:16]


def carve_validation(
    x: Any, y: np.ndarray, val_frac: float, seed: int
) -> tuple[Split, Split]:
    """Stratified, seeded train/validation split of a training set (the test set is untouched)."""
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac={val_frac!r} is invalid: must lie in (0, 1)")
    from sklearn.model_selection import train_test_split  # (seconds to import: on first use)

    idx = np.arange(len(y))
    train_idx, val_idx = train_test_split(
        idx, test_size=val_frac, stratify=y, random_state=seed, shuffle=True
    )
    train_idx.sort()
    val_idx.sort()
    return _take(x, y, train_idx), _take(x, y, val_idx)


def three_splits(x: Any, y: np.ndarray, test: Split | None, val_frac: float,
                 seed: int, where: str = "the training data",
                 names: Sequence[str] | None = None) -> dict[str, Split]:
    """Every task's split rule: the given test split, else one carved from the data (seed + 1);
    then the validation split carved from what remains (seed). Stratified and seeded.

    A class too small for the stratified splits is a DataError naming ``where`` and the class
    (by its name in ``names``), rather than scikit-learn's "least populated class" message.
    """
    need = 2 if test is not None else 3  # one each for train and validation (and test)
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    small = [(c, int(n)) for c, n in enumerate(counts) if 0 < n < need]
    if small:
        c, n = small[0]
        label = repr(names[c]) if names is not None and c < len(names) else str(c)
        raise DataError(
            f"{where}: class {label} has {n} example{'s' if n != 1 else ''} "
            f"({len(small)} class(es) have fewer than {need}); the stratified "
            f"{'validation' if test is not None else 'validation and test'} split"
            f"{'' if test is not None else 's'} need at least {need} examples of every class"
            f"{'' if test is not None else ' (2 with a separate test file)'}. Add examples of "
            "it, or leave it out")
    if test is None:
        rest, test = carve_validation(x, y, val_frac, seed + 1)
        x, y = rest.x, rest.y
    train, val = carve_validation(x, y, val_frac, seed)
    return {"train": train, "val": val, "test": test}


IMAGE_SIZE = 32  # every image task trains at 32 x 32 (the CIFAR size)


def image_chw(image: Any) -> np.ndarray:
    """A PIL image as the tasks' format: RGB, IMAGE_SIZE square, uint8, channels first."""
    rgb = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _take(x: Any, y: np.ndarray, idx: np.ndarray) -> Split:
    if isinstance(x, np.ndarray):
        return Split(x[idx], y[idx])
    return Split([x[i] for i in idx], y[idx])


def subsample(split: Split, limit: int, seed: int) -> Split:
    """At most ``limit`` examples of a split, stratified; ``limit <= 0`` keeps everything."""
    if limit <= 0 or limit >= len(split):
        return split
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(split.y))
    classes = len(np.unique(split.y))
    stratify = split.y if limit >= classes else None
    keep, _ = train_test_split(
        idx, train_size=limit, stratify=stratify, random_state=seed, shuffle=True
    )
    keep.sort()
    return _take(split.x, split.y, keep)


def trial_view(dataset: Dataset, train_limit: int, val_limit: int) -> Dataset:
    """The examples a trial sees: at most ``train_limit`` training and ``val_limit`` validation
    examples (stratified, fixed seed; 0 keeps all), the whole test split. The classical
    baselines use the same view, so both are measured on the same examples."""
    splits = {"train": subsample(dataset.splits["train"], train_limit, seed=0),
              "val": subsample(dataset.splits["val"], val_limit, seed=0),
              "test": dataset.splits["test"]}
    return Dataset(dataset.name, splits, dataset.label_names, dataset.source, dataset.path,
                   dataset.meta)


def check_labels(
    y: Sequence[int], num_classes: int, where: str, require_all: bool = True
) -> np.ndarray:
    """Labels as int64, each in range and every class present; else a DataError naming ``where``."""
    arr = np.asarray(y, dtype=np.int64)
    if arr.ndim != 1:
        raise DataError(f"{where}: labels must be a flat list, got shape {arr.shape}")
    bad = arr[(arr < 0) | (arr >= num_classes)]
    if bad.size:
        raise DataError(
            f"{where}: label {int(bad[0])} is outside 0..{num_classes - 1} "
            f"({num_classes} classes expected)"
        )
    empty = sorted(set(range(num_classes)) - set(arr.tolist())) if require_all else []
    if empty:
        raise DataError(f"{where}: class(es) {empty[:10]} have no examples; every class needs some")
    return arr
