"""Classical baselines on tiny data sets: fitted once, cached, and good enough to be a yardstick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import settings_for
from trainables.data import cache


def test_text_and_image_baselines_learn_and_are_fitted_once(syn_dir, tmp_path):
    from trainables.tasks import task_baseline

    settings = settings_for(syn_dir, str(tmp_path / "cache"), newsgroups={"model": "tiny"},
                            cifar_transfer={"source_steps": 100})
    text_spec, image_spec = settings.tasks
    text = task_baseline(text_spec, settings)
    image = task_baseline(image_spec, settings)
    assert text.method.startswith("tfidf") and image.method.startswith("logistic")
    assert "source backbone" in image.method
    # far above chance on the stand-ins (20 and 100 classes)
    assert text.val_acc > 0.3 and text.test_acc > 0.3
    assert image.val_acc > 0.05 and image.test_acc > 0.05
    again = task_baseline(text_spec, settings)
    assert again == text
    assert len(cache.builds("baseline", str(tmp_path / "cache"))) == 2  # one fit per task


def test_a_custom_task_is_scaled_by_its_measured_baseline(syn_dir, tmp_path):
    """reference: baseline is the custom tasks' default, and the trial's score uses it."""
    from trainables.config import MetaConfig
    from trainables.meta import TaskRunner
    from trainables.tasks import reference, task_baseline, trial_settings

    rng = np.random.default_rng(0)
    words = {c: [f"{c}{i}" for i in range(8)] for c in "abc"}
    lines = ["text,label"] + [f"{' '.join(rng.choice(words[c], 6))},{c}"
                              for c in "abc" for _ in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    settings = trial_settings(["t"], str(syn_dir), {"t": {"model": "tiny", "max_length": 16,
                                                          "steps_per_unit": 2}},
                              {"t": {"type": "text", "train": str(tmp_path / "t.csv")}},
                              max_units=2, cache_dir=str(tmp_path / "cache"))
    (spec,) = settings.tasks
    assert spec.reference == "baseline"
    measured = task_baseline(spec, settings).val_acc
    runner = TaskRunner(spec, MetaConfig(), settings)
    assert runner.reference == pytest.approx(measured)
    # a stated number still wins; a baseline at chance falls back to the ideal classifier
    assert reference(spec.__class__(**{**spec.__dict__, "reference": 0.9}), "custom") == 0.9
    assert reference(spec, "custom", baseline_val=0.30, chance_acc=1 / 3) == 1.0
    entry = next((tmp_path / "cache" / "baseline").glob("*/baseline.json"))
    assert json.loads(entry.read_text())["train_examples"] > 0
