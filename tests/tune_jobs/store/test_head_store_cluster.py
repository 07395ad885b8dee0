"""A multi-node cluster on one machine (Ray's cluster_utils): trials run on worker nodes, every
result and checkpoint goes through the head store, and a trial whose node dies restores from the
head store on another node."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from ray import tune

from tests.conftest import TEXT_OPTS, VISION_OPTS
from tune_jobs.run import search
from tune_jobs.spec import presets
from tune_jobs.store import head_store, tune_storage

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.slow]
# Tune pickles its callbacks; the cluster handle (locks, processes) is reached through here.
_LIVE: dict = {}


class KillNodeAfterCheckpoint(tune.Callback):
    """Kills the node of the first trial that reports unit 2 (its checkpoint is stored).

    A lost machine takes its processes with it. ``remove_node`` kills the node's raylet, but the
    trial's worker outlives it for a moment and can report units 3 and 4 straight to the driver
    before it notices (seen in CI); so the trial's process is killed too, as the machine would."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        killed, c, workers = _LIVE["killed"], _LIVE["cluster"], _LIVE["workers"]
        if not killed and result["units"] == 2:
            node = next(w for w in workers if w.node_id == result["node_id"])
            killed.update(trial=trial.trial_id, node=node.node_id)
            c.remove_node(node, allow_graceful=False)
            with contextlib.suppress(ProcessLookupError):  # it may already have gone
                os.kill(result["pid"], signal.SIGKILL)


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # leave the shared local instance; the next test that needs it restarts it
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # trials can't run there
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def test_trials_on_workers_store_on_head_and_restore_elsewhere(cluster, syn_dir, cache_dir,
                                                                tmp_path):
    import ray

    c, workers = cluster
    storage = tmp_path / "head_disk"
    spec = presets.build("smoke", overrides={
        "task_options": {"newsgroups": TEXT_OPTS, "cifar_transfer": VISION_OPTS},
        "name": "cluster", "storage": str(storage), "data_dir": str(syn_dir),
        "data_kind": "synthetic", "cache_dir": cache_dir}, sets=[
        "num_samples=2", "asha.max_t=4", "asha.grace_period=1", "asha.reduction_factor=8",
        "max_failures=2", "space.lr_scale=[0.5, 2.0]"])
    storage_fs = tune_storage.storage_filesystem(spec, connected=True)
    assert storage_fs.head_store and head_store.on_head_node()
    worker_ids = {w.node_id for w in workers}
    killed: dict[str, str] = {}
    _LIVE.update(killed=killed, cluster=c, workers=workers)
    results = search.run_search(spec, storage_fs, callbacks=[KillNodeAfterCheckpoint()])
    assert killed, "no trial reached unit 2"
    assert not results.errors, results.errors
    victim = next(r for r in results if r.metrics["trial_id"] == killed["trial"])
    history = victim.metrics_dataframe
    assert set(history["node_id"]) <= worker_ids  # trials ran on workers only
    shown = history[["units", "node_id"]].to_string()
    assert history["node_id"].nunique() == 2, shown  # ... and the victim moved to the other worker
    units = history["units"].tolist()
    assert units[-1] == 4 and units.count(1) == 1, shown  # restored, not restarted

    stats = head_store.stats(storage)
    survivor = (worker_ids - {killed["node"]}).pop()
    assert stats["reads_by_node"].get(survivor, 0) > 0  # the restore read the head store
    assert set(stats["writes_by_node"]) - {head_store.head_node_id()} <= worker_ids
    written = set(stats["written"])
    exp = storage / "cluster"
    ours = {"metatune_spec.json"}
    partial = []
    for dirpath, _, files in os.walk(exp):
        for name in files:
            path = os.path.realpath(os.path.join(dirpath, name))
            if ".part-" in name:  # a transfer the node's death cut short
                partial.append(path)
                continue
            assert path in written or name in ours, f"{path} did not come through the head store"
    for path in partial:  # ... never appears under its real name unless written whole later
        final = os.path.join(os.path.dirname(path), os.path.basename(path)[1:].split(".part-")[0])
        assert not os.path.exists(final) or final in written, final
    actor = ray.get_actor(head_store.actor_name(str(storage)), namespace=head_store.NAMESPACE)
    deadline = time.time() + 90  # Ray declares a killed node dead after its health checks fail
    while time.time() < deadline and any(n["NodeID"] == killed["node"] and n["Alive"]
                                         for n in ray.nodes()):
        time.sleep(1)
    before = ray.get(actor.open_transfers.remote())
    reaped = ray.get(actor.reap.remote())  # the dead node's unfinished transfers are dropped
    left = [p for p in partial if os.path.exists(p)]
    alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
    assert not left, (left, before, reaped, killed, alive)
    assert sorted(os.listdir(storage)) == ["cluster"]
    assert len(list(exp.glob("*/checkpoint_*/cifar_transfer/manifest.json"))) >= 2


