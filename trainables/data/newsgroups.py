"""20 Newsgroups in the canonical ``20news-bydate`` layout, read from the archive or extracted.

``20news-bydate.tar.gz`` holds ``20news-bydate-train/<group>/<id>`` and ``20news-bydate-test/…``,
one latin-1 post per file. Headers, signature blocks and quoted replies are removed by default
with scikit-learn's own strippers, the field's standard ``remove=('headers','footers','quotes')``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from trainables.data.archive import (
    EMBEDDED_MARKER,
    is_synthetic,
    locate,
    open_tar,
    read_member,
)
from trainables.data.splits import DataError, Dataset, Split, check_labels, three_splits

ARCHIVE = "20news-bydate.tar.gz"
FOLDER = "20news-bydate"
SPLIT_DIRS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
SKLEARN_HOME = "20news_home"  # scikit-learn's cache: <data_home>/20news_home/20news-bydate-*/
GROUPS = (  # the 20 groups of the bydate release, in its (alphabetical) order
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
)
DEFAULT_REMOVE = ("headers", "footers", "quotes")
_STRIPPERS = {"headers": "strip_newsgroup_header", "footers": "strip_newsgroup_footer",
              "quotes": "strip_newsgroup_quoting"}  # scikit-learn's, loaded on first use


def clean(text: str, remove: Iterable[str] = DEFAULT_REMOVE) -> str:
    """Apply the requested strippers, in scikit-learn's order (headers, footers, quotes)."""
    from sklearn.datasets import _twenty_newsgroups

    for part in remove:
        if part not in _STRIPPERS:
            raise ValueError(f"remove={part!r} is invalid: choose from {sorted(_STRIPPERS)}")
    for part in ("headers", "footers", "quotes"):
        if part in remove:
            text = getattr(_twenty_newsgroups, _STRIPPERS[part])(text)
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


def _posts_from_tar(path: Path) -> tuple[dict[str, list[tuple[str, str, bytes]]], bool]:
    """The posts of both splits, and whether the archive carries the synthetic marker."""
    found: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLIT_DIRS}
    by_dir = {d: s for s, d in SPLIT_DIRS.items()}
    marked = False
    with open_tar(path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            marked = marked or parts[-1:] == (EMBEDDED_MARKER,)
            if not member.isfile() or len(parts) < 3 or parts[-3] not in by_dir:
                continue
            found[by_dir[parts[-3]]].append((parts[-2], parts[-1], read_member(tar, member, path)))
    for split, dirname in SPLIT_DIRS.items():
        if not found[split]:
            raise DataError(f"{path}: no posts under {dirname}/; not a 20news-bydate archive")
    return found, marked


def find_newsgroups(root: Path) -> tuple[Path, str]:
    """``(path, layout)`` of 20 Newsgroups under ``root``: the extracted split folders as the
    official archive unpacks them (in ``root`` or in ``root/20news-bydate/``), scikit-learn's
    cache (``root/20news_home/``), or the archive itself. DataError naming all four if none."""
    for folder, layout in ((root / FOLDER, "folder 20news-bydate/"),
                           (root, "extracted 20news-bydate-train/ and -test/"),
                           (root / SKLEARN_HOME, "scikit-learn cache 20news_home/")):
        if all((folder / d).is_dir() for d in SPLIT_DIRS.values()):
            return folder, layout
    if (root / ARCHIVE).is_file():
        return root / ARCHIVE, f"archive {ARCHIVE}"
    half = [root / d for d in SPLIT_DIRS.values() if (root / d).is_dir()]
    if half:
        raise DataError(f"{half[0]} is there but not its other half; the extracted archive has "
                        f"both {' and '.join(SPLIT_DIRS.values())}/ side by side in {root}")
    return locate(root, FOLDER, ARCHIVE), "folder 20news-bydate/"  # raises, naming the options


def load_newsgroups(
    root: str | Path,
    remove: Iterable[str] = DEFAULT_REMOVE,
    val_frac: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Load 20 Newsgroups from ``root`` (archive or extracted) with a seeded validation split."""
    root = Path(root)
    where, layout = find_newsgroups(root)
    if where.is_file():
        posts, marked = _posts_from_tar(where)
    else:
        posts = _posts_from_dir(where)
        marked = (where / SPLIT_DIRS["train"] / EMBEDDED_MARKER).exists()
    groups = sorted({g for g, _, _ in posts["train"]})
    test_groups = sorted({g for g, _, _ in posts["test"]})
    if test_groups != groups:
        raise DataError(
            f"{where}: train and test splits have different groups "
            f"({sorted(set(groups) ^ set(test_groups))[:5]} differ)"
        )
    missing, extra = sorted(set(GROUPS) - set(groups)), sorted(set(groups) - set(GROUPS))
    if missing or extra:
        problems = ([f"the group(s) {missing} have no posts"] if missing else []) \
            + ([f"unknown group(s) {extra}"] if extra else [])
        raise DataError(f"{where}: 20 Newsgroups has {len(GROUPS)} groups; here "
                        f"{' and '.join(problems)}. Re-extract or re-download the archive")
    index = {g: i for i, g in enumerate(groups)}
    remove = tuple(remove)
    texts, labels = {}, {}
    for split, items in posts.items():
        items.sort(key=lambda t: (t[0], _numeric(t[1])))
        texts[split] = [clean(_decode(raw, where, split, g, name), remove)
                        for g, name, raw in items]
        labels[split] = check_labels(
            [index[g] for g, _, _ in items], len(groups), f"{where} ({split} split)"
        )
    return Dataset(
        name="newsgroups",
        splits=three_splits(texts["train"], labels["train"], Split(texts["test"], labels["test"]),
                            val_frac, seed),
        label_names=groups,
        source="synthetic" if marked or is_synthetic(root) else "real",
        path=str(where),
        meta={"remove": list(remove), "layout": layout},
    )


def _decode(raw: bytes, where: Path, split: str, group: str, name: str) -> str:
    """A post as text. The corpus is latin-1, which decodes any byte, so bytes that are not
    valid UTF-8 are fine (as in scikit-learn's loader); a NUL byte is not: no post holds one,
    and a file that does is binary (a stray image, archive or disk fault), not a post."""
    at = raw.find(b"\0")
    if at >= 0:
        raise DataError(f"{where}: {SPLIT_DIRS[split]}/{group}/{name} is not a text post (it "
                        f"holds NUL bytes, the first at byte {at}); remove it or "
                        "re-extract the archive")
    return raw.decode("latin-1")


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

