"""CNN transfer CIFAR-10 → CIFAR-100 (or → a custom image task). Pure code.

The source model — the classic small CNN (3×3 convs 32-64-64, max-pool, dense 64) — is trained
on CIFAR-10 once per source configuration and cached by a key of its inputs; every trial,
process and node loads that file, and a file lock makes concurrent trials wait for one builder.
The transfer keeps the backbone and puts a fresh head on it: the 10-way head is never copied.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainables.config import TrainConfig, VisionOptions
from trainables.data import cache
from trainables.data.cifar import augment, channel_stats, to_tensor
from trainables.data.splits import Dataset, trial_view
from trainables.loop import Batch, Learner, freeze_lowest, pick_device, seed_everything


class SmallCNN(nn.Module):
    """conv3×3(32)-pool-conv3×3(64)-pool-conv3×3(64)-dense(64)-dropout-head, Keras-tutorial style."""

    def __init__(self, num_classes: int, width: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        c1, c2, d = (max(4, int(round(c * width))) for c in (32, 64, 64))
        self.conv1 = nn.Sequential(nn.Conv2d(3, c1, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c2, 3), nn.ReLU())
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4 * 4, d), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d, num_classes)

    def blocks(self) -> list[nn.Module]:
        """Backbone blocks, lowest first (the head is not one of them)."""
        return [self.conv1, self.conv2, self.conv3, self.fc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks():
            x = block(x)
        return self.head(self.dropout(x))


def _forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch["x"])


def channels_last(model: nn.Module) -> nn.Module:
    """The CNN's weights in channels-last layout: 1.36-1.48x faster training steps on one CPU
    thread (benchmarks/throughput.py, ``step_tries``), the same numbers to float rounding.
    Checkpoints and exports store them contiguous, as before."""
    return model.to(memory_format=torch.channels_last)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class ImageBatches:
    """Training and evaluation batches from uint8 NCHW splits, normalised on the fly."""

    def __init__(self, dataset: Dataset, mean: list[float], std: list[float], eval_batch: int,
                 use_augment: bool) -> None:
        self.splits = {s: (torch.from_numpy(np.ascontiguousarray(d.x)), torch.from_numpy(d.y))
                       for s, d in dataset.splits.items()}
        self.mean, self.std, self.eval_batch, self.use_augment = mean, std, eval_batch, use_augment

    def train(self, idx: torch.Tensor, generator: torch.Generator) -> Batch:
        x, y = self.splits["train"]
        xb = to_tensor(x[idx], self.mean, self.std)
        if self.use_augment:
            xb = augment(xb, generator)
        return {"x": _nhwc(xb), "labels": y[idx].long()}

    def evaluate(self, split: str) -> Iterator[Batch]:
        x, y = self.splits[split]
        for s in range(0, len(y), self.eval_batch):
            yield {"x": _nhwc(to_tensor(x[s:s + self.eval_batch], self.mean, self.std)),
                   "labels": y[s:s + self.eval_batch].long()}


def source_key(source: Dataset, opts: VisionOptions) -> dict[str, Any]:
    key = {"data": source.fingerprint(), "width": opts.width, "steps": opts.source_steps,
           "lr": opts.source_lr, "batch": opts.source_batch, "seed": opts.source_seed,
           "arch": "SmallCNN/1"}
    if opts.source_method != "supervised":  # (keys of supervised sources stay as they were)
        key["method"] = opts.source_method
    return key


class ConvDecoder(nn.Module):
    """The autoencoder's decoder: the backbone's last conv map (c × 4 × 4) back to a 32×32
    image. It decodes the conv blocks, not the dense layer: a bottleneck of 64 ReLU units
    trained to reconstruct learns to switch most of them off, and a dense layer of dead units
    then transfers nothing (measured: chance accuracy on the target, below from scratch)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2 = (max(4, int(round(c * width))) for c in (32, 64))
        c0 = max(4, c1 // 2)
        self.up = nn.Sequential(
            nn.Upsample(size=8), nn.Conv2d(c2, c1, 3, padding=1), nn.ReLU(),
            nn.Upsample(size=16), nn.Conv2d(c1, c0, 3, padding=1), nn.ReLU(),
            nn.Upsample(size=32), nn.Conv2d(c0, 3, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(h)


def conv_features(model: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    """The conv blocks' output map (what the autoencoder's decoder reads)."""
    for block in model.blocks()[:-1]:
        x = block(x)
    return x


def features(model: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    """The backbone's output: what a new head (or a linear probe) sees."""
    for block in model.blocks():
        x = block(x)
    return x


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner out of the 2N−1 others."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(sim, target)


def _views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One SimCLR view: random crop and flip (the task's own augmentation), then a random
    brightness/contrast change and, for one image in five, grey."""
    v = augment(x, generator)
    n = len(v)
    scale = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    shift = 0.4 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    v = v * scale + shift
    grey = torch.rand(n, generator=generator) < 0.2
    v[grey] = v[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return v


def pretrain_self_supervised(x: np.ndarray, opts: VisionOptions, device: str = "cpu"
                             ) -> tuple[SmallCNN, dict[str, Any]]:
    """Pretrain the backbone on images alone (``opts.source_method``): no label is read."""
    seed_everything(opts.source_seed)
    mean, std = channel_stats(x)
    model = channels_last(SmallCNN(1, opts.width).to(device))  # only the backbone is used
    extra: nn.Module
    if opts.source_method == "autoencoder":
        extra = ConvDecoder(opts.width)
    else:
        d = max(4, int(round(64 * opts.width)))
        extra = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 32))  # projection head
    extra = extra.to(device)
    params = [p for m in (model, extra) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=opts.source_lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts.source_steps)
    generator = torch.Generator().manual_seed(opts.source_seed)
    data = torch.from_numpy(np.ascontiguousarray(x))
    batch = min(opts.source_batch, len(data))
    total = torch.zeros((), device=device)
    for step in range(opts.source_steps):
        idx = torch.randint(0, len(data), (batch,), generator=generator)
        xb = to_tensor(data[idx], mean, std)
        if opts.source_method == "autoencoder":
            inp = augment(xb, generator).to(device)
            loss = nn.functional.mse_loss(extra(conv_features(model, inp)), inp)
        else:
            v1, v2 = _views(xb, generator).to(device), _views(xb, generator).to(device)
            loss = nt_xent(extra(features(model, v1)), extra(features(model, v2)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= opts.source_steps - 20:
            total += loss.detach()
    return model.cpu(), {"mean": mean, "std": std, "num_classes": 1, "val_acc": None,
                         "method": opts.source_method,
                         "final_loss": float(total) / min(20, opts.source_steps)}


def pretrain_source(
    source: Dataset, opts: VisionOptions, device: str = "cpu"
) -> tuple[SmallCNN, dict[str, Any]]:
    """Train the small CNN on the source data set (CIFAR-10) from scratch."""
    seed_everything(opts.source_seed)
    mean, std = channel_stats(source.splits["train"].x)
    model = channels_last(SmallCNN(source.num_classes, opts.width))
    cfg = TrainConfig(lr=opts.source_lr, weight_decay=5e-4, warmup_steps=0,
                      total_steps=opts.source_steps, schedule="cosine", optimizer="adamw",
                      batch_size=opts.source_batch, label_smoothing=0.0, dropout=0.0,
                      unfreeze_frac=1.0, seed=opts.source_seed, steps_per_unit=opts.source_steps,
                      device=device)
    batches = ImageBatches(source, mean, std, 512, use_augment=True)
    learner = Learner(model, cfg, len(source.splits["train"]), batches.train, batches.evaluate,
                      _forward)
    learner.train_unit()
    metrics = learner.evaluate("val")
    return model.cpu(), {"mean": mean, "std": std, "val_acc": metrics["acc"],
                         "num_classes": source.num_classes}


def source_model(source: Dataset, opts: VisionOptions, cache_dir: str | None = None,
                 device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The cached source weights and info; pretrained here only if nobody has done it yet."""
    def build(folder: Path) -> None:
        started, cpu = time.time(), time.process_time()  # CPU: of every thread of this process
        if opts.source_method == "supervised":
            model, info = pretrain_source(source, opts, device)
            info["method"] = "supervised"
        else:  # the images only: the labels are not handed over
            model, info = pretrain_self_supervised(source.splits["train"].x, opts, device)
        info.update(inputs=source_key(source, opts), seconds=round(time.time() - started, 2),
                    cpu_s=round(time.process_time() - cpu, 2), pid=os.getpid(), device=device)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(folder / "weights.safetensors"))
        (folder / "info.json").write_text(json.dumps(info, indent=1))

    folder = cache.build_once("source_cnn", source_key(source, opts), build, cache_dir)
    return load_file(str(folder / "weights.safetensors")), json.loads((folder / "info.json").read_text())


def transfer_model(source_weights: dict[str, torch.Tensor], num_classes: int, width: float,
                   dropout: float, seed: int) -> SmallCNN:
    """A CNN with the source backbone and a freshly initialised ``num_classes``-way head."""
    torch.manual_seed(seed)
    model = SmallCNN(num_classes, width, dropout)
    backbone = {k: v for k, v in source_weights.items() if not k.startswith("head.")}
    # A zero-initialised head (as in BiT) starts the transfer at uniform predictions instead of
    # the large random logits a default init gives on top of pretrained features.
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ValueError(f"source weights do not fit: missing={missing}, unexpected={unexpected}")
    return model


def apply_unfreeze(model: SmallCNN, unfreeze_frac: float) -> int:
    """Freeze the lowest backbone blocks; the head always trains."""
    return freeze_lowest(model.blocks(), unfreeze_frac)


class VisionTask:
    """Everything one trial needs for the transfer task: cached source, new head, learner."""

    def __init__(self, source: Dataset | None, target: Dataset, opts: VisionOptions,
                 cfg: TrainConfig, val_limit: int = 0, cache_dir: str | None = None) -> None:
        self.opts, self.cfg, self.cache_dir = opts, cfg, cache_dir
        self.dataset = trial_view(target, opts.train_limit, val_limit)
        train = self.dataset.splits["train"]
        if source is None:  # source: none — the same CNN from scratch, the no-transfer baseline
            mean, std = channel_stats(train.x)
            weights: dict[str, torch.Tensor] | None = None
            self.source_info = {"mean": mean, "std": std, "method": "none"}
        else:  # on the trial's device (a GPU where there is one): trained once per key
            weights, self.source_info = source_model(source, opts, cache_dir,
                                                     str(pick_device(cfg.device)))
        if weights is None:
            torch.manual_seed(cfg.seed)
            model = SmallCNN(target.num_classes, opts.width, cfg.dropout)
        else:
            model = transfer_model(weights, target.num_classes, opts.width, cfg.dropout,
                                   cfg.seed)
        # from scratch, every layer trains: nothing to keep frozen
        self.depth = (len(model.blocks()) - apply_unfreeze(model, cfg.unfreeze_frac)
                      if weights is not None else 0)
        self.batches = ImageBatches(self.dataset, self.source_info["mean"],
                                    self.source_info["std"], cfg.eval_batch_size, opts.augment)
        # augmented images change at every step: their frozen features cannot be cached
        self.features = (self._features(model, self.depth)
                         if self.depth and not opts.augment else None)
        if cfg.head_init == "probe":
            self._probe(model)
        if self.features is None:
            train_batch, eval_batches, forward = self.batches.train, self.batches.evaluate, _forward
        else:
            train_batch, eval_batches, forward = self._cached_train, self._cached_eval, self._upper
        self.learner = Learner(channels_last(model), cfg, len(train), train_batch, eval_batches,
                               forward, frozen=model.blocks()[:self.depth])

    def _upper(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        h = batch["h"]
        for block in model.blocks()[self.depth:]:
            h = block(h)
        return model.head(model.dropout(h))

    def _cached_train(self, idx: torch.Tensor, generator: torch.Generator) -> Batch:
        assert self.features is not None
        rows = idx.numpy()
        return {"h": torch.from_numpy(np.array(self.features["train"][rows], dtype=np.float32)),
                "labels": self.batches.splits["train"][1][idx].long()}

    def _cached_eval(self, split: str) -> Iterator[Batch]:
        assert self.features is not None
        feats, y = self.features[split], self.batches.splits[split][1]
        for s in range(0, len(y), self.batches.eval_batch):
            yield {"h": torch.from_numpy(np.array(feats[s:s + self.batches.eval_batch],
                                                  dtype=np.float32)),
                   "labels": y[s:s + self.batches.eval_batch].long()}

    def _compute(self, model: SmallCNN, depth: int) -> dict[str, np.ndarray]:
        """The lowest ``depth`` blocks' output for every image of every split (eval mode)."""
        device = pick_device(self.cfg.device)
        model.eval().to(device)
        out = {}
        with torch.no_grad():
            for split in self.dataset.splits:
                parts = []
                for batch in self.batches.evaluate(split):
                    h = batch["x"].to(device)
                    for block in model.blocks()[:depth]:
                        h = block(h)
                    parts.append(h.float().cpu().numpy().astype(self.cfg.feature_dtype))
                out[split] = (np.concatenate(parts) if parts else
                              np.zeros((0, *self._shape(model, depth)), self.cfg.feature_dtype))
        model.train()
        return out

    @staticmethod
    def _shape(model: SmallCNN, depth: int) -> tuple[int, ...]:
        with torch.no_grad():  # on the model's device: _compute may have moved it
            h = torch.zeros(1, 3, 32, 32, device=next(model.parameters()).device)
            for block in model.blocks()[:depth]:
                h = block(h)
        return tuple(h.shape[1:])

    def _feature_key(self, model: SmallCNN, depth: int) -> dict[str, Any]:
        from trainables.features import params_digest

        return {"kind": "image", "frozen": params_digest(model.blocks()[:depth]), "depth": depth,
                "data": self.dataset.fingerprint(), "mean": self.source_info["mean"],
                "std": self.source_info["std"], "dtype": self.cfg.feature_dtype}

    def _features(self, model: SmallCNN, depth: int) -> dict[str, np.ndarray] | None:
        """The frozen blocks' output from the cache, built once; None when it does not fit."""
        from trainables.features import cached

        per_image = (int(np.prod(self._shape(model, depth)))
                     * np.dtype(self.cfg.feature_dtype).itemsize)
        nbytes = per_image * sum(len(d) for d in self.dataset.splits.values())
        return cached(self._feature_key(model, depth), nbytes,
                      lambda: self._compute(model, depth), self.cfg.feature_cache, self.cache_dir)

    def _probe(self, model: SmallCNN) -> None:
        """LP-FT: the head starts from a logistic regression on the whole backbone's features of
        the training images (unaugmented)."""
        from trainables.features import probe, set_head

        depth = len(model.blocks())
        if self.features is not None and self.depth == depth:
            top = self.features
        else:
            top = self._features(model, depth) or self._compute(model, depth)
        weight, bias = probe(self._feature_key(model, depth),
                             lambda: np.asarray(top["train"], dtype=np.float32),
                             self.dataset.splits["train"].y, self.dataset.num_classes,
                             self.cache_dir)
        set_head(model.head, weight, bias)

    def export(self, folder: Path) -> None:
        """Write the CNN as safetensors + ``config.json``, the pair :func:`load_exported` reads."""
        save_file({k: v.detach().cpu().contiguous() for k, v in self.learner.model.state_dict().items()},
                  str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({
            "architecture": "SmallCNN", "num_classes": self.dataset.num_classes,
            "width": self.opts.width, "dropout": self.cfg.dropout,
            "input": "uint8 RGB 32x32, NCHW, divided by 255 then normalised",
            "mean": self.source_info["mean"], "std": self.source_info["std"],
            "label_names": self.dataset.label_names}, indent=1))


def load_exported(folder: str | Path) -> tuple[SmallCNN, dict[str, Any]]:
    """Load a CNN written by ``metatune export``: safetensors weights + ``config.json``."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = SmallCNN(config["num_classes"], config["width"], config.get("dropout", 0.0))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), config
