"""A real Ray Tune run of the meta trainable: ASHA, two tasks, all metrics, crash + restore."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from tests.conftest import TEXT_OPTS, VISION_OPTS, flip_a_byte
from trainables import objective
from trainables import trainable as adapter

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TASKS = ["newsgroups", "cifar_transfer"]
real_trainable = adapter.meta_trainable


def flaky_trainable(config, settings, task_resources=None):
    """The real trainable, crashing once right after its second report on a first attempt. Just
    before the crash, the trial's results files in storage are made stale (empty, as they are
    when no experiment snapshot ran since the trial started)."""
    from pathlib import Path

    import ray
    from ray import tune

    markers = Path(settings.cache_dir) / "restore-markers"
    markers.mkdir(exist_ok=True)
    group = ray.util.get_current_placement_group()
    if group is not None:
        (markers / f"bundles-{len(group.bundle_specs)}").touch()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        from trainables.meta import trial_units

        with checkpoint.as_directory() as folder:
            units = trial_units(folder)
        (markers / f"lr{config['lr_scale']}-from-unit{units}").touch()
        return real_trainable(config, settings, task_resources)

    def stale_storage() -> None:
        storage = Path(markers / "storage").read_text()
        (trial_dir,) = Path(storage).glob(f"*{tune.get_context().get_trial_id()}*")
        for name in ("result.json", "progress.csv"):
            (trial_dir / name).write_text("")

    _crash_after_report(2, stale_storage, config, settings, task_resources)


def _crash_after_report(n, before_crash, config, settings, task_resources):
    """Run the real trainable; right after its ``n``-th report call ``before_crash`` and raise."""
    original, count = adapter.tune.report, [0]

    def report(metrics, checkpoint=None):
        original(metrics, checkpoint=checkpoint)
        count[0] += 1
        if count[0] == n:
            before_crash()
            raise RuntimeError(f"injected crash after unit {n}")

    adapter.tune.report = report
    try:
        real_trainable(config, settings, task_resources)
    finally:
        adapter.tune.report = original


@pytest.mark.parametrize("form", ["sequential", "parallel"])
def test_tune_asha_two_tasks_reports_and_restores(form, ray_local, syn_dir, cache_dir, tmp_path,
                                                  monkeypatch):
    """Both forms of a trial, built by the search's own build_tuner → trainable_for: tasks one
    after another in the trial's process, or side by side as actors in the bundles of the
    trial's placement group."""
    import dataclasses
    import shutil
    from pathlib import Path

    from tune_jobs.run import search
    from tune_jobs.spec import presets
    from tune_jobs.store.tune_storage import storage_filesystem

    markers = Path(cache_dir) / "restore-markers"
    shutil.rmtree(markers, ignore_errors=True)
    markers.mkdir()
    (markers / "storage").write_text(str(tmp_path / "ray_meta"))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sets = ["space.lr_scale=[0.5, 2.0]", "asha.max_t=4", "asha.grace_period=1",
            "max_failures=1", "num_samples=2", "resources.cpu=1"]
    if form == "parallel":
        sets.append("task_resources={newsgroups: {cpu: 0.5}, cifar_transfer: {cpu: 0.5}}")
    spec = presets.build("smoke", overrides={
        "task_options": {"newsgroups": TEXT_OPTS, "cifar_transfer": VISION_OPTS},
        "cache_dir": cache_dir, "storage": str(tmp_path), "name": "ray_meta"}, sets=sets)
    spec = dataclasses.replace(spec, data_dir=str(syn_dir))
    monkeypatch.setattr(adapter, "meta_trainable", flaky_trainable)  # trainable_for wraps it
    # no periodic experiment snapshot that would bring storage up to date between the crash and
    # the restart by chance
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "3600")
    tuner = search.build_tuner(spec, storage_filesystem(spec, connected=False))
    results = tuner.fit()
    assert not results.errors, results.errors
    assert len(results) == 2
    for result in results:
        history = result.metrics_dataframe
        for key in objective.required_keys(TASKS):
            assert key in history.columns, key
            assert history[key].notna().all(), key
        units = history["units"].tolist()
        # restored from the unit-2 checkpoint: the curve goes on, it never restarts at unit 1, and
        # the results reported before the crash are all kept (tune_jobs.run.trial_history)
        assert units == sorted(units) and units[0] == 1 and len(set(units)) == len(units)
        assert result.checkpoint is not None
        with result.checkpoint.as_directory() as folder:
            from trainables.meta import trial_units

            assert trial_units(folder) == units[-1]
    # the trials ASHA let past unit 2 crashed there and went on from their unit-2 checkpoint
    restored = sorted(p.name for p in markers.glob("lr*-from-unit*"))
    longest = max(results, key=lambda r: r.metrics_dataframe["units"].max())
    assert longest.metrics_dataframe["units"].max() == 4
    assert f"lr{longest.config['lr_scale']}-from-unit2" in restored, restored
    bundles = sorted(p.name for p in markers.glob("bundles-*"))
    # parallel: the trial's bundle plus one per task; sequential: no task bundles
    assert ("bundles-3" in bundles) == (form == "parallel"), bundles


