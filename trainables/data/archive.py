"""Finding a data set on disk: an official archive or its extracted folder, and downloading."""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

from trainables.data.splits import DataError

SYNTHETIC_MARKER = "metatune-synthetic.json"
# Also inside every synthetic archive (and so in every copy or extraction of one), so that
# stand-ins copied without the folder's marker are never taken for real data.
EMBEDDED_MARKER = ".metatune-synthetic"


def offline() -> bool:
    """True when the environment forbids network access (the HF offline switches or ours)."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes")
        for var in ("METATUNE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def locate(root: Path, folder: str, archive: str) -> Path:
    """The extracted ``folder`` or the ``archive`` under ``root``; DataError naming both if neither."""
    for candidate in (root / folder, root / archive):
        if candidate.exists():
            return candidate
    raise DataError(
        f"neither {root / folder}/ nor {root / archive} exists. Put the official archive there, "
        f"run `metatune data download --dir {root}` on a machine with internet, or write "
        f"stand-ins with `metatune data synthetic --out {root}`"
    )


def open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable archive ({exc}); re-download it") from None


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    try:
        handle = tar.extractfile(member)
        if handle is None:
            raise DataError(f"{path}: member {member.name} is not a regular file")
        return handle.read()
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise DataError(
            f"{path}: archive is truncated or corrupt at {member.name} ({exc}); re-download it"
        ) from None


def is_synthetic(root: Path) -> bool:
    return (root / SYNTHETIC_MARKER).exists()


def add_embedded_marker(tar: tarfile.TarFile, folder: str) -> None:
    """Mark a synthetic archive from the inside: ``<folder>/.metatune-synthetic``."""
    import io

    data = b"synthetic stand-in written by metatune data synthetic\n"
    info = tarfile.TarInfo(f"{folder}/{EMBEDDED_MARKER}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file, checksum, rename)."""
    if offline():
        raise DataError(
            f"cannot download {url}: this process is offline (HF_HUB_OFFLINE / "
            f"METATUNE_OFFLINE set). Copy the file to {dest} by hand instead"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"download of {url} failed ({exc}). Fetch it elsewhere and copy it to {dest}"
        ) from None
    if md5 and digest.hexdigest() != md5:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{url}: checksum mismatch (got md5 {digest.hexdigest()}, want {md5})")
    os.replace(tmp, dest)
    return dest
