"""The command line in-process: argument names, --dry-run, and bad input exiting 2 before Ray."""

import json

import pytest

from tests.conftest import REPO
from tune_jobs.cli.main import build_parser, main
from tune_jobs.run import pipeline


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("Ray must not start on bad input")

    monkeypatch.setattr(pipeline, "init_ray", refuse)


def test_bad_input_exits_2_before_ray_starts(no_ray, capsys, tmp_path):
    assert main(["run", "--preset", "smoke", "--set", "space.dropout=2.0"]) == 2
    assert capsys.readouterr().err.startswith("metatune: error: dropout=2.0 is invalid")
    assert main(["run", "--preset", "nope"]) == 2
    assert "--preset 'nope' is unknown" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path)]) == 2  # a folder without the data sets
    assert "metatune data download --dir" in capsys.readouterr().err
    assert main(["run", "--bogus-flag"]) == 2
    assert "unrecognized arguments: --bogus-flag" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("asha: [\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--config {bad}: invalid YAML at line 2" in err
    assert main(["resume", "nothing-here", "--storage", str(tmp_path)]) == 2
    assert f"no experiment 'nothing-here' under {tmp_path}" in capsys.readouterr().err


def test_dry_run_prints_the_finalised_spec(no_ray, capsys, syn_dir, tmp_path):
    code = main(["run", "--preset", "smoke", "--data", str(syn_dir), "--storage",
                     str(tmp_path), "--tasks", "newsgroups", "--dry-run"])
    assert code == 0
    out, err = capsys.readouterr()
    spec = json.loads(out)  # stdout is the spec alone; the planned budget goes to stderr
    assert "planned budget: at most 64 trial-units (8 trials × 8 units)" in err
    assert spec["name"] == "metatune-smoke" and spec["storage"] == str(tmp_path)
    assert spec["data_dir"] == str(syn_dir) and spec["data_kind"] == "synthetic"
    assert spec["tasks"] == ["newsgroups"] and spec["asha"]["max_t"] == 8
    assert not (tmp_path / "metatune-smoke").exists()  # a dry run writes nothing


def test_address_names_ray_and_dashboard_names_the_dashboard():
    parser = build_parser()
    assert parser.parse_args(["run", "--address", "10.0.0.1:6379"]).address == "10.0.0.1:6379"
    status = parser.parse_args(["status", "--dashboard", "http://127.0.0.1:8265"])
    assert status.dashboard == "http://127.0.0.1:8265"
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "--address", "http://127.0.0.1:8265"])


def test_status_of_an_empty_storage(capsys, tmp_path):
    assert main(["status", "--storage", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"no experiments under {tmp_path}"


def test_dry_run_into_a_closed_pipe_is_quiet(syn_dir, tmp_path):
    """`metatune run --dry-run | head`: the reader is gone before the spec is printed (`true`
    exits at once); the write meets a closed pipe, and that is no error of ours."""
    import subprocess
    import sys

    cmd = f"{sys.executable} -m tune_jobs.cli run --dry-run --data {syn_dir} | true"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_status_lists_experiments_and_names_one_that_no_longer_reads(capsys, tmp_path,
                                                                     syn_dir):
    import csv as csv_module

    from tune_jobs.spec import presets
    from tune_jobs.store import experiment

    data = tmp_path / "mine.csv"
    with open(data, "w", newline="") as f:
        writer = csv_module.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([[f"text {i}", "ab"[i % 2]] for i in range(20)])
    for name, sets in (("plain", []), ("custom", [
            "tasks=[mine]", f"custom_tasks.mine={{type: text, train: {data}}}"])):
        spec = presets.build("smoke", overrides={"storage": str(tmp_path / "r"), "name": name,
                                                 "data_dir": str(syn_dir)}, sets=sets)
        experiment.save_spec(spec)
    data.unlink()  # the custom task's file is gone: that spec no longer validates
    assert main(["status", "--storage", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("plain ") and "0 trials" in out
    assert "warning: custom: cannot read its spec: custom_tasks.mine.train=" in err


def test_the_cli_starts_without_loading_the_learning_libraries():
    """`metatune --help`, `status`, `best` … start in about a second: the command line loads
    torch, scikit-learn, transformers and Ray only in the commands that use them."""
    import subprocess
    import sys

    heavy = ("torch", "sklearn", "transformers", "ray", "pandas", "matplotlib")
    code = ("import sys, tune_jobs.cli.main; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
