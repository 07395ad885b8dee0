"""`metatune transfer` end to end on the stand-ins: a search on newsgroups alone, its winner
transferred to the CIFAR task it never saw, against that task's baseline, the default
configuration and a short search on the task alone; plus its bad input."""

from __future__ import annotations

import json

import pytest

from tests.factories import SMALL, cli

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_transfer_to_an_unseen_task(syn_dir, joined, tmp_path):
    run = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "src",
               "--storage", str(tmp_path), "--tasks", "newsgroups", "--num-samples", "2",
               "--set", "asha.max_t=2", "--set", "final_eval.seeds=0", *SMALL], joined)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    proc = cli(["transfer", "src", "--task", "cifar_transfer", "--storage", str(tmp_path),
                "--seeds", "2", "--top-k", "2", "--search-budget", "2"], joined)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "src" / "transfer-cifar_transfer.json").read_text())
    labels = [r["label"] for r in result["runs"]]
    assert labels[0].startswith("meta-configuration (trial ")
    assert labels[1].startswith("top-2 (trial ") and "default configuration" in labels
    assert labels[-1].startswith("short search on cifar_transfer alone (2 trials)")
    for r in result["runs"]:
        assert len(r["values"]) == 2 and 0.0 <= r["test_acc"] <= 1.0 and r["seeds"] == [1000, 1001]
    assert result["baseline"]["method"].startswith("logistic regression")
    assert isinstance(result["winner_beats_baseline"], bool)
    assert result["searched_tasks"] == ["newsgroups"] and result["budget_units"] == 2
    assert "transfer of src (searched on newsgroups) to cifar_transfer" in proc.stdout
    page = (tmp_path / "src" / "report.html").read_text()
    assert "Transfer to cifar_transfer (not searched)" in page
    summary = json.loads((tmp_path / "src" / "summary.json").read_text())
    assert summary["transfers"][0]["task"] == "cifar_transfer"

    # bad input: exit 2, one line, before Ray
    for args, message in (
            (["--task", "newsgroups"], "was one of the search's tasks"),
            (["--task", "nope"], "unknown task 'nope'"),
            (["--task", "cifar_transfer", "--seeds", "0"], "--seeds 0 is invalid")):
        bad = cli(["transfer", "src", "--storage", str(tmp_path), *args], joined)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr[-1500:]
        assert "Traceback" not in bad.stderr


def test_a_transfer_takes_the_search_preset_for_an_unseen_custom_task(tmp_path, syn_dir):
    """Under --preset smoke, an unseen custom text task with no task_options gets the smoke
    preset's tiny model and budget (offline, nothing to download), as the search's tasks did."""
    from tune_jobs.run.transfer import transfer_spec
    from tune_jobs.spec import presets
    from tune_jobs.store.experiment import Experiment

    (tmp_path / "extra.csv").write_text("text,label\n" + "\n".join(
        f"x {i},{i % 2}" for i in range(20)))
    spec = presets.build("smoke", overrides={"storage": str(tmp_path), "name": "src",
                                             "data_dir": str(syn_dir), "data_kind": "synthetic"})
    extra = {"custom_tasks": {"extra": {"type": "text", "train": str(tmp_path / "extra.csv")}}}
    new = transfer_spec(Experiment(spec, str(tmp_path / "src")), "extra", extra, 1)
    (task,) = new.parsed.tasks
    smoke = presets.PRESETS["smoke"]["kind_options"]["text"]
    assert task.model.model == "tiny" and task.model.max_length == smoke["max_length"]
    assert task.budget.steps_per_unit == smoke["steps_per_unit"]
