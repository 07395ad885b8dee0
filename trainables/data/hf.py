"""Tasks from Hugging Face ``datasets``: a Hub name when the machine is online, or offline a local
folder of parquet/CSV/JSON files or one written by ``save_to_disk``.

Declared as a custom task (``{type: text|image, hf: NAME_OR_PATH, train_split, test_split,
text_column | image_column, label_column}``). ``ClassLabel`` features give the label names;
string or integer labels are accepted when they are categorical. The same split rules as every
other task apply: a stratified, seeded validation carve from the training split, and the test
split (or, with ``test_split: null``, a carved one) never used for selection. The decoded arrays
are cached by the data set's own fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainables.config import HFSource
from trainables.data import cache
from trainables.data.archive import offline
from trainables.data.splits import DataError, Dataset, Split, check_labels, image_chw, three_splits

MAX_CLASSES = 1000  # a label column with more distinct values is not a classification target


def open_dataset(src: HFSource, cache_dir: str | None = None) -> Any:
    """The ``DatasetDict`` named by ``src.name``: a local folder, or the Hub when online."""
    import datasets

    datasets.disable_progress_bars()
    where = f"hf={src.name!r}"
    path = Path(src.name).expanduser()
    hf_cache = str(cache.cache_root(cache_dir) / "hf-datasets")
    try:
        if path.is_dir():
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                ds = datasets.load_from_disk(str(path))  # written by save_to_disk
            else:  # a folder of parquet/CSV/JSON files, by split name
                ds = datasets.load_dataset(str(path), cache_dir=hf_cache)
        elif path.exists():
            raise DataError(f"{where}: a file; pass the folder holding the data set's files")
        elif offline():
            raise DataError(
                f"{where}: no such local folder, and the machine is offline "
                "(HF_DATASETS_OFFLINE=1), so the Hub cannot be asked. Where there is a network: "
                f"python -c \"import datasets; datasets.load_dataset({src.name!r})"
                ".save_to_disk('DIR')\", copy DIR here and pass hf: DIR")
        else:
            ds = datasets.load_dataset(src.name, cache_dir=hf_cache)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many kinds; the message is what matters
        raise DataError(f"{where}: cannot be loaded ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    return ds


def _split(ds: Any, name: str | None, src: HFSource, key: str) -> Any:
    if name not in ds:
        hint = " (or test_split: null to carve a test split from train)" if key == "test" else ""
        raise DataError(f"hf={src.name!r}: no split {name!r} for {key}_split; it has "
                        f"{sorted(ds)}{hint}")
    return ds[name]


def _labels(split: Any, src: HFSource, names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    import datasets

    feature = split.features[src.label_column]
    values = split[src.label_column]
    if isinstance(feature, datasets.ClassLabel):
        return np.asarray(values, dtype=np.int64), list(feature.names)
    dtype = getattr(feature, "dtype", "")
    if not (dtype == "string" or dtype.startswith(("int", "uint", "bool"))):
        raise DataError(f"hf={src.name!r}: label_column {src.label_column!r} is {dtype or feature},"
                        " not categorical; use a ClassLabel, string or integer column")
    if names is None:
        names = sorted({str(v) for v in values},
                       key=lambda v: (0, int(v)) if v.lstrip("-").isdigit() else (1, v))
        if len(names) > MAX_CLASSES:
            raise DataError(f"hf={src.name!r}: label_column {src.label_column!r} has "
                            f"{len(names)} distinct values; that is not a set of classes "
                            f"(at most {MAX_CLASSES}). Name the right column with label_column")
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({str(v) for v in values} - set(index))
    if unknown:
        raise DataError(f"hf={src.name!r}: label(s) {unknown[:5]} of the test split are not "
                        "among the training split's labels")
    return np.asarray([index[str(v)] for v in values], dtype=np.int64), names


def _inputs(split: Any, src: HFSource, kind: str) -> np.ndarray:
    column = src.text_column if kind == "text" else src.image_column
    if kind == "text":
        return np.asarray([str(t) for t in split[column]])
    images = []
    for item in split[column]:
        from PIL import Image

        image = item if isinstance(item, Image.Image) else Image.open(item["path"])
        images.append(image_chw(image))
    return np.stack(images) if images else np.zeros((0, 3, 32, 32), np.uint8)


def _check_columns(split: Any, src: HFSource, kind: str, split_name: str) -> None:
    column = src.text_column if kind == "text" else src.image_column
    have = list(split.column_names)
    for role, col in ((f"{kind}_column", column), ("label_column", src.label_column)):
        if col not in have:
            raise DataError(f"hf={src.name!r}: split {split_name!r} has no column {col!r} "
                            f"({role}); its columns are {have}. Set {role} to one of them")


def load_hf_task(name: str, kind: str, src: HFSource, val_frac: float = 0.1, seed: int = 0,
                 cache_dir: str | None = None) -> Dataset:
    """A classification task from a Hugging Face data set, split like every other task."""
    ds = open_dataset(src, cache_dir)
    train = _split(ds, src.train_split, src, "train")
    test = _split(ds, src.test_split, src, "test") if src.test_split is not None else None
    _check_columns(train, src, kind, src.train_split)
    if test is not None:
        _check_columns(test, src, kind, str(src.test_split))
    key = {"train": train._fingerprint, "test": test._fingerprint if test is not None else None,
           "source": src.__dict__, "kind": kind, "version": 1}

    def decode() -> dict[str, np.ndarray]:
        y, names = _labels(train, src, None)
        arrays = {"x": _inputs(train, src, kind), "y": y, "names": np.asarray(names)}
        if test is not None:
            arrays["test_x"] = _inputs(test, src, kind)
            arrays["test_y"] = _labels(test, src, names)[0]
        return arrays

    arrays = cache.get_or_build("hf", key, decode, cache_dir)
    names = [str(n) for n in arrays["names"]]
    if len(names) < 2:
        raise DataError(f"hf={src.name!r}: label_column {src.label_column!r} has "
                        f"{len(names)} class(es); a classification task needs at least 2")
    x = list(arrays["x"]) if kind == "text" else arrays["x"]
    y = check_labels(arrays["y"], len(names), f"hf={src.name!r} ({src.train_split} split)")
    if test is not None:
        test_x = list(arrays["test_x"]) if kind == "text" else arrays["test_x"]
        test_split = Split(test_x, arrays["test_y"])
    else:
        test_split = None
    return Dataset(name, three_splits(x, y, test_split, val_frac, seed,
                                      f"hf={src.name!r} ({src.train_split} split)", names),
                   names, "custom", src.name, {"hf": src.__dict__})
