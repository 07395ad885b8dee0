"""Goal 3: in-trial training throughput of Metatune's ``Learner.train_unit`` against a plain
PyTorch loop over the same model, the same batches and the same optimizer, one thread; for the
CNN of the transfer task and the pretrained ``minilm`` BERT. Also the checkpoint bytes one
trial-unit writes for ``minilm`` at unfreeze_frac 0, 0.5 and 1.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import save, synthetic_data

# minilm's sizes: a real-length batch in `make bench`; in the quick run a quarter of the
# batch, half the length and a few hundred examples (a step of 32 × 128 tokens takes about 5 s
# on one core, and each frozen depth's features are built over the whole training set)
MINILM = {"max_length": 128, "batch_size": 32}
MINILM_QUICK = {"max_length": 64, "batch_size": 8, "train_limit": 128, "val_limit": 32}


def _minilm(quick: bool) -> dict:
    return MINILM_QUICK if quick else MINILM


def _task(kind: str, data: Path, cache: Path, steps: int, unfreeze: float = 1.0,
          quick: bool = False):
    from trainables.config import MetaConfig
    from trainables.tasks import build_task, trial_settings

    batch = 32
    if kind == "cnn":
        # (a step's speed does not depend on how well the source was trained)
        options = {"cifar_transfer": {"source_steps": 30 if quick else 100,
                                      "steps_per_unit": steps}}
        name = "cifar_transfer"
    else:
        sizes = dict(_minilm(quick))
        batch = sizes.pop("batch_size")
        options = {"newsgroups": {"model": "minilm", "steps_per_unit": steps, **sizes}}
        name = "newsgroups"
    settings = trial_settings([name], str(data), options, max_units=4, cache_dir=str(cache))
    meta = MetaConfig(unfreeze_frac=unfreeze, batch_size=batch, dropout=0.1)
    task, cfg = build_task(settings.tasks[0], meta, settings, "cpu")
    return task, cfg, settings


def _plain_loop(learner, steps: int) -> float:
    """What a PyTorch user writes: batch, forward, loss, backward, step."""
    import torch

    model, order = learner.model, learner.order
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        batch = learner.make_batch(order.next(), learner.aug_generator)
        loss = loss_fn(learner.forward(model, batch), batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss)
    return time.perf_counter() - t


def _compare(task, cfg, rounds: int) -> dict:
    learner = task.learner
    learner.train_unit()  # warm-up: allocator, kernels
    _plain_loop(learner, 2)
    ours, plain = [], []
    for _ in range(rounds):  # interleaved, so that machine noise hits both alike
        t = time.perf_counter()
        learner.train_unit()
        ours.append(time.perf_counter() - t)
        plain.append(_plain_loop(learner, cfg.steps_per_unit))
    samples = cfg.steps_per_unit * cfg.batch_size
    best_ours, best_plain = min(ours), min(plain)
    return {"samples_per_s_metatune": round(samples / best_ours, 1),
            "samples_per_s_plain_pytorch": round(samples / best_plain, 1),
            "ratio": round(best_plain / best_ours, 3), "batch_size": cfg.batch_size,
            "steps_timed": cfg.steps_per_unit, "rounds": rounds}


def _checkpoint_bytes(data: Path, cache: Path, quick: bool) -> dict:
    from trainables.meta import write_trial

    out = {}
    for frac in (0.0, 0.5, 1.0):
        task, cfg, settings = _task("minilm", data, cache, steps=1 if quick else 2,
                                    unfreeze=frac, quick=quick)
        task.learner.train_unit()
        with tempfile.TemporaryDirectory() as d:
            from trainables.config import MetaConfig

            write_trial(d, {"newsgroups": task.learner.state()}, 1,
                        MetaConfig(unfreeze_frac=frac), settings)
            out[f"unfreeze_{frac}"] = sum(p.stat().st_size for p in Path(d).rglob("*")
                                          if p.is_file())
    return {k: round(v / 2**20, 1) for k, v in out.items()}


def _plain_full_loop(task, steps: int) -> float:
    """What a PyTorch user writes for a partly frozen model: the whole model forward on token
    batches (the frozen blocks too), backward into the trained blocks, AdamW on those."""
    import torch

    model, order = task.learner.model, task.learner.order
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        batch = task._tokens("train", order.next().numpy())
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = loss_fn(logits, batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss)
    return time.perf_counter() - t


def _frozen_features(data: Path, cache: Path, quick: bool) -> dict:
    """Part 2 of issue 20: minilm on a text task at unfreeze_frac 0, 1/3 and 1, a trial's
    units (frozen blocks read from the features cache) against the plain loop above."""
    out: dict = {"model": "minilm", **_minilm(quick),
                 "goal": "≥ 5× at unfreeze 0, ≥ 1.6× at 1/3, no change at 1"}
    for frac in (0.0, 1 / 3, 1.0):
        steps = 3 if quick else 6
        task, cfg, _ = _task("minilm", data, cache, steps=steps, unfreeze=frac, quick=quick)
        build = time.perf_counter()
        task.learner.train_unit()  # warm-up (the features were built, once, with the task)
        _plain_full_loop(task, 1)
        ours, plain = [], []
        for _ in range(2 if quick else 3):  # interleaved: noise hits both alike
            t = time.perf_counter()
            task.learner.train_unit()
            ours.append(time.perf_counter() - t)
            plain.append(_plain_full_loop(task, steps))
        samples = steps * cfg.batch_size
        out[f"unfreeze_{round(frac, 3)}"] = {
            "frozen_blocks": task.depth, "cached": task.features is not None,
            "samples_per_s_metatune": round(samples / min(ours), 1),
            "samples_per_s_plain_pytorch": round(samples / min(plain), 1),
            "ratio": round(min(plain) / min(ours), 2),
            "setup_s": round(time.perf_counter() - build - sum(ours) - sum(plain), 1)}
    return out


def _tries(model_name: str, base, x, y, forward, variants: tuple[str, ...], steps: int,
           rounds: int, warmup: int = 5) -> dict:
    """Each variant of a training step against a plain eager loop over the same model, batch
    and optimizer (best of ``rounds``, interleaved), and whether the loss after ``steps`` steps
    stays the same (to 1e-3). ``forward(model, x)`` gives the logits."""
    import copy

    import torch

    def loop(variant: str) -> tuple[float, float]:
        model, xb = copy.deepcopy(base), x
        if variant == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            xb = x.contiguous(memory_format=torch.channels_last)
        if variant == "torch_compile":
            model = torch.compile(model)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        torch.manual_seed(0)  # (the same dropout masks in every variant)
        for i in range(steps + warmup):  # warm-up steps (and torch.compile's compilation)
            if i == warmup:
                t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16_autocast"):
                loss = torch.nn.functional.cross_entropy(forward(model, xb).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * len(y) / (time.perf_counter() - t), float(loss.detach())

    best: dict[str, float] = {}
    losses: dict[str, float] = {}
    for _ in range(rounds):
        for v in variants:
            rate, losses[v] = loop(v)
            best[v] = max(best.get(v, 0.0), rate)
    return {v: {"samples_per_s": round(best[v], 1), "ratio": round(best[v] / best["eager"], 2),
                "loss_after": round(losses[v], 4),
                "same_curve": abs(losses[v] - losses["eager"]) < 1e-3,
                "kept": v == "eager" or (best[v] / best["eager"] >= 1.15
                                         and abs(losses[v] - losses["eager"]) < 1e-3)}
            for v in variants} | {"model": model_name, "batch_size": len(y), "steps": steps,
                                  "rule": "kept if ≥ 1.15× eager with the same loss"}


QUICK_SKIPS = ("torch_compile",)  # its inductor build takes minutes: `make bench` only


def _variants(variants: tuple[str, ...], quick: bool) -> tuple[str, ...]:
    return tuple(v for v in variants if not (quick and v in QUICK_SKIPS))


def _step_tries(steps: int, rounds: int, quick: bool = False) -> dict:
    """Part 4 of issue 20: what makes the CNN's training step faster on one CPU thread."""
    import torch

    from trainables.vision import SmallCNN

    torch.manual_seed(0)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 100, (32,))
    return _tries("cnn", SmallCNN(100), x, y, lambda model, xb: model(xb),
                  _variants(("eager", "channels_last", "bf16_autocast", "torch_compile"), quick),
                  steps, rounds)


