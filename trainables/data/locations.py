"""Where the data sets live: the data folder's layout, its defaults, and ``--data`` resolution.

``$METATUNE_DATA`` (default ``./data``) holds ``real/`` (what ``metatune data download`` writes
and ``--data real`` reads) and ``synthetic/`` (the stand-ins); ``--data FOLDER`` names any other.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainables.data import cifar, newsgroups
from trainables.data.archive import is_synthetic, locate
from trainables.data.splits import DataError

KINDS = ("real", "synthetic")
LAYOUT = {  # built-in task -> [(folder, archive)] it needs in the data folder
    "newsgroups": [(newsgroups.FOLDER, newsgroups.ARCHIVE)],  # or the other layouts it accepts
    "cifar_transfer": [cifar.LAYOUT["cifar10"][:2], cifar.LAYOUT["cifar100"][:2]],
}


def data_root() -> Path:
    return Path(os.environ.get("METATUNE_DATA", "data")).expanduser().resolve()


def default_dir(kind: str) -> Path:
    """The folder of ``--data real`` / ``--data synthetic`` (and of `metatune data`'s defaults)."""
    return data_root() / kind


def resolve_data(data: str, tasks: list[str] | tuple[str, ...]) -> tuple[str, str]:
    """``(folder, real|synthetic)`` for ``--data``; checks every needed file's presence."""
    if data == "synthetic":
        folder = default_dir("synthetic")
        if not is_synthetic(folder):
            from trainables.data.synthetic import write_all

            print(f"writing synthetic stand-ins to {folder} (first use)")
            write_all(folder)
    elif data == "real":
        folder = default_dir("real")
        if is_synthetic(folder):
            raise DataError(f"--data real: {folder} holds synthetic stand-ins, not real data. "
                            f"Run `metatune data download --dir {folder}` there, or pass "
                            "--data synthetic")
    else:
        folder = Path(data).expanduser().resolve()
        if not folder.is_dir():
            raise DataError(f"--data {data}: no such folder")
    for task in tasks:
        for name, archive in LAYOUT.get(task, []):
            try:
                if task == "newsgroups":
                    newsgroups.find_newsgroups(folder)
                else:
                    locate(folder, name, archive)
            except DataError as exc:
                raise DataError(
                    f"task {task} needs {archive} (or {name}/) in {folder}: {exc}") from None
    return str(folder), "synthetic" if is_synthetic(folder) else "real"
