"""The training loop shared by every task: optimiser, schedule, data order, one budget unit,
evaluation and the exact state a resumed run needs. Pure PyTorch; tasks plug in their batches.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from transformers import get_scheduler

from trainables.config import TrainConfig

Batch = dict[str, torch.Tensor]
_SCHEDULER_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
_NO_DECAY = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")


def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """Macro-F1 over the classes that occur in ``labels`` or ``preds``, a class with no true or
    predicted example scoring 0: scikit-learn's ``f1_score(average="macro", zero_division=0)``.
    Written here because importing scikit-learn's metrics (with SciPy) costs every trial process
    about 2 s before its first step, and nothing else in a trial needs it."""
    classes, inverse = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    y, p = inverse[:len(labels)], inverse[len(labels):]
    k = len(classes)
    tp = np.bincount(y[y == p], minlength=k).astype(np.float64)
    # 2tp + fp + fn = (tp + fn) + (tp + fp): > 0 for every class that occurs
    occurs = np.bincount(y, minlength=k) + np.bincount(p, minlength=k)
    return float(np.mean(2 * tp / occurs)) if k else 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={requested!r} is invalid: no CUDA device is visible")
    return torch.device(requested)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov, momentum 0.9) over trainable parameters; no decay on bias/norms."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(_NO_DECAY) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Warm-up then linear/cosine/constant, with transformers' own schedule helpers."""
    return get_scheduler(_SCHEDULER_NAMES[cfg.schedule], opt, num_warmup_steps=cfg.warmup_steps,
                         num_training_steps=max(cfg.total_steps, 1))


