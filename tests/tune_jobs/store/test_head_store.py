"""The head store: a pyarrow filesystem whose every operation runs in an actor on the head node."""

from __future__ import annotations

import os
import time

import pyarrow.fs as pafs
import pytest

from tune_jobs.store import head_store

pytestmark = pytest.mark.ray


@pytest.fixture(params=["direct", "streamed", "shipped"])
def store(request, ray_local, tmp_path, monkeypatch):
    """The store as a process on the head node uses it (direct), and as one on another node
    does (every byte streamed to the actor over its socket, or shipped through Ray's object store
    where that socket cannot be reached), all on this one node."""
    monkeypatch.setattr(head_store, "DIRECT", request.param == "direct")
    monkeypatch.setattr(head_store, "STREAM", request.param == "streamed")
    return head_store.start(tmp_path / "store"), tmp_path / "store"


@pytest.fixture
def shipped(ray_local, tmp_path, monkeypatch):
    monkeypatch.setattr(head_store, "DIRECT", False)
    monkeypatch.setattr(head_store, "STREAM", False)
    return head_store.start(tmp_path / "store"), tmp_path / "store"


@pytest.fixture
def streamed(ray_local, tmp_path, monkeypatch):
    monkeypatch.setattr(head_store, "DIRECT", False)
    return head_store.start(tmp_path / "store"), tmp_path / "store"


def test_large_file_streams_in_chunks_and_round_trips(shipped, monkeypatch):
    fs, root = shipped
    payload = os.urandom(2 * head_store.CHUNK + 12345)
    biggest = []
    original = head_store._Writer._ship

    def spy(self, data):
        biggest.append(len(data))
        assert len(self.buffer) <= 2 * head_store.CHUNK  # never a whole-file copy in RAM
        return original(self, data)

    monkeypatch.setattr(head_store._Writer, "_ship", spy)
    with fs.open_output_stream(f"{root}/exp/trial/checkpoint_000000/tensors.bin") as f:
        for i in range(0, len(payload), 1 << 20):
            f.write(payload[i:i + (1 << 20)])
    assert max(biggest) == head_store.CHUNK and len(biggest) == 3
    assert (root / "exp/trial/checkpoint_000000/tensors.bin").read_bytes() == payload
    with fs.open_input_file(f"{root}/exp/trial/checkpoint_000000/tensors.bin") as f:
        assert f.read() == payload
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/exp", recursive=True))
    kinds = {os.path.basename(i.path): i.type for i in infos}
    assert kinds["tensors.bin"] == pafs.FileType.File
    assert kinds["checkpoint_000000"] == pafs.FileType.Directory


def test_on_the_head_node_the_bytes_skip_the_actor(ray_local, tmp_path, monkeypatch):
    """A writer on the head node writes the file itself under a temporary name and renames it
    into place: nothing is shipped, and the actor is told, so the file is counted all the same."""
    fs = head_store.start(tmp_path / "store")
    root = tmp_path / "store"
    shipped = []
    monkeypatch.setattr(head_store._Writer, "_ship", lambda self, data: shipped.append(data))
    before = head_store.stats(root)["writes_by_node"]
    payload = os.urandom(2 * head_store.CHUNK + 99)
    with fs.open_output_stream(f"{root}/exp/ck/model.safetensors") as f:
        f.write(payload)
        assert not (root / "exp/ck/model.safetensors").exists()  # not before it is closed
    assert shipped == [] and fs.handler.local_root() == os.path.realpath(root)
    assert (root / "exp/ck/model.safetensors").read_bytes() == payload
    with fs.open_input_file(f"{root}/exp/ck/model.safetensors") as f:
        assert f.read() == payload
    deadline = time.monotonic() + 30  # the actor is told without waiting for it
    while sum(head_store.stats(root)["writes_by_node"].values()) == sum(before.values()):
        assert time.monotonic() < deadline, "the direct write was never counted"
        time.sleep(0.05)
    assert os.path.realpath(root / "exp/ck/model.safetensors") in head_store.stats(root)["written"]
    with pytest.raises(PermissionError, match="outside the head store"):
        fs.open_input_file(f"{root}/../escape.bin")