def _step_tries_minilm(steps: int, rounds: int, quick: bool = False) -> dict:
    """The same for minilm (all-MiniLM-L6-v2, every block trained: the step that part 2's cache
    does not shorten), on token batches of 8 × minilm's max_length. channels_last is a
    convolution layout: not tried on a transformer."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from trainables.text import minilm_path

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=20)
    ids = torch.randint(1000, 30000, (8, _minilm(quick)["max_length"]))
    mask = torch.ones_like(ids)
    y = torch.randint(0, 20, (8,))
    return _tries("minilm", model, ids, y,
                  lambda m, xb: m(input_ids=xb, attention_mask=mask).logits,
                  _variants(("eager", "bf16_autocast", "torch_compile"), quick), steps, rounds,
                  warmup=2)


def run(tmp: Path, quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = synthetic_data(tmp / "data")
    cache = tmp / "cache"
    out: dict = {"threads": 1}
    task, cfg, _ = _task("cnn", data, cache, steps=20 if quick else 40, quick=quick)
    out["cnn"] = _compare(task, cfg, rounds=3 if quick else 5)
    out["step_tries"] = _step_tries(steps=20 if quick else 60, rounds=2 if quick else 3,
                                    quick=quick)
    try:
        task, cfg, _ = _task("minilm", data, cache, steps=2 if quick else 6, quick=quick)
    except Exception as exc:  # the pretrained extra is not installed
        out["minilm"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    else:
        out["minilm"] = _compare(task, cfg, rounds=2 if quick else 3)
        out["minilm_sizes"] = _minilm(quick)
        out["minilm_checkpoint_mib_per_unit"] = _checkpoint_bytes(data, cache, quick)
        out["frozen_features"] = _frozen_features(data, cache, quick)
        out["step_tries_minilm"] = _step_tries_minilm(steps=3 if quick else 6,
                                                      rounds=1 if quick else 2, quick=quick)
    if quick:
        out["not_tried_in_quick"] = list(QUICK_SKIPS)
    out["goal"] = "≥ 0.9× a plain PyTorch loop"
    return save("throughput", out)
