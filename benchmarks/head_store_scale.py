"""The head store under load: N simulated trials (Ray tasks) each write one checkpoint file
through the head-store actor at once, as the trials of one rung round do; N = 8, 32, 128.
Measured: the store's aggregate throughput at each N. From it, the stall each rung round would
cost at realistic checkpoint sizes (minilm measured by the throughput benchmark, bert-base by
arithmetic: 110 M parameters × 4 bytes × 3 for the weights and AdamW's two moments).

Also the single-stream figure against a plain local copy, with the peak Python memory the
transfer held (it must stay near one chunk).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

from benchmarks.common import save

BERT_BASE_CKPT_MIB = 110e6 * 4 * 3 / 2**20


def _single_stream(tmp: Path, size_mib: int) -> dict:
    import pyarrow.fs as pafs

    from tune_jobs.store import head_store

    src = tmp / "big.bin"
    src.write_bytes(os.urandom(size_mib << 20))
    local = pafs.LocalFileSystem()
    t = time.perf_counter()
    pafs.copy_files(str(src), str(tmp / "plain.bin"), source_filesystem=local,
                    destination_filesystem=local)
    plain = time.perf_counter() - t
    store = head_store.start(tmp / "store")
    tracemalloc.start()
    t = time.perf_counter()
    pafs.copy_files(str(src), str(tmp / "store" / "ck.bin"), source_filesystem=local,
                    destination_filesystem=store)
    write = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"file_mib": size_mib, "plain_copy_mib_s": round(size_mib / plain, 1),
            "head_store_write_mib_s": round(size_mib / write, 1),
            "write_slowdown_vs_plain": round(write / plain, 1),
            "peak_python_mib_write": round(peak / 2**20, 1),
            "chunk_mib": head_store.CHUNK >> 20}


def _rung_round(tmp: Path, n: int, size_mib: int) -> float:
    """Seconds for n concurrent writers of size_mib each to land in the store."""
    import ray

    from tune_jobs.store import head_store

    store = head_store.start(tmp / "store")

    @ray.remote(num_cpus=0)
    def trial_writes(fs, path: str, size: int) -> None:
        payload = os.urandom(1 << 20)
        with fs.open_output_stream(path) as f:
            for _ in range(size):
                f.write(payload)

    t = time.perf_counter()
    ray.get([trial_writes.remote(store, f"{tmp}/store/round{n}/trial{i}/ck.bin", size_mib)
             for i in range(n)])
    return time.perf_counter() - t


def run(tmp: Path, quick: bool = False) -> dict:
    import json

    import ray

    from benchmarks.common import OUT

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        single = _single_stream(tmp, 32 if quick else 64)
        size = 4 if quick else 8
        rounds = {}
        for n in ((8, 32) if quick else (8, 32, 128)):
            seconds = _rung_round(tmp, n, size)
            rounds[n] = {"writers": n, "mib_each": size, "seconds": round(seconds, 2),
                         "aggregate_mib_s": round(n * size / seconds, 1)}
    finally:
        ray.shutdown()
    try:
        minilm = json.loads((OUT / "throughput.json").read_text())[
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
        "single_stream": single, "rung_rounds": rounds,
        "bert_base_checkpoint_mib": round(BERT_BASE_CKPT_MIB), "minilm_checkpoint_mib": minilm,
        "stall_per_rung_round": stalls,
        "note": "stall = N × checkpoint size ÷ the aggregate rate measured at N writers"})
