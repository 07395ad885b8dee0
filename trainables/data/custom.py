"""Users' own tasks without code: a text CSV/JSONL (``text``, ``label``) or an image folder/.npz.

The same split rules as the built-in tasks apply: a stratified, seeded validation split carved from
the training data; a test split taken from a separate file/folder when given, else carved too.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from trainables.data.splits import (
    IMAGE_SIZE,
    DataError,
    Dataset,
    Split,
    check_labels,
    image_chw,
    three_splits,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


# csv's default cap is 128 KiB a field; a long document is a valid example (the tokenizer cuts
# it at max_length), so any field that fits in memory is read.
csv.field_size_limit(2**31 - 1)


EMPTY_TEXT_LIMIT = 0.5  # a larger share of empty texts is refused; any share at all is said


def _read_text_rows(path: Path) -> list[tuple[str, str]]:
    """(text, label) rows of a CSV/JSONL file; a DataError naming the file (and line) if bad."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        rows = _parse_text_rows(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte "
                        f"offset {exc.start}); save the file as UTF-8") from None
    if not rows:
        raise DataError(f"{path}: no examples")
    empty = [i for i, (text, _) in enumerate(rows) if not text.strip()]
    if len(empty) > EMPTY_TEXT_LIMIT * len(rows):
        raise DataError(f"{path}: {len(empty)} of {len(rows)} texts are empty (more than "
                        f"{EMPTY_TEXT_LIMIT:.0%}); is 'text' the right column?")
    if empty:
        print(f"warning: {path}: {len(empty)} of {len(rows)} texts are empty (the first is "
              f"example {empty[0] + 1}); they train as empty inputs", file=sys.stderr)
    return rows


def _parse_text_rows(path: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"text", "label"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: missing column(s) {sorted(missing)}; need 'text','label'")
            for line, row in enumerate(reader, start=2):
                if row["text"] is None or row["label"] in (None, ""):
                    raise DataError(f"{path}:{line}: empty text or label")
                rows.append((row["text"], row["label"].strip()))
    elif path.suffix.lower() in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
                if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
                    raise DataError(f"{path}:{line_no}: each line needs 'text' and 'label'")
                rows.append((str(obj["text"]), str(obj["label"])))
    else:
        raise DataError(f"{path}: unsupported text format; use .csv or .jsonl")
    return rows


def _label_index(labels: list[str], known: list[str] | None, where: Path) -> list[int]:
    names = known if known is not None else sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"{where}: unknown label(s) {unknown[:5]} not in the training labels")
    return [index[v] for v in labels]


def load_text_task(name: str, train: str | Path, test: str | Path | None = None,
                   val_frac: float = 0.1, seed: int = 0) -> Dataset:
    """A text classification task from ``train`` (and optionally ``test``) CSV/JSONL files."""
    train = Path(train)
    rows = _read_text_rows(train)
    names = sorted({label for _, label in rows})
    if len(names) < 2:
        raise DataError(f"{train}: needs at least 2 classes, found {names}")
    y = check_labels(_label_index([r[1] for r in rows], names, train), len(names), str(train))
    x = [r[0] for r in rows]
    if test is not None:
        test_rows = _read_text_rows(Path(test))
        test_y = _label_index([r[1] for r in test_rows], names, Path(test))
        test_split = Split([r[0] for r in test_rows], np.asarray(test_y, dtype=np.int64))
    else:
        test_split = None
    return Dataset(name, three_splits(x, y, test_split, val_frac, seed, str(train), names),
                   names, "custom",
                   str(train))


def _read_image_folder(root: Path, names: list[str] | None) -> tuple[np.ndarray, list[int], list[str]]:
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder per class)")
    classes = names or sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{root}: needs at least 2 class sub-folders, found {classes}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
            if (root / cls).is_dir() else []
        if not files:
            raise DataError(f"{root / cls}: class '{cls}' has no images")
        images += _read_images(files)
        labels += [label] * len(files)
    return np.stack(images), labels, classes