def test_operations_tune_uses(store, tmp_path):
    fs, root = store
    fs.create_dir(f"{root}/a/b", recursive=True)
    with fs.open_output_stream(f"{root}/a/b/x.json") as f:
        f.write(b"{}")
    fs.copy_file(f"{root}/a/b/x.json", f"{root}/a/y.json")
    fs.move(f"{root}/a/y.json", f"{root}/a/z.json")
    assert fs.get_file_info([f"{root}/a/z.json"])[0].size == 2
    assert fs.get_file_info([f"{root}/nope"])[0].type == pafs.FileType.NotFound
    local = tmp_path / "local"
    pafs.copy_files(f"{root}/a", str(local), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    assert (local / "b" / "x.json").read_bytes() == b"{}"
    fs.delete_dir_contents(f"{root}/a")
    assert os.listdir(root / "a") == []
    with pytest.raises(PermissionError, match="outside the head store"):
        fs.create_dir("/etc/metatune-escape", recursive=True)


def test_broken_transfer_leaves_no_file_that_looks_whole(store):
    fs, root = store
    with pytest.raises(RuntimeError, match="link down"):
        with fs.open_output_stream(f"{root}/exp/ck/model.safetensors") as f:
            f.write(os.urandom(head_store.CHUNK + 10))  # one chunk already shipped
            raise RuntimeError("link down")
    assert not (root / "exp/ck/model.safetensors").exists()
    names = os.listdir(root / "exp/ck")
    assert all(".part-" in n for n in names)  # at most an unfinished temp file
    listed = fs.get_file_info(pafs.FileSelector(f"{root}/exp/ck"))
    assert listed == []  # and nobody is ever shown it


def test_only_the_exact_transfer_name_is_hidden(store):
    """A state file whose name merely contains ".part-" is listed, so the signature check sees
    it; only open_write's own temporary name (.NAME.part-<32 hex>) is hidden."""
    fs, root = store
    for name in ("evil.part-1.pkl", ".x.part-zz.pkl", f".x.part-{'a' * 32}"):
        (root / "exp").mkdir(parents=True, exist_ok=True)
        (root / "exp" / name).write_bytes(b"x")
    listed = {os.path.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(f"{root}/exp"))}
    assert listed == {"evil.part-1.pkl", ".x.part-zz.pkl"}


def test_a_write_made_while_handling_an_exception_is_kept(store):
    """Tune calls its failure callbacks inside an ``except`` block: a file written there (the
    results kept by tune_jobs.run.trial_history) is whole and must be committed, while an error
    raised inside the write still throws the write away."""
    fs, root = store
    try:
        raise ConnectionError("the trial's node died")
    except ConnectionError:
        with fs.open_output_stream(f"{root}/exp/trial/result.json") as f:
            f.write(b'{"units": 1}\n')
        with pytest.raises(RuntimeError, match="link down"):
            with fs.open_output_stream(f"{root}/exp/trial/progress.csv") as f:
                f.write(b"units\n1\n")
                raise RuntimeError("link down") from None
    assert (root / "exp/trial/result.json").read_bytes() == b'{"units": 1}\n'
    assert not (root / "exp/trial/progress.csv").exists()


def test_a_transfer_that_cannot_be_closed_leaves_no_temporary_file(tmp_path):
    """On a full disk closing the temporary file fails (its buffer cannot be flushed): the
    file is removed all the same."""
    from tune_jobs.store.head_store import _discard

    tmp = tmp_path / ".x.part-1"
    tmp.write_bytes(b"partial")

    class Full:
        def close(self):
            raise OSError(28, "No space left on device")

    _discard(Full(), str(tmp))
    assert not tmp.exists()


def test_reads_at_any_offset_across_chunks(store):
    fs, root = store
    payload = os.urandom(3 * head_store.CHUNK + 777)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    (root / "exp" / "big.bin").write_bytes(payload)
    with fs.open_input_file(f"{root}/exp/big.bin") as f:
        for start, size in ((head_store.CHUNK - 5, 10), (0, 3), (2 * head_store.CHUNK + 1,
                            head_store.CHUNK + 776), (17, 2 * head_store.CHUNK)):
            f.seek(start)
            assert f.read(size) == payload[start:start + size]
        f.seek(0)
        assert f.read() == payload


