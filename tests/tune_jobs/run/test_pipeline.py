"""The one search pipeline: from a checked spec to rows, a summary and phase timings."""

from __future__ import annotations

import re

import pytest

from tune_jobs.run import pipeline
from tune_jobs.spec import presets


def _spec(syn_dir, cache_dir, storage, name, *sets):
    return presets.build("smoke", overrides={"data": str(syn_dir), "storage": str(storage),
                                             "name": name, "cache_dir": cache_dir},
                         sets=["num_samples=2", "asha.max_t=2", "asha.grace_period=1",
                               "task_options.newsgroups.steps_per_unit=3",
                               "task_options.cifar_transfer.steps_per_unit=3",
                               "task_options.cifar_transfer.source_steps=150", *sets])


def test_checked_refuses_bad_input_before_anything_starts(tmp_path):
    (tmp_path / "file").write_text("x")
    spec = presets.build("smoke", overrides={"storage": str(tmp_path / "file")})
    with pytest.raises(pipeline.BadInput, match="is a file"):
        pipeline.checked(spec)


@pytest.mark.ray
@pytest.mark.slow
def test_run_returns_rows_summary_and_phase_timings(ray_local, syn_dir, cache_dir, tmp_path):
    spec, points, origins = pipeline.checked(
        _spec(syn_dir, cache_dir, tmp_path, "pipe", "final_eval.seeds=0"))
    result = pipeline.run(spec, points=points, origins=origins, connected=False)
    assert len(result.rows) == 2 and not result.bad_data
    assert set(result.timings) == {"prepare", "search", "final_eval", "report"}
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert result.timings["search"] > 0 and result.final is None
    assert result.summary.best["trial_id"] in {r.trial_id for r in result.rows}
    assert set(result.baselines) == set(spec.tasks)
    assert (tmp_path / "pipe" / "report.html").is_file()
    # the same experiment again resumes: nothing left to train, the same rows
    again = pipeline.run(spec, resume=True, connected=False, prepared=True, final=False)
    assert again.summary is None and "prepare" not in again.timings
    assert sorted(r.trial_id for r in again.rows) == sorted(r.trial_id for r in result.rows)


NODES = [{"Alive": True, "Resources": {"CPU": 2.0}},
         {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
         {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]  # a dead node counts for nothing


@pytest.mark.parametrize("sets, problem", [
    (["resources.cpu=4", "resources.gpu=1"], None),
    (["resources.cpu=64"], r"^resources asks for cpu=64 per trial, which no node can give: "
                           r"the cluster has 2 node\(s\) with 6 CPUs and 1 GPUs"),
    (["resources.gpu=2"], r"resources asks for .*gpu=2.*Lower resources.cpu / resources.gpu"),
    (["task_resources={newsgroups: {cpu: 4, gpu: 1}, cifar_transfer: {cpu: 2}}"], None),
    (["task_resources={newsgroups: {cpu: 4, gpu: 1}, cifar_transfer: {cpu: 4}}"],
     r"^one trial asks for 8 CPUs in all, more than the cluster has"),
    (["task_resources={newsgroups: {cpu: 5}}"], r"^task_resources.newsgroups asks for cpu=5"),
])
def test_a_trial_that_can_never_be_placed_is_refused(sets, problem):
    """Asking for more than the cluster has used to wait forever in the preparation phase."""
    found = pipeline.unfit_resources(presets.build("smoke", sets=sets), NODES)
    if problem is None:
        assert found is None
    else:
        assert found is not None and re.search(problem, found), found
