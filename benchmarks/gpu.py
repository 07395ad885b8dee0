"""Goal 6, on a GPU only (`make bench-gpu`): bf16 bert-base samples/s for one trial and the
total for 1, 2 and 4 trials packed on one GPU (processes sharing it), and CNN images/s, with the
GPU's name. Without CUDA it records that it was skipped; numbers are written only when measured.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from benchmarks.common import save

STEPS = 30


def _bert_worker(steps: int, queue) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    # bert-base's shape, randomly initialised: the hub is not reachable from benchmark machines
    model = BertForSequenceClassification(BertConfig(num_labels=20)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    ids = torch.randint(0, 30000, (32, 256), device="cuda")
    labels = torch.randint(0, 20, (32,), device="cuda")
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    queue.put(steps * 32 / (time.perf_counter() - t))


def _packed(n: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_bert_worker, args=(STEPS, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def _cnn() -> float:
    import torch

    from trainables.vision import SmallCNN

    model = SmallCNN(100, 1.0).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(256, 3, 32, 32, device="cuda")
    y = torch.randint(0, 100, (256,), device="cuda")
    for i in range(55):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return 50 * 256 / (time.perf_counter() - t)


def run(tmp: Path, quick: bool = False) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here; nothing measured, nothing written", flush=True)
        return None
    packed = {n: round(_packed(n), 1) for n in (1, 2, 4)}
    newsgroups_train = 11314 * 0.9
    return save("gpu", {
        "gpu": torch.cuda.get_device_name(0),
        "bert_base_bf16_samples_per_s_total": packed,
        "packing_speedup_4_over_1": round(packed[4] / packed[1], 2),
        "newsgroups_epoch_s_one_trial": round(newsgroups_train / packed[1], 1),
        "cnn_bf16_images_per_s": round(_cnn(), 1),
        "goals": "4 packed ≥ 2.5× one; a 20 Newsgroups bert-base epoch ≤ 30 s (bf16)"})
