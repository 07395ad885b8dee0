"""CIFAR-10 and CIFAR-100 from the official python archives, and tensor-side augmentation.

``cifar-10-python.tar.gz`` → ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
``batches.meta``); ``cifar-100-python.tar.gz`` → ``cifar-100-python/`` (``train``, ``test``,
``meta``; fine and coarse labels). Batches are pickles, read with a restricted unpickler.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.data.archive import (
    EMBEDDED_MARKER,
    download,
    is_synthetic,
    locate,
    open_tar,
    read_member,
)
from trainables.data.safe_pickle import safe_loads
from trainables.data.splits import DataError, Dataset, Split, check_labels, three_splits

if TYPE_CHECKING:  # torch loads where images become tensors (not to read or locate the data)
    import torch

URLS = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85"),
}
LAYOUT = {
    # name: (folder, archive, {split: [batch files]}, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "batches.meta", b"labels", b"label_names"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz",
                 {"train": ["train"], "test": ["test"]}, "meta", b"fine_labels",
                 b"fine_label_names"),
}
IMAGE_SHAPE = (3, 32, 32)


def _read_files(root: Path, name: str) -> tuple[Path, dict[str, bytes], bool]:
    """The folder or archive, its batch files' bytes, and whether it is marked synthetic."""
    folder, archive, batches, meta, _, _ = LAYOUT[name]
    where = locate(root, folder, archive)
    wanted = [f for files in batches.values() for f in files] + [meta]
    blobs: dict[str, bytes] = {}
    if where.is_dir():
        marked = (where / EMBEDDED_MARKER).exists()
        for fname in wanted:
            if (where / fname).is_file():
                blobs[fname] = (where / fname).read_bytes()
    else:
        marked = False
        with open_tar(where) as tar:
            for member in tar:
                parts = Path(member.name).parts
                marked = marked or parts[-1:] == (EMBEDDED_MARKER,)
                if member.isfile() and len(parts) >= 2 and parts[-2] == folder \
                        and parts[-1] in wanted:
                    blobs[parts[-1]] = read_member(tar, member, where)
    missing = [f for f in wanted if f not in blobs]
    if missing:
        raise DataError(f"{where}: missing {missing} (expected the official {folder}/ layout)")
    return where, blobs, marked


def _batch(blob: bytes, where: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = safe_loads(blob, where)
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise DataError(f"{where}: not a CIFAR batch (needs keys b'data' and {label_key!r})")
    data = d[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        raise DataError(f"{where}: b'data' must be a uint8 array of shape (N, 3072)")
    labels = np.asarray(d[label_key], dtype=np.int64)
    if len(labels) != len(data):
        raise DataError(f"{where}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def load_cifar(root: str | Path, name: str, val_frac: float = 0.1, seed: int = 0) -> Dataset:
    """Load ``cifar10`` or ``cifar100`` (fine labels) from ``root`` as uint8 NCHW splits."""
    if name not in LAYOUT:
        raise ValueError(f"name={name!r} is invalid: choose from {sorted(LAYOUT)}")
    root = Path(root)
    where, blobs, marked = _read_files(root, name)
    folder, _, batches, meta_file, label_key, names_key = LAYOUT[name]
    meta = safe_loads(blobs[meta_file], f"{where}/{meta_file}")
    if not isinstance(meta, dict) or names_key not in meta:
        raise DataError(f"{where}/{meta_file}: missing {names_key!r}")
    label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    extra: dict[str, Any] = {"layout": f"folder {folder}/" if where.is_dir()
                             else f"archive {where.name}"}
    for split, files in batches.items():
        parts = [_batch(blobs[f], f"{where}/{f}", label_key) for f in files]
        x = np.concatenate([p[0] for p in parts])
        y = check_labels(np.concatenate([p[1] for p in parts]), len(label_names),
                         f"{where} ({split} split)")
        arrays[split] = (x, y)
    if name == "cifar100":
        extra["coarse_label_names"] = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in meta.get(b"coarse_label_names", [])
        ]
    return Dataset(
        name=name,
        splits=three_splits(*arrays["train"], Split(*arrays["test"]), val_frac, seed),
        label_names=label_names,
        source="synthetic" if marked or is_synthetic(root) else "real",
        path=str(where),
        meta=extra,
    )


def download_cifar(root: str | Path, name: str) -> Path:
    folder, archive, *_ = LAYOUT[name]
    root = Path(root)
    if (root / archive).exists() or (root / folder).exists():
        return root / archive
    url, md5 = URLS[name]
    return download(url, root / archive, md5=md5)


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 NCHW images, in [0, 1] units."""
    xf = x.astype(np.float64) / 255.0
    return xf.mean(axis=(0, 2, 3)).tolist(), (xf.std(axis=(0, 2, 3)) + 1e-6).tolist()


def to_tensor(x: np.ndarray | torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 NCHW → normalised float32 NCHW."""
    import torch

    t = torch.as_tensor(x).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (t - m) / s


def augment(batch: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation on a float NCHW batch: pad-4 random crop, random h-flip."""
    import torch

    n, _, h, w = batch.shape
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (torch.arange(h).view(1, h) + dy.view(n, 1))  # n,h
    cols = (torch.arange(w).view(1, w) + dx.view(n, 1))  # n,w
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    idx_n = torch.arange(n).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()
