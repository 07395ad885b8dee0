"""Rendering: the report files written from hand-made rows."""

import json

from tests.factories import ROWS, curve_row, report_spec
from tune_jobs.report import html, text
from tune_jobs.report.summary import summarise
from tune_jobs.store.rows import FinalEval


def _write(folder, spec, rows, final=None, origins=None):
    """The report files of hand-made rows, as the pipeline writes them."""
    final = FinalEval.from_dict(final) if final else None
    return html.write_report(folder, spec, rows, summarise(spec, rows, final, origins))


def test_write_report_files(tmp_path):
    spec = report_spec(tmp_path, asha={"max_t": 4, "grace_period": 1, "reduction_factor": 2})
    final = {"config": {}, "seeds": [1000, 1001],
             "metrics": {"a/test_acc": {"mean": 0.5, "std": 0.1, "values": [0.4, 0.6]}}}
    paths = _write(tmp_path, spec, ROWS, final)
    summary = json.loads(paths["summary"].read_text())
    assert summary["best"]["trial_id"] == "t2" and summary["rungs"] == {"1": 5, "2": 4, "4": 4}
    assert summary["trials_by_outcome"]["completed"] == 3
    csv_lines = paths["leaderboard"].read_text().splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("rank,trial_id")
    page = paths["report"].read_text()
    assert page.count("data:image/png;base64,") == 4 and "t2" in page and "0.5" in page
    for key in ("curves", "rungs", "per_task", "importance"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"
    assert "How the tasks relate" in page and "is not measurable" in page  # no per-task curves
    assert summary["task_agreement"]["measurable"] is False


def test_report_shows_the_tasks_agreement_and_their_tree(tmp_path):
    from tests.factories import curve_row

    rows = [curve_row(f"t{i}", [{"a": 0.1 * i, "b": 0.1 * ((i * 3) % 7)}] * 2) for i in range(7)]
    paths = _write(tmp_path, report_spec(tmp_path), rows, None)
    agreement = json.loads(paths["summary"].read_text())["task_agreement"]
    assert agreement["measurable"] and agreement["trials"] == 7
    assert paths["task_tree"].read_bytes()[:4] == b"\x89PNG"
    page = paths["report"].read_text()
    assert "Kendall" in page and agreement["sentence"] in page.replace("&#x27;", "'")


def test_text_leaderboard_lines(tmp_path):
    spec = report_spec(tmp_path)
    lines = text.text_leaderboard(summarise(spec, ROWS, None), top=3).splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["#", "trial", "meta"]
    assert lines[2].split()[1:5] == ["t2", "1.2", "0.6", "0.6"]  # rank 2: meta, a, b


def test_report_says_per_task_data_tradeoff_collapse_and_no_spread_for_one_seed(tmp_path):

    spec = report_spec(tmp_path)
    rows = [curve_row("t1", [{"a": 0.2, "b": 0.3}, {"a": 0.9, "b": 0.1}]),
            curve_row("t2", [{"a": 0.2, "b": 0.3}, {"a": 0.21, "b": 0.8}],
                      f1={"a": 0.04, "b": 0.79}),
            curve_row("t3", [{"a": 0.2, "b": 0.3}, {"a": 0.1, "b": 0.05}])]
    final = {"config": {}, "seeds": [1000],
             "metrics": {"a/test_acc": {"mean": 0.2, "std": 0.0, "values": [0.2]}}}
    origins = {"a": {"data": "real", "path": "/d/a.csv", "source": None},
               "b": {"data": "real", "path": "/d/b", "source": "cifar10 (synthetic)"}}
    paths = _write(tmp_path, spec, rows, final, origins)
    page = paths["report"].read_text()
    assert "<b>a</b>: real data (/d/a.csv)" in page
    assert "<b>b</b>: real data (/d/b); transfers from cifar10 (synthetic)" in page
    assert "Data: synthetic" not in page
    assert "Collapsed predictions" in page and "macro-F1 0.040 against accuracy 0.210" in page
    assert "Pareto set at 2 units, 3 trials" in page and "meta-configuration" in page
    assert "– (1 seed)" in page and "± 0" not in page
    assert "indicative only" in page
    assert page.count('<div class="scroll">') >= 3  # wide tables scroll in their box
    assert paths["pareto"].read_bytes()[:4] == b"\x89PNG"
    summary = json.loads(paths["summary"].read_text())
    assert {p["trial_id"] for p in summary["pareto"]["front"]} == {"t1", "t2"}
    assert summary["task_data"] == origins
    assert text.spread(final["metrics"]["a/test_acc"]) == "0.2000 (1 seed: no spread measured)"


def test_baselines_sit_next_to_the_tuned_model_everywhere(tmp_path):

    spec = report_spec(tmp_path)
    rows = [curve_row("t1", [{"a": 0.7, "b": 0.3}]), curve_row("t2", [{"a": 0.2, "b": 0.2}])]
    final = {"config": {}, "seeds": [1, 2], "metrics": {
        "a/test_acc": {"mean": 0.68, "std": 0.01, "values": [0.67, 0.69]},
        "b/test_acc": {"mean": 0.25, "std": 0.01, "values": [0.24, 0.26]}}}
    base = {"method": "tfidf", "val_acc": 0.5, "test_acc": 0.49}
    origins = {"a": {"data": "real", "path": "/a", "source": None, "baseline": base},
               "b": {"data": "real", "path": "/b", "source": None,
                     "baseline": {**base, "method": "logreg"}}}
    paths = _write(tmp_path, spec, rows, final, origins)
    summary = json.loads(paths["summary"].read_text())
    assert summary["baselines"]["a"]["beat_baseline"] is True
    assert summary["baselines"]["b"]["beat_baseline"] is False  # 0.25 < 0.49 on test
    assert summary["baselines"]["b"]["judged_on"] == "test"
    header = paths["leaderboard"].read_text().splitlines()[0].split(",")
    assert "baseline/a/val_acc" in header and "baseline/b/test_acc" in header
    page = paths["report"].read_text()
    assert "Against the classical baselines" in page
    assert "b: the tuned model (0.2500 test accuracy) did NOT beat the classical baseline" in page
    lines = text.baseline_lines(summary["baselines"])
    assert lines[0].startswith("a: the tuned model (0.6800 test accuracy) beat")


def test_report_says_the_aggregate_and_shows_saved_simulations(tmp_path):
    from tune_jobs.report import simulate as sim
    from tune_jobs.report.plots import simulation_plot

    spec = report_spec(tmp_path, asha={"max_t": 4, "grace_period": 1, "reduction_factor": 2},
                       metric_aggregate="rank")
    rec = sim.Recording(
        name="hand", tasks=["a"], aggregate="mean", max_t=4, slots=1,
        asha={"max_t": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 1},
        searched=["x"], curves=[sim.Curve(f"t{i}", {"x": i}, {"a": [v] * 4}, [1.0] * 4)
                                for i, v in enumerate([0.1, 0.4, 0.2, 0.3])])
    data = sim.compare(rec, sim.Setting("mine", max_t=4, slots=1), replays=5)
    (tmp_path / "simulation-mine.json").write_text(json.dumps(data))
    simulation_plot(data, tmp_path / "plots" / "simulation-mine.png")
    paths = _write(tmp_path, spec, ROWS)
    page = paths["report"].read_text()
    assert "decided on the rank aggregate" in page
    assert json.loads(paths["summary"].read_text())["aggregate"] == {
        "meta_score": "mean", "asha_decided_on": "rank"}
    assert "Simulated searches" in page and "one unit each, keep the top k" in page
    assert 'alt="simulation-mine"' in page  # its anytime plot, inlined