class BatchOrder:
    """Seeded epoch-wise shuffling whose position is part of the checkpoint."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < 1:
            raise ValueError(f"n={n} is invalid: the training split is empty")
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > self.n:  # drop the ragged tail, reshuffle
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.cursor = 0
        idx = self.perm[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ({"order.perm": self.perm, "order.gen": self.generator.get_state()},
                {"cursor": self.cursor})

    def load(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.perm = tensors["order.perm"].clone()
        self.generator.set_state(tensors["order.gen"].clone())
        self.cursor = int(state["cursor"])


class Learner:
    """Model, optimiser, schedule and data order of one task: trains units and evaluates.

    ``make_batch(indices, generator)`` turns training-set indices into a batch dict with
    ``labels`` (``generator`` drives any augmentation, so it is part of the resumable state);
    ``eval_batches(split)`` yields evaluation batches; ``forward(model, batch)`` returns logits.
    All three come from the task module. The ``frozen`` blocks run in eval mode while the rest
    trains (no dropout in what does not learn), so that their output is the same in every step
    and can be computed once (:mod:`trainables.features`).
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, train_size: int,
                 make_batch: Callable[[torch.Tensor, torch.Generator], Batch],
                 eval_batches: Callable[[str], Iterator[Batch]],
                 forward: Callable[[torch.nn.Module, Batch], torch.Tensor],
                 frozen: list[torch.nn.Module] | None = None) -> None:
        self.cfg = cfg
        self.frozen_blocks = list(frozen or [])
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.order = BatchOrder(train_size, cfg.batch_size, cfg.seed)
        self.aug_generator = torch.Generator().manual_seed(cfg.seed + 7919)
        self.make_batch, self.eval_batches, self.forward = make_batch, eval_batches, forward
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.step = 0
        self.units = 0
        self._frozen_digest: tuple[list[str], str] | None = None

    def _autocast(self) -> Any:
        if self.cfg.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def train_unit(self) -> dict[str, float]:
        """Run one budget unit: ``steps_per_unit`` optimisation steps. Returns the mean loss."""
        self.model.train()
        for block in self.frozen_blocks:
            block.eval()
        total = torch.zeros((), device=self.device)  # summed on the device, read once per unit
        for _ in range(self.cfg.steps_per_unit):
            batch = self.make_batch(self.order.next(), self.aug_generator)
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with self._autocast():
                logits = self.forward(self.model, batch)
                loss = self.loss_fn(logits.float(), batch["labels"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            total += loss.detach()
        self.units += 1
        return {"train_loss": float(total) / self.cfg.steps_per_unit,
                "lr": float(self.scheduler.get_last_lr()[0])}

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Accuracy, macro-F1, top-5 accuracy and mean loss on ``split``."""
        self.model.eval()
        preds, labels = [], []
        top5 = torch.zeros((), dtype=torch.long, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        for batch in self.eval_batches(split):  # no host sync until the split is done
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with self._autocast():
                logits = self.forward(self.model, batch).float()
            loss_sum += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
            k = min(5, logits.shape[-1])
            top5 += (logits.topk(k, dim=-1).indices == batch["labels"][:, None]).any(-1).sum()
            preds.append(logits.argmax(-1))
            labels.append(batch["labels"])
        p, y = torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()
        return {"acc": float((p == y).mean()),
                "macro_f1": macro_f1(y, p),
                "top5_acc": int(top5) / len(y), "loss": float(loss_sum) / len(y)}

    def _frozen(self) -> tuple[list[str], str]:
        """The frozen parameters' names and one SHA-256 over their values, computed once: they
        never change (no gradient, not in the optimizer), and a restore rebuilds them from the
        same pretrained or source weights, so a checkpoint records them by this digest."""
        if self._frozen_digest is None:
            h = hashlib.sha256()
            names = sorted(n for n, p in self.model.named_parameters() if not p.requires_grad)
            params = dict(self.model.named_parameters())
            for name in names:
                h.update(name.encode())
                h.update(params[name].detach().cpu().contiguous().view(torch.uint8).numpy())
            self._frozen_digest = (names, h.hexdigest())
        return self._frozen_digest

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Every tensor and counter needed to continue the same curve after a restore.

        Only what a restore cannot rebuild: frozen parameters are recorded by their digest
        (:meth:`_frozen`), and the optimizer holds state for the trained parameters only.
        """
        frozen, digest = self._frozen()
        skip = set(frozen)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items() if k not in skip}
        opt = self.optimizer.state_dict()
        for pid, pstate in opt["state"].items():
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{key}"] = value
        order_t, order_s = self.order.state()
        tensors.update(order_t)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.aug"] = self.aug_generator.get_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        np_state = np.random.get_state()
        state = {
            "step": self.step, "units": self.units, "order": order_s,
            "frozen": {"count": len(frozen), "sha256": digest},
            "optim_groups": opt["param_groups"],
            "optim_scalars": {str(pid): {k: v for k, v in s.items()
                                         if not isinstance(v, torch.Tensor) and v is not None}
                              for pid, s in opt["state"].items()},
            "scheduler": self.scheduler.state_dict(),
            "rng_python": _to_json(random.getstate()),
            "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        }
        return tensors, state

    def load(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        frozen, digest = self._frozen()
        recorded = state.get("frozen", {"count": 0, "sha256": None})
        if recorded["count"] and recorded["sha256"] != digest:
            raise ValueError(
                f"the checkpoint records {recorded['count']} frozen parameter(s) by digest "
                f"{recorded['sha256'][:12]}…, but the model rebuilt here has "
                f"{len(frozen)} with digest {digest[:12]}…: the pretrained or source weights "
                "changed since it was written (a different model, or a rebuilt source cache)")
        missing, unexpected = self.model.load_state_dict(model_state, strict=False)
        expected_missing = set(frozen) if recorded["count"] else set()
        if unexpected or set(missing) != expected_missing:
            raise ValueError(f"the checkpoint does not fit this model: missing "
                             f"{sorted(set(missing) - expected_missing)[:5]}, unexpected "
                             f"{sorted(unexpected)[:5]}")
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = value.to(self.device)
        for pid, scalars in state["optim_scalars"].items():
            opt_state.setdefault(int(pid), {}).update(scalars)
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": state["optim_groups"]})
        self.scheduler.load_state_dict(state["scheduler"])
        self.order.load(tensors, state["order"])
        torch.set_rng_state(tensors["rng.torch"])
        self.aug_generator.set_state(tensors["rng.aug"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        random.setstate(_from_json(state["rng_python"]))
        n = state["rng_numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
        self.step, self.units = int(state["step"]), int(state["units"])


def _to_json(obj: Any) -> Any:
    return [_to_json(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _from_json(obj: Any) -> Any:
    return tuple(_from_json(o) for o in obj) if isinstance(obj, list) else obj


def freeze_lowest(blocks: list[torch.nn.Module], unfreeze_frac: float) -> int:
    """Freeze all but the top ``round(unfreeze_frac × len(blocks))`` blocks; returns how many train."""
    n_train = int(round(unfreeze_frac * len(blocks)))
    for i, block in enumerate(blocks):
        trainable = i >= len(blocks) - n_train
        for p in block.parameters():
            p.requires_grad_(trainable)
    return n_train
