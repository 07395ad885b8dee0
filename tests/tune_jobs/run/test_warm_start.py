"""Warm start: the earlier searches' top-k first, the bounding box, partial task overlap, bad
input, and both searchers really evaluating the points first."""

from __future__ import annotations

import json
import sys

import cloudpickle
import pytest

from tune_jobs.report import analysis
from tune_jobs.run import warm_start
from tune_jobs.spec import presets
from tune_jobs.store import experiment
from tune_jobs.store.rows import StopReason, TrialRow


def fake_search(storage, name, tasks, trials):
    """An earlier search on disk as Tune leaves it: spec, and per trial params + results.
    ``trials``: (trial id, config, {task: score}) — accuracy = score here."""
    custom = {t: {"type": "text", "train": str(storage)} for t in tasks if t != "newsgroups"}
    spec = presets.build("smoke", overrides={"storage": str(storage), "name": name,
                                             "tasks": list(tasks), "custom_tasks": custom})
    experiment.save_spec(spec)
    for tid, config, scores in trials:
        trial = storage / name / f"trial_{tid}"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps(config))
        result = {"trial_id": tid, "units": 8, "meta_score": sum(scores.values()) / len(scores),
                  **{f"{t}/score": s for t, s in scores.items()},
                  **{f"{t}/val_acc": s for t, s in scores.items()}}
        (trial / "result.json").write_text(json.dumps(result) + "\n")
    return spec


def new_spec(storage, *sets, tasks=("newsgroups", "b")):
    custom = {t: {"type": "text", "train": str(storage)} for t in tasks if t != "newsgroups"}
    spec = presets.build("smoke", overrides={"storage": str(storage), "name": "new",
                                             "tasks": list(tasks), "custom_tasks": custom},
                         sets=list(sets))
    return spec


CFG = {"lr_scale": 1.0, "batch_size": 16, "optimizer": "adamw", "dropout": 0.1}


@pytest.fixture
def earlier(tmp_path):
    # on newsgroups alone t3 is best, then t1; on the mean of newsgroups and a, t2 is best
    fake_search(tmp_path, "A", ["newsgroups", "a"], [
        ("t1", {**CFG, "lr_scale": 0.5}, {"newsgroups": 0.6, "a": 0.1}),
        ("t2", {**CFG, "lr_scale": 2.0}, {"newsgroups": 0.4, "a": 0.9}),
        ("t3", {**CFG, "lr_scale": 1.5, "batch_size": 32}, {"newsgroups": 0.7, "a": 0.0}),
        ("t4", {**CFG, "lr_scale": 0.9}, {"newsgroups": 0.1, "a": 0.1})])
    return tmp_path


def test_top_k_ranked_on_the_shared_tasks_only(earlier):
    spec = new_spec(earlier, "warm_start.experiments=[A]", "warm_start.top_k=2")
    _, points, origins = warm_start.resolve(spec)
    assert [o["trial_id"] for o in origins] == ["t3", "t1"]  # newsgroups is the one shared task
    assert origins[0]["ranked_on"] == ["newsgroups"] and origins[0]["experiment"] == "A"
    assert points[0] == {k: v for k, v in {**CFG, "lr_scale": 1.5, "batch_size": 32}.items()
                         if k in spec.space and isinstance(spec.space[k], (dict, list))}


def test_no_shared_task_ranks_by_the_meta_score(earlier):
    spec = new_spec(earlier, "warm_start.experiments=[A]", "warm_start.top_k=1",
                    tasks=("b",))
    _, _, origins = warm_start.resolve(spec)
    assert [o["trial_id"] for o in origins] == ["t2"] and origins[0]["ranked_on"] == ["meta_score"]


def test_box_shrinks_ranges_and_choices_to_the_top_k(earlier):
    spec = new_spec(earlier, "warm_start.experiments=[A]", "warm_start.top_k=2",
                    "warm_start.space=box")
    boxed, _, _ = warm_start.resolve(spec)
    assert boxed.space["lr_scale"] == {"loguniform": [0.5, 1.5]}
    assert boxed.space["batch_size"] == [16, 32]
    assert boxed.space["optimizer"] == "adamw" or boxed.space["optimizer"] == ["adamw"]
    assert boxed.space["dropout"] == 0.1  # both used 0.1: a constant
    assert boxed.space["seed"] == spec.space["seed"]  # constants stay


def test_configs_outside_the_new_space_are_dropped_with_a_warning(earlier, capsys):
    spec = new_spec(earlier, "warm_start.experiments=[A]", "warm_start.top_k=2",
                    "space.lr_scale={loguniform: [0.8, 3.0]}")
    _, points, origins = warm_start.resolve(spec)
    err = capsys.readouterr().err
    assert "trial t1 dropped: lr_scale=0.5 is outside space.lr_scale" in err
    assert [o["trial_id"] for o in origins] == ["t3", "t2"]  # the next one fills the top-k
    spec = new_spec(earlier, "warm_start.experiments=[A]", "space.batch_size=[64]")
    with pytest.raises(ValueError, match="every top configuration lies outside"):
        warm_start.resolve(spec)


