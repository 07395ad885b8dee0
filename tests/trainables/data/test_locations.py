"""Where --data points: real/ and synthetic/ under $METATUNE_DATA, or a folder of the user's."""

import pytest

from trainables.data.archive import SYNTHETIC_MARKER
from trainables.data.locations import default_dir, resolve_data
from trainables.data.splits import DataError


def test_download_default_and_data_real_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("METATUNE_DATA", str(tmp_path))
    assert default_dir("real") == tmp_path / "real"
    from tune_jobs.cli.main import build_parser

    args = build_parser().parse_args(["data", "download"])
    assert args.dir is None  # … so data_cli falls back to default_dir("real") as well


def test_synthetic_data_under_data_real_is_refused(syn_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("METATUNE_DATA", str(tmp_path))
    shutil.copytree(syn_dir, tmp_path / "real")
    assert (tmp_path / "real" / SYNTHETIC_MARKER).exists()
    with pytest.raises(DataError, match=r"^--data real: .* holds synthetic stand-ins, not real "
                                        r"data\. Run `metatune data download --dir"):
        resolve_data("real", ["newsgroups"])


def test_a_folder_is_checked_for_every_task_it_needs(syn_dir, tmp_path):
    assert resolve_data(str(syn_dir), ["newsgroups", "cifar_transfer"]) == (str(syn_dir),
                                                                            "synthetic")
    with pytest.raises(DataError, match=r"^--data .*missing: no such folder$"):
        resolve_data(str(tmp_path / "missing"), ["newsgroups"])
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"^task cifar_transfer needs cifar-100-python.tar.gz"):
        resolve_data(str(tmp_path), ["cifar_transfer"])
    # a custom task needs nothing in the data folder
    assert resolve_data(str(tmp_path), ["mine"]) == (str(tmp_path), "real")


def test_stand_ins_copied_without_their_marker_are_still_synthetic(syn_dir, tmp_path,
                                                                   monkeypatch):
    import shutil

    from trainables.data.cifar import load_cifar
    from trainables.data.newsgroups import load_newsgroups
    from trainables.tasks import check_data, trial_settings

    real = tmp_path / "real"
    real.mkdir()
    for archive in syn_dir.glob("*.tar.gz"):  # the archives alone, not the folder's marker
        shutil.copy(archive, real)
    assert not (real / SYNTHETIC_MARKER).exists()
    assert load_newsgroups(real).source == "synthetic"
    assert load_cifar(real, "cifar100").source == "synthetic"
    settings = trial_settings(["newsgroups", "cifar_transfer"], str(real),
                              {"newsgroups": {"model": "tiny"}})
    assert "newsgroups: synthetic data" in check_data(settings)[0]
    with pytest.raises(DataError, match=r"^--data real: .*20news-bydate.tar.gz is a synthetic "
                                        r"stand-in \(marked inside the archive\)"):
        check_data(settings, require_real=True)


def test_the_data_check_of_a_tiny_text_model_imports_no_transformers(syn_dir):
    """The check runs before Ray in every `metatune run`; importing transformers (and torch
    with it) there cost seconds a search did not need."""
    import subprocess
    import sys

    code = ("import sys; from trainables.tasks import check_data, trial_settings; "
            f"s = trial_settings(['newsgroups', 'cifar_transfer'], {str(syn_dir)!r}, "
            "{'newsgroups': {'model': 'tiny'}}); print(len(check_data(s))); "
            "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")
    assert out[:2] == ["2", "[]"], out