def _read_images(files: list[Path]) -> list[np.ndarray]:
    """Each image file in the tasks' format (:func:`image_chw`); an unreadable one is named."""
    from PIL import Image

    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append(image_chw(im))
        except OSError as exc:
            raise DataError(f"{f}: unreadable image ({exc})") from None
    return out


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files or "y" not in z.files:
                raise DataError(f"{path}: needs arrays 'x' and 'y', has {z.files}")
            x, y = z["x"], z["y"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    return _read_npz_arrays(path, x, y)


def _read_npz_arrays(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 NCHW with 3 channels, whatever layout and range the .npz used.

    Accepted: x of shape (N, H, W) (grayscale), (N, H, W, C) or (N, C, H, W) with C 1 or 3;
    uint8 in [0, 255], or a float/int array in [0, 1] or [0, 255] (values outside are
    clipped). Non-finite values (NaN, inf) are refused.
    """
    if x.ndim == 3:
        x = x[:, None]  # grayscale (N, H, W)
    if x.ndim != 4 or len(x) != len(y):
        raise DataError(f"{path}: x must be (N, H, W), (N, H, W, C) or (N, C, H, W) with "
                        "N = len(y)")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise DataError(f"{path}: x holds non-finite values (NaN or inf), the first at index "
                        f"{first}; images must be finite numbers in [0, 1] or [0, 255]")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    if x.dtype != np.uint8:
        x = (np.clip(x, 0, 1) * 255).round().astype(np.uint8) if x.max() <= 1.0 \
            else np.clip(x, 0, 255).astype(np.uint8)
    if x.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):  # e.g. 28 x 28 digits: the tasks' size
        from PIL import Image

        x = np.stack([image_chw(Image.fromarray(img.transpose(1, 2, 0))) for img in x]) \
            if len(x) else np.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return x, y


def load_image_task(name: str, train: str | Path, test: str | Path | None = None,
                    val_frac: float = 0.1, seed: int = 0) -> Dataset:
    """An image task from an image folder (one sub-folder per class) or an ``.npz`` (x, y)."""
    train = Path(train)
    if train.suffix == ".npz":
        x, y_raw = _read_npz(train)
        num = int(y_raw.max()) + 1 if len(y_raw) else 0
        names = [str(i) for i in range(num)]
        y = check_labels(y_raw, num, str(train))
        test_data = None
        if test is not None:
            tx, ty = _read_npz(Path(test))
            test_data = Split(tx, check_labels(ty, num, str(test), require_all=False))
    else:
        x, labels, names = _read_image_folder(train, None)
        y = check_labels(labels, len(names), str(train))
        test_data = None
        if test is not None:
            tx, tl, _ = _read_image_folder(Path(test), names)
            test_data = Split(tx, np.asarray(tl, dtype=np.int64))
    return Dataset(name, three_splits(x, y, test_data, val_frac, seed, str(train), names),
                   names, "custom", str(train))


def load_unlabelled(path: str | Path) -> Dataset:
    """Source images without labels, for self-supervised pretraining: an ``.npz`` with ``x``
    (a ``y`` is ignored), or a folder of images at any depth (class sub-folders or none)."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise DataError(f"{path}: needs an array 'x' of images, has {z.files}")
                x = z["x"]
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npz ({exc})") from None
        x, _ = _read_npz_arrays(path, x, np.zeros(len(x), np.int64))
    else:

        if not path.is_dir():
            raise DataError(f"{path}: not an .npz or a folder of images")
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
        x = np.stack(_read_images(files))
    if len(x) < 2:
        raise DataError(f"{path}: a source needs at least 2 images, found {len(x)}")
    unlabelled = np.zeros(len(x), dtype=np.int64)  # never read by self-supervised pretraining
    return Dataset("source", {"train": Split(x, unlabelled)}, ["unlabelled"], "custom", str(path))
