"""The head store under load: N simulated trials (Ray actors on the head node) each write one
checkpoint file through the head store at once, as the trials of one rung round do; N = 8, 32,
128, against the same files written as plain local files. Measured: the store's aggregate
throughput at each N. From it, the stall each rung round would
cost at realistic checkpoint sizes (minilm measured by the throughput benchmark, bert-base by
arithmetic: 110 M parameters × 4 bytes × 3 for the weights and AdamW's two moments).

Also the single-stream figure against a plain local copy, with the peak Python memory the
transfer held (bounded: one chunk in the buffer and WINDOW in flight), on the head node and
from a second Ray node (the path other nodes take: a stream over the actor's socket).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

from benchmarks.common import save

BERT_BASE_CKPT_MIB = 110e6 * 4 * 3 / 2**20


def _stream(tmp: Path, fs, size_mib: int, label: str) -> dict:
    """One file written into the store and read back, each against a plain local copy of the
    same file on the same disk, timed side by side (best of 3 each)."""
    import pyarrow.fs as pafs

    from tune_jobs.store import head_store

    src = tmp / f"big-{label}.bin"
    src.write_bytes(os.urandom(size_mib << 20))
    local = pafs.LocalFileSystem()

    def copy(source, dest, from_fs, to_fs) -> float:
        t = time.perf_counter()
        pafs.copy_files(str(source), str(dest), source_filesystem=from_fs,
                        destination_filesystem=to_fs)
        return time.perf_counter() - t

    plain, write, read, peak = [], [], [], 0
    for i in range(3):
        os.sync()  # each timed copy starts with no other copy's dirty pages being written back
        plain.append(copy(src, tmp / f"plain-{label}-{i}.bin", local, local))
        os.sync()
        tracemalloc.start()
        write.append(copy(src, tmp / "store" / f"{label}-{i}.bin", local, fs))
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        read.append(copy(tmp / "store" / f"{label}-{i}.bin", tmp / f"back-{label}-{i}.bin", fs,
                         local))
        assert (tmp / f"back-{label}-{i}.bin").read_bytes() == src.read_bytes()
    rate = lambda seconds: round(size_mib / min(seconds), 1)  # noqa: E731
    return {"file_mib": size_mib, "plain_copy_mib_s": rate(plain),
            "head_store_write_mib_s": rate(write), "head_store_read_mib_s": rate(read),
            "write_ratio": round(min(plain) / min(write), 2),
            "read_ratio": round(min(plain) / min(read), 2),
            "write_slowdown_vs_plain": round(min(write) / min(plain), 1),
            "peak_python_mib_write": round(peak / 2**20, 1),
            "path": _path_taken(fs.handler),
            "chunk_mib": head_store.CHUNK >> 20, "window": getattr(head_store, "WINDOW", 1)}


def _path_taken(handler) -> str:
    """How this process's bytes reach the store: its own disk, the actor's socket, or Ray."""
    if handler.local_root():
        return "direct"
    return "stream" if handler.stream_address() else "ray_object_store"


def _single_stream(tmp: Path, size_mib: int) -> dict:
    from tune_jobs.store import head_store

    return _stream(tmp, head_store.start(tmp / "store"), size_mib, "single")


def _cross_node(tmp: Path, size_mib: int, writers: int) -> dict:
    """The same single stream from a process on a second Ray node (ray.cluster_utils: two
    raylets on this machine), so that the path between nodes is the one taken; then a rung
    round of ``writers`` trials on that node writing at once (256 MiB in all)."""
    import ray
    from ray.cluster_utils import Cluster

    from tune_jobs.store import head_store

    tmp.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"other_node": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        fs = head_store.start(tmp / "store")
        remote = ray.remote(num_cpus=0, resources={"other_node": 0.01})(_stream_on_node)
        out = ray.get(remote.remote(str(tmp), fs, size_mib))
        out["writer_node"] = "second node"
        out["writer_on_head"] = out.pop("on_head")
        out["rung_round"] = _rung_round(tmp, _trials(writers, {"other_node": 0.01}),
                                        256 // writers)
        return out
    finally:
        ray.shutdown()
        cluster.shutdown()


def _stream_on_node(tmp: str, fs, size_mib: int) -> dict:
    from tune_jobs.store import head_store

    return {**_stream(Path(tmp), fs, size_mib, "cross"), "on_head": head_store.on_head_node()}


class _Trial:
    """A trial already running when its rung round comes: it writes one checkpoint file."""

    def ready(self) -> bool:
        # A running trial has unpickled its storage filesystem when Tune set it up, so the
        # store's module is loaded before its first checkpoint: not part of a rung round.
        import tune_jobs.store.head_store  # noqa: F401

        return True

    def write(self, fs, path: str, size: int) -> None:
        payload = os.urandom(1 << 20)
        with fs.open_output_stream(path) as f:
            for _ in range(size):
                f.write(payload)


def _trials(n: int, resources: dict | None = None) -> list:
    """n running trials (actors; on the node that has ``resources``), started and ready."""
    import ray

    trial = ray.remote(num_cpus=0, resources=resources or {})(_Trial)
    trials = [trial.remote() for _ in range(n)]
    ray.get([t.ready.remote() for t in trials])  # started: the round times the writes only
    return trials


def _rung_round(tmp: Path, trials: list, size_mib: int) -> dict:
    """The running ``trials`` write size_mib each at once: through the store, and as plain
    local files on the same disk; seconds from the start of the round to the last file (the
    better of two rounds each)."""
    import pyarrow.fs as pafs
    import ray

    from tune_jobs.store import head_store

    n = len(trials)
    store = head_store.start(tmp / "store")
    local = pafs.LocalFileSystem()
    systems = {"plain": (local, tmp / "plain"), "head_store": (store, tmp / "store")}
    times: dict[str, float] = {}
    # Plain, store, store, plain: each goes first once (the one that follows writes while the
    # other's dirty pages are still being flushed); the best round of each counts.
    for rep, name in enumerate(("plain", "head_store", "head_store", "plain")):
        fs, root = systems[name]
        (tmp / "plain" / f"round{n}-{rep}").mkdir(parents=True, exist_ok=True)
        os.sync()  # (the previous round's dirty pages written back before this one starts)
        t = time.perf_counter()
        ray.get([a.write.remote(fs, f"{root}/round{n}-{rep}/trial{i}.bin", size_mib)
                 for i, a in enumerate(trials)])
        times[name] = min(times.get(name, float("inf")), time.perf_counter() - t)
    return {"writers": n, "mib_each": size_mib, "seconds": round(times["head_store"], 2),
            "aggregate_mib_s": round(n * size_mib / times["head_store"], 1),
            "plain_aggregate_mib_s": round(n * size_mib / times["plain"], 1),
            "ratio": round(times["plain"] / times["head_store"], 2)}


def run(tmp: Path, quick: bool = False) -> dict:
    import json

    import ray

    from benchmarks import common

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        single = _single_stream(tmp, 32 if quick else 64)
        # Each round moves at least 256 MiB (8 MiB per trial at least): a round of a few small
        # files lasts a few tens of ms, less than the store's fixed cost per trial process.
        # (the largest round's trials, started once: each smaller round takes the first n)
        sizes = (8, 16) if quick else (8, 32, 128)  # (quick: a process start per writer)
        trials = _trials(max(sizes))
        rounds = {n: _rung_round(tmp, trials[:n], max(4 if quick else 8, 256 // n))
                  for n in sizes}
    finally:
        ray.shutdown()
    cross = _cross_node(tmp / "cross", 32 if quick else 64, 4 if quick else 32)
    try:
        minilm = json.loads((common.OUT / "throughput.json").read_text())[
            "minilm_checkpoint_mib_per_unit"]["unfreeze_1.0"]
    except (OSError, KeyError, ValueError):
        minilm = None
    stalls = {}
    for n, r in rounds.items():
        rate = r["aggregate_mib_s"]
        stalls[n] = {"bert_base_s": round(n * BERT_BASE_CKPT_MIB / rate, 1)}
        if minilm:
            stalls[n]["minilm_s"] = round(n * minilm / rate, 1)
    return save("head_store", {
        "single_stream": single, "cross_node": cross, "rung_rounds": rounds,
        "goal": "each ≥ 0.5× a plain local copy on the same disk",
        "bert_base_checkpoint_mib": round(BERT_BASE_CKPT_MIB), "minilm_checkpoint_mib": minilm,
        "stall_per_rung_round": stalls,
        "note": "stall = N × checkpoint size ÷ the aggregate rate measured at N writers"})
