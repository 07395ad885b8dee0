import pytest

from tests.conftest import TEXT_OPTS, VISION_OPTS
from trainables.config import MetaConfig, TrialSettings
from trainables.meta import MetaTrial

TASKS = ("newsgroups", "cifar_transfer")


def _settings(syn_dir, cache_dir, units=4, **opts):
    return TrialSettings(tasks=TASKS, data_dir=str(syn_dir), max_units=units,
                         task_options={"newsgroups": {**TEXT_OPTS, **opts},
                                       "cifar_transfer": {**VISION_OPTS, **opts}},
                         cache_dir=cache_dir)


def test_resume_gives_the_same_curve(syn_dir, cache_dir, tmp_path):
    meta = MetaConfig(dropout=0.2, seed=3)  # dropout + augmentation: RNG state matters
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
            if not key.endswith("/seconds"):
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
    settings = TrialSettings(tasks=("newsgroups",), data_dir=str(syn_dir), max_units=2,
                             task_options={"newsgroups": TEXT_OPTS}, cache_dir=cache_dir)
    report = MetaTrial(MetaConfig(), settings).run_unit()
    assert not [k for k in report if k.startswith("cifar_transfer/")]
    assert report["meta_score"] == pytest.approx(report["newsgroups/score"])
    assert report["units"] == 1
