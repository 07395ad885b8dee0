import dataclasses

import pytest

from trainables.config import MetaConfig
from tune_jobs import cli, spaces


def test_space_covers_every_metaconfig_field():
    fields = {f.name for f in dataclasses.fields(MetaConfig)}
    assert set(spaces.DEFAULT_SPACE) == fields
    assert spaces.DEFAULT_SPACE["lr_scale"] == {"loguniform": [0.1, 10.0]}  # multiplicative
    assert "loguniform" in spaces.DEFAULT_SPACE["weight_decay"]


@pytest.mark.parametrize("name", sorted(spaces.PRESETS))
def test_presets_validate_and_map_to_metaconfig(name):
    spec = spaces.validate(spaces.preset(name))
    assert set(spec["space"]) <= {f.name for f in dataclasses.fields(MetaConfig)}
    space = spaces.param_space(spec["space"])
    sample = {k: (v.sample() if hasattr(v, "sample") else v) for k, v in space.items()}
    MetaConfig.from_dict(sample)  # every sampled config is a valid MetaConfig
    assert spaces.trial_settings(spec, ".").max_units == spec["asha"]["max_t"]


def test_gpu_preset_uses_fractional_gpus_and_bert_base():
    spec = spaces.validate(spaces.preset("gpu"))
    assert 0 < spec["resources"]["gpu"] < 1
    assert spec["task_options"]["newsgroups"]["model"] == "bert-base-uncased"


def test_overrides_and_files(tmp_path):
    spec = spaces.apply_sets(spaces.preset("smoke"),
                             ["asha.max_t=6", "space.batch_size=[8, 16]", "num_samples=3",
                              "space.dropout={uniform: [0.0, 0.5]}", "task_options.newsgroups.max_length=32"])
    spec = spaces.validate(spec)
    assert spec["asha"]["max_t"] == 6 and spec["space"]["batch_size"] == [8, 16]
    assert spec["space"]["dropout"] == {"uniform": [0.0, 0.5]}
    assert spec["task_options"]["newsgroups"]["max_length"] == 32
    assert spec["task_options"]["newsgroups"]["model"] == "tiny"  # merged, not replaced
    f = tmp_path / "s.yaml"
    f.write_text("num_samples: 5\nspace:\n  lr_scale: {loguniform: [0.5, 2.0]}\n")
    merged = spaces.validate(spaces.merge(spaces.preset("smoke"), spaces.load_file(f)))
    assert merged["num_samples"] == 5 and merged["space"]["lr_scale"] == {"loguniform": [0.5, 2.0]}
    assert merged["space"]["batch_size"] == [16, 32]  # the rest of the preset's space stays


@pytest.mark.parametrize("sets,match", [
    (["space.lr_scale={loguniform: [0.0, 1.0]}"], "log scale needs low > 0"),
    (["space.lr_scale={uniform: [-1.0, 1.0]}"], "lr_scale=-1.0"),
    (["space.optimizer=[adam]"], "optimizer='adam'"),
    (["space.unfreeze_frac=1.5"], "unfreeze_frac=1.5"),
    (["space.learning_rate=0.1"], r"unknown key\(s\) \['learning_rate'\] in space"),
    (["asha.grace_period=9"], "grace_period=9"),
    (["asha.reduction_factor=1"], "reduction_factor=1"),
    (["num_samples=0"], "num_samples=0"),
    (["searcher=grid"], "searcher='grid'"),
    (["resources.gpu=1.5"], "resources.gpu=1.5"),
    (["tasks=[mnist]"], r"unknown task\(s\) \['mnist'\]"),
    (["task_options.newsgroups.max_lenght=3"], "max_lenght"),
])
def test_bad_overrides_rejected(sets, match):
    with pytest.raises(ValueError, match=match):
        spaces.validate(spaces.apply_sets(spaces.preset("smoke"), sets))


