import pytest
import torch

from tests.conftest import settings_for
from trainables.config import MetaConfig
from trainables.meta import MetaTrial


def _settings(syn_dir, cache_dir, units=4, **opts):
    return settings_for(syn_dir, cache_dir, units=units, newsgroups=opts, cifar_transfer=opts)


@pytest.mark.parametrize("unfreeze_frac", [1.0, 0.5])
def test_resume_gives_the_same_curve(syn_dir, cache_dir, tmp_path, unfreeze_frac):
    """Also with frozen layers, which a checkpoint records by digest rather than by value."""
    # dropout + augmentation: RNG state matters
    meta = MetaConfig(dropout=0.2, seed=3, unfreeze_frac=unfreeze_frac)
    settings = _settings(syn_dir, cache_dir)
    straight = MetaTrial(meta, settings)
    curve = [straight.run_unit() for _ in range(4)]

    first = MetaTrial(meta, settings)
    part = [first.run_unit() for _ in range(2)]
    first.save(tmp_path / "ck")
    del first
    resumed = MetaTrial(meta, settings)
    resumed.restore(tmp_path / "ck")
    part += [resumed.run_unit() for _ in range(2)]

    for a, b in zip(curve, part, strict=True):
        for key in a:
            if not key.endswith(("/train_s", "/eval_s")):
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key


def test_restore_refuses_other_config(syn_dir, cache_dir, tmp_path):
    settings = _settings(syn_dir, cache_dir)
    trial = MetaTrial(MetaConfig(seed=1), settings)
    trial.save(tmp_path / "ck")
    with pytest.raises(ValueError, match="made by config"):
        MetaTrial(MetaConfig(seed=2), settings).restore(tmp_path / "ck")


@pytest.mark.slow
def test_short_training_beats_chance_on_both_tasks(syn_dir, cache_dir):
    settings = _settings(syn_dir, cache_dir, units=6, steps_per_unit=20)
    trial = MetaTrial(MetaConfig(lr_scale=1.0, warmup_frac=0.05), settings)
    for _ in range(settings.max_units):
        report = trial.run_unit()
    # chance: 1/20 and 1/100
    assert report["newsgroups/val_acc"] > 0.15, report
    assert report["cifar_transfer/val_acc"] > 0.10, report
    assert report["meta_score"] > 0.08
    assert report["units"] == 6


def test_single_task_trial_is_the_same_trainable_with_one_task(syn_dir, cache_dir):
    settings = settings_for(syn_dir, cache_dir, ("newsgroups",), units=2)
    report = MetaTrial(MetaConfig(), settings).run_unit()
    assert not [k for k in report if k.startswith("cifar_transfer/")]
    assert report["meta_score"] == pytest.approx(report["newsgroups/score"])
    assert report["units"] == 1


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_initial_lr_is_base_lr_times_lr_scale_per_task(optimizer, syn_dir, cache_dir):
    """The whole path of lr_scale and base_lr: --set → SearchSpec → TaskSpec → TrainConfig →
    the optimizer of each task in a trial."""
    from tune_jobs.spec import presets

    spec = presets.build("smoke", overrides={"cache_dir": cache_dir}, sets=[
        "task_options.newsgroups.base_lr=1e-3", "task_options.newsgroups.base_lr_sgd=4e-2",
        "task_options.cifar_transfer.base_lr=3e-3", "task_options.cifar_transfer.base_lr_sgd=0.1",
        "task_options.cifar_transfer.source_steps=150", "task_options.newsgroups.steps_per_unit=5"])
    meta = MetaConfig(lr_scale=0.5, optimizer=optimizer, warmup_frac=0.0, schedule="constant")
    trial = MetaTrial(meta, spec.trial_settings(str(syn_dir)))
    base = {"adamw": {"newsgroups": 1e-3, "cifar_transfer": 3e-3},
            "sgd": {"newsgroups": 4e-2, "cifar_transfer": 0.1}}[optimizer]
    for name, task in trial.tasks.items():
        opt = task.learner.optimizer
        kind = torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD
        assert isinstance(opt, kind)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5 * base[name]] * 2)


def test_frozen_weights_are_recorded_by_digest_and_checked_on_restore(syn_dir, cache_dir,
                                                                      tmp_path):
    from safetensors import safe_open

    settings = _settings(syn_dir, cache_dir)
    half, full = MetaConfig(unfreeze_frac=0.5), MetaConfig(unfreeze_frac=1.0)
    sizes = {}
    for name, meta in (("half", half), ("full", full)):
        trial = MetaTrial(meta, settings)
        trial.run_unit()
        trial.save(tmp_path / name)
        sizes[name] = (tmp_path / name / "cifar_transfer" / "tensors.safetensors").stat().st_size
    model = MetaTrial(half, settings).tasks["cifar_transfer"].learner.model
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen
    with safe_open(str(tmp_path / "half" / "cifar_transfer" / "tensors.safetensors"), "pt") as f:
        stored = set(f.keys())
    assert not {f"model.{n}" for n in frozen} & stored  # not copied ...
    assert sizes["half"] < sizes["full"]                 # ... so the checkpoint is smaller
    # a model whose frozen weights differ from the ones the checkpoint was made on is refused
    other = MetaTrial(half, settings)
    first = next(iter(sorted(frozen)))
    with torch.no_grad():
        dict(other.tasks["cifar_transfer"].learner.model.named_parameters())[first].add_(1.0)
    with pytest.raises(ValueError, match="frozen parameter.*changed since it was written"):
        other.restore(tmp_path / "half")
