"""One experiment, one writer: the lock a search holds on its experiment folder while it runs.

A second ``run`` or ``resume`` of an experiment that a live search is writing is refused with one
line naming the holder (host, pid, since when); ``status``, ``best`` and ``report`` only read,
and say that what they show is provisional.

- On a local disk (and on the head store, whose driver runs on the head node, next to the
  folder) the lock is ``flock`` on ``<experiment>/metatune.lock``. The kernel drops it when its
  process dies, however it dies, so a killed driver never leaves a lock behind: the next run
  takes it over and says whose it was.
- On URI storage (``s3://…``) there is no such primitive. The lock is advisory: the file names
  its holder and a heartbeat that the holder renews every ``HEARTBEAT_S``. It is stale when the
  heartbeat is older than ``STALE_AFTER_S``, or when its holder was on this host and its pid is
  gone; a stale lock is taken over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tune_jobs.store import uri

LOCK_FILE = "metatune.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 180.0


class ExperimentBusy(ValueError):
    """Another live process is writing the experiment."""


@dataclasses.dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: float
    heartbeat: float = 0.0
    token: str = ""

    @classmethod
    def me(cls) -> Holder:
        now = time.time()
        return cls(socket.gethostname(), os.getpid(), now, now, uuid.uuid4().hex)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), float(data["since"]),
                       float(data.get("heartbeat", data["since"])), str(data.get("token", "")))
        except (ValueError, KeyError, TypeError):  # empty (released) or cut short
            return None

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}, since {since}"

    def gone(self, now: float) -> bool:
        """Stale by the advisory rule: no heartbeat for a while, or a dead pid on this host."""
        if now - self.heartbeat > STALE_AFTER_S:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _busy(name: str, holder: Holder | None) -> ExperimentBusy:
    who = str(holder) if holder else "another process"
    return ExperimentBusy(
        f"experiment {name!r} is being written by another metatune search ({who}); wait for it "
        f"to end or stop it. `metatune status {name}` and `metatune best {name}` read it "
        "meanwhile")


@contextlib.contextmanager
def writing(path: str, name: str) -> Iterator[Holder | None]:
    """Hold the experiment at ``path`` for writing; yields the stale holder taken over, if any.

    Raises :class:`ExperimentBusy` (bad input: exit 2) when a live search holds it.
    """
    if uri.is_uri(path):
        with _advisory(path, name) as stale:
            yield stale
    else:
        with _flocked(Path(path), name) as stale:
            yield stale


@contextlib.contextmanager
def _flocked(folder: Path, name: str) -> Iterator[Holder | None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(5):  # a reader's probe holds it for microseconds
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 4:
                    raise _busy(name, Holder.parse(_read_fd(fd))) from None
                time.sleep(0.1)
        stale = Holder.parse(_read_fd(fd))  # the lock was free: whoever is named there is gone
        _write_fd(fd, Holder.me().dumps())
        try:
            yield stale
        finally:
            _write_fd(fd, "")
    finally:
        os.close(fd)  # releases the flock


def _read_fd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace")


def _write_fd(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


@contextlib.contextmanager
def _advisory(path: str, name: str) -> Iterator[Holder | None]:
    file = f"{path.rstrip('/')}/{LOCK_FILE}"
    held = _read_uri(file)
    stale = None
    if held is not None:
        if not held.gone(time.time()):
            raise _busy(name, held)
        stale = held
    me = Holder.me()
    uri.write_text(file, me.dumps())
    time.sleep(0.5)  # two takers at once: the last write wins, and the other one sees it
    if (now := _read_uri(file)) is None or now.token != me.token:
        raise _busy(name, now)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # a blip; the next beat retries
                uri.write_text(file, dataclasses.replace(me, heartbeat=time.time()).dumps())

    beater = threading.Thread(target=beat, name="metatune-lock-heartbeat", daemon=True)
    beater.start()
    try:
        yield stale
    finally:
        stop.set()
        beater.join(5)
        with contextlib.suppress(OSError):
            uri.write_text(file, "")


def _read_uri(file: str) -> Holder | None:
    try:
        text = uri.read_text(file)
    except OSError:
        return None
    return Holder.parse(text) if text else None


def writer(path: str) -> Holder | None:
    """The live search writing the experiment at ``path`` now, if one is (for the readers)."""
    if uri.is_uri(path):
        held = _read_uri(f"{path.rstrip('/')}/{LOCK_FILE}")
        return held if held is not None and not held.gone(time.time()) else None
    import fcntl

    file = Path(path) / LOCK_FILE
    try:
        fd = os.open(file, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.parse(_read_fd(fd)) or Holder("?", 0, time.time())
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
