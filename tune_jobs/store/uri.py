"""Experiment folders that may live behind a URI (``s3://``, ``gs://``, ``file://``…).

Tune reads and writes a URI storage itself. Metatune's own steps — the spec file, reading the
trials after the search, writing the report — work on a local view: the folder itself when it is
local, else a mirror in the cache, with the report files published back to the URI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from trainables.data.cache import cache_root

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: str) -> bool:
    """A URI starts with its scheme; a local path that merely contains ``://`` is a path."""
    return _SCHEME.match(path) is not None


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def is_file(path: str) -> bool:
    fs, p = _fs(path)
    return fs.get_file_info(p).type == pafs.FileType.File


def read_text(path: str) -> str | None:
    """The file's text, or None when there is no such file."""
    if not is_file(path):
        return None
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode()


def read_json(path: str) -> Any | None:
    text = read_text(path)
    return None if text is None else json.loads(text)


def write_text(path: str, text: str) -> None:
    """Write a file whole or not at all: temp + rename on local disks, one object on object
    stores. A full disk leaves the old file as it was."""
    fs, p = _fs(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    tmp = p + ".tmp"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        fs.move(tmp, p)
    except OSError:
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise


def write_json(path: str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, default=str))


def local_view(exp: str) -> Path:
    """A local folder with the experiment's files: itself, or a fresh mirror of the URI."""
    if not is_uri(exp):
        return Path(exp)
    mirror = cache_root() / "experiments" / hashlib.sha256(exp.encode()).hexdigest()[:16]
    mirror.mkdir(parents=True, exist_ok=True)
    fs, p = _fs(exp)
    pafs.copy_files(p, str(mirror), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return mirror


def publish(local: Path, exp: str, names: list[str]) -> None:
    """Copy report files from the local view back to a URI experiment folder."""
    if not is_uri(exp):
        return
    fs, p = _fs(exp)
    for name in names:
        src = local / name
        if src.is_dir():
            fs.create_dir(f"{p}/{name}", recursive=True)
        if src.exists():
            pafs.copy_files(str(src), f"{p}/{name}", source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)
