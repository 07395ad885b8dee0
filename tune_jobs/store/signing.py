"""Authenticating Ray Tune's own pickles in an experiment folder before they are loaded.

Tune keeps its state as pickles (``tuner.pkl``, ``params.pkl``, the searcher's and callbacks'
state) and as JSON with embedded cloudpickle payloads (``experiment_state-*.json``), and
unpickles them on restore: whoever can write the experiment folder can run code in the next
``resume``. Metatune passes Tune a filesystem that signs each such file as it is written, with
an HMAC-SHA256 keyed by a secret kept outside the experiment folder (``~/.config/metatune/
signing.key``, mode 600; ``$METATUNE_SIGNING_KEY`` names another file), into a sidecar
``<file>.metatune-sig``. :func:`verify` checks every such file against its sidecar before Tune is
allowed to read any of them; nothing is unpickled to check it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import hmac
import os
import posixpath
import re
import secrets
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow
import pyarrow.fs as pafs

from trainables.checkpoint import FAILED_WRITES

SUFFIX = ".metatune-sig"
# The files Tune unpickles (some of them named .json); all are written by the driver.
PATTERNS = ("*.pkl", "experiment_state-*.json", "basic-variant-state-*.json",
            "search_gen_state-*.json")


class UnsignedState(ValueError):
    """A Tune state file without a valid signature: it was not written by this key's owner."""


DEFAULT_KEY = "~/.config/metatune/signing.key"


def key_path() -> Path:
    return Path(os.environ.get("METATUNE_SIGNING_KEY", DEFAULT_KEY)).expanduser()


def load_key() -> bytes:
    """The signing key, created (mode 600) on first use at the default path only: a key file
    named by $METATUNE_SIGNING_KEY must exist (a mistyped path would otherwise make a new key,
    and every experiment signed with the real one would then be refused)."""
    path = key_path()
    if not path.is_file() and "METATUNE_SIGNING_KEY" in os.environ:
        raise ValueError(f"METATUNE_SIGNING_KEY={os.environ['METATUNE_SIGNING_KEY']}: no such "
                         f"key file. Point it at the key your experiments were signed with, or "
                         f"unset it to use (and on first use create) {DEFAULT_KEY}")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def is_state_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return not name.endswith(SUFFIX) and any(fnmatch.fnmatch(name, p) for p in PATTERNS)


# Tune names a trial's checkpoint folders checkpoint_000000, checkpoint_000001, ...
_CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")


def in_checkpoint(path: str, exp_path: str) -> bool:
    """Whether ``path`` lies inside a trial's checkpoint folder of the experiment at ``exp_path``.

    Decided by the path's place relative to the experiment root, ``<trial>/checkpoint_N/...``,
    never by what the absolute path contains: an experiment stored under a folder that happens to
    be named ``checkpoint_…`` is an experiment like any other. Our checkpoints are safetensors and
    checksummed JSON that nothing unpickles, and they are written on the trial's node, which may
    not hold the driver's key; Tune's own pickles never live there.
    """
    root = posixpath.normpath(exp_path)
    full = posixpath.normpath(path)
    if not full.startswith(root.rstrip("/") + "/"):
        return False
    parts = full[len(root.rstrip("/")) + 1:].split("/")
    return len(parts) >= 3 and _CHECKPOINT_DIR.fullmatch(parts[1]) is not None


def _state_files(fs: pafs.FileSystem, exp_path: str) -> list[str]:
    """Every Tune state file under ``exp_path`` that must carry a signature."""
    selector = pafs.FileSelector(exp_path, recursive=True, allow_not_found=True)
    return [info.path for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and is_state_file(info.path)
            and not in_checkpoint(info.path, exp_path)]


