"""Reading trials back from an experiment folder: why each stopped, its checkpoints."""

import json

import pytest

from tune_jobs.store.rows import StopReason, best_checkpoint, load_rows, stop_reason


@pytest.mark.parametrize("status,units,errored,expected", [
    ("ERROR", 2, True, StopReason.ERROR),
    ("ERROR", 8, False, StopReason.ERROR),  # the state says error even without error.txt
    ("RUNNING", 8, True, StopReason.ERROR),  # error.txt of an attempt that Tune has not retried yet
    ("TERMINATED", 3, True, StopReason.STOPPED),  # an earlier attempt failed, retried
    ("RUNNING", 3, False, StopReason.UNFINISHED),
    ("PENDING", 0, False, StopReason.UNFINISHED),
    ("PAUSED", 2, False, StopReason.UNFINISHED),
    ("TERMINATED", 8, False, StopReason.COMPLETED),
    ("UNKNOWN", 8, False, StopReason.COMPLETED),  # no experiment state, but it ran the full budget
    ("TERMINATED", 2, False, StopReason.STOPPED),
    ("UNKNOWN", 2, False, StopReason.UNKNOWN),
])
def test_stop_reason_branches(status, units, errored, expected):
    assert stop_reason(status, units, 8, errored) is expected


def test_rows_from_a_folder_skip_torn_lines_and_incomplete_checkpoints(tmp_path):
    trial = tmp_path / "trial_a"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps({"lr_scale": 0.5}))
    lines = [{"trial_id": "a", "units": u, "meta_score": 0.1 * u, "a/val_acc": 0.2 * u,
              "a/train_s": 2.0 * u, "a/eval_s": 0.5, "checkpoint_dir_name": f"checkpoint_00000{u}"}
             for u in (1, 2)]
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in lines) + '\n{"trial_')
    (trial / "checkpoint_000001").mkdir()  # a checkpoint without its files is not complete
    (tmp_path / "experiment_state-x.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": "a", "status": "TERMINATED"}), "{}"]]}))
    (row,) = load_rows(tmp_path, ["a"], max_t=4)
    assert row.trial_id == "a" and row.units == 2 and row.status == "TERMINATED"
    assert row.stop is StopReason.STOPPED and row.stopped == "stopped by ASHA at unit 2"
    assert row.metrics["meta_score"] == pytest.approx(0.2) and len(row.history) == 2
    assert row.checkpoints == [] and best_checkpoint(row) is None
    assert row.seconds == {"a": 4.5}  # the last whole report's, for the final evaluation's order


def test_a_unit_reported_again_replaces_the_line_after_it(tmp_path):
    """A trial restored from an earlier checkpoint reports its units again: the later report
    of a unit is the one the trial went on with."""
    from tune_jobs.store.rows import _history

    lines = [{"units": 1, "m": 0.1}, {"units": 2, "m": 0.2}, {"units": 2, "m": 0.25},
             {"units": 3, "m": 0.3}]
    result = tmp_path / "result.json"
    result.write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"units\": 4, ")
    assert _history(result) == [lines[0], lines[2], lines[3]]
