"""Reproducible measurements, each next to its baseline in the same process; numbers go to
stdout and to benchmarks/results/<name>.json. Run with `make bench` (CPU, offline, ~2 min).

* shared_work: tokenising a corpus and pretraining the CIFAR-10 source CNN, cold (built) vs warm
  (read from the cache as every later trial does).
* head_store: streaming a large checkpoint file through the head-node store vs a plain local
  copy, with the peak Python memory the transfer held (it must stay near one chunk).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")

OUT = Path(__file__).parent / "results"


def _save(name: str, data: dict) -> None:
    OUT.mkdir(exist_ok=True)
    data = {"benchmark": name, "machine": platform.machine(), "cpus": os.cpu_count(),
            "when": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=1))
    print(json.dumps(data, indent=1))


def shared_work(tmp: Path) -> None:
    import torch

    from trainables.config import TextOptions, VisionOptions
    from trainables.data.cifar import load_cifar
    from trainables.data.newsgroups import load_newsgroups
    from trainables.data.synthetic import write_all
    from trainables.text import load_tokenizer, tokenize
    from trainables.vision import source_model

    torch.set_num_threads(2)
    write_all(tmp / "data", size="medium")
    news = load_newsgroups(tmp / "data")
    cache = str(tmp / "cache")
    t = time.perf_counter()
    tok = load_tokenizer(news, TextOptions(model="tiny"), cache)
    tokenize(news, tok, 128, cache)
    cold_tok = time.perf_counter() - t
    t = time.perf_counter()
    tok = load_tokenizer(news, TextOptions(model="tiny"), cache)
    tokenize(news, tok, 128, cache)
    warm_tok = time.perf_counter() - t
    c10 = load_cifar(tmp / "data", "cifar10")
    opts = VisionOptions(source_steps=300)
    t = time.perf_counter()
    source_model(c10, opts, cache)
    cold_src = time.perf_counter() - t
    t = time.perf_counter()
    source_model(c10, opts, cache)
    warm_src = time.perf_counter() - t
    _save("shared_work", {
        "newsgroups_posts": sum(len(s) for s in news.splits.values()),
        "tokenise_cold_s": round(cold_tok, 3), "tokenise_warm_s": round(warm_tok, 3),
        "tokenise_speedup": round(cold_tok / warm_tok, 1),
        "source_pretrain_steps": opts.source_steps,
        "source_cold_s": round(cold_src, 3), "source_warm_s": round(warm_src, 3),
        "source_speedup": round(cold_src / warm_src, 1)})


def head_store_throughput(tmp: Path, size_mib: int = 64) -> None:
    import pyarrow.fs as pafs
    import ray

    from tune_jobs import head_store

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
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
        _, peak_write = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        t = time.perf_counter()
        pafs.copy_files(str(tmp / "store" / "ck.bin"), str(tmp / "back.bin"),
                        source_filesystem=store, destination_filesystem=local)
        read = time.perf_counter() - t
        _, peak_read = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert (tmp / "back.bin").read_bytes() == src.read_bytes()
        mib = size_mib
        _save("head_store", {
            "file_mib": mib, "chunk_mib": head_store.CHUNK >> 20,
            "plain_copy_mib_s": round(mib / plain, 1),
            "head_store_write_mib_s": round(mib / write, 1),
            "head_store_read_mib_s": round(mib / read, 1),
            "write_slowdown_vs_plain": round(write / plain, 1),
            "peak_python_mib_write": round(peak_write / 2**20, 1),
            "peak_python_mib_read": round(peak_read / 2**20, 1),
            "peak_over_chunk_write": round(peak_write / head_store.CHUNK, 2)})
    finally:
        ray.shutdown()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        shared_work(Path(d))
    with tempfile.TemporaryDirectory() as d:
        head_store_throughput(Path(d))


if __name__ == "__main__":
    main()