def _digest(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


class _WholeWriter:
    """A write stream whose file appears whole or not at all, and (for a Tune state file) with
    its signature.

    On a local disk the bytes go to a hidden temporary name (``.NAME.part-<hex>``, which no
    listing of Tune's matches) and are renamed into place on close; a failed write (a full
    disk) removes the temporary file and leaves the old file, if any, as it was. On the head
    store and object stores a file already appears whole when it is closed. A state file's
    signature sidecar is written the same way, after the file itself is whole.
    """

    def __init__(self, fs: pafs.FileSystem, path: str, sign: bool) -> None:
        self.fs, self.path = fs, path
        self.atomic = fs.type_name == "local"
        self.target = _part_name(path) if self.atomic else path
        self.inner = fs.open_output_stream(self.target)
        self.mac = hmac.new(load_key(), digestmod=hashlib.sha256) if sign else None
        self.closed = False
        # The exception being handled where the file was opened, if any (Tune's failure
        # callbacks write inside an ``except`` block): not a reason to throw the file away.
        self.handling = sys.exc_info()[1]

    def write(self, data: Any) -> int:
        data = memoryview(data).cast("B")  # no copy
        try:
            self.inner.write(data)
        except OSError as exc:
            self._abort()
            raise _named(exc, self.path) from None
        except BaseException:
            self._abort()
            raise
        if self.mac is not None:
            self.mac.update(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        if self.closed:
            return
        if sys.exc_info()[1] not in (None, self.handling):
            # Closed while an exception unwinds (the ``with`` block that wrote it raised): the
            # bytes are incomplete. Neither the file nor a signature of them is committed, and
            # the file it would have replaced keeps its own signature.
            self._abort()
            return
        self.closed = True
        try:
            self.inner.close()
            if self.mac is not None:
                _write_whole(self.fs, self.path + SUFFIX, self.mac.hexdigest().encode(),
                             self.atomic)
            if self.atomic:
                self.fs.move(self.target, self.path)
        except Exception as exc:  # pyarrow's copy_files drops an error raised here: record it
            self._abort()
            named = _named(exc, self.path) if isinstance(exc, OSError) else exc
            FAILED_WRITES.append(named)  # see trainables.checkpoint.take_failed_writes
            raise named from None

    def _abort(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.inner.close()
        if self.atomic:
            _delete_quietly(self.fs, self.target)

    def writable(self) -> bool:
        return True


def _named(exc: OSError, path: str) -> OSError:
    """The error with the file it was writing (pyarrow's own says only "Error writing bytes");
    a full disk keeps its errno, ENOSPC, for whoever reports it."""
    if exc.errno == errno.ENOSPC or "No space left on device" in str(exc):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return exc


def _part_name(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.part-{secrets.token_hex(8)}"


def _write_whole(fs: pafs.FileSystem, path: str, data: bytes, atomic: bool) -> None:
    target = _part_name(path) if atomic else path
    try:
        with fs.open_output_stream(target) as f:
            f.write(data)
        if atomic:
            fs.move(target, path)
    except OSError:
        if atomic:
            _delete_quietly(fs, target)
        raise


class SigningHandler(pafs.FileSystemHandler):
    """Forwards every operation to ``inner``; Tune's state files get a signature sidecar."""

    def __init__(self, inner: pafs.FileSystem) -> None:
        self.inner = inner

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningHandler) and other.inner.equals(self.inner)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"metatune-signing+{self.inner.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise PermissionError("refusing to delete the whole storage")

    def delete_file(self, path: str) -> None:
        self.inner.delete_file(path)
        if is_state_file(path):
            _delete_quietly(self.inner, path + SUFFIX)

    def move(self, src: str, dest: str) -> None:
        self.inner.move(src, dest)
        self._carry_signature(src, dest, self.inner.move)

    def copy_file(self, src: str, dest: str) -> None:
        self.inner.copy_file(src, dest)
        self._carry_signature(src, dest, self.inner.copy_file)

    def _carry_signature(self, src: str, dest: str, how: Any) -> None:
        if not is_state_file(dest):
            if is_state_file(src):
                _delete_quietly(self.inner, src + SUFFIX)
            return
        if is_state_file(src) and self.inner.get_file_info(src + SUFFIX).type == \
                pafs.FileType.File:
            how(src + SUFFIX, dest + SUFFIX)
        else:  # a temporary name became a state file: sign what it holds now
            _sign_file(self.inner, dest, load_key())

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        return self.inner.open_input_stream(path)

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self.inner.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any = None) -> pyarrow.NativeFile:
        writer = _WholeWriter(self.inner, path, sign=is_state_file(path))
        return pyarrow.PythonFile(writer, mode="w")

    def open_append_stream(self, path: str, metadata: Any = None) -> pyarrow.NativeFile:
        if is_state_file(path):
            raise NotImplementedError(f"{path}: a signed file is written whole, never appended")
        return self.inner.open_append_stream(path)


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


def signing(inner: pafs.FileSystem) -> pafs.PyFileSystem:
    return pafs.PyFileSystem(SigningHandler(inner))


def verify(fs: pafs.FileSystem, exp_path: str) -> int:
    """Check every Tune state file under ``exp_path`` against its signature; the number checked.

    Raises :class:`UnsignedState` naming the first file that is unsigned or does not match.
    """
    key = load_key()
    checked = 0
    for path in _state_files(fs, exp_path):
        with fs.open_input_stream(path) as f:
            data = f.read()
        try:
            with fs.open_input_stream(path + SUFFIX) as f:
                signature = f.read().decode().strip()
        except (FileNotFoundError, OSError):
            signature = ""
        if not signature:
            raise UnsignedState(f"{path} has no Metatune signature")
        if not hmac.compare_digest(signature, _digest(key, data)):
            raise UnsignedState(f"{path} does not match its signature (changed after "
                                "Metatune wrote it, or signed with another key)")
        checked += 1
    return checked


def _sign_file(fs: pafs.FileSystem, path: str, key: bytes) -> None:
    with fs.open_input_stream(path) as f:
        digest = _digest(key, f.read())
    _write_whole(fs, path + SUFFIX, digest.encode(), fs.type_name == "local")


def sign_existing(fs: pafs.FileSystem, exp_path: str) -> int:
    """Sign the Tune state files under ``exp_path`` as they are (the user vouched for them)."""
    key = load_key()
    paths = _state_files(fs, exp_path)
    for path in paths:
        _sign_file(fs, path, key)
    return len(paths)
