"""Atomic, verifiable checkpoints: tensors as safetensors, everything else as JSON.

A checkpoint is a folder with ``tensors.safetensors``, ``state.json`` and ``manifest.json``
(SHA-256 and size of the other two). It is written into a temporary sibling folder and renamed into place
only when complete, so a crash never leaves a folder that looks whole. Loading verifies every
checksum and refuses a truncated or tampered checkpoint. Nothing is ever unpickled.

Listing an experiment (``status``, ``best``, ``report``) checks every checkpoint; a
:class:`VerifiedCache` makes that a ``stat`` per file after the first full check: a file is
hashed again whenever its size, modification time or inode differ from when it was verified.
Loading a checkpoint to use its tensors always hashes in full.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch and safetensors load where tensors are read or written
    import torch

FORMAT = "metatune-checkpoint/1"
TENSORS = "tensors.safetensors"
STATE = "state.json"
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not match its checksums."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Writes to the storage that failed as their file was closed, in this process, oldest first.
# pyarrow's ``copy_files`` (with which Tune uploads checkpoints and trial files) does not raise
# what a stream raises on close: the file is then missing (never partial, see
# tune_jobs.store.signing), and the trainable asks here after each checkpoint it reports.
FAILED_WRITES: list[Exception] = []


def take_failed_writes() -> list[Exception]:
    """The writes that failed on close since the last call (and forget them)."""
    failed = FAILED_WRITES[:]
    del FAILED_WRITES[:len(failed)]
    return failed


class DiskFull(OSError):
    """No space was left where a checkpoint was being written: the message names the place and
    the bytes that did not fit. The search stops at once (a retry would fail the same way)."""

    @classmethod
    def of(cls, exc: OSError, folder: str | Path) -> DiskFull | None:
        """A full disk in ``exc``, said as one line, or None when ``exc`` is something else."""
        if exc.errno != errno.ENOSPC and "No space left on device" not in str(exc):
            return None
        size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        where = exc.filename or "the storage"
        return cls(f"disk full at {where} (needed about {size / 2**20:.1f} MiB for this "
                   "checkpoint)")


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-able ``state`` to ``path`` atomically; returns ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(contiguous, str(tmp / TENSORS), metadata={"format": FORMAT})
        (tmp / STATE).write_text(json.dumps({"format": FORMAT, **state}, indent=1))
        manifest = {"format": FORMAT,
                    "files": {name: _sha256(tmp / name) for name in (TENSORS, STATE)},
                    "sizes": {name: (tmp / name).stat().st_size for name in (TENSORS, STATE)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


class VerifiedCache:
    """Which checkpoint files were verified, keyed by path, with the (size, mtime, inode) and
    digest they had; kept in a JSON file. A file that changed in any of these is re-hashed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    @staticmethod
    def _key(st: os.stat_result) -> list:
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def known(self, file: Path, st: os.stat_result, digest: str) -> bool:
        return self.entries.get(str(file)) == [*self._key(st), digest]

    def add(self, file: Path, st: os.stat_result, digest: str) -> None:
        self.entries[str(file)] = [*self._key(st), digest]
        self.dirty = True

    def save(self) -> None:
        """Best effort: a read-only experiment folder only means hashing again next time."""
        if not self.dirty:
            return
        try:
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:
            pass


def verify_checkpoint(path: str | Path, cache: VerifiedCache | None = None) -> dict[str, Any]:
    """Check that ``path`` is a complete checkpoint matching its manifest; returns the manifest.

    A size that differs from the manifest's is refused without hashing; with ``cache``, a file
    verified before and unchanged since is not hashed again.
    """
    path = Path(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise CheckpointError(
            f"{path}: no {MANIFEST}; this is not a complete Metatune checkpoint "
            "(an interrupted write leaves none). Resume from an earlier checkpoint"
        )
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{manifest_file}: corrupt manifest ({exc.msg})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    sizes = manifest.get("sizes", {})  # absent in checkpoints written before sizes were kept
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; the checkpoint is incomplete")
        st = file.stat()
        if name in sizes and st.st_size != sizes[name]:
            raise CheckpointError(
                f"{file}: {st.st_size} bytes where {sizes[name]} were written; the file is "
                "truncated or was modified. Resume from an earlier checkpoint")
        if cache is not None and cache.known(file, st, digest):
            continue
        if _sha256(file) != digest:
            raise CheckpointError(
                f"{file}: checksum mismatch; the file is truncated or was modified. "
                "Resume from an earlier checkpoint"
            )
        if cache is not None:
            cache.add(file, st, digest)
    return manifest


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify and read a checkpoint: ``(tensors, state)``."""
    from safetensors.torch import load_file

    path = Path(path)
    verify_checkpoint(path)
    tensors = load_file(str(path / TENSORS))
    state = json.loads((path / STATE).read_text())
    return tensors, state

