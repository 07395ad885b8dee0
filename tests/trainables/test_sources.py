"""The source side of transfer: any source data set, none, self-supervised pretraining without
labels, the cache key, and what transfer bought in the final evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import VISION_OPTS, settings_for
from trainables.config import MetaConfig
from trainables.tasks import load_data, parse_task


@pytest.fixture(scope="module")
def halves(syn_dir, tmp_path_factory):
    """Two 5-class image tasks of the same family: CIFAR-10 stand-in classes 0-4 and 5-9."""
    from trainables.data.cifar import load_cifar

    c10 = load_cifar(syn_dir, "cifar10")
    root = tmp_path_factory.mktemp("halves")
    x = np.concatenate([c10.splits[s].x for s in ("train", "val")])
    y = np.concatenate([c10.splits[s].y for s in ("train", "val")])
    for name, classes in (("low", range(5)), ("high", range(5, 10))):
        keep = np.isin(y, list(classes))
        np.savez(root / f"{name}.npz", x=x[keep], y=y[keep] - min(classes))
    np.savez(root / "unlabelled.npz", x=x[y >= 5])  # no y at all
    return root


def _opts(**extra):
    return {**VISION_OPTS, "steps_per_unit": 10, **extra}


def test_declared_sources_are_parsed_and_checked(halves):
    task = parse_task("t", {"source": str(halves / "high.npz")},
                      {"type": "image", "train": str(halves / "low.npz")})
    assert task.model.source == str(halves / "high.npz")
    assert parse_task("cifar_transfer", {"source": "none"}).model.source == "none"
    with pytest.raises(ValueError, match=r"^cifar_transfer.source=./no/such.npz.: "
                                         "no such file"):
        parse_task("cifar_transfer", {"source": "/no/such.npz"})
    with pytest.raises(ValueError, match="source_method='mae' is invalid"):
        parse_task("cifar_transfer", {"source_method": "mae"})


def test_a_task_transfers_from_its_own_source(halves, syn_dir, tmp_path):
    """The 5-class task learns from the other 5-class half, not from CIFAR-10: the source the
    backbone was pretrained on is the declared one (its fingerprint is in the cache key)."""
    from trainables.meta import TaskRunner
    from trainables.tasks import trial_settings

    settings = trial_settings(["t"], str(syn_dir), {"t": _opts(source=str(halves / "high.npz"))},
                              {"t": {"type": "image", "train": str(halves / "low.npz")}},
                              max_units=2, cache_dir=str(tmp_path))
    (spec,) = settings.tasks
    target, source = load_data(spec, settings.data_dir)
    assert source.num_classes == 5 and source.path == str(halves / "high.npz")
    runner = TaskRunner(spec, MetaConfig(), settings)
    info = runner.task.source_info
    assert info["num_classes"] == 5 and info["inputs"]["data"] == source.fingerprint()
    # another source data set is another cache entry
    other = trial_settings(["t"], str(syn_dir), {"t": _opts()},
                           {"t": {"type": "image", "train": str(halves / "low.npz")}},
                           max_units=2, cache_dir=str(tmp_path))
    TaskRunner(other.tasks[0], MetaConfig(), other)
    from trainables.data import cache

    assert len(cache.builds("source_cnn", str(tmp_path))) == 2


def test_source_none_trains_the_same_cnn_from_scratch(syn_dir, tmp_path):
    from trainables.tasks import task_baseline

    settings = settings_for(syn_dir, str(tmp_path), tasks=("cifar_transfer",),
                            cifar_transfer=_opts(source="none"))
    (spec,) = settings.tasks
    assert load_data(spec, settings.data_dir)[1] is None
    from trainables.meta import TaskRunner

    runner = TaskRunner(spec, MetaConfig(unfreeze_frac=0.0), settings)
    model = runner.task.learner.model
    assert all(p.requires_grad for p in model.parameters())  # nothing pretrained to freeze
    assert runner.task.source_info["method"] == "none"
    assert not (tmp_path / "source_cnn").exists()  # no source was pretrained
    assert task_baseline(spec, settings).method.startswith("logistic regression on pixels")


@pytest.mark.parametrize("method", ["autoencoder", "contrastive"])
def test_self_supervised_pretraining_reads_no_label(method, halves, monkeypatch, tmp_path):
    """A source with no labels is accepted; the pretraining is handed the images only."""
    from trainables import vision
    from trainables.config import VisionOptions
    from trainables.data.custom import load_unlabelled

    source = load_unlabelled(halves / "unlabelled.npz")
    opts = VisionOptions(source_method=method, source_steps=30, source_batch=32)
    seen = {}
    real = vision.pretrain_self_supervised

    def spy(x, o, device="cpu"):
        seen["arg"] = x
        return real(x, o, device)

    monkeypatch.setattr(vision, "pretrain_self_supervised", spy)
    weights, info = vision.source_model(source, opts, str(tmp_path))
    assert isinstance(seen["arg"], np.ndarray) and seen["arg"].ndim == 4  # images, no labels
    assert info["method"] == method and info["num_classes"] == 1
    assert np.isfinite(info["final_loss"])
    supervised = parse_task("t", {"source": str(halves / "unlabelled.npz")},
                            {"type": "image", "train": str(halves / "low.npz")})
    with pytest.raises(ValueError, match="needs arrays 'x' and 'y'"):  # supervised needs labels
        load_data(supervised, ".")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_pretrained_backbones_transfer_better_than_none(seed, syn_dir, tmp_path_factory):
    """The same budget on the CIFAR-100 stand-in (3 units of 60 steps, every layer training):
    the backbone pretrained on the CIFAR-10 stand-in with labels, or without them by
    contrastive pretraining, ends above the same CNN from scratch. (The autoencoder does not,
    on these stand-ins: see the sources table in benchmarks/BENCHMARKS.md.)"""
    import torch

    from trainables.meta import MetaTrial

    torch.set_num_threads(1)
    cache = tmp_path_factory.getbasetemp() / "sources-cache"  # both seeds share the sources
    accuracy = {}
    for method in ("none", "supervised", "contrastive"):
        opts = {"source_steps": 200, "source_batch": 64, "steps_per_unit": 60}
        opts.update({"source": "none"} if method == "none" else {"source_method": method})
        settings = settings_for(syn_dir, str(cache), tasks=("cifar_transfer",), units=3,
                                cifar_transfer=opts)
        trial = MetaTrial(MetaConfig(unfreeze_frac=1.0, dropout=0.0, seed=seed), settings)
        accuracy[method] = [trial.run_unit()["cifar_transfer/val_acc"] for _ in range(3)][-1]
    assert accuracy["supervised"] > accuracy["none"] + 0.05, accuracy
    assert accuracy["contrastive"] > accuracy["none"] + 0.01, accuracy


@pytest.mark.ray
@pytest.mark.slow
def test_transfer_baseline_says_what_transfer_bought(ray_local, syn_dir, tmp_path):
    import dataclasses

    from tune_jobs.report import html
    from tune_jobs.run.final_eval import evaluate_on_test, transfer_gain
    from tune_jobs.spec import presets

    spec = presets.build("smoke", overrides={
        "tasks": ["cifar_transfer"], "cache_dir": str(tmp_path / "cache"),
        "task_options": {"cifar_transfer": _opts()}},
        sets=["asha.max_t=2", "final_eval.seeds=2", "final_eval.transfer_baseline=true"])
    spec = dataclasses.replace(spec, data_dir=str(syn_dir))
    config = MetaConfig(lr_scale=1.0).to_dict()
    final = evaluate_on_test(spec, config)
    # the seeds' own seconds: 2 runs of 2 units of training, validation and the test scoring
    assert set(final.seconds) == {"setup", "train", "eval"} and final.seconds["train"] > 0
    gain = transfer_gain(spec, config, final)["cifar_transfer"]
    assert len(gain["values"]) == 2 and gain["source"] == "cifar10 (supervised)"
    assert gain["mean"] == pytest.approx(gain["with_source"] - gain["from_scratch"])
    assert gain["mean"] > 0  # the supervised CIFAR-10 source helps the stand-in CIFAR-100
    final.transfer_gain = {"cifar_transfer": gain}
    from tests.factories import curve_row, report_spec
    from tune_jobs.report.summary import summarise

    rows, report = [curve_row("t1", [{"a": 0.5, "b": 0.5}])], report_spec(tmp_path)
    paths = html.write_report(tmp_path, report, rows, summarise(report, rows, final))
    assert "What transfer bought" in paths["report"].read_text()
