"""The signing layer decides what is a checkpoint by its place in the experiment, not its name."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from tests.factories import rewrite_state_and_fail
from tune_jobs.store import signing


@pytest.mark.parametrize("path, inside", [
    ("/s/exp/trial_1/checkpoint_000003/model.pkl", True),
    ("/s/exp/trial_1/checkpoint_000003/sub/x.pkl", True),
    ("/s/exp/tuner.pkl", False),
    ("/s/exp/trial_1/params.pkl", False),
    ("/s/exp/checkpoint_000001/tuner.pkl", False),       # not inside a trial folder
    ("/s/exp/trial_1/checkpoint_x/params.pkl", False),    # not Tune's checkpoint name
    ("/s/exp/trial_1/checkpoint_000003", False),          # the folder itself
    ("/other/exp/trial_1/checkpoint_000003/a.pkl", False),  # outside the experiment
])
def test_in_checkpoint_by_place_relative_to_the_experiment(path, inside):
    assert signing.in_checkpoint(path, "/s/exp") is inside
    assert signing.in_checkpoint(path, "/s/exp/") is inside


@pytest.mark.parametrize("root", ["/data/checkpoint_store", "/data/checkpoint_000001/x"])
def test_an_experiment_under_a_checkpoint_named_folder_is_not_a_checkpoint(root):
    assert not signing.in_checkpoint(f"{root}/exp/tuner.pkl", f"{root}/exp")
    assert not signing.in_checkpoint(f"{root}/checkpoint_x/tuner.pkl", f"{root}/checkpoint_x")
    assert signing.in_checkpoint(f"{root}/exp/t/checkpoint_000000/a.pkl", f"{root}/exp")


@pytest.mark.parametrize("storage, name", [("checkpoint_store", "exp"), ("data", "checkpoint_x"),
                                           ("checkpoint_000001", "checkpoint_000002")])
def test_tampered_state_refused_whatever_the_folder_names(tmp_path, storage, name):
    """The hole this closes: a substring test on the absolute path skipped every state file of an
    experiment stored under a folder named checkpoint_…, so a replaced tuner.pkl was loaded."""
    fs = signing.signing(pafs.LocalFileSystem())
    exp = str(tmp_path / storage / name)
    fs.create_dir(f"{exp}/trial_1/checkpoint_000000", recursive=True)
    for rel in ("tuner.pkl", "trial_1/params.pkl", "experiment_state-1.json",
                "trial_1/checkpoint_000000/state.pkl"):
        with fs.open_output_stream(f"{exp}/{rel}") as f:
            f.write(b"tune wrote this")
    assert signing.verify(fs, exp) == 3  # the checkpoint's file is not Tune state
    (tmp_path / storage / name / "tuner.pkl").write_bytes(b"a payload")
    with pytest.raises(signing.UnsignedState, match="tuner.pkl does not match its signature"):
        signing.verify(fs, exp)
    (tmp_path / storage / name / "tuner.pkl.metatune-sig").unlink()
    with pytest.raises(signing.UnsignedState, match="tuner.pkl has no Metatune signature"):
        signing.verify(fs, exp)
    assert signing.sign_existing(fs, exp) == 3 and signing.verify(fs, exp) == 3


def test_a_checkpoint_file_changed_is_not_taken_for_state(tmp_path):
    """Files inside a trial's checkpoint are guarded by the checkpoint's own checksummed manifest
    (trainables.checkpoint), not by the signature: changing one does not block the resume."""
    fs = signing.signing(pafs.LocalFileSystem())
    exp = str(tmp_path / "exp")
    fs.create_dir(f"{exp}/t/checkpoint_000002", recursive=True)
    (tmp_path / "exp" / "t" / "checkpoint_000002" / "extra.pkl").write_bytes(b"x")
    assert signing.verify(fs, exp) == 0


def test_uri_is_a_scheme_prefix_not_a_substring():
    from tune_jobs.store.uri import is_uri

    assert is_uri("s3://bucket/x") and is_uri("file:///tmp/x") and is_uri("gs://b")
    assert not is_uri("/data/odd://name") and not is_uri("relative/a://b")


def test_signing_layer_signs_tune_state_and_verify_catches_changes(tmp_path, monkeypatch):
    """The signing filesystem on a plain local folder: Tune's state files get sidecars as they
    are written (and moved), others do not, and verify refuses a changed or unsigned one."""

    monkeypatch.delenv("METATUNE_SIGNING_KEY")
    monkeypatch.setenv("HOME", str(tmp_path))  # the default key, made on first use
    fs = signing.signing(pafs.LocalFileSystem())
    exp = str(tmp_path / "exp")
    fs.create_dir(f"{exp}/trial_1", recursive=True)
    for name, data in (("tuner.pkl", b"tuner"), ("trial_1/params.pkl", b"params"),
                       ("trial_1/result.json", b"{}"), ("tmp-state", b"state")):
        with fs.open_output_stream(f"{exp}/{name}") as f:
            f.write(data)
    fs.move(f"{exp}/tmp-state", f"{exp}/experiment_state-1.json")  # renamed into a state file
    assert oct((tmp_path / ".config/metatune/signing.key").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "exp" / "tuner.pkl.metatune-sig").is_file()
    assert (tmp_path / "exp" / "experiment_state-1.json.metatune-sig").is_file()
    assert not (tmp_path / "exp" / "trial_1" / "result.json.metatune-sig").exists()
    assert signing.verify(fs, exp) == 3
    (tmp_path / "exp" / "experiment_state-1.json.metatune-sig").unlink()
    with pytest.raises(signing.UnsignedState, match="experiment_state-1.json has no Metatune"):
        signing.verify(fs, exp)
    with fs.open_output_stream(f"{exp}/experiment_state-1.json") as f:
        f.write(b"state")
    assert signing.verify(fs, exp) == 3
    (tmp_path / "exp" / "trial_1" / "params.pkl").write_bytes(b"changed")
    with pytest.raises(signing.UnsignedState, match="params.pkl does not match its signature"):
        signing.verify(fs, exp)
    assert signing.sign_existing(fs, exp) == 3 and signing.verify(fs, exp) == 3


def test_a_named_key_that_does_not_exist_is_refused_not_made(tmp_path, monkeypatch):
    """A mistyped METATUNE_SIGNING_KEY once made a new key silently, and every experiment signed
    with the real one was then refused as tampered."""
    monkeypatch.setenv("METATUNE_SIGNING_KEY", str(tmp_path / "typo.key"))
    with pytest.raises(ValueError, match=r"METATUNE_SIGNING_KEY=.*typo.key: no such key file"):
        signing.load_key()
    assert not (tmp_path / "typo.key").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB disk."""
    from tests.conftest import small_tmpfs

    with small_tmpfs(tmp_path / "tiny", "1m") as mnt:
        yield mnt


