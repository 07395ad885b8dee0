import numpy as np
import pytest
import torch

from tests.conftest import task_for
from trainables.config import MetaConfig
from trainables.text import apply_unfreeze, collate


def _task(syn_dir, cache_dir, **meta):
    return task_for("newsgroups", syn_dir, cache_dir, MetaConfig(**meta))[0]


def test_dynamic_padding_and_mask():
    ids = np.array([5, 6, 7, 8, 9, 10], dtype=np.int32)
    offsets = np.array([0, 1, 4, 6])
    b = collate(ids, offsets, np.array([0, 1]), np.array([3, 4, 5]), pad_id=0)
    assert b["input_ids"].tolist() == [[5, 0, 0], [6, 7, 8]]
    assert b["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert b["labels"].tolist() == [3, 4]


def test_padding_does_not_change_logits(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir)
    model = task.learner.model.eval()
    ids, offsets = task.tokens["val"]
    short, long = sorted(range(8), key=lambda r: offsets[r + 1] - offsets[r])[::7][:2]
    alone = collate(ids, offsets, np.array([short]), task.labels["val"], task.pad_id)
    padded = collate(ids, offsets, np.array([short, long]), task.labels["val"], task.pad_id)
    with torch.no_grad():
        a = model(input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]).logits
        p = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    assert torch.allclose(a[0], p[0], atol=1e-5)


def test_unfreeze_zero_trains_head_only(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir, unfreeze_frac=0.0)
    model = task.learner.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task.learner.train_unit()
    after = model.state_dict()
    for name, p in model.named_parameters():
        in_head = name.startswith(("classifier", "bert.pooler"))
        assert p.requires_grad == in_head, name
        if not in_head:
            assert p.grad is None and torch.equal(before[name], after[name]), name
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_unfreeze_fraction_and_full(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir, unfreeze_frac=1.0)
    assert all(p.requires_grad for p in task.learner.model.parameters())
    model = task.learner.model
    # 3 blocks (embeddings + 2 layers): 0.34 → the top one only
    assert apply_unfreeze(model, 0.34) == 1
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert not any(p.requires_grad for p in model.bert.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.bert.encoder.layer[1].parameters())


def test_metrics_and_knobs_reach_the_model(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir, dropout=0.3, label_smoothing=0.2, optimizer="sgd",
                 lr_scale=0.5, weight_decay=0.05)
    learner = task.learner
    assert learner.model.dropout.p == pytest.approx(0.3)
    assert learner.loss_fn.label_smoothing == pytest.approx(0.2)
    assert isinstance(learner.optimizer, torch.optim.SGD)
    assert learner.optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.05)
    assert learner.optimizer.param_groups[1]["weight_decay"] == 0.0  # biases, LayerNorm
    metrics = learner.evaluate("val")
    assert set(metrics) == {"acc", "macro_f1", "top5_acc", "loss"}
    assert 0.0 <= metrics["acc"] <= 1.0 and metrics["top5_acc"] >= metrics["acc"]
