"""A content-keyed on-disk cache for work shared by every trial: built once, then only read.

Each entry is a folder named by a hash of its inputs. It is built in a temporary sibling and
renamed into place under a file lock, so concurrent trials, processes or nodes that share the
cache build an entry exactly once and never see half of one. Arrays are stored as ``.npz`` and
read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

DEFAULT_ROOT = Path.home() / ".cache" / "metatune"
ENTRY_INFO = "entry.json"
# Every entry this process built or read (absolute paths): what a record says it relies on.
_opened: set[str] = set()


def cache_root(root: str | Path | None = None) -> Path:
    """The cache folder: ``root``, else ``$METATUNE_CACHE``, else ``~/.cache/metatune``."""
    path = Path(root) if root else Path(os.environ.get("METATUNE_CACHE", DEFAULT_ROOT))
    path.mkdir(parents=True, exist_ok=True)
    return path


def key_of(parts: dict[str, Any]) -> str:
    """A stable hash of the inputs that determine an entry."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def entry_path(namespace: str, parts: dict[str, Any], root: str | Path | None = None) -> Path:
    return cache_root(root) / namespace / key_of(parts)


def build_once(namespace: str, parts: dict[str, Any], build: Callable[[Path], None],
               root: str | Path | None = None) -> Path:
    """The entry folder for ``parts``; ``build(folder)`` fills it the first time only."""
    folder = entry_path(namespace, parts, root)
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not folder.is_dir():  # another process may have built it while we waited
                tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp", dir=folder.parent))
                try:
                    started = time.time()
                    build(tmp)
                    info = {"inputs": parts, "built_at": started, "pid": os.getpid(),
                            "build_seconds": round(time.time() - started, 3)}
                    (tmp / ENTRY_INFO).write_text(json.dumps(info, default=str, indent=1))
                    os.replace(tmp, folder)  # the entry appears whole or not at all
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                with open(folder.parent / "builds.log", "a") as f:
                    f.write(folder.name + "\n")
    _opened.add(str(folder.resolve()))
    return folder


def get_or_build(
    namespace: str,
    parts: dict[str, Any],
    build: Callable[[], dict[str, np.ndarray]],
    root: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Return the arrays cached under ``parts``, building and storing them on the first call."""
    folder = build_once(namespace, parts, lambda tmp: np.savez(tmp / "arrays.npz", **build()),
                        root)
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def builds(namespace: str, root: str | Path | None = None) -> list[str]:
    """The keys built in ``namespace``, one line per build ever done (an audit log)."""
    log = cache_root(root) / namespace / "builds.log"
    return log.read_text().split() if log.exists() else []


def opened() -> set[str]:
    """The entries this process has built or read so far (absolute paths)."""
    return set(_opened)


def write_record(namespace: str, key: str, record: dict[str, Any], uses: set[str],
                 root: str | Path | None = None) -> Path:
    """Store ``record`` (JSON) under ``key``, with the entries it relies on. Replaced whole on
    a rewrite: a reader sees the old record or the new one, never half of one."""
    folder = cache_root(root) / namespace
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"record": record, "uses": sorted(uses), "written_at": time.time()}, f,
                      default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(namespace: str, key: str, root: str | Path | None = None
                ) -> dict[str, Any] | None:
    """The record stored under ``key`` when every entry it relies on is still in the cache;
    None when there is none, it cannot be read, or an entry it needs is gone."""
    path = cache_root(root) / namespace / f"{key}.json"
    try:
        stored = json.loads(path.read_text())
        record, uses = stored["record"], stored["uses"]
        if not (isinstance(record, dict) and isinstance(uses, list)
                and all(isinstance(u, str) and os.path.isdir(u) for u in uses)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def read_records(namespace: str, keys: list[str], root: str | Path | None = None
                 ) -> list[dict[str, Any] | None]:
    """:func:`read_record` for each key, in order (one call where the cache is remote)."""
    return [read_record(namespace, key, root) for key in keys]