def test_a_stream_dropped_unclosed_or_after_a_failed_write_is_thrown_away(store):
    """pyarrow's copy_files drops a stream whose copy failed without closing it; and a write
    that raised leaves the data incomplete: neither is ever committed under its name."""
    import gc

    fs, root = store
    f = fs.open_output_stream(f"{root}/exp/dropped.bin")
    f.write(os.urandom(1000))
    del f
    gc.collect()
    local = fs.handler.local_root()
    raw = (head_store._DirectWriter(fs.handler, local, f"{root}/exp/failed.bin") if local
           else head_store._Writer(fs.handler.actor, f"{root}/exp/failed.bin"))
    raw.write(b"some bytes")
    with pytest.raises(TypeError):
        raw.write(object())  # a write that fails half-way
    raw.close()
    deadline = time.monotonic() + 10  # (a shipped transfer's abort is asynchronous)
    while any(".part-" in p.name for p in (root / "exp").iterdir()):
        assert time.monotonic() < deadline, list((root / "exp").iterdir())
        time.sleep(0.05)
    assert sorted(os.listdir(root / "exp")) == []
    with pytest.raises(IsADirectoryError, match="root is a folder"):
        with fs.open_output_stream(str(root)) as f:
            f.write(b"x")


def test_signed_state_over_the_store_keeps_the_old_file_when_its_writer_raises(store):
    from tests.factories import rewrite_state_and_fail
    from tune_jobs.store import signing

    fs, root = store
    signed = signing.signing(fs)
    rewrite_state_and_fail(signed, f"{root}/exp")
    assert (root / "exp/tuner.pkl").read_bytes() == b"the whole old state"
    assert signing.verify(signed, f"{root}/exp") == 1


@pytest.mark.parametrize("mode", ["direct", "streamed", "shipped"])
def test_a_full_head_disk_names_the_file_and_leaves_nothing(ray_local, tmp_path, monkeypatch,
                                                            mode):
    """The head node's disk fills up half-way through a file, on each path: the writer gets a
    full-disk error (ENOSPC, or Ray's wrapping of it, which says so), and neither the file nor
    its temporary part is left."""
    import errno

    from tests.conftest import small_tmpfs

    monkeypatch.setattr(head_store, "DIRECT", mode == "direct")
    monkeypatch.setattr(head_store, "STREAM", mode == "streamed")
    with small_tmpfs(tmp_path / "tiny", "1m") as disk:
        fs = head_store.start(disk / "store")
        with pytest.raises(OSError) as failed:
            with fs.open_output_stream(f"{disk}/store/exp/model.safetensors") as f:
                for _ in range(3):
                    f.write(os.urandom(1 << 20))
        assert failed.value.errno == errno.ENOSPC or "No space left" in str(failed.value)
        if mode == "streamed":  # the actor's own error reaches the writer, with the file's name
            assert failed.value.errno == errno.ENOSPC
            assert failed.value.filename == f"{disk}/store/exp/model.safetensors"
        assert os.listdir(disk / "store" / "exp") == []


def test_a_stream_without_a_token_the_actor_gave_is_refused(streamed):
    """The actor's port is open to the network: a connection must present a token handed out
    through Ray's authenticated calls, or it is closed without a byte written or read."""
    import socket

    fs, root = streamed
    (root / "exp").mkdir(parents=True)
    (root / "exp" / "secret.json").write_bytes(b'{"token": "x"}')
    address = fs.handler.stream_address()
    assert address is not None
    for kind in (b"W", b"R"):
        with socket.create_connection(address, timeout=30) as conn:
            conn.sendall(kind + b"0" * 32 + bytes(8) + b"payload")
            conn.shutdown(socket.SHUT_WR)
            try:
                answer = conn.recv(64)
            except ConnectionResetError:  # closed with "payload" unread
                answer = b""
            assert answer == b""  # closed unanswered
    assert sorted(p.name for p in (root / "exp").iterdir()) == ["secret.json"]


