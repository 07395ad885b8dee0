"""tune_jobs.run.trial_history: the driver's results files reach storage before a trial restarts."""

from __future__ import annotations

import pyarrow.fs as pafs

from tune_jobs.run.trial_history import upload_history


def test_upload_history_brings_stale_files_up_to_date_and_never_shrinks_them(tmp_path):
    local, remote = tmp_path / "staging", tmp_path / "storage" / "trial"
    local.mkdir()
    rows = '{"units": 1}\n{"units": 2}\n'
    (local / "result.json").write_text(rows)
    (local / "progress.csv").write_text("units\n1\n2\n")
    fs = pafs.LocalFileSystem()

    # storage has no trial folder yet, then an empty result.json (made when the trial started)
    assert upload_history(local, fs, str(remote)) == ["result.json", "progress.csv"]
    assert (remote / "result.json").read_text() == rows
    (remote / "result.json").write_text("")
    assert upload_history(local, fs, str(remote)) == ["result.json"]
    assert (remote / "result.json").read_text() == rows

    # storage already holds as much or more (a later snapshot): left as it is
    (remote / "progress.csv").write_text("units\n1\n2\n3\n")
    assert upload_history(local, fs, str(remote)) == []
    assert (remote / "progress.csv").read_text() == "units\n1\n2\n3\n"

    # nothing local (a trial that failed before its first result): nothing copied
    assert upload_history(tmp_path / "nothing", fs, str(tmp_path / "other")) == []
    assert not (tmp_path / "other").exists()