def test_bad_references(earlier, tmp_path):
    with pytest.raises(ValueError, match="--warm-start nope: no experiment 'nope'"):
        warm_start.resolve(new_spec(earlier, "warm_start.experiments=[nope]"))
    fake_search(earlier, "empty", ["newsgroups"], [])
    with pytest.raises(ValueError, match="--warm-start empty: no finished trial"):
        warm_start.resolve(new_spec(earlier, "warm_start.experiments=[empty]"))
    # a path works as well as a name
    (tmp_path / "elsewhere").mkdir()
    _, points, _ = warm_start.resolve(new_spec(tmp_path / "elsewhere",
                                               f"warm_start.experiments=[{earlier / 'A'}]"))
    assert points


def test_report_names_the_origin_of_each_warm_trial(earlier):
    origins = warm_start.resolve(new_spec(earlier, "warm_start.experiments=[A]",
                                          "warm_start.top_k=1"))[2]
    rows = [TrialRow("n1", "/x/n1", {**CFG, "lr_scale": 1.5, "batch_size": 32, "seed": 0}, 1,
                     StopReason.COMPLETED, {}, []),
            TrialRow("n2", "/x/n2", {**CFG, "lr_scale": 2.7}, 1, StopReason.COMPLETED, {}, [])]
    assert analysis.matched(rows, origins) == [
        {"trial_id": "n1", "from_experiment": "A", "from_trial": "t3",
         "ranked_on": ["newsgroups"], "method": "top_k", "weight": 1.0}]


def test_portfolio_takes_k_across_the_searches_for_the_least_regret(earlier):
    # A: t3 is best on newsgroups, t2 on a; B: u1 is best on b
    fake_search(earlier, "B", ["b"], [("u1", {**CFG, "lr_scale": 0.7}, {"b": 0.9}),
                                      ("u2", {**CFG, "lr_scale": 0.8}, {"b": 0.1})])
    spec = new_spec(earlier, "warm_start.experiments=[A,B]", "warm_start.top_k=2",
                    "warm_start.method=portfolio")
    _, points, origins = warm_start.resolve(spec)
    assert len(points) == 2 and {o["method"] for o in origins} == {"portfolio"}
    # a greedy portfolio over A/newsgroups, A/a and B/b: no single config is good on all;
    # the first pick has the least average regret (u1: regret 1 on A's tasks, 0 on b — 0.67;
    # t2: 0.5 on newsgroups, 0 on a, 1 on b — 0.5), the second fills the largest gap (b: u1)
    assert [o["trial_id"] for o in origins] == ["t2", "u1"]


def agreeing(storage, name, other, sign):
    """A search on newsgroups and ``other``: 6 trials whose ``other`` scores rank them as
    newsgroups does (sign 1) or the reverse (sign -1)."""
    trials = [(f"{name}{i}", {**CFG, "lr_scale": 0.5 + 0.1 * i + (0.05 if sign < 0 else 0)},
               {"newsgroups": 0.1 * i, other: 0.5 + sign * 0.05 * i}) for i in range(6)]
    fake_search(storage, name, ["newsgroups", other], trials)


def test_several_searches_are_weighed_by_how_their_tasks_agree(earlier):
    agreeing(earlier, "C", "c", 1)  # c agrees with the shared newsgroups: weight 1
    agreeing(earlier, "D", "d", -1)  # d ranks the other way: weight (1 + 0) / 2
    spec = new_spec(earlier, "warm_start.experiments=[C,D]", "warm_start.top_k=3")
    _, points, origins = warm_start.resolve(spec)
    weights = {o["experiment"]: o["weight"] for o in origins}
    assert weights == {"C": 1.0, "D": 0.5}
    taken = [o["experiment"] for o in origins]
    assert taken.count("C") == 4 and taken.count("D") == 2  # 6 shared as 1 : 0.5
    assert warm_start.allot({"x": 0.0, "y": 0.0}, 3) in ({"x": 2, "y": 1}, {"x": 1, "y": 2})


def trivial(config, settings=None, task_resources=None):
    from ray import tune

    tune.report({"meta_score": config["lr_scale"], "units": 1})


@pytest.mark.ray
@pytest.mark.parametrize("searcher", ["random", "optuna"])
def test_both_searchers_evaluate_the_points_first(searcher, ray_local, tmp_path, monkeypatch):
    from trainables import trainable as adapter
    from tune_jobs.run import search
    from tune_jobs.store.tune_storage import storage_filesystem

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(adapter, "meta_trainable", trivial)
    spec = presets.build("smoke", overrides={"storage": str(tmp_path), "name": f"w-{searcher}"},
                         sets=[f"searcher={searcher}", "num_samples=4", "asha.max_t=1",
                               "asha.grace_period=1", "max_concurrent=1"])
    points = [{"lr_scale": 0.777, "batch_size": 32}, {"lr_scale": 2.222, "batch_size": 16}]
    results = search.build_tuner(spec, storage_filesystem(spec, connected=False), points=points).fit()
    # in the order Tune created the trials (its experiment tag starts with the trial's index)
    configs = sorted((int(r.metrics["experiment_tag"].split("_")[0]), r.config) for r in results)
    assert len(configs) == 4, configs
    first_two = [c for _, c in configs[:2]]
    for point, config in zip(points, first_two, strict=True):
        assert {k: config[k] for k in point} == point
    assert all(c["lr_scale"] not in (0.777, 2.222) for _, c in configs[2:])
