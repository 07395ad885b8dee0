"""20 Newsgroups in the canonical ``20news-bydate`` layout, read from the archive or extracted.

``20news-bydate.tar.gz`` holds ``20news-bydate-train/<group>/<id>`` and ``20news-bydate-test/…``,
one latin-1 post per file. Headers, signature blocks and quoted replies are removed by default
with scikit-learn's own strippers, the field's standard ``remove=('headers','footers','quotes')``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from sklearn.datasets._twenty_newsgroups import (
    strip_newsgroup_footer,
    strip_newsgroup_header,
    strip_newsgroup_quoting,
)

from trainables.data.archive import is_synthetic, locate, open_tar, read_member
from trainables.data.splits import DataError, Dataset, Split, carve_validation, check_labels

ARCHIVE = "20news-bydate.tar.gz"
FOLDER = "20news-bydate"
SPLIT_DIRS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
DEFAULT_REMOVE = ("headers", "footers", "quotes")
_STRIPPERS = {
    "headers": strip_newsgroup_header,
    "footers": strip_newsgroup_footer,
    "quotes": strip_newsgroup_quoting,
}


def clean(text: str, remove: Iterable[str] = DEFAULT_REMOVE) -> str:
    """Apply the requested strippers, in scikit-learn's order (headers, footers, quotes)."""
    for part in remove:
        if part not in _STRIPPERS:
            raise ValueError(f"remove={part!r} is invalid: choose from {sorted(_STRIPPERS)}")
    for part in ("headers", "footers", "quotes"):
        if part in remove:
            text = _STRIPPERS[part](text)
    return text


def _posts_from_dir(root: Path) -> dict[str, list[tuple[str, str, bytes]]]:
    found: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLIT_DIRS}
    for split, dirname in SPLIT_DIRS.items():
        split_dir = root / dirname
        if not split_dir.is_dir():
            raise DataError(f"{root}: missing folder {dirname}/ (expected the 20news-bydate layout)")
        for group_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for post in sorted(group_dir.iterdir(), key=lambda p: p.name):
                found[split].append((group_dir.name, post.name, post.read_bytes()))
    return found


def _posts_from_tar(path: Path) -> dict[str, list[tuple[str, str, bytes]]]:
    found: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLIT_DIRS}
    by_dir = {d: s for s, d in SPLIT_DIRS.items()}
    with open_tar(path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] not in by_dir:
                continue
            found[by_dir[parts[-3]]].append((parts[-2], parts[-1], read_member(tar, member, path)))
    for split, dirname in SPLIT_DIRS.items():
        if not found[split]:
            raise DataError(f"{path}: no posts under {dirname}/; not a 20news-bydate archive")
    return found


def load_newsgroups(
    root: str | Path,
    remove: Iterable[str] = DEFAULT_REMOVE,
    val_frac: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Load 20 Newsgroups from ``root`` (archive or extracted) with a seeded validation split."""
    root = Path(root)
    where = locate(root, FOLDER, ARCHIVE)
    if where.is_dir():
        # Accept both DIR/20news-bydate/20news-bydate-train and a flat DIR/20news-bydate-train.
        posts = _posts_from_dir(where if (where / SPLIT_DIRS["train"]).is_dir() else root)
    else:
        posts = _posts_from_tar(where)
    groups = sorted({g for g, _, _ in posts["train"]})
    test_groups = sorted({g for g, _, _ in posts["test"]})
    if test_groups != groups:
        raise DataError(
            f"{where}: train and test splits have different groups "
            f"({sorted(set(groups) ^ set(test_groups))[:5]} differ)"
        )
    index = {g: i for i, g in enumerate(groups)}
    remove = tuple(remove)
    texts, labels = {}, {}
    for split, items in posts.items():
        items.sort(key=lambda t: (t[0], _numeric(t[1])))
        texts[split] = [clean(raw.decode("latin-1"), remove) for _, _, raw in items]
        labels[split] = check_labels(
            [index[g] for g, _, _ in items], len(groups), f"{where} ({split} split)"
        )
    train, val = carve_validation(texts["train"], labels["train"], val_frac, seed)
    return Dataset(
        name="newsgroups",
        splits={"train": train, "val": val, "test": Split(texts["test"], labels["test"])},
        label_names=groups,
        source="synthetic" if is_synthetic(root) else "real",
        path=str(where),
        meta={"remove": list(remove)},
    )


def _numeric(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 62, name)


def download_newsgroups(root: str | Path) -> Path:
    """Fetch the official archive into ``root`` with scikit-learn's checksummed downloader."""
    from sklearn.datasets._base import _fetch_remote
    from sklearn.datasets._twenty_newsgroups import ARCHIVE as REMOTE

    from trainables.data.archive import offline

    root = Path(root)
    dest = root / ARCHIVE
    if dest.exists():
        return dest
    if offline():
        raise DataError(
            f"offline: cannot download 20 Newsgroups. Copy {ARCHIVE} (from "
            f"{REMOTE.url}) to {dest} instead"
        )
    root.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(_fetch_remote(REMOTE, dirname=str(root)))
    except OSError as exc:
        raise DataError(
            f"download of {REMOTE.url} failed ({exc}); copy {ARCHIVE} to {dest} by hand"
        ) from None
    if path != dest:
        shutil.move(str(path), dest)
    return dest

