"""A content-keyed on-disk cache for work shared by every trial: built once, then only read.

Entries are numpy arrays in an ``.npz`` (read with ``allow_pickle=False``) plus a JSON sidecar,
written to a temporary file and renamed into place under a file lock, so concurrent trials,
processes or nodes that share the folder build an entry exactly once and never see half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

DEFAULT_ROOT = Path(os.environ.get("METATUNE_CACHE", Path.home() / ".cache" / "metatune"))


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


def get_or_build(
    namespace: str,
    parts: dict[str, Any],
    build: Callable[[], dict[str, np.ndarray]],
    root: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Return the arrays cached under ``parts``, building and storing them on the first call."""
    base = entry_path(namespace, parts, root)
    data = base.with_suffix(".npz")
    if not data.exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(base) + ".lock"):
            if not data.exists():  # another process may have built it while we waited
                started = time.time()
                arrays = build()
                _atomic_npz(data, arrays)
                meta = {"inputs": parts, "built_at": started,
                        "build_seconds": round(time.time() - started, 3), "pid": os.getpid()}
                base.with_suffix(".json").write_text(json.dumps(meta, default=str, indent=1))
                _log_build(base.parent, base.name)
    with np.load(data, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def builds(namespace: str, root: str | Path | None = None) -> list[str]:
    """The keys built in ``namespace``, one line per build ever done (an audit log)."""
    log = cache_root(root) / namespace / "builds.log"
    return log.read_text().split() if log.exists() else []


def _log_build(folder: Path, key: str) -> None:
    with open(folder / "builds.log", "a") as f:
        f.write(key + "\n")


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
