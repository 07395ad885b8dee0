"""The preparation phase: every shared item is built once, as Ray tasks, before any trial; the
trials only read the cache; bad data found there is the loader's own message."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TEXT_OPTS, VISION_OPTS

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _spec(syn_dir, cache, **extra):
    import dataclasses

    from tune_jobs.spec import presets

    spec = presets.build("smoke", overrides={
        "task_options": {"newsgroups": TEXT_OPTS, "cifar_transfer": VISION_OPTS},
        "cache_dir": str(cache), **extra}, sets=["resources.cpu=1"])
    return dataclasses.replace(spec, data_dir=str(syn_dir))


def test_prepare_builds_every_shared_item_once_before_the_trials(ray_local, syn_dir, tmp_path,
                                                                 capsys, monkeypatch):
    from trainables.config import MetaConfig
    from trainables.tasks import build_task
    from tune_jobs.run import prepare

    spec = _spec(syn_dir, tmp_path / "cache")
    prepare.prepare(spec)
    out = capsys.readouterr().out
    assert "prepared newsgroups in" in out and "prepared cifar_transfer in" in out
    built = {p.parent.parent.name: json.loads(p.read_text())
             for p in (tmp_path / "cache").glob("*/*/info.json")}
    assert "source_cnn" in built
    assert built["source_cnn"]["pid"] != os.getpid()  # in a Ray task, not in this process
    entries = sorted(p.parent for p in (tmp_path / "cache").glob("*/*/info.json"))
    stamps = {p: p.stat().st_mtime_ns for p in entries}
    # a trial's build afterwards (here in this process) reads all of it and builds nothing
    settings = spec.trial_settings()
    for task in settings.tasks:
        build_task(task, MetaConfig(), settings)
    after = sorted(p.parent for p in (tmp_path / "cache").glob("*/*/info.json"))
    assert after == entries and {p: p.stat().st_mtime_ns for p in after} == stamps
    capsys.readouterr()
    first = prepare.prepare(spec)  # a second search: nothing is built again, nothing is run
    out = capsys.readouterr().out
    assert sorted(p.parent for p in (tmp_path / "cache").glob("*/*/info.json")) == entries
    assert "prepared before with the same tasks, settings and data" in out, out
    assert "  newsgroups is ready; classical baseline: val_acc" in out, out
    assert "prepared newsgroups in" not in out and "prepared cifar_transfer in" not in out
    with monkeypatch.context() as m:  # on a local instance the records are read right here
        m.setattr("ray.remote", lambda *a, **k: pytest.fail("a Ray task was started"))
        here = prepare.prepare(spec, local=True)
    assert here == first and "prepared before with the same tasks" in capsys.readouterr().out
    # an entry the preparation used is gone: that task is prepared again, and builds it
    source = next(p for p in entries if p.parent.name == "source_cnn")
    shutil.rmtree(source)
    again = prepare.prepare(spec)
    out = capsys.readouterr().out
    assert "prepared cifar_transfer in" in out and source.is_dir(), out
    assert "newsgroups is ready" in out and "prepared newsgroups in" not in out, out
    assert again.baselines == first.baselines and again.checkpoint_bytes == first.checkpoint_bytes
    # other settings of the trials: not the same preparation
    other = dataclasses.replace(spec, checkpoint_every=spec.checkpoint_every + 1)
    prepare.prepare(other)
    assert "prepared newsgroups in" in capsys.readouterr().out


def test_bad_data_in_preparation_is_the_loaders_message(ray_local, syn_dir, tmp_path):
    from trainables.data.splits import DataError
    from tune_jobs.run import prepare

    bad = Path(tmp_path, "t.csv")
    bad.write_text("text,category\n" + "\n".join(f"x {i},a" for i in range(20)))
    spec = _spec(syn_dir, tmp_path / "cache", tasks=["t"],
                 custom_tasks={"t": {"type": "text", "train": str(bad)}})
    with pytest.raises(DataError, match=r"t\.csv.*missing column\(s\) \['label'\]"):
        prepare.prepare(spec)


def test_a_preparation_by_other_code_or_of_other_data_is_not_read(syn_dir, tmp_path,
                                                                   monkeypatch):
    """The record's key holds the code (this package's source, the libraries' versions) and
    the data's content: an upgrade, or data replaced in place, prepares again."""
    from trainables import trainable

    spec = _spec(syn_dir, tmp_path / "cache")
    settings = spec.trial_settings()
    task = settings.tasks[0]
    key = trainable.prepared_key(task, settings)
    assert trainable.prepared_key(task, settings) == key  # stable
    monkeypatch.setattr(trainable, "code_version", lambda: "other code")
    assert trainable.prepared_key(task, settings) != key
    monkeypatch.undo()
    copy = tmp_path / "data"
    shutil.copytree(syn_dir, copy)
    other = dataclasses.replace(settings, data_dir=str(copy))
    assert trainable.prepared_key(task, other) != key  # (the data folder is part of it too)