def _actor(root):
    import ray

    return ray.get_actor(head_store.actor_name(str(root)), namespace=head_store.NAMESPACE)


def test_a_write_token_serves_one_stream_and_a_writer_gone_is_reaped(streamed):
    """A second connection with a write's token (one seen on the wire, say) is refused; a
    stream that ended without its writer closing it (the writer killed) is thrown away."""
    import socket

    import ray

    fs, root = streamed
    actor = _actor(root)
    node = ray.get_runtime_context().get_node_id()
    handle = ray.get(actor.open_write.remote("exp/one.bin", node))
    address = fs.handler.stream_address()
    first = head_store._connect(address, b"W", handle)
    with pytest.raises(head_store._Unreachable):
        head_store._connect(address, b"W", handle)
    head_store._UNREACHABLE.clear()  # (the refusal marked the port as unreachable)
    first.sendall(b"ours")
    first.shutdown(socket.SHUT_WR)  # the stream ends, but its writer never closes the transfer
    assert head_store._recv_exact(first, 8) == (4).to_bytes(8, "big")
    first.close()
    assert ray.get(actor.open_transfers.remote())  # still open: its writer may yet close it
    assert ray.get(actor.reap.remote(ended_s=0.0)) == 1
    assert ray.get(actor.open_transfers.remote()) == []
    assert os.listdir(root / "exp") == []


def test_an_unreachable_stream_port_falls_back_to_rays_object_store(streamed, caplog):
    import socket

    fs, root = streamed
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    fs.handler._address = ("127.0.0.1", port)
    try:
        with fs.open_output_stream(f"{root}/exp/model.bin") as f:
            f.write(b"x" * 1000)
        with fs.open_input_file(f"{root}/exp/model.bin") as f:
            assert f.read() == b"x" * 1000
        assert ("127.0.0.1", port) in head_store._UNREACHABLE
        assert "does not answer" in caplog.text and head_store.PORT_ENV in caplog.text
    finally:
        head_store._UNREACHABLE.clear()
    assert (root / "exp/model.bin").read_bytes() == b"x" * 1000


def test_a_file_replaced_while_it_is_read_is_never_mixed(streamed):
    """A reader over a stream reads the file that was there when it opened: once that file is
    replaced, a read that needs a new stream fails instead of going on in the new file."""
    fs, root = streamed
    old, new = os.urandom(3 << 20), os.urandom(3 << 20)
    with fs.open_output_stream(f"{root}/exp/ck.bin") as f:
        f.write(old)
    with fs.open_input_file(f"{root}/exp/ck.bin") as f:
        assert f.read(1000) == old[:1000]
        with fs.open_output_stream(f"{root}/exp/ck.bin") as g:
            g.write(new)
        f.seek(2 << 20)  # a new stream from there
        with pytest.raises(OSError, match="replaced or removed"):
            f.read(1000)
    with fs.open_input_file(f"{root}/exp/ck.bin") as f:
        assert f.read() == new


@pytest.mark.parametrize("receive", ["_splice_in", "_copy_in"])
def test_the_actor_receives_a_stream_whole_with_or_without_splice(tmp_path, receive):
    """The actor's two ways of landing a stream in its file (Linux's splice, and the plain copy
    used where there is none) write the same bytes at the same offsets."""
    import socket
    import threading

    if receive == "_splice_in" and not hasattr(os, "splice"):
        pytest.skip("no os.splice on this platform")
    payload = os.urandom(3 * head_store.BUFFER + 5)
    tmp = tmp_path / ".f.part-x"
    transfer = head_store._Open(open(tmp, "wb"), str(tmp), str(tmp_path / "f"), "node")
    ours, theirs = socket.socketpair()
    ours.settimeout(30)  # non-blocking underneath, as the actor's streams are
    sender = threading.Thread(target=lambda: (theirs.sendall(payload), theirs.close()))
    sender.start()
    assert getattr(head_store, receive)(ours, transfer) == len(payload)
    sender.join()
    transfer.file.close()
    assert tmp.read_bytes() == payload
