"""Atomic, verifiable checkpoints: tensors as safetensors, everything else as JSON.

A checkpoint is a folder with ``tensors.safetensors``, ``state.json`` and ``manifest.json``
(SHA-256 of the other two). It is written into a temporary sibling folder and renamed into place
only when complete, so a crash never leaves a folder that looks whole. Loading verifies every
checksum and refuses a truncated or tampered checkpoint. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

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


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-able ``state`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(contiguous, str(tmp / TENSORS), metadata={"format": FORMAT})
        (tmp / STATE).write_text(json.dumps({"format": FORMAT, **state}, indent=1))
        manifest = {"format": FORMAT,
                    "files": {name: _sha256(tmp / name) for name in (TENSORS, STATE)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check that ``path`` is a complete checkpoint matching its manifest; returns the manifest."""
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
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; the checkpoint is incomplete")
        if _sha256(file) != digest:
            raise CheckpointError(
                f"{file}: checksum mismatch; the file is truncated or was modified. "
                "Resume from an earlier checkpoint"
            )
    return manifest


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify and read a checkpoint: ``(tensors, state)``."""
    path = Path(path)
    verify_checkpoint(path)
    tensors = load_file(str(path / TENSORS))
    state = json.loads((path / STATE).read_text())
    return tensors, state

