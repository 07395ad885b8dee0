"""Goal 5, in isolation: tokenising a corpus and pretraining the CIFAR-10 source CNN, cold
(built) against warm (read from the cache, as every later trial and search does)."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import save


def run(tmp: Path, quick: bool = False) -> dict:
    import torch

    from trainables.config import TextOptions, VisionOptions
    from trainables.data.cifar import load_cifar
    from trainables.data.newsgroups import load_newsgroups
    from trainables.data.synthetic import write_all
    from trainables.text import load_tokenizer, tokenize
    from trainables.vision import source_model

    torch.set_num_threads(2)
    write_all(tmp / "data", size="small" if quick else "medium")
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
    return save("shared_work", {
        "newsgroups_posts": sum(len(s) for s in news.splits.values()),
        "tokenise_cold_s": round(cold_tok, 3), "tokenise_warm_s": round(warm_tok, 3),
        "tokenise_speedup": round(cold_tok / warm_tok, 1),
        "source_pretrain_steps": opts.source_steps,
        "source_cold_s": round(cold_src, 3), "source_warm_s": round(warm_src, 3),
        "source_speedup": round(cold_src / warm_src, 1)})