def test_bad_input_exits_2_before_ray_starts(monkeypatch, capsys, tmp_path):
    from tune_jobs import commands

    def no_ray(*a, **k):
        raise AssertionError("Ray must not start on bad input")

    monkeypatch.setattr(commands, "init_ray", no_ray)
    assert cli.main(["run", "--preset", "smoke", "--set", "space.dropout=2.0"]) == 2
    assert "dropout=2.0" in capsys.readouterr().err
    assert cli.main(["run", "--preset", "nope"]) == 2
    assert cli.main(["run", "--data", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert cli.main(["run", "--data", str(tmp_path)]) == 2  # a folder without the data sets
    assert "metatune data" in capsys.readouterr().err
    assert cli.main(["run", "--bogus-flag"]) == 2


def test_optuna_searcher_takes_the_space():
    from ray.tune.search.optuna import OptunaSearch

    spec = spaces.validate(spaces.apply_sets(spaces.preset("smoke"), ["searcher=optuna"]))
    from tune_jobs import search

    limiter = search.build_searcher(spec)
    assert isinstance(limiter.searcher, OptunaSearch)
    dists = OptunaSearch.convert_search_space(spaces.param_space(spec["space"]))
    assert dists["lr_scale"].log and dists["lr_scale"].low == 0.3
    assert set(dists) == {k for k, v in spec["space"].items() if isinstance(v, (dict, list))}


def test_task_resources_select_the_scale_out_form():
    spec = spaces.validate(spaces.preset("gpu"))
    assert spec["task_resources"]["newsgroups"]["gpu"] == 0.5  # BERT on a GPU bundle
    assert spec["task_resources"]["cifar_transfer"] == {"cpu": 2}  # the CNN on CPUs
    with pytest.raises(ValueError, match="task_resources.mnist names no task"):
        spaces.validate(spaces.apply_sets(spaces.preset("smoke"),
                                          ["task_resources={mnist: {cpu: 1}}"]))
    with pytest.raises(ValueError, match=r"task_resources.newsgroups.gpu=-1"):
        spaces.validate(spaces.apply_sets(spaces.preset("smoke"),
                                          ["task_resources={newsgroups: {gpu: -1}}"]))


def test_custom_tasks_from_a_spec_run_in_a_trial(syn_dir, cache_dir, tmp_path):
    """A user's own text (CSV) and image (.npz) tasks, declared in the spec, without code."""
    import csv

    import numpy as np

    from trainables.data.newsgroups import load_newsgroups
    from trainables.meta import MetaTrial

    news = load_newsgroups(syn_dir).splits["train"]
    with open(tmp_path / "reviews.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for text, y in zip(news.x, news.y, strict=True):
            if y < 3:
                writer.writerow([text, f"class{y}"])
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "shapes.npz", x=rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8),
             y=np.arange(60) % 3)
    spec = spaces.validate(spaces.apply_sets(spaces.preset("smoke"), [
        "tasks=[reviews, shapes]",
        f"custom_tasks.reviews={{type: text, train: {tmp_path / 'reviews.csv'}}}",
        f"custom_tasks.shapes={{type: image, train: {tmp_path / 'shapes.npz'}, reference: 0.9}}",
        "task_options.reviews={model: tiny, max_length: 32, steps_per_unit: 2}",
        "task_options.shapes={source_steps: 20, steps_per_unit: 2}", "asha.max_t=2"]))
    settings = dataclasses.replace(spaces.trial_settings(spec, str(syn_dir)), cache_dir=cache_dir)
    trial = MetaTrial(MetaConfig(batch_size=8), settings)
    report = trial.run_unit()
    assert {"reviews/val_acc", "shapes/val_acc", "meta_score"} <= set(report)
    assert trial.refs["shapes"] == (pytest.approx(1 / 3), 0.9)  # the spec's own reference
    assert trial.tasks["reviews"].dataset.label_names == ["class0", "class1", "class2"]
    with pytest.raises(ValueError, match="no such file or folder"):
        spaces.validate(spaces.apply_sets(spaces.preset("smoke"), [
            "tasks=[gone]", "custom_tasks.gone={type: text, train: /nope.csv}"]))
