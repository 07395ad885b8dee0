"""Synthetic stand-ins written in exactly the on-disk formats of the real data sets.

Machines without internet (CI, air-gapped clusters) use these so that the very same loaders run.
The classes are learnable but not trivially: a linear model on raw inputs stays well below 100 %,
and the CIFAR-100 stand-in is built from the same visual primitives as the CIFAR-10 one, so a
backbone pretrained on the latter transfers. Output is deterministic for a seed.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np

from trainables.data.archive import SYNTHETIC_MARKER, add_embedded_marker
from trainables.data.newsgroups import GROUPS

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
SIZES = {
    # size: (posts per group train, test), (cifar10 train, test per class), (cifar100 ...)
    "small": ((60, 20), (400, 100), (60, 20)),
    "medium": ((240, 80), (1000, 200), (200, 50)),
}
GZIP_LEVEL = 1  # still gzip, as the real archives are; level 9 took seconds more on noise
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pa", "go", "zu", "be", "fi",
              "ha", "jo", "wa", "xe", "yo", "qu", "ar", "en", "il", "or", "um"]


def _words(rng: np.random.Generator, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        k = int(rng.integers(2, 4))
        out.add("".join(rng.choice(_SYLLABLES, size=k)))
    return sorted(out)


def _post(rng: np.random.Generator, gid: int, topics: list[np.ndarray], common: np.ndarray,
          sibling: int, post_id: int) -> str:
    def sentence(n: int, own: int, p_topic: float) -> str:
        words = []
        for _ in range(n):
            r = rng.random()
            if r < p_topic:
                words.append(str(rng.choice(topics[own])))
            elif r < p_topic + 0.06:
                words.append(str(rng.choice(topics[sibling])))
            else:
                words.append(str(rng.choice(common)))
        return " ".join(words) + "."

    user = f"{rng.choice(common)}@{rng.choice(common)}.edu"
    # The subject and organisation give the group away; headers are stripped by default.
    header = (
        f"From: {user}\nSubject: Re: {rng.choice(topics[gid])} {GROUPS[gid]}\n"
        f"Organization: {GROUPS[gid]} fan club\nLines: {int(rng.integers(5, 40))}\n"
    )
    body = []
    if rng.random() < 0.5:  # a quoted reply from some other group, removed as "quotes"
        other = int(rng.integers(0, len(GROUPS)))
        body.append(f"In article <{post_id}@{rng.choice(common)}.com>, {user} writes:")
        body += [f"> {sentence(10, other, 0.3)}" for _ in range(int(rng.integers(1, 4)))]
    body += [sentence(int(rng.integers(8, 16)), gid, 0.12) for _ in range(int(rng.integers(3, 7)))]
    footer = f"--\n{rng.choice(common).title()} {GROUPS[gid]} signature\n"
    return header + "\n" + "\n".join(body) + "\n\n" + footer


def write_newsgroups(out: Path, seed: int = 0, size: str = "small") -> Path:
    """Write ``20news-bydate.tar.gz`` with train/test folders, one latin-1 file per post."""
    rng = np.random.default_rng(seed)
    (n_train, n_test), _, _ = SIZES[size]
    vocab = _words(rng, 700)
    common, topic_pool = vocab[:400], vocab[400:]
    # Topic vocabularies overlap (each word serves 2 groups), so no single word decides a class.
    # (as arrays: rng.choice converts a list on every call, the same draws either way)
    topics = [np.array([topic_pool[(g * 15 + i) % len(topic_pool)] for i in range(30)])
              for g in range(len(GROUPS))]
    common = np.array(common)
    path = out / "20news-bydate.tar.gz"
    post_id = 10000
    with tarfile.open(path, "w:gz", compresslevel=GZIP_LEVEL) as tar:
        for split, n in (("train", n_train), ("test", n_test)):
            for gid, group in enumerate(GROUPS):
                sibling = (gid + 1) % len(GROUPS)
                for _ in range(n):
                    post_id += 1
                    data = _post(rng, gid, topics, common, sibling, post_id).encode("latin-1")
                    info = tarfile.TarInfo(f"20news-bydate-{split}/{group}/{post_id}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        add_embedded_marker(tar, "20news-bydate-train")
    return path


def _primitives(rng: np.random.Generator, size: int = 12) -> np.ndarray:
    """Ten 3×size×size patterns: 5 colours × 2 orientations, so colour alone is not enough."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    colors = rng.uniform(0.2, 1.0, size=(5, 3))
    pats = []
    for i in range(10):
        theta = (i % 2) * np.pi / 2 + rng.uniform(-0.2, 0.2)
        freq = 2.0 + (i // 2) * 0.5
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)))
        pats.append(colors[i // 2][:, None, None] * wave[None])
    return np.stack(pats).astype(np.float32)


def _images(rng: np.random.Generator, prims: np.ndarray, parts: list[list[int]]) -> np.ndarray:
    n, p = len(parts), prims.shape[-1]
    img = 0.5 + rng.normal(0, 0.12, size=(n, 3, 32, 32)).astype(np.float32)
    img += rng.uniform(-0.1, 0.1, size=(n, 3, 1, 1)).astype(np.float32)
    for i, pats in enumerate(parts):
        for j, pid in enumerate(pats + [int(rng.integers(0, len(prims)))]):
            amp = 0.35 if j < len(pats) else 0.15  # the last one is a distractor
            y, x = rng.integers(0, 32 - p + 1, size=2)
            if len(pats) == 2 and j < 2:  # a pair: first pattern in the top half, second below
                y = int(rng.integers(0, 16 - p + 5)) + (0 if j == 0 else 16 - 4)
            img[i, :, y:y + p, x:x + p] += amp * prims[pid]
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8).reshape(n, -1)


def _add_pickle(tar: tarfile.TarFile, name: str, obj: dict) -> None:
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_cifar(out: Path, seed: int = 0, size: str = "small") -> tuple[Path, Path]:
    """Write ``cifar-10-python.tar.gz`` and ``cifar-100-python.tar.gz`` with the real keys."""
    rng = np.random.default_rng(seed + 1)
    prims = _primitives(rng)
    _, (c10_train, c10_test), (c100_train, c100_test) = SIZES[size]

    def labels(classes: int, per_class: int) -> np.ndarray:
        return rng.permutation(np.repeat(np.arange(classes), per_class))

    p10 = out / "cifar-10-python.tar.gz"
    with tarfile.open(p10, "w:gz", compresslevel=GZIP_LEVEL) as tar:
        y = labels(10, c10_train)
        for b, chunk in enumerate(np.array_split(y, 5), start=1):
            _add_pickle(tar, f"cifar-10-batches-py/data_batch_{b}", {
                b"batch_label": f"synthetic training batch {b} of 5".encode(),
                b"labels": chunk.tolist(),
                b"data": _images(rng, prims, [[int(c)] for c in chunk]),
                b"filenames": [f"synthetic_{b}_{i}.png".encode() for i in range(len(chunk))],
            })
        yt = labels(10, c10_test)
        _add_pickle(tar, "cifar-10-batches-py/test_batch", {
            b"batch_label": b"synthetic testing batch 1 of 1", b"labels": yt.tolist(),
            b"data": _images(rng, prims, [[int(c)] for c in yt]),
            b"filenames": [f"synthetic_test_{i}.png".encode() for i in range(len(yt))],
        })
        add_embedded_marker(tar, "cifar-10-batches-py")
        _add_pickle(tar, "cifar-10-batches-py/batches.meta", {
            b"num_cases_per_batch": int(np.ceil(len(y) / 5)),
            b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072,
        })
    p100 = out / "cifar-100-python.tar.gz"
    with tarfile.open(p100, "w:gz", compresslevel=GZIP_LEVEL) as tar:
        # Fine class k is CIFAR-10 primitive k // 10 above primitive k % 10.
        for split, per_class in (("train", c100_train), ("test", c100_test)):
            fine = labels(100, per_class)
            _add_pickle(tar, f"cifar-100-python/{split}", {
                b"batch_label": f"synthetic {split}ing batch 1 of 1".encode(),
                b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
                b"data": _images(rng, prims, [[int(k) // 10, int(k) % 10] for k in fine]),
                b"filenames": [f"synthetic_{split}_{i}.png".encode() for i in range(len(fine))],
            })
        add_embedded_marker(tar, "cifar-100-python")
        _add_pickle(tar, "cifar-100-python/meta", {
            b"fine_label_names": [f"fine_{k:02d}".encode() for k in range(100)],
            b"coarse_label_names": [f"coarse_{k:02d}".encode() for k in range(20)],
        })
    return p10, p100


def write_all(out: str | Path, seed: int = 0, size: str = "small") -> dict[str, str]:
    """Write every stand-in into ``out`` and mark the folder as synthetic."""
    if size not in SIZES:
        raise ValueError(f"size={size!r} is invalid: choose from {sorted(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    news = write_newsgroups(out, seed, size)
    c10, c100 = write_cifar(out, seed, size)
    marker = {"generator": "metatune synthetic", "seed": seed, "size": size}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return {"newsgroups": str(news), "cifar10": str(c10), "cifar100": str(c100)}