def _write_from_a_worker(fs, root: str, payload: bytes, stream: bool) -> dict:
    """On a worker node: write through the store, fail one transfer half-way, read back; over
    the actor's socket (``stream``) or through Ray's object store (the socket unreachable)."""
    from tune_jobs.store import head_store

    shipped, streamed = [], []
    ship, send = head_store._Writer._ship, head_store._StreamWriter._write
    head_store._Writer._ship = lambda self, data: (shipped.append(len(data)), ship(self, data))
    head_store._StreamWriter._write = lambda self, data: (streamed.append(len(data)),
                                                          send(self, data))[1]
    readers, opens = [], (head_store._Reader.__init__, head_store._StreamReader.__init__)
    for cls, init in zip((head_store._Reader, head_store._StreamReader), opens, strict=True):
        cls.__init__ = lambda self, *a, _init=init, _cls=cls: (readers.append(_cls.__name__),
                                                               _init(self, *a))[1]
    head_store.STREAM, fs.handler._address = stream, False
    try:
        with fs.open_output_stream(f"{root}/w/model.safetensors") as f:
            f.write(payload)
        try:
            with fs.open_output_stream(f"{root}/w/broken.safetensors") as f:
                f.write(payload)
                raise ConnectionError("link down")
        except ConnectionError:
            pass
        with fs.open_input_file(f"{root}/w/model.safetensors") as f:
            f.seek(len(payload) - 10)
            tail = f.read()
            f.seek(0)
            back = f.read()
    finally:
        head_store._Writer._ship, head_store._StreamWriter._write = ship, send
        head_store._Reader.__init__, head_store._StreamReader.__init__ = opens
        head_store.STREAM = True
    import ray

    return {"local_root": fs.handler.local_root(), "shipped": shipped, "streamed": streamed,
            "same": back == payload and tail == payload[-10:], "readers": readers,
            "node": ray.get_runtime_context().get_node_id()}


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "shipped"])
def test_a_worker_sends_its_bytes_and_the_head_writes_its_own(cluster, tmp_path, stream):
    """Across two nodes the bytes take the path between nodes (a stream over the actor's
    socket, or chunks through Ray's object store where that socket cannot be reached), while a
    process on the head node writes the store's folder itself; both land whole, a broken
    transfer from a worker leaves nothing that looks whole, and the worker reads its file back."""
    import ray

    c, workers = cluster
    root = tmp_path / "head_disk"
    fs = head_store.start(root)
    payload = os.urandom(2 * head_store.CHUNK + 4321)
    task = ray.remote(num_cpus=1)(_write_from_a_worker)
    out = ray.get(task.remote(fs, str(root), payload, stream))
    assert out["node"] in {w.node_id for w in workers}
    assert out["local_root"] == "" and out["same"]
    if stream:  # every byte of both files went over the socket, none through Ray
        assert out["shipped"] == [] and out["streamed"] == [len(payload)] * 2
        assert out["readers"] == ["_StreamReader"]
    else:
        chunk = head_store.CHUNK  # the broken transfer ships its whole chunks, never its rest
        assert out["streamed"] == [] and out["shipped"] == [chunk, chunk, 4321, chunk, chunk]
        assert out["readers"] == ["_Reader"]
    assert (root / "w/model.safetensors").read_bytes() == payload
    assert not (root / "w/broken.safetensors").exists()
    assert not [p for p in (root / "w").iterdir() if ".part-" in p.name]
    assert fs.handler.local_root() == os.path.realpath(root)  # the driver is on the head node
    with fs.open_output_stream(f"{root}/h/state.json") as f:
        f.write(b"{}")
    assert (root / "h/state.json").read_bytes() == b"{}"
    assert head_store.stats(root)["writes_by_node"].get(out["node"]) == 2
