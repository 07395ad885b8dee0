"""The one search pipeline: from a checked spec to rows, a summary and phase timings."""

from __future__ import annotations

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