def damaging_trainable(config, settings, task_resources=None):
    """The real trainable; on its first attempt, after unit 3 is reported, its unit-3 checkpoint
    gets one byte flipped (a disk or transfer fault) and the trial crashes."""
    from pathlib import Path

    from ray import tune

    if tune.get_checkpoint() is not None:
        return real_trainable(config, settings, task_resources)

    def damage_unit3() -> None:
        storage = Path(settings.cache_dir, "damage-storage").read_text()
        (unit3,) = Path(storage).glob("damaged/*/checkpoint_000002")
        flip_a_byte(unit3 / "newsgroups" / "tensors.safetensors")

    _crash_after_report(3, damage_unit3, config, settings, task_resources)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(ray_local, syn_dir, cache_dir,
                                                                    tmp_path, monkeypatch):
    import dataclasses

    from tune_jobs.run import search
    from tune_jobs.spec import presets
    from tune_jobs.store.tune_storage import storage_filesystem

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    from pathlib import Path

    Path(cache_dir, "damage-storage").write_text(str(tmp_path))  # where the trial finds it
    spec = presets.build("smoke", overrides={
        "task_options": {"newsgroups": TEXT_OPTS, "cifar_transfer": VISION_OPTS},
        "cache_dir": cache_dir, "storage": str(tmp_path), "name": "damaged"},
        sets=["num_samples=1", "asha.max_t=4", "max_failures=1", "keep_checkpoints=4",
              "checkpoint_every=1"])  # a checkpoint every unit: unit 3's, and unit 2's before it
    spec = dataclasses.replace(spec, data_dir=str(syn_dir))
    monkeypatch.setattr(adapter, "meta_trainable", damaging_trainable)
    (result,) = search.build_tuner(spec, storage_filesystem(spec, connected=False)).fit()
    assert result.error is None, result.error
    history = result.metrics_dataframe
    # Unit 3's checkpoint was refused on restore; the trial went on from unit 2's and trained
    # unit 3 again (Tune's own report counter, restored from the damaged checkpoint, had moved
    # on to 4), then unit 4: ASHA counts units, so the trial still ends at max_t.
    rows = list(zip(history["units"], history["training_iteration"], strict=True))
    # (whether Tune kept the report of the first unit 3, made just before the crash, varies)
    assert rows in ([(1, 1), (2, 2), (3, 4), (4, 5)],
                    [(1, 1), (2, 2), (3, 3), (3, 4), (4, 5)]), rows
    with result.checkpoint.as_directory() as folder:
        from trainables.meta import trial_units

        assert trial_units(folder) == 4


def bad_data_trainable(config, settings, task_resources=None):
    """Data that is bad only where the trial runs (a node whose copy differs from the driver's):
    every attempt records itself, then fails as the loader would."""
    from pathlib import Path

    from ray import tune

    from trainables.data.splits import DataError

    trial = tune.get_context().get_trial_id()
    attempts = Path(settings.cache_dir, "bad-data-attempts")
    attempts.mkdir(exist_ok=True)
    (attempts / f"{trial}-{len(list(attempts.glob(trial + '-*')))}").touch()
    raise DataError("/data/worker-copy/train.csv: missing column(s) ['label']")


def test_a_data_error_in_a_trial_is_not_retried_and_ends_the_run_with_exit_2(
        ray_local, syn_dir, cache_dir, tmp_path, monkeypatch, capsys):
    import dataclasses
    from pathlib import Path

    from tune_jobs.cli import commands
    from tune_jobs.run import data_guard, search
    from tune_jobs.spec import presets
    from tune_jobs.store.tune_storage import storage_filesystem

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec = presets.build("smoke", overrides={
        "task_options": {"newsgroups": TEXT_OPTS, "cifar_transfer": VISION_OPTS},
        "cache_dir": cache_dir, "storage": str(tmp_path), "name": "bad_data"},
        sets=["num_samples=3", "max_failures=3", "resources.cpu=1"])
    spec = dataclasses.replace(spec, data_dir=str(syn_dir))
    monkeypatch.setattr(adapter, "meta_trainable", bad_data_trainable)
    data_guard.SEEN.clear()
    search.build_tuner(spec, storage_filesystem(spec, connected=False)).fit()
    attempts = sorted(p.name for p in Path(cache_dir, "bad-data-attempts").iterdir())
    # max_failures=3 would have allowed 4 attempts per trial; each ran once, and the search
    # stopped at the first data error
    assert attempts and all(name.endswith("-0") for name in attempts), attempts
    assert set(data_guard.SEEN) <= {name.rsplit("-", 1)[0] for name in attempts}
    capsys.readouterr()
    code = commands._stopped_by_bad_data(dict(data_guard.SEEN), str(tmp_path / "bad_data"))
    err = capsys.readouterr().err
    assert code == 2
    assert "bad data in trial" in err and "missing column(s) ['label']" in err, err
    assert "/data/worker-copy/train.csv" in err and "error.txt" in err
    assert "Traceback" not in err


def test_data_error_reads_the_loader_message_from_tunes_error_text():
    from tune_jobs.run.data_guard import data_error

    text = ("Failure # 1 (occurred at 2026-11-28_12:00:00)\nray::ImplicitFunc.train() "
            "(pid=1, ip=127.0.0.1)\n  File \"x.py\", line 3, in load\n    raise DataError(m)\n"
            "trainables.data.splits.DataError: /d/t.csv: missing column(s) ['label']\n")
    assert data_error(text) == "/d/t.csv: missing column(s) ['label']"
    assert data_error("ValueError: the metadata's DataError: field\n") is None
    assert data_error("RuntimeError: injected crash after unit 2\n") is None
