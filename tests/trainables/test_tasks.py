"""One parser for a task's options: typed budget, model options and data source."""

import csv

import numpy as np
import pytest

from trainables.config import MetaConfig, TextOptions, VisionOptions
from trainables.tasks import DEFAULT_BUDGETS, parse_task, reference, trial_settings


def test_builtin_task_options_split_into_budget_model_and_data():
    spec = parse_task("newsgroups", {"model": "tiny", "base_lr": 3e-3, "val_limit": 50,
                                     "remove": ["headers"], "reference": 0.7})
    assert spec.kind == "text" and spec.model == TextOptions(model="tiny")
    assert spec.budget.base_lr == 3e-3 and spec.budget.val_limit == 50
    assert spec.budget.base_lr_sgd == DEFAULT_BUDGETS["text"].base_lr_sgd  # default kept
    assert spec.remove == ("headers",) and spec.reference == 0.7
    assert parse_task("newsgroups", {"remove": []}).remove == ()  # keep everything
    assert parse_task("newsgroups").remove is None  # the loader's default
    image = parse_task("cifar_transfer", {"width": 0.5})
    assert image.kind == "image" and image.model == VisionOptions(width=0.5)


@pytest.mark.parametrize("name,options,custom,match", [
    ("newsgroups", {"max_eval_examples": 5}, None,
     r"^unknown key\(s\) \['max_eval_examples'\] in newsgroups;"),
    ("cifar_transfer", {"remove": ["headers"]}, None,
     r"^unknown key\(s\) \['remove'\] in cifar_transfer;"),
    ("cifar_transfer", {"model": "tiny"}, None, r"^unknown key\(s\) \['model'\]"),
    ("newsgroups", {"train": "/x.csv"}, None, r"^unknown key\(s\) \['train'\]"),
    ("newsgroups", "tiny", None, r"^newsgroups='tiny' is invalid"),
    ("mine", None, {"type": "audio", "train": "/x"}, r"^mine.type='audio'"),
    ("mine", None, {"type": "text"}, r"^mine needs train"),
    ("mine", None, {"type": "text", "train": "/nope.csv"},
     r"^mine.train='/nope.csv': no such file or folder$"),
    ("mine", None, {"type": "text", "train": "/", "width": 2},
     r"^unknown key\(s\) \['width'\] in mine;"),
    ("newsgroups", None, {"type": "text", "train": "/"}, r"is a built-in task"),
    ("newsgroups", {"reference": 1.5}, None, r"^newsgroups.reference=1.5 is invalid"),
    ("newsgroups", {"steps_per_unit": 0}, None, r"^steps_per_unit=0 is invalid"),
    ("nope", None, None, r"^unknown task 'nope'"),
])
def test_bad_task_options_are_named(name, options, custom, match):
    """Errors name the task's mappings by the task's name: trainables/ knows no spec keys."""
    with pytest.raises(ValueError, match=match):
        parse_task(name, options, custom)


@pytest.mark.parametrize("options,custom,match", [
    ({"width": 0}, None, r"^opts/cifar_transfer.width=0 is invalid"),
    ({"nope": 1}, None, r"in opts/cifar_transfer;"),
    (None, {"type": "image", "train": "/"}, r"^decl/cifar_transfer: 'cifar_transfer' is a built-in"),
])
def test_errors_use_the_callers_labels(options, custom, match):
    with pytest.raises(ValueError, match=match):
        parse_task("cifar_transfer", options, custom,
                   labels=("opts/cifar_transfer", "decl/cifar_transfer"))


def test_reference_stated_builtin_or_ideal():
    assert reference(parse_task("newsgroups"), "real") == 0.72
    assert reference(parse_task("newsgroups"), "synthetic") == 1.0
    assert reference(parse_task("newsgroups", {"reference": 0.5}), "real") == 0.5
    mine = parse_task("mine", None, {"type": "image", "train": "/"})
    assert mine.reference == "baseline"  # a custom task's default: its measured baseline
    assert reference(mine, "custom", baseline_val=0.6, chance_acc=0.1) == 0.6
    with pytest.raises(ValueError, match="needs the baseline's accuracy"):
        reference(mine, "custom")
    stated = parse_task("mine", {"reference": 0.8}, {"type": "image", "train": "/"})
    assert reference(stated, "custom") == 0.8
    with pytest.raises(ValueError, match="mine.reference='best'"):
        parse_task("mine", {"reference": "best"}, {"type": "image", "train": "/"})


def test_custom_tasks_from_a_spec_run_in_a_trial(syn_dir, cache_dir, tmp_path):
    """A user's own text (CSV) and image (.npz) tasks, declared in the spec, without code."""
    from trainables.data.newsgroups import load_newsgroups
    from trainables.meta import MetaTrial
    from tune_jobs.spec import presets

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
    spec = presets.build("smoke", overrides={"cache_dir": cache_dir}, sets=[
        "tasks=[reviews, shapes]",
        f"custom_tasks.reviews={{type: text, train: {tmp_path / 'reviews.csv'}}}",
        f"custom_tasks.shapes={{type: image, train: {tmp_path / 'shapes.npz'}, reference: 0.9}}",
        "task_options.reviews={model: tiny, max_length: 32, steps_per_unit: 2}",
        "task_options.shapes={source_steps: 20, steps_per_unit: 2}", "asha.max_t=2"])
    trial = MetaTrial(MetaConfig(batch_size=8), spec.trial_settings(str(syn_dir)))
    report = trial.run_unit()
    assert {"reviews/val_acc", "shapes/val_acc", "meta_score"} <= set(report)
    shapes = trial.runners["shapes"]
    assert (shapes.chance, shapes.reference) == (pytest.approx(1 / 3), 0.9)  # the spec's own
    assert trial.tasks["reviews"].dataset.label_names == ["class0", "class1", "class2"]


def test_trial_settings_parse_every_task_once():
    settings = trial_settings(["newsgroups", "cifar_transfer"], "/data",
                              {"newsgroups": {"model": "tiny"}}, max_units=3)
    assert settings.names == ("newsgroups", "cifar_transfer")
    assert settings.task("newsgroups").model.model == "tiny"
    with pytest.raises(ValueError, match=r"^tasks='newsgroups' is invalid"):
        trial_settings("newsgroups", "/data")


def test_the_source_line_names_a_custom_source_file(tmp_path, syn_dir, cache_dir):
    from trainables.tasks import check_data
    from tune_jobs.spec import presets

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "target.npz", x=rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8),
             y=np.arange(60) % 3)
    np.savez(tmp_path / "source_images.npz",
             x=rng.integers(0, 255, (50, 32, 32, 3), dtype=np.uint8))
    spec = presets.build("smoke", overrides={"cache_dir": cache_dir}, sets=[
        "tasks=[shapes]",
        f"custom_tasks.shapes={{type: image, train: {tmp_path / 'target.npz'}, "
        f"source: {tmp_path / 'source_images.npz'}, source_method: autoencoder}}"])
    (line,) = check_data(spec.trial_settings(str(syn_dir)), False)
    assert line.endswith(f"; source: {tmp_path / 'source_images.npz'} (custom, 50 images)"), line