@pytest.mark.parametrize("name", ["tensors.safetensors", "tuner.pkl"])
def test_a_full_disk_leaves_no_file_and_names_the_path(tiny_disk, tmp_path, name):
    """Written through the signing layer, a file lands whole or not at all: on a full disk the
    error is ENOSPC naming the file, and neither the file, its signature nor a temporary part
    is left; an older version of the file stays as it was."""
    import errno
    import os

    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_bytes(os.urandom(3 << 20))
    fs = signing.signing(pafs.LocalFileSystem())
    (tiny_disk / "old").mkdir()
    (tiny_disk / "old" / name).write_bytes(b"the old version")
    for dest in ("new", "old"):
        fs.create_dir(str(tiny_disk / dest))
        with pytest.raises(OSError) as failed:
            pafs.copy_files(str(src), str(tiny_disk / dest), destination_filesystem=fs)
        assert failed.value.errno == errno.ENOSPC
        assert failed.value.filename == str(tiny_disk / dest / name)
    assert os.listdir(tiny_disk / "new") == []
    assert os.listdir(tiny_disk / "old") == [name]
    assert (tiny_disk / "old" / name).read_bytes() == b"the old version"


def test_a_state_file_whose_writer_raised_keeps_the_old_one_and_its_signature(tmp_path):
    """Tune rewrites tuner.pkl inside a ``with`` block: when that block raises half-way, the new
    bytes are thrown away, and the old file and its signature stay as they were, so the
    experiment still verifies and resumes."""
    fs = signing.signing(pafs.LocalFileSystem())
    exp = str(tmp_path / "exp")
    fs.create_dir(exp, recursive=True)
    rewrite_state_and_fail(fs, exp)
    assert (tmp_path / "exp" / "tuner.pkl").read_bytes() == b"the whole old state"
    assert signing.verify(fs, exp) == 1
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["tuner.pkl",
                                                                   "tuner.pkl.metatune-sig"]
