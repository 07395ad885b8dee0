"""Rendering: the report files written from hand-made rows."""

import json

from tests.tune_jobs.test_analysis import ROWS, TASKS
from tune_jobs import report
from tune_jobs.spec import SearchSpec


def _spec(folder, **keys):
    """A spec whose tasks carry the hand-made rows' names (declared as custom tasks)."""
    custom = {t: {"type": "text", "train": str(folder)} for t in TASKS}
    return SearchSpec.from_dict({"name": "exp", "tasks": TASKS, "custom_tasks": custom, **keys})


def test_write_report_files(tmp_path):
    spec = _spec(tmp_path, asha={"max_t": 4, "grace_period": 1, "reduction_factor": 2})
    final = {"config": {}, "seeds": [1000, 1001],
             "metrics": {"a/test_acc": {"mean": 0.5, "std": 0.1, "values": [0.4, 0.6]}}}
    paths = report.write_report(tmp_path, spec, ROWS, final)
    summary = json.loads(paths["summary"].read_text())
    assert summary["best"]["trial_id"] == "t2" and summary["rungs"] == {"1": 5, "2": 4, "4": 4}
    assert summary["trials_by_outcome"]["completed"] == 3
    csv_lines = paths["leaderboard"].read_text().splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("rank,trial_id")
    page = paths["report"].read_text()
    assert page.count("data:image/png;base64,") == 4 and "t2" in page and "0.5" in page
    for key in ("curves", "rungs", "per_task", "importance"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"


def test_text_leaderboard_lines(tmp_path):
    from tune_jobs.analysis import summarise

    spec = _spec(tmp_path)
    lines = report.text_leaderboard(summarise(spec, ROWS, None), top=3).splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["#", "trial", "meta"]
    assert lines[2].split()[1:5] == ["t2", "1.2", "0.6", "0.6"]  # rank 2: meta, a, b
