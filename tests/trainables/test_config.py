import math

import pytest

from trainables.config import MetaConfig, TaskBudget, TrialSettings
from trainables.tasks import parse_task


def test_defaults_are_valid_and_round_trip():
    cfg = MetaConfig()
    assert MetaConfig.from_dict(cfg.to_dict()) == cfg


def test_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        MetaConfig().lr_scale = 2.0  # type: ignore[misc]


def test_unknown_key_named():
    with pytest.raises(ValueError, match=r"unknown MetaConfig key\(s\) \['lr'\]"):
        MetaConfig.from_dict({"lr": 0.1})


@pytest.mark.parametrize("key,value", [
    ("lr_scale", 0.0), ("lr_scale", -1.0), ("lr_scale", math.inf), ("lr_scale", "big"),
    ("weight_decay", -0.1), ("weight_decay", 1.5),
    ("warmup_frac", -0.01), ("warmup_frac", 0.6),
    ("schedule", "step"), ("optimizer", "adam"),
    ("batch_size", 0), ("batch_size", 2.5), ("batch_size", True),
    ("label_smoothing", 0.7), ("label_smoothing", -0.1),
    ("dropout", 0.95), ("dropout", -0.1),
    ("unfreeze_frac", -0.1), ("unfreeze_frac", 1.1),
    ("seed", -1), ("lr_scale", math.nan),
])
def test_each_rule_names_key_and_value(key, value):
    with pytest.raises(ValueError) as err:
        MetaConfig.from_dict({key: value})
    assert key in str(err.value) and repr(value) in str(err.value)


def test_numpy_and_float_ints_accepted():
    import numpy as np

    cfg = MetaConfig.from_dict({"batch_size": 16.0, "lr_scale": np.float64(0.5),
                                "seed": np.int64(3)})
    assert cfg.batch_size == 16 and isinstance(cfg.batch_size, int)
    assert cfg.lr_scale == 0.5 and type(cfg.lr_scale) is float and cfg.seed == 3


BUDGET = TaskBudget(base_lr=1e-4, base_lr_sgd=5e-3, steps_per_unit=10)


def test_for_task_applies_decoupled_knobs():
    cfg = MetaConfig(lr_scale=2.0, warmup_frac=0.1, batch_size=8).for_task(BUDGET, max_units=5)
    assert cfg.lr == pytest.approx(2e-4)
    assert cfg.total_steps == 50 and cfg.warmup_steps == 5 and cfg.batch_size == 8


def test_each_optimizer_scales_its_own_base_lr():
    assert MetaConfig(optimizer="sgd", lr_scale=0.5).for_task(BUDGET, 1).lr == pytest.approx(2.5e-3)
    assert MetaConfig(optimizer="adamw", lr_scale=0.5).for_task(BUDGET, 1).lr == pytest.approx(5e-5)


def test_budget_and_settings_validation():
    with pytest.raises(ValueError, match=r"^steps_per_unit=0 is invalid"):
        TaskBudget(base_lr=1e-3, base_lr_sgd=1e-2, steps_per_unit=0)
    with pytest.raises(ValueError, match=r"^base_lr_sgd=-1 is invalid: must be > 0"):
        TaskBudget(base_lr=1e-3, base_lr_sgd=-1)
    with pytest.raises(ValueError, match=r"^val_limit=-1 is invalid"):
        TaskBudget(base_lr=1e-3, base_lr_sgd=1e-2, val_limit=-1)
    task = parse_task("newsgroups")
    with pytest.raises(ValueError, match=r"^aggregate='max' is invalid"):
        TrialSettings(tasks=(task,), data_dir="x", aggregate="max")
    with pytest.raises(ValueError, match=r"^tasks=\['newsgroups', 'newsgroups'\] is invalid: a task "
                                         "is listed twice"):
        TrialSettings(tasks=(task, task), data_dir="x")
    with pytest.raises(ValueError, match=r"^checkpoint_every=0 is invalid"):
        TrialSettings(tasks=(task,), data_dir="x", checkpoint_every=0)
