"""Checkpoint storage on the head node's own disk, for clusters without NFS or S3.

Since Ray 2.7, Tune writes trial results and checkpoints straight from the node a trial runs on
to ``storage_path``, which on a multi-node cluster must be shared storage. Here ``storage_path``
is served by a :class:`pyarrow.fs.PyFileSystem` whose every operation is carried out by one Ray
actor pinned to the head node: trials on any node stream their files to it in bounded chunks,
and read them back from it when they restore.

A writer on the head node itself skips the actor for the bytes: it writes straight into the
store's folder, at the speed of the disk, and the actor is only told afterwards. So does a reader
there. Writers and readers on other nodes send and fetch the bytes over a TCP connection of their
own to the actor (one per file, opened with a one-time token the actor handed out through Ray's
authenticated calls; the actor writes with ``pwrite`` and sends with ``sendfile``). Where that
port cannot be reached (a firewall; ``METATUNE_HEAD_STORE_PORT=off``; Ray's TLS on, which these
bytes would bypass) they go through Ray's object store in chunks instead, at a fraction of the
speed.

Either way, a file being written lives under a temporary ``.part-`` name and is renamed into
place only when its writer closes it, so a transfer that breaks off never leaves a file that
looks whole; our checkpoints add a checksummed manifest on top, so a partly copied checkpoint
folder is refused. Like Tune's own local storage, the store does not fsync: a file is whole once
renamed, and a power cut on the head node is caught by those manifests and the state files'
signatures, not by the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.fs as pafs
import ray
from ray.util import get_node_ip_address
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

CHUNK = 16 << 20  # bytes per chunk shipped or fetched between nodes
WINDOW = 2  # chunks a writer on another node has in flight (bounded memory: about WINDOW + 2 chunks)
# The exact temporary name open_write gives a file in transfer: nothing else is hidden.
_PART = re.compile(r"\..+\.part-[0-9a-f]{32}")
NAMESPACE = "metatune"
# Writers and readers on the head node use its disk directly (tests turn this off to exercise,
# on one node, the path that other nodes take).
DIRECT = True
# Writers and readers on other nodes stream over a socket of the actor's (tests turn this off to
# exercise Ray's object store, the path taken when the socket cannot be reached).
STREAM = True
PORT_ENV = "METATUNE_HEAD_STORE_PORT"  # the actor's port for streams: a number, 0 (any), or off
BUFFER = 1 << 20  # bytes the actor receives at a time from one stream
IDLE = 300.0  # seconds a stream may stay silent before either end gives it up
ENDED_S = 120.0  # seconds a stream that was received whole waits for its writer to close it
HEADER_S = 10.0  # seconds a new connection has to present its whole header
MAX_STREAMS = 512  # streams the actor serves at once; more are closed (and fall back to Ray)
_HEADER = 1 + 32 + 8  # b"W" or b"R", the token (32 hex), the offset to read from (8 bytes)


def head_node_id() -> str:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return node["NodeID"]
    raise RuntimeError("no live head node found in this Ray cluster")


def on_head_node() -> bool:
    return ray.get_runtime_context().get_node_id() == head_node_id()


@ray.remote(num_cpus=0, max_concurrency=8)
class HeadStore:
    """Carries out file operations under ``root`` on the head node's disk."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        os.makedirs(self.root, exist_ok=True)
        self._writes: dict[str, _Open] = {}  # handle -> the transfer
        self._lock = threading.Lock()
        self._last_reap = 0.0
        self.stats: dict[str, Any] = {"writes_by_node": {}, "reads_by_node": {}, "written": []}
        self._reads: dict[str, tuple[str, int, int]] = {}  # token -> file, its (device, inode)
        self._failed: dict[str, tuple[int, str]] = {}  # handle -> why its stream stopped
        self._slots = threading.BoundedSemaphore(MAX_STREAMS)  # streams served at once
        self._server = self._listen()

    def _listen(self) -> socket.socket | None:
        """The socket other nodes stream through, or None where streams are off or cannot be
        opened (then every byte goes through Ray's object store, and the log says why)."""
        port = os.environ.get(PORT_ENV, "0").strip().lower()
        if port in ("off", "no", "false"):
            return None
        if os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true"):
            return None  # these bytes would bypass Ray's TLS
        host = get_node_ip_address()
        try:
            server = socket.create_server(
                (host, int(port or 0)), backlog=128,
                family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except (OSError, ValueError) as exc:
            import logging

            logging.getLogger(__name__).warning(
                "head store: cannot listen on %s port %r (%s); other nodes send their files "
                "through Ray's object store instead (slower). %s takes a free port number, 0 "
                "for any, or off.", host, port, exc, PORT_ENV)
            return None
        threading.Thread(target=self._accept, args=(server,), daemon=True,
                         name="head-store-accept").start()
        return server

    def stream_address(self) -> tuple[str, int] | None:
        return self._server.getsockname()[:2] if self._server is not None else None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # out of descriptors, a connection reset before accept: go on
                time.sleep(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()  # too many at once: the client falls back to Ray's object store
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name="head-store-stream").start()
            except RuntimeError:  # no thread to be had
                conn.close()
                self._slots.release()

    def _serve(self, conn: socket.socket) -> None:
        """One stream: a file's bytes to write (``W``), or a file to send from an offset
        (``R``). The header must arrive whole within HEADER_S, with a token the actor handed
        out (a write's only once); otherwise the connection is closed unanswered. A valid one
        is answered with one byte, so that the client knows the stream is served."""
        try:
            with conn:
                header = _recv_exact(conn, _HEADER, deadline=time.monotonic() + HEADER_S)
                conn.settimeout(IDLE)
                kind, token = header[:1], header[1:33].decode("ascii", "replace")
                if kind == b"W" and (transfer := self._claim(token)):
                    self._receive(conn, token, transfer)
                elif kind == b"R" and token in self._reads:
                    self._send(conn, token, int.from_bytes(header[33:], "big"))
        except (OSError, EOFError):
            pass  # the writer's close, or its reader's, says what became of it
        finally:
            self._slots.release()

    def _claim(self, handle: str) -> _Open | None:
        transfer = self._writes.get(handle)
        if transfer is None:
            return None
        with transfer.lock:
            if transfer.conn is not None or transfer.file.closed:
                return None  # a second connection with the same token: refused
            transfer.conn = True
        return transfer

    def _receive(self, conn: socket.socket, handle: str, transfer: _Open) -> None:
        transfer.conn = conn  # (so that throwing the transfer away ends this stream at once)
        conn.sendall(b"+")
        try:
            offset = (_splice_in if hasattr(os, "splice") else _copy_in)(conn, transfer)
            conn.sendall(offset.to_bytes(8, "big"))  # everything is written: it may be closed
            transfer.ended = time.monotonic()
        except KeyError:
            return  # thrown away meanwhile
        except OSError as exc:
            if exc.errno not in (None, 0) and not isinstance(exc, (ConnectionError, TimeoutError)):
                # the disk's own error (a full disk): the writer asks why its stream was cut
                with self._lock:
                    self._failed[handle] = (exc.errno, exc.strerror or str(exc))
            # The writer cannot have its count: it can never commit this transfer.
            self.abort_write(handle, keep_failure=True)

    def _send(self, conn: socket.socket, token: str, offset: int) -> None:
        full, dev, ino, size, mtime = self._reads.get(token, ("", 0, 0, 0, 0))
        with open(full, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (dev, ino, size, mtime):
                return  # replaced since it was opened: the reader raises, never mixes two files
            conn.sendall(b"+")
            if offset < st.st_size:
                conn.sendfile(f, offset, st.st_size - offset)  # (os.sendfile, waiting as needed)

    def stream_failure(self, handle: str) -> tuple[int, str] | None:
        """Why the actor stopped receiving ``handle``'s stream (errno, message), if it did."""
        with self._lock:
            return self._failed.pop(handle, None)

    def open_read(self, path: str, node: str) -> tuple[int, str]:
        """(size, token) for reading ``path`` over a stream."""
        full = self._path(path)
        st = os.stat(full)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path}: not a file in the head store")
        self._count("reads_by_node", node)
        token = secrets.token_hex(16)
        with self._lock:
            while len(self._reads) >= 10_000:  # readers that were never closed
                self._reads.pop(next(iter(self._reads)))
            self._reads[token] = (full, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return st.st_size, token

    def close_read(self, token: str) -> None:
        with self._lock:
            self._reads.pop(token, None)

    def _path(self, path: str) -> str:
        return _resolve(self.root, path)

    def _count(self, kind: str, node: str) -> None:
        with self._lock:
            self.stats[kind][node] = self.stats[kind].get(node, 0) + 1

    def where(self) -> tuple[str, str, tuple[int, int]]:
        """(node, root, root's (device, inode)): a client on that node that sees the same folder
        there (not a container's or a Ray Client laptop's own) reads and writes it itself."""
        st = os.stat(self.root)
        return ray.get_runtime_context().get_node_id(), self.root, (st.st_dev, st.st_ino)

    def info(self, paths: list[str]) -> list[tuple[str, int, int, float]]:
        out = []
        for p in paths:
            full = self._path(p)
            if os.path.isdir(full):
                out.append((p, 3, 0, os.stat(full).st_mtime))
            elif os.path.isfile(full):
                st = os.stat(full)
                out.append((p, 2, st.st_size, st.st_mtime))
            else:
                out.append((p, 0, 0, 0.0))
        return out

    def listing(self, base: str, recursive: bool, allow_not_found: bool) -> list[tuple]:
        full = self._path(base)
        if not os.path.isdir(full):
            if allow_not_found:
                return []
            raise FileNotFoundError(f"{base}: no such directory in the head store")
        found = []
        for dirpath, dirnames, filenames in os.walk(full):
            rel = os.path.relpath(dirpath, full)
            for name in dirnames + filenames:
                if _PART.fullmatch(name):
                    continue  # an unfinished transfer is never listed
                found.append(os.path.normpath(os.path.join(base, rel, name)))
            if not recursive:
                break
        return self.info(found)

    def create_dir(self, path: str, recursive: bool) -> None:
        full = self._path(path)
        if recursive:
            os.makedirs(full, exist_ok=True)
        elif not os.path.isdir(full):
            os.mkdir(full)

    def delete_dir(self, path: str) -> None:
        shutil.rmtree(self._path(path))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool) -> None:
        full = self._path(path)
        if not os.path.isdir(full):
            if missing_dir_ok:
                return
            raise FileNotFoundError(path)
        for entry in os.listdir(full):
            target = os.path.join(full, entry)
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)

    def delete_file(self, path: str) -> None:
        os.remove(self._path(path))

    def move(self, src: str, dest: str) -> None:
        os.makedirs(os.path.dirname(self._path(dest)), exist_ok=True)
        os.replace(self._path(src), self._path(dest))

    def copy_file(self, src: str, dest: str) -> None:
        os.makedirs(os.path.dirname(self._path(dest)), exist_ok=True)
        shutil.copyfile(self._path(src), self._path(dest))

    def open_write(self, path: str, node: str) -> str:
        full = _file_path(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        tmp = _part_path(full)
        handle = secrets.token_hex(16)  # also the stream's token: unguessable
        self._writes[handle] = _Open(open(tmp, "wb"), tmp, full, node)
        self._count("writes_by_node", node)
        if time.monotonic() - self._last_reap > 10:
            self.reap()
        return handle

    def note_written(self, path: str, node: str) -> None:
        """A writer on this node has put ``path`` in place itself: count it like any other."""
        full = self._path(path)
        self._count("writes_by_node", node)
        self._record(full)

    def reap(self, idle_s: float = IDLE, ended_s: float = ENDED_S) -> int:
        """Drop the unfinished transfers of writers that are gone: whose node has died, that
        sent nothing for ``idle_s`` (a writer killed on a live node), or whose stream ended
        ``ended_s`` ago without their closing it. Returns how many."""
        now = self._last_reap = time.monotonic()
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        dead = [h for h, t in list(self._writes.items())
                if t.node not in alive or now - t.touched > idle_s
                or (t.ended and now - t.ended > ended_s)]
        for handle in dead:
            self.abort_write(handle)
        with self._lock:
            for handle in set(self._failed) - set(self._writes):
                del self._failed[handle]  # (asked for, or never will be)
        return len(dead)

    def open_transfers(self) -> list[tuple[str, str]]:
        """(temporary file, writer's node) of every transfer still open."""
        return [(t.tmp, t.node) for t in list(self._writes.values())]

    def write_at(self, handle: str, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` (the chunks of a transfer in flight together may arrive
        in any order)."""
        self._writes[handle].pwrite(memoryview(data), offset)
        return len(data)

    def close_write(self, handle: str) -> None:
        transfer = self._writes.pop(handle)
        with transfer.lock:  # (after a chunk still being written)
            try:
                transfer.file.close()
                os.replace(transfer.tmp, transfer.full)  # only now does it appear under its name
            except BaseException:  # a full disk, say: nothing of it stays
                _discard(transfer.file, transfer.tmp)
                raise
        self._record(transfer.full)

    def _record(self, full: str) -> None:
        with self._lock:
            if len(self.stats["written"]) < 100_000:
                self.stats["written"].append(full)

    def abort_write(self, handle: str, keep_failure: bool = False) -> None:
        transfer = self._writes.pop(handle, None)
        if not keep_failure:
            with self._lock:
                self._failed.pop(handle, None)
        if transfer is not None:
            with transfer.lock:
                _discard(transfer.file, transfer.tmp)
            if isinstance(transfer.conn, socket.socket):  # its stream ends at once
                with contextlib.suppress(OSError):
                    transfer.conn.shutdown(socket.SHUT_RDWR)

    def size(self, path: str, node: str) -> int:
        self._count("reads_by_node", node)
        return os.path.getsize(self._path(path))

    def read_chunk(self, path: str, offset: int, size: int) -> bytes:
        with open(self._path(path), "rb") as f:
            f.seek(offset)
            return f.read(size)

    def get_stats(self) -> dict[str, Any]:
        return self.stats


class _Open:
    """A file being written into the store: its temporary file, final name and writer's node.
    Its lock is held around every use of the open file, so that a chunk still in flight when the
    transfer is closed or thrown away finds the file closed, never a reused descriptor; each
    transfer has its own, so that many are written at once."""

    def __init__(self, file: Any, tmp: str, full: str, node: str) -> None:
        self.file, self.tmp, self.full, self.node = file, tmp, full, node
        self.lock = threading.Lock()
        self.conn: Any = None  # its stream, once one has claimed it
        self.touched, self.ended = time.monotonic(), 0.0

    def pwrite(self, view: memoryview, offset: int) -> None:
        with self.lock:
            if self.file.closed:
                raise KeyError("the transfer was closed or thrown away")
            _pwrite_all(self.file.fileno(), view, offset)
            self.touched = time.monotonic()

    def splice(self, pipe: int, size: int, offset: int) -> None:
        """Move ``size`` bytes waiting in ``pipe`` into the file at ``offset``."""
        with self.lock:
            if self.file.closed:
                raise KeyError("the transfer was closed or thrown away")
            while size:
                moved = os.splice(pipe, self.file.fileno(), size, offset_dst=offset)
                size, offset = size - moved, offset + moved
            self.touched = time.monotonic()


def _copy_in(conn: socket.socket, transfer: _Open) -> int:
    """Receive a stream into its transfer's file; returns the bytes written."""
    buffer = bytearray(BUFFER)
    view, offset = memoryview(buffer), 0
    while n := conn.recv_into(buffer):
        transfer.pwrite(view[:n], offset)
        offset += n
    return offset


def _splice_in(conn: socket.socket, transfer: _Open) -> int:
    """:func:`_copy_in` through a pipe (Linux's splice): the bytes go from the socket into the
    file without passing through this process, one copy fewer."""
    import fcntl
    import selectors

    out, into = os.pipe()
    ready = selectors.DefaultSelector()
    try:
        with contextlib.suppress(OSError):  # (a pipe holds 64 KiB unless told otherwise)
            fcntl.fcntl(into, fcntl.F_SETPIPE_SZ, BUFFER)
        ready.register(conn, selectors.EVENT_READ)
        offset = 0
        while True:
            try:  # (the socket is non-blocking: it has a timeout)
                n = os.splice(conn.fileno(), into, BUFFER,
                              flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                if not ready.select(IDLE):
                    raise TimeoutError(f"the stream sent nothing for {IDLE:.0f} s") from None
                continue
            if not n:
                return offset
            transfer.splice(out, n, offset)
            offset += n
    finally:
        ready.close()
        os.close(out)
        os.close(into)


def _resolve(root: str, path: str) -> str:
    """``path`` as an absolute path under ``root``; refused if it would leave it."""
    full = os.path.realpath(path if os.path.isabs(path) else os.path.join(root, path))
    if full != root and not full.startswith(root + os.sep):
        raise PermissionError(f"{path}: outside the head store root {root}")
    return full


def _file_path(root: str, path: str) -> str:
    """Like :func:`_resolve`, for a file to write: never the root itself (its temporary file
    would sit outside the root)."""
    full = _resolve(root, path)
    if full == root:
        raise IsADirectoryError(f"{path}: the head store's root is a folder, not a file")
    return full


def _part_path(full: str) -> str:
    """The temporary name a file has while it is written (matched by ``_PART``, never listed)."""
    return os.path.join(os.path.dirname(full), f".{os.path.basename(full)}.part-{uuid.uuid4().hex}")


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _recv_exact(conn: socket.socket, size: int, deadline: float = 0.0) -> bytes:
    """``size`` bytes from ``conn``; all of them before ``deadline`` (monotonic), if given."""
    data = bytearray()
    while len(data) < size:
        if deadline:
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
        got = conn.recv(size - len(data))
        if not got:
            raise EOFError(f"the head store's stream closed after {len(data)} of {size} bytes")
        data += got
    return bytes(data)


def _discard(f: Any, tmp: str) -> None:
    """Close a transfer's temporary file and remove it, even when closing fails (its buffered
    bytes cannot be flushed to a full disk)."""
    try:
        f.close()
    except OSError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


_TELL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="head-store-tell")
_TOLD: list[Any] = []  # this process's tells: futures of the actor calls' refs


def drain() -> None:
    """Wait until the actor has counted every file this process wrote directly."""
    while _TOLD:
        with contextlib.suppress(Exception):
            ray.get(_TOLD.pop(0).result())


class _Transfer(io.RawIOBase):
    """A write-only stream into the head store: committed under its name when closed normally,
    thrown away when closed while an exception unwinds or when committing fails."""

    def __init__(self) -> None:
        self.node = ray.get_runtime_context().get_node_id()
        # The exception being handled where the stream was opened, if any (a write made inside
        # an ``except`` block, as Tune's failure callbacks are): not a reason to throw it away.
        self.handling = sys.exc_info()[1]
        self.broken = False  # a write failed: the data is incomplete, whatever comes next
        self.dropped = False  # collected without being closed

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self._write(data)
        except BaseException:
            self.broken = True
            raise

    def _write(self, data: Any) -> int:
        raise NotImplementedError

    def _commit(self) -> None:
        """Put the whole file in place under its name."""
        raise NotImplementedError

    def _abort(self) -> None:
        """Throw the transfer away: nothing of it stays."""
        raise NotImplementedError

    def close(self) -> None:
        if self.closed:
            return
        if self.broken or sys.exc_info()[1] not in (None, self.handling):
            # A write failed, or closed while an exception unwinds (pyarrow's ``with`` closes
            # on error): the data is incomplete, so it is thrown away, never committed.
            try:
                self._abort()
            finally:
                super().close()
            return
        try:
            self._commit()
        except BaseException:
            self._abort()
            raise
        finally:
            super().close()

    def __del__(self) -> None:
        # Dropped without being closed (a copy that failed half-way on pyarrow's threads): the
        # data may be incomplete, so it is thrown away (io's own __del__ would commit it).
        if not self.closed:
            self.broken = self.dropped = True
            with contextlib.suppress(Exception):
                self.close()


class _Writer(_Transfer):
    """Ships the file to the head store's actor a chunk at a time, ``WINDOW`` chunks in flight
    (each put in Ray's object store, which the actor pulls from): the path from other nodes."""

    def __init__(self, actor: Any, path: str) -> None:
        super().__init__()
        self.actor = actor
        self.handle = ray.get(actor.open_write.remote(path, self.node))
        self.buffer = bytearray()
        self.offset = 0
        self.in_flight: list[Any] = []

    def _write(self, data: Any) -> int:
        self.buffer += bytes(data)
        while len(self.buffer) >= CHUNK:
            self._ship(bytes(self.buffer[:CHUNK]))
            del self.buffer[:CHUNK]
        return len(data)

    def _ship(self, data: bytes) -> None:
        if len(self.in_flight) >= WINDOW:  # back-pressure: the oldest chunk must have landed
            ray.get(self.in_flight.pop(0))
        self.in_flight.append(self.actor.write_at.remote(self.handle, self.offset, ray.put(data)))
        self.offset += len(data)

    def _commit(self) -> None:
        if self.buffer:
            self._ship(bytes(self.buffer))
            self.buffer.clear()
        ray.get(self.in_flight)  # every chunk written (a full disk is raised here) ...
        self.in_flight.clear()
        ray.get(self.actor.close_write.remote(self.handle))  # ... before the rename

    def _abort(self) -> None:
        if self.in_flight and not self.dropped:  # let them land first (errors don't matter)
            ray.wait(self.in_flight, num_returns=len(self.in_flight), timeout=60)
        _abort_write(self.actor, self.handle, wait=not self.dropped)


def _abort_write(actor: Any, handle: str, wait: bool = True) -> None:
    """Have the actor throw a transfer away; wait for it (a while: the error that brought us
    here matters more than this one), except when a dropped stream is collected (a finaliser
    must not block whatever thread the collector runs on)."""
    with contextlib.suppress(Exception):
        ref = actor.abort_write.remote(handle)
        if wait:
            ray.get(ref, timeout=60)


class _Unreachable(ConnectionError):
    """The actor's stream port does not serve this process: use Ray's object store."""


_UNREACHABLE: dict[tuple, float] = {}  # stream address -> until when this process skips it
_RETRY_S = 300.0


def _connect(address: tuple[str, int], kind: bytes, token: str, offset: int = 0) -> socket.socket:
    """A stream to the actor whose header it has accepted (its one-byte answer)."""
    address = tuple(address)
    if _UNREACHABLE.get(address, 0.0) > time.monotonic():
        raise _Unreachable(f"head store stream port {address[0]}:{address[1]} (unreachable "
                           "a moment ago)")
    try:
        conn = socket.create_connection(address, timeout=HEADER_S)
        try:
            conn.sendall(kind + token.encode("ascii") + offset.to_bytes(8, "big"))
            _recv_exact(conn, 1)
        except BaseException:
            conn.close()
            raise
    except (OSError, EOFError) as exc:
        import logging

        _UNREACHABLE[address] = time.monotonic() + _RETRY_S
        logging.getLogger(__name__).warning(
            "head store stream port %s:%s does not answer (%s): for the next %.0f s this process "
            "sends and fetches checkpoints through Ray's object store instead (slower). Open "
            "that port to the other nodes, or start Ray on the head node with %s set to a port "
            "that is open.", address[0], address[1], exc or type(exc).__name__, _RETRY_S,
            PORT_ENV)
        raise _Unreachable(f"head store stream port {address[0]}:{address[1]}: "
                           f"{exc or type(exc).__name__}") from exc
    conn.settimeout(IDLE)
    return conn


class _StreamWriter(_Transfer):
    """Sends the file to the actor over a connection of its own, as fast as the link and the
    head's disk allow (nothing held here but what pyarrow hands over): the path from other nodes.
    The actor writes the bytes under the transfer's temporary name, says how many it wrote when
    the stream ends, and the file is renamed into place only if that is all of them."""

    def __init__(self, actor: Any, address: tuple[str, int], path: str) -> None:
        super().__init__()
        self.actor = actor
        self.handle = ray.get(actor.open_write.remote(path, self.node))
        self.path, self.sent, self.conn = path, 0, None
        try:
            self.conn = _connect(address, b"W", self.handle)
        except BaseException:
            _abort_write(actor, self.handle)
            raise

    def _write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            for start in range(0, len(view), BUFFER):  # (the timeout is per call of sendall)
                self.conn.sendall(view[start:start + BUFFER])
        except OSError as exc:
            raise self._why(exc) from exc
        self.sent += len(view)
        return len(view)

    def _why(self, exc: BaseException) -> OSError:
        """The actor's own error (a full disk) when it cut the stream, else the link's; either
        way naming the file."""
        with contextlib.suppress(Exception):
            if failure := ray.get(self.actor.stream_failure.remote(self.handle), timeout=60):
                return OSError(failure[0], failure[1], self.path)
        return OSError(getattr(exc, "errno", None),
                       f"the stream to the head store broke ({exc or type(exc).__name__})",
                       self.path)

    def _commit(self) -> None:
        try:
            self.conn.shutdown(socket.SHUT_WR)
            written = int.from_bytes(_recv_exact(self.conn, 8), "big")
        except (OSError, EOFError) as exc:
            raise self._why(exc) from exc
        finally:
            self.conn.close()
        if written != self.sent:
            raise OSError(f"{self.path}: the head store wrote {written} of {self.sent} bytes")
        ray.get(self.actor.close_write.remote(self.handle))

    def _abort(self) -> None:
        if self.conn is not None:
            self.conn.close()
        _abort_write(self.actor, self.handle, wait=not self.dropped)


class _StreamReader(io.RawIOBase):
    """A seekable read-only stream over a file in the head store, sent by the actor over a
    connection of its own from the current offset on (a seek elsewhere opens a new one). The
    file read is the one that was there when the reader opened: if it is replaced meanwhile, the
    read fails instead of mixing the two."""

    def __init__(self, actor: Any, address: tuple[str, int], path: str) -> None:
        self.actor, self.address, self.path, self.pos, self.conn = actor, address, path, 0, None
        self.length, self.token = ray.get(
            actor.open_read.remote(path, ray.get_runtime_context().get_node_id()))
        if self.length:
            try:
                self.conn = _connect(address, b"R", self.token)
            except BaseException:
                self.close()
                raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.length - self.pos)
        if want <= 0:
            return 0
        view, got = memoryview(buffer).cast("B"), 0
        try:
            while got < want:  # fill what was asked: fewer, larger reads for pyarrow
                if self.conn is None:
                    self.conn = self._reconnect(self.pos + got)
                n = self.conn.recv_into(view[got:want])
                if not n:  # the actor gave the stream up (idle too long): once more from here
                    self.conn.close()
                    self.conn = self._reconnect(self.pos + got)
                    if not (n := self.conn.recv_into(view[got:want])):
                        raise OSError(f"{self.path}: the head store stopped sending at byte "
                                      f"{self.pos + got} of {self.length} (the file was "
                                      "replaced or removed while it was read)")
                got += n
        except BaseException:
            if self.conn is not None:  # out of step now: the next read starts afresh
                self.conn.close()
                self.conn = None
            self.pos += got
            raise
        self.pos += got
        return got

    def _reconnect(self, offset: int) -> socket.socket:
        try:
            return _connect(self.address, b"R", self.token, offset)
        except _Unreachable as exc:
            raise OSError(f"{self.path}: the head store no longer sends it from byte {offset} "
                          f"(replaced or removed while it was read, or {exc})") from exc

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence not in (0, 1, 2):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        pos = max(0, (0, self.pos, self.length)[whence] + offset)
        if pos != self.pos and self.conn is not None:
            self.conn.close()
            self.conn = None
        self.pos = pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def size(self) -> int:
        return self.length

    def close(self) -> None:
        if not self.closed:
            if self.conn is not None:
                self.conn.close()
            with contextlib.suppress(Exception):
                self.actor.close_read.remote(self.token)
        super().close()


class _DirectWriter(_Transfer):
    """On the head node: the bytes go straight into a temporary file in the store's folder,
    renamed into place when whole, as the actor would; the actor is only told, to count it,
    from a thread of its own (finding the actor costs a process its first write otherwise)."""

    def __init__(self, handler: HeadStoreHandler, root: str, path: str) -> None:
        super().__init__()
        self.handler = handler
        self.path = _file_path(root, path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.tmp = _part_path(self.path)
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by _commit or _abort)

    def _write(self, data: Any) -> int:
        return self.file.write(data)

    def _commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)  # only now does the file appear under its real name
        path, node, handler = self.path, self.node, self.handler
        with contextlib.suppress(RuntimeError):  # (the interpreter is exiting: the file is whole)
            _TOLD.append(_TELL.submit(lambda: handler.actor.note_written.remote(path, node)))

    def _abort(self) -> None:
        _discard(self.file, self.tmp)


class _Reader(io.RawIOBase):
    """A seekable read-only stream over a file in the head store, fetched a chunk at a time."""

    def __init__(self, actor: Any, path: str) -> None:
        self.actor, self.path, self.pos = actor, path, 0
        self.length = ray.get(actor.size.remote(path, ray.get_runtime_context().get_node_id()))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), CHUNK, self.length - self.pos)
        if want <= 0:
            return 0
        data = ray.get(self.actor.read_chunk.remote(self.path, self.pos, want))
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def size(self) -> int:
        return self.length


class HeadStoreHandler(pafs.FileSystemHandler):
    """pyarrow filesystem handler forwarding every operation to the :class:`HeadStore` actor."""

    def __init__(self, actor_name: str, namespace: str = NAMESPACE,
                 place: tuple | None = None) -> None:
        """``place``: the actor's (node, root, root's (device, inode)), so that a process on that
        node writes there without asking first; looked up from the actor when not given."""
        self.actor_name, self.namespace, self.place = actor_name, namespace, place
        self._actor: Any = None
        self._asked = ""  # the node this handler last asked the actor from
        self._address: Any = False  # the actor's stream address; None: stream through Ray

    def __getstate__(self) -> dict[str, Any]:
        return {"actor_name": self.actor_name, "namespace": self.namespace, "place": self.place}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["actor_name"], state["namespace"], state.get("place"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeadStoreHandler) and other.actor_name == self.actor_name

    def __ne__(self, other: object) -> bool:
        return not self == other

    @property
    def actor(self) -> Any:
        if self._actor is None:
            self._actor = ray.get_actor(self.actor_name, namespace=self.namespace)
        return self._actor

    def local_root(self) -> str:
        """The store's folder if this process runs on the head node (and may use it), else ""."""
        if not DIRECT:
            return ""
        here = ray.get_runtime_context().get_node_id()
        if self._asked != here and (self.place is None or len(self.place) != 3
                                    or self.place[0] != here):
            # Off the head node, or a place from an earlier cluster (a resumed experiment's
            # pickled state): ask the actor where it is now (once in this process).
            self.place, self._asked = tuple(ray.get(self.actor.where.remote())), here
        node, root, folder = self.place
        if node != here:
            return ""
        try:
            st = os.stat(root)
        except OSError:
            return ""
        return root if (st.st_dev, st.st_ino) == tuple(folder) else ""

    def stream_address(self) -> tuple[str, int] | None:
        """Where this process streams bytes to and from the actor, or None: through Ray."""
        if not STREAM:
            return None
        if self._address is False:
            self._address = ray.get(self.actor.stream_address.remote())
        return self._address

    def get_type_name(self) -> str:
        return "metatune-head-store"

    def normalize_path(self, path: str) -> str:
        return path

    def _infos(self, raw: list[tuple]) -> list[pafs.FileInfo]:
        kinds = {0: pafs.FileType.NotFound, 2: pafs.FileType.File, 3: pafs.FileType.Directory}
        return [pafs.FileInfo(p, kinds[t], size=s if t == 2 else None, mtime=m if t else None)
                for p, t, s, m in raw]

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._infos(ray.get(self.actor.info.remote(list(paths))))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._infos(ray.get(self.actor.listing.remote(
            selector.base_dir, selector.recursive, selector.allow_not_found)))

    def create_dir(self, path: str, recursive: bool) -> None:
        ray.get(self.actor.create_dir.remote(path, recursive))

    def delete_dir(self, path: str) -> None:
        ray.get(self.actor.delete_dir.remote(path))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        ray.get(self.actor.delete_dir_contents.remote(path, missing_dir_ok))

    def delete_root_dir_contents(self) -> None:
        raise PermissionError("refusing to delete the whole head store")

    def delete_file(self, path: str) -> None:
        ray.get(self.actor.delete_file.remote(path))

    def move(self, src: str, dest: str) -> None:
        ray.get(self.actor.move.remote(src, dest))

    def copy_file(self, src: str, dest: str) -> None:
        ray.get(self.actor.copy_file.remote(src, dest))

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        root = self.local_root()
        if root:
            ray.get(self.actor.size.remote(path, ray.get_runtime_context().get_node_id()))
            return pafs.LocalFileSystem().open_input_file(_resolve(root, path))
        reader: io.RawIOBase | None = None
        if address := self.stream_address():
            try:
                reader = _StreamReader(self.actor, address, path)
            except _Unreachable:
                pass  # (said once in the log)
        if reader is None:  # a chunk per call: buffer whole chunks
            return pyarrow.PythonFile(io.BufferedReader(_Reader(self.actor, path), CHUNK), "r")
        return pyarrow.PythonFile(io.BufferedReader(reader, 1 << 20), mode="r")

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self.open_input_stream(path)

    def open_output_stream(self, path: str, metadata: Any = None) -> pyarrow.NativeFile:
        root = self.local_root()
        if root:
            return pyarrow.PythonFile(_DirectWriter(self, root, path), mode="w")
        writer: _Transfer | None = None
        if address := self.stream_address():
            try:
                writer = _StreamWriter(self.actor, address, path)
            except _Unreachable:
                pass  # (said once in the log)
        return pyarrow.PythonFile(writer or _Writer(self.actor, path), mode="w")

    def open_append_stream(self, path: str, metadata: Any = None) -> pyarrow.NativeFile:
        raise NotImplementedError("the head store does not append; Tune never asks it to")


def actor_name(root: str) -> str:
    return "metatune-head-store-" + hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12]


def start(root: str | Path) -> pafs.PyFileSystem:
    """Start (or find) the head-store actor for ``root`` on the head node; return the filesystem."""
    root = str(root)
    name = actor_name(root)
    actor = HeadStore.options(
        name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(head_node_id(), soft=False),
    ).remote(root)
    return pafs.PyFileSystem(HeadStoreHandler(name, place=tuple(ray.get(actor.where.remote()))))


def stats(root: str | Path) -> dict[str, Any]:
    drain()  # (this process's own direct writes counted first)
    return ray.get(ray.get_actor(actor_name(str(root)), namespace=NAMESPACE).get_stats.remote())
